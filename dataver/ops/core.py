"""status, checkout, ls, verify, gc, unprotect and hash over the local cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from .. import checkout as checkout_mod
from .. import linking
from ..digest import DEFAULT_ALGORITHM, Digest
from ..errors import CORRUPT_CACHE, CORRUPT_REMOTE, MISSING, IntegrityError, ObjectsMissing, PathError, Unrestored
from ..history import tracked_for
from ..manifest import Entry
from ..progress import NO_PROGRESS, Progress
from ..repo import Repo
from ..store import Store
from ..workspace import (
    UNCHANGED,
    Record,
    Tracked,
    find_tracked,
    manifest_digest_of,
    read_manifest,
    scan_folder,
)
from ..workspace import status as workspace_status


def status(
    repo: Repo, paths: list[str] | None = None, progress: Progress = NO_PROGRESS, per_file: bool = True
) -> list[Record]:
    """How the workspace differs from the pointers (``workspace.status``)."""
    return workspace_status(repo, find_tracked(repo, paths), progress, per_file=per_file)


@dataclass
class CheckoutResult:
    applied: checkout_mod.Applied
    unchanged: int
    failed: list[Unrestored]  # files left as they were: object missing from the cache, or corrupt there


def checkout(
    repo: Repo,
    paths: list[str] | None = None,
    force: bool = False,
    progress: Progress = NO_PROGRESS,
    rev: str | None = None,
) -> CheckoutResult:
    """Make the workspace match the pointers (of the workspace, or committed at
    ``rev``). Files whose object is absent from the cache, or turns out corrupt while
    it is copied out, are left as they were and reported in ``failed`` after all the
    others are written (the caller decides how loudly). Git's HEAD and index never move."""
    tracked = tracked_for(repo, rev, paths)
    plan = checkout_mod.plan(repo, tracked, progress)
    applied = checkout_mod.apply(repo, plan, force, progress)
    failed = [Unrestored(path, digest) for path, digest in plan.missing] + plan.failed + applied.failed
    return CheckoutResult(applied, plan.unchanged, sorted(failed, key=lambda u: u.path))


def missing_error(
    failed: list[Unrestored],
    where: str = "the cache",
    hint: str = "fetch them from a remote (dataver pull), or re-add the data where it exists",
) -> ObjectsMissing | IntegrityError:
    """One error listing every file not restored and why, with what to do about each kind.

    The exit code follows the worst reason: IntegrityError (8) if any object is corrupt
    (on the remote or in the cache), else ObjectsMissing (7). ``where`` says where
    missing objects were looked for; ``hint`` what to do about them.
    """
    more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
    corrupt = [u for u in failed if u.reason != MISSING]
    if not corrupt:
        shown = "\n".join(f"  {u.path}  ({u.digest})" for u in failed[:20])
        return ObjectsMissing(f"{len(failed)} object(s) missing from {where}:\n{shown}{more}", hint)
    shown = "\n".join(f"  {u.path}  ({u.digest})  {_why(u, where)}" for u in failed[:20])
    reasons = {u.reason for u in failed}
    hints = [hint] if MISSING in reasons else []
    if CORRUPT_REMOTE in reasons:
        hints.append(
            "delete each damaged copy on the remote (digest xxh3-128:ABCDEF... is stored at xxh3-128/AB/CDEF... "
            "under its URL), then dataver push from a machine that has the data (push never replaces an object "
            "the remote already has)"
        )
    if CORRUPT_CACHE in reasons:
        hints.append("replace damaged cache objects from a remote: dataver fetch --repair, then dataver checkout")
    n_missing = len(failed) - len(corrupt)
    counts = f"{len(corrupt)} corrupt" + (f", {n_missing} missing" if n_missing else "")
    return IntegrityError(f"{len(failed)} file(s) not restored ({counts}):\n{shown}{more}", "; ".join(hints))


def _why(u: Unrestored, where: str) -> str:
    if u.reason == CORRUPT_REMOTE:
        return f"corrupt on {u.where}: its bytes do not match the digest"
    if u.reason == CORRUPT_CACHE:
        return f"corrupt in the cache ({u.where})"
    return f"missing from {where}"


@dataclass
class Listed:
    path: str
    kind: str
    size: int
    digest: str
    files: int | None = None
    executable: bool = False


def ls(repo: Repo, path: str | None = None, rev: str | None = None) -> list[Listed]:
    """Tracked paths, or with a tracked folder, the files its manifest lists."""
    if path is None:
        return [
            Listed(t.rel, t.pointer.kind, t.pointer.size, t.pointer.digest.hex, t.pointer.files)
            for t in tracked_for(repo, rev, None)
        ]
    (t,) = tracked_for(repo, rev, [path])
    if not t.pointer.is_dir:
        return [Listed(t.rel, "file", t.pointer.size, t.pointer.digest.hex)]
    return [
        Listed(f"{t.rel}/{e.path}", "file", e.size, e.digest.hex, None, e.executable) for e in folder_entries(repo, t)
    ]


