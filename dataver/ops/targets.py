"""The paths a command names, as pointers: whole tracked paths, and paths inside a
tracked folder (``checkout data/train.csv``, ``pull data/images``: DVC's granular
targets), each file of such a part as a pointer of its own (``PartFile``), read from
the folder's manifest.

A part's files are written, fetched and pushed one by one; what is not under the part
is not touched, and files the manifest lacks in a named subfolder are left alone (a
whole-folder checkout deletes those). The manifest comes from the cache, or, for the
commands given a remote, from the remote first.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from .. import pointer as pointer_mod
from .. import tree
from ..errors import ObjectsMissing, PathError
from ..hashing import Hasher
from ..history import Revisions, pointers_at, require_git, tracked_for
from ..odb import ObjectStore
from ..pointer import Pointer
from ..repo import Repo
from ..store import ObjRef, Store
from ..workspace import Tracked, find_tracked, load_tracked, pointer_for, tracked_ancestor


@dataclass(frozen=True)
class PartFile(Tracked):
    """One file of a tracked folder, named by the user through a path inside it."""

    root: str = ""  # the tracked folder (absolute): the one folder on its way that may be a link
    executable: bool = False
    folder: Pointer | None = None  # the tracked folder's pointer (push sends its manifest with the part)


@dataclass(frozen=True)
class Part:
    owner: Tracked  # the tracked folder
    sub: str  # posix path inside it, no trailing slash
    rev: str | None = None  # the revision whose pointer ``owner`` is (None: the workspace's)


def resolve(
    repo: Repo,
    rev: str | Sequence[str] | Revisions | None,
    paths: list[str] | None,
    source: Store | None = None,
    hasher: Hasher | None = None,
) -> list[Tracked]:
    """``history.tracked_for``, where a path may also lie inside a tracked folder: then
    its files, one ``PartFile`` each. ``source`` (with ``hasher``): a remote to bring the
    folder's manifest from when the cache lacks it."""
    if not paths:
        return tracked_for(repo, rev, paths)
    whole, parts = split(repo, rev, paths)
    out = tracked_for(repo, rev, whole) if whole else []
    named = {t.rel for t in out}
    for part in parts:
        if part.owner.rel not in named:  # the whole folder named too: the part is in it
            out += expand(repo.cache, part, source, hasher)
    return out


def split(repo: Repo, rev: str | Sequence[str] | Revisions | None, paths: list[str]) -> tuple[list[str], list[Part]]:
    """The user's paths that name tracked paths (kept as given), and the parts: paths
    inside a tracked folder (of the workspace, or at the one revision ``rev`` names)."""
    revisions = Revisions.of(rev)
    committed = None
    if not revisions.plain:
        if revisions.single is None:
            return paths, []  # several revisions: whole tracked paths only
        committed = pointers_at(require_git(repo), revisions.single)
    whole: list[str] = []
    parts: list[Part] = []
    for up in paths:
        path = repo.resolve(up)
        rel = repo.rel(path)
        if committed is not None:
            target = rel[: -len(pointer_mod.SUFFIX)] if rel.endswith(pointer_mod.SUFFIX) else rel
            owner_rel = next((t for t in committed if target.startswith(t + "/")), None)
            if target in committed or owner_rel is None:
                whole.append(up)
                continue
            owner = Tracked(
                os.path.join(repo.root, owner_rel + pointer_mod.SUFFIX),
                os.path.join(repo.root, owner_rel),
                owner_rel,
                committed[owner_rel],
            )
            parts.append(Part(owner, target[len(owner_rel) + 1 :], revisions.single))
            continue
        if os.path.isfile(pointer_for(path)) or (path.endswith(pointer_mod.SUFFIX) and os.path.isfile(path)):
            whole.append(up)
            continue
        owner_path = tracked_ancestor(repo, path)
        if owner_path is None:
            whole.append(up)  # find_tracked says what is wrong with it
            continue
        owner = load_tracked(repo, pointer_for(owner_path))
        if not owner.pointer.is_dir:
            whole.append(up)
            continue
        parts.append(Part(owner, rel[len(owner.rel) + 1 :]))
    return whole, parts


def expand(cache: ObjectStore, part: Part, source: Store | None = None, hasher: Hasher | None = None) -> list[PartFile]:
    """The files of ``part``, from its folder's manifest in ``cache`` (brought from
    ``source`` first where it lacks a node): one ``PartFile`` each."""
    owner, sub = part.owner, part.sub
    digest = owner.pointer.digest
    display = f"manifest of {owner.rel}"

    def read(d) -> bytes:
        ref = ObjRef(d, manifest=True)
        if not cache.has(ref):
            if source is None or hasher is None:
                at = ["--rev", part.rev] if part.rev else []
                fetch = shlex.join(["dataver", "fetch", *at, f"{owner.rel}/{sub}"])
                where = f" at {part.rev}" if part.rev else ""
                raise ObjectsMissing(
                    f"{owner.rel}/{sub} is inside {owner.rel}, whose manifest{where} is not in the cache",
                    f"fetch it first: {fetch} (it brings the manifest, then that part)",
                )
            from ..transfer import download_object

            download_object(cache, source, ref, hasher, owner.rel)
        return cache.read_manifest_bytes(d)

    def skip(folder: str) -> bool:  # "a/b/": only the folders on the way to the part, and the part's own
        return not ((sub + "/").startswith(folder) or folder.startswith(sub + "/"))

    found = [e for e in tree.walk(read, digest, display, skip) if e.path == sub or e.path.startswith(sub + "/")]
    if not found:
        raise PathError(
            f"{owner.rel}/{sub} is not in {owner.rel} (its manifest lists no such file or folder)",
            f"see dataver ls {owner.rel}",
        )
    return [
        PartFile(
            owner.pointer_path,
            os.path.join(owner.path, *e.path.split("/")),
            f"{owner.rel}/{e.path}",
            Pointer("file", e.digest, e.size),
            owner.path,
            e.executable,
            owner.pointer,
        )
        for e in found
    ]


def status_paths(repo: Repo, paths: list[str] | None) -> tuple[list[Tracked], list[str] | None]:
    """status's targets: the tracked paths to compare, and (when a path lies inside a
    tracked folder) the record paths to keep: the part itself and what is under it."""
    if not paths:
        return find_tracked(repo), None
    whole, parts = split(repo, None, paths)
    tracked = find_tracked(repo, whole) if whole else []
    keep: list[str] | None = None
    if parts:
        keep = [t.rel for t in tracked]
        seen = {t.rel for t in tracked}
        for part in parts:
            keep.append(f"{part.owner.rel}/{part.sub}")
            if part.owner.rel not in seen:
                seen.add(part.owner.rel)
                tracked.append(part.owner)
    return tracked, keep


def kept(path: str, keep: list[str]) -> bool:
    return any(path == k or path.startswith(k + "/") for k in keep)
