"""Merging pointers: git's merge driver for ``*.dv`` (``dataver install`` sets it up), so
two branches that changed different files of one tracked folder merge cleanly.

A three-way merge of the folders' manifests by path: a file changed on one side only
takes that side; changed the same way on both, either; changed differently on both (or
changed on one side and deleted on the other) is a conflict, named file by file. The
merged manifest is stored in the cache and the merged pointer written where git asks.
A conflict leaves our pointer in place (a valid pointer: every command still works),
git marks the file unmerged, and ``status`` explains it (``conflicts``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import pointer as pointer_mod
from .. import tree
from ..errors import DataverError, ObjectsMissing
from ..manifest import Entry
from ..pointer import Pointer
from ..repo import Repo
from ..workspace import manifest_entries
from .hooks import python_command

DRIVER = "dataver"
ATTRIBUTE = f"*{pointer_mod.SUFFIX} merge={DRIVER}"


@dataclass
class Merged:
    pointer: Pointer | None  # the merged pointer, None when there is a conflict
    conflicts: list[str] = field(default_factory=list)  # paths (repo-relative), each with why
    why: str = ""  # a conflict that is not about files (two different files, a missing manifest)


def merge_pointers(
    repo: Repo,
    path: str,
    base: Pointer | None,
    ours: Pointer | None,
    theirs: Pointer | None,
    store: bool = True,
) -> Merged:
    """The three-way merge of one pointer file's versions (None: absent on that side).
    ``store=False`` (status's explanation): the merged manifest is not stored; a clean
    merge then answers with our pointer."""
    target = path[: -len(pointer_mod.SUFFIX)] if path.endswith(pointer_mod.SUFFIX) else path
    if ours == theirs:
        return Merged(ours)
    if base == ours:
        return Merged(theirs)
    if base == theirs:
        return Merged(ours)
    if ours is None or theirs is None:
        return Merged(None, why=f"{target} was deleted on one side and changed on the other")
    if not (ours.is_dir and theirs.is_dir and (base is None or base.is_dir)):
        return Merged(None, why=f"{target} changed on both sides, and a file cannot be merged")
    if ours.digest.algorithm != theirs.digest.algorithm:
        return Merged(None, why=f"{target}'s two sides use different hash algorithms")
    if ours.source or theirs.source:  # a merged manifest no source repository ever had
        return Merged(None, why=f"{target} is an import changed on both sides: dataver update it on one")
    try:
        old = _entries(repo, base, target) if base is not None else {}
        mine, other = _entries(repo, ours, target), _entries(repo, theirs, target)
    except ObjectsMissing as e:
        return Merged(None, why=e.message + " (dataver fetch --rev for both branches, then merge again)")
    merged: list[Entry] = []
    conflicts: list[str] = []
    for name in sorted(old.keys() | mine.keys() | other.keys()):
        b, o, t = old.get(name), mine.get(name), other.get(name)
        if _same(o, t):
            pick = o
        elif _same(o, b):
            pick = t
        elif _same(t, b):
            pick = o
        else:
            what = "deleted on one side, changed on the other" if o is None or t is None else "changed on both sides"
            conflicts.append(f"{target}/{name} ({what})")
            continue
        if pick is not None:
            merged.append(pick)
    if conflicts:
        return Merged(None, conflicts)
    if not store:
        return Merged(ours)
    algorithm = ours.digest.algorithm
    with repo.cache.packing():
        digest = tree.build(merged, algorithm, lambda data: repo.cache.add_manifest(data, algorithm))
    return Merged(ours.with_content(digest, sum(e.size for e in merged), len(merged)))


def _same(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.digest == b.digest and a.executable == b.executable


def _entries(repo: Repo, ptr: Pointer, target: str) -> dict[str, Entry]:
    if not repo.cache.has_manifest(ptr.digest):
        raise ObjectsMissing(f"the manifest of one side of {target} ({ptr.digest.short()}) is not in the cache")
    return {e.path: e for e in manifest_entries(repo.cache, ptr.digest, target)}


def _load(data: bytes, where: str) -> Pointer | None:
    return pointer_mod.loads(data, where) if data.strip() else None


def merge_files(repo: Repo, base: str, ours: str, theirs: str, path: str) -> Merged:
    """git's merge driver: the three versions in files (``%O %A %B``), the merged
    pointer written over ``ours`` when there is no conflict."""

    def read(p: str) -> bytes:
        with open(p, "rb") as f:
            return f.read(pointer_mod.MAX_POINTER_BYTES + 1)

    with repo.cache_lock():  # it stores a manifest: a gc waits
        result = merge_pointers(
            repo,
            path,
            _load(read(base), f"{path} (merge base)"),
            _load(read(ours), f"{path} (ours)"),
            _load(read(theirs), f"{path} (theirs)"),
        )
    if result.pointer is not None:
        from ..fsutil import atomic_write

        atomic_write(ours, pointer_mod.dumps(result.pointer))
    return result


def conflicts(repo: Repo) -> list[tuple[str, Merged]]:
    """Pointer files git left unmerged (a merge in progress), each with what the merge
    of its three versions finds: what ``status`` says about them."""
    git = repo.git
    if git is None or not os.path.exists(os.path.join(git.git_dir, "MERGE_HEAD")):
        return []
    out = []
    for path, base, ours, theirs in git.conflicts(pointer_mod.SUFFIX):
        try:
            merged = merge_pointers(
                repo,
                path,
                _load(base or b"", f"{path} (merge base)"),
                _load(ours or b"", f"{path} (ours)"),
                _load(theirs or b"", f"{path} (theirs)"),
                store=False,  # status only explains: it writes nothing to the cache
            )
        except DataverError as e:
            merged = Merged(None, why=e.message)
        out.append((path, merged))
    return out


def install(repo: Repo) -> list[str]:
    """Set the merge driver in the repository's git config and ``*.dv merge=dataver`` in
    the root ``.gitattributes`` (commit it: it tells every clone's git to use the driver
    each clone's ``dataver install`` defines). Returns what changed."""
    git = repo.git
    assert git is not None
    changed = []
    command = f"{python_command()} merge-driver %O %A %B %P"
    if git.config_value(f"merge.{DRIVER}.driver") != command:
        git.set_config(f"merge.{DRIVER}.name", "dataver pointer files (three-way merge of folder manifests)")
        git.set_config(f"merge.{DRIVER}.driver", command)
        changed.append(f"merge.{DRIVER}.driver")
    attributes = os.path.join(repo.root, ".gitattributes")
    try:
        with open(attributes, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if ATTRIBUTE not in text.splitlines():
        from ..fsutil import atomic_write

        sep = "" if not text or text.endswith("\n") else "\n"
        atomic_write(attributes, (text + sep + ATTRIBUTE + "\n").encode("utf-8", "surrogateescape"))
        changed.append(".gitattributes")
    return changed