def folder_entries(repo: Repo, t: Tracked, remote: Callable[[], Store | None] | None = None) -> list[Entry]:
    """A tracked folder's manifest entries, from the cache or else a remote: ``remote()``
    (a caller reading many objects opens one remote for all) or the default one."""
    if not repo.cache.has_manifest(t.pointer.digest):
        from ..transfer import fetch_manifest

        store = remote() if remote is not None else default_remote(repo)
        if store is not None:
            with repo.hasher() as hasher:
                fetch_manifest(repo.cache, store, t.pointer.digest, hasher, t.rel)
    return read_manifest(repo, t)


def default_remote(repo: Repo) -> Store | None:
    """The default remote, opened; None where no remote is configured."""
    from ..remotes import open_remote, remote_names

    return open_remote(repo.config, None, repo.root) if remote_names(repo.config) else None


@dataclass
class Problem:
    path: str
    what: str


def verify(repo: Repo, paths: list[str] | None = None, progress: Progress = NO_PROGRESS) -> list[Problem]:
    """Re-read everything (no stat cache): workspace vs pointers, cache bytes vs names."""
    problems: list[Problem] = []
    tracked = find_tracked(repo, paths)
    fresh = Repo(repo.root, use_state=False)
    for rec in workspace_status(fresh, tracked, progress, check_cache=False):
        if rec.state != UNCHANGED:
            problems.append(Problem(rec.path, f"workspace {rec.state}"))
    wanted = _blobs_of(repo, tracked, problems)
    progress.start("verifying cache", total_bytes=sum(s for _, s, _ in wanted), total_files=len(wanted))
    with repo.hasher() as hasher:

        def check(item: tuple[Digest, int, str], prog: Progress) -> Problem | None:
            digest, size, rel = item
            if not repo.cache.has_blob(digest):
                return Problem(rel, f"object {digest.short()} missing from the cache")
            if not repo.cache.check_blob(digest, hasher, prog):
                return Problem(rel, f"cache object {digest.short()} is corrupt")
            return None

        problems += [pr for pr in hasher.map_sized([(w, w[1]) for w in wanted], check, progress) if pr]
    progress.close()
    return sorted(problems, key=lambda pr: pr.path)


def _blobs_of(repo: Repo, tracked: list[Tracked], problems: list[Problem]) -> list[tuple[Digest, int, str]]:
    """(digest, size, display path) of every blob the pointers need; manifest trouble -> problems."""
    from ..transfer import Walk, needed

    out: dict[Digest, tuple[Digest, int, str]] = {}
    for t in tracked:
        walk = Walk()
        try:
            found = [(ref, size, display) for ref, size, display in needed(repo.cache, [t], walk) if not ref.manifest]
        except Exception as e:  # noqa: BLE001 - any manifest failure is a finding here
            problems.append(Problem(t.rel, getattr(e, "message", str(e))))
            continue
        problems += [Problem(u.path, f"manifest {u.digest.short()} missing from the cache") for u in walk.unknown]
        for ref, size, display in found:
            out.setdefault(ref.digest, (ref.digest, size, display))
    return list(out.values())


def unprotect(repo: Repo, paths: list[str]) -> list[str]:
    """Give linked (read-only) workspace files private writable copies."""
    changed = []
    for t in find_tracked(repo, paths):
        files = (
            [t.path]
            if not t.pointer.is_dir
            else [os.path.join(t.path, rel) for rel in scan_folder(t.path, t.rel, repo).files]
            if os.path.isdir(t.path)
            else []
        )
        for f in files:
            if not os.path.lexists(f):
                continue
            if linking.is_protected_link(f, repo.cache.root) or not os.access(f, os.W_OK):
                linking.unprotect(f)
                changed.append(repo.rel(f))
    return changed


@dataclass
class Hashed:
    path: str
    kind: str
    digest: str
    size: int
    files: int | None = None


def hash_path(
    path: str, jobs: int | None = None, progress: Progress = NO_PROGRESS, algorithm: str = DEFAULT_ALGORITHM
) -> Hashed:
    """The ``algorithm`` digest a pointer would record for ``path``; needs no repository."""
    from ..hashing import Hasher, path_error

    if os.path.isdir(path):
        scan = scan_folder(path, path)
        with Hasher(jobs, algorithm=algorithm) as hasher:
            hashed = {h.path: h for h in hasher.hash_many([os.path.join(path, r) for r in scan.files], progress)}
        entries = [
            Entry(rel, hashed[os.path.join(path, rel)].digest, st.st_size, bool(st.st_mode & 0o100))
            for rel, st in scan.files.items()
        ]
        digest = manifest_digest_of(entries, algorithm)
        return Hashed(path, "dir", digest.hex, sum(e.size for e in entries), len(entries))
    if not os.path.exists(path):
        raise PathError(f"{path} does not exist")
    with Hasher(jobs, algorithm=algorithm) as hasher:
        try:
            h = hasher.hash_file(path, progress=progress)
        except OSError as e:
            raise path_error(path, e) from None
    return Hashed(path, "file", h.digest.hex, h.size)
