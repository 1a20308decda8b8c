"""status, checkout, ls, verify, gc, unprotect and hash over the local cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import checkout as checkout_mod
from .. import linking
from .. import pointer as pointer_mod
from ..digest import DEFAULT_ALGORITHM, Digest
from ..errors import (
    CORRUPT_CACHE,
    CORRUPT_REMOTE,
    MISSING,
    IntegrityError,
    ObjectsMissing,
    PathError,
    RepoError,
    Unrestored,
)
from ..history import pointers_at, require_git, tracked_for
from ..manifest import Entry
from ..progress import NO_PROGRESS, Progress
from ..repo import Repo, takes_lock
from ..store import Store
from ..vouch import vouch_written
from ..workspace import (
    ADDED,
    MODIFIED,
    UNCHANGED,
    Record,
    Tracked,
    find_tracked,
    manifest_digest_of,
    read_manifest,
    scan_folder,
    tracked_ancestor,
)
from ..workspace import status as workspace_status


def status(
    repo: Repo, paths: list[str] | None = None, progress: Progress = NO_PROGRESS, per_file: bool = True
) -> list[Record]:
    """How the workspace differs from the pointers (``workspace.status``). A path inside
    a tracked folder keeps the records of that part of it."""
    from .targets import kept, status_paths

    tracked, keep = status_paths(repo, paths)
    if keep is None:
        return workspace_status(repo, tracked, progress, per_file=per_file)
    records = [r for r in workspace_status(repo, tracked, progress, per_file=True) if kept(r.path, keep)]
    for k in keep:
        if not any(kept(r.path, [k]) for r in records):
            owner = next((t.rel for t in tracked if k.startswith(t.rel + "/")), None)
            raise PathError(
                f"{k} is not in {owner} (neither its manifest nor the workspace has it)", f"see dataver ls {owner}"
            )
    return records


@dataclass
class CheckoutResult:
    applied: checkout_mod.Applied
    unchanged: int
    failed: list[Unrestored]  # files left as they were: object missing from the cache, or corrupt there
    left: Left | None = None  # with ``previous``: data no longer tracked, removed or kept


@dataclass
class Left:
    """Data a pointer committed at the commit git left tracked, and no pointer tracks now."""

    removed: list[str] = field(default_factory=list)  # repo-relative; its bytes are in the cache
    kept: list[tuple[str, str]] = field(default_factory=list)  # (path, why it stays)


def leave(repo: Repo, previous: str, progress: Progress = NO_PROGRESS) -> Left:
    """Remove the data of pointers committed at ``previous`` that the workspace no longer
    has (git checkout or merge moved to a commit without them), when every byte of it
    matches that pointer and is in the cache, so a later ``git add -A`` cannot commit it
    into git. Anything else (an edit, a file the pointer never had, an object missing
    from the cache, a path git tracks now) is kept and reported."""
    out = Left()
    git = require_git(repo)
    if not previous.strip("0"):  # git's null id: nothing was checked out before (a clone)
        return out
    try:
        before = pointers_at(git, previous)
    except RepoError:
        return out  # an unknown or unborn commit: nothing to compare with
    # gone: git moved to a commit without the pointer. One the user removed by hand (dataver
    # remove, not yet committed) is still at HEAD, and its data stays where they left it.
    try:
        at_head = pointers_at(git, "HEAD")
    except RepoError:
        at_head = {}
    now = {t.rel for t in find_tracked(repo)} | set(at_head)
    for rel, ptr in sorted(before.items()):
        path = os.path.join(repo.root, rel)
        if rel in now or not os.path.lexists(path):
            continue
        if tracked_ancestor(repo, path) is not None:
            continue  # inside a folder tracked now: that folder's checkout decides
        if git.tracked_under(rel):
            out.kept.append((rel, "git tracks it at this commit"))
            continue
        t = Tracked(os.path.join(repo.root, rel + pointer_mod.SUFFIX), path, rel, ptr)
        # an edit or a file the pointer never had would be lost; a file already gone is not
        # (a removal killed half-way leaves part of the folder: the next run finishes it)
        unsaved = [
            r.path
            for r in workspace_status(repo, [t], progress)
            if r.state in (MODIFIED, ADDED) or (r.state == UNCHANGED and r.in_cache is False)
        ]
        if unsaved:
            more = f" and {len(unsaved) - 1} more" if len(unsaved) > 1 else ""
            out.kept.append((rel, f"{unsaved[0]}{more} differ from the cache"))
            continue
        from .move import delete_tracked

        left = delete_tracked(repo, t)  # what the pointer tracked, and only that
        if left:
            more = f" and {len(left) - 1} more" if len(left) > 1 else ""
            out.kept.append((rel, f"its tracked files were removed; {left[0]}{more} (never tracked: ignored?) stayed"))
        else:
            out.removed.append(rel)
    return out


@takes_lock
def checkout(
    repo: Repo,
    paths: list[str] | None = None,
    force: bool = False,
    progress: Progress = NO_PROGRESS,
    rev: str | None = None,
    previous: str | None = None,
) -> CheckoutResult:
    """Make the workspace match the pointers (of the workspace, or committed at
    ``rev``). Files whose object is absent from the cache, or turns out corrupt while
    it is copied out, are left as they were and reported in ``failed`` after all the
    others are written (the caller decides how loudly). Git's HEAD and index never move.
    ``previous``: the commit git just left (the hooks pass it); the data of its pointers
    that are gone is removed first (``leave``)."""
    from .targets import resolve

    tracked = resolve(repo, rev, paths)  # a path inside a tracked folder: its files
    plan = checkout_mod.plan(repo, tracked, progress)
    left = leave(repo, previous, progress) if previous and rev is None and not paths else None
    applied = checkout_mod.apply(repo, plan, force, progress)
    failed = [Unrestored(path, digest) for path, digest in plan.missing] + plan.failed + applied.failed
    if plan.streamed and applied.created:
        vouch_written(repo, plan.streamed)  # so the next status need not compare them file by file
    return CheckoutResult(applied, plan.unchanged, sorted(failed, key=lambda u: u.path), left)


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
    from .targets import PartFile, resolve

    try:
        found = resolve(repo, rev, [path])
    except ObjectsMissing:  # a part of a folder whose manifest the cache lacks: from the default remote
        remote = default_remote(repo)
        if remote is None:
            raise
        with repo.hasher() as hasher:
            found = resolve(repo, rev, [path], remote, hasher)
    if len(found) != 1 or isinstance(found[0], PartFile):  # a part of a tracked folder: its files
        return [Listed(t.rel, "file", t.pointer.size, t.pointer.digest.hex, None, t.executable) for t in found]
    (t,) = found
    if not t.pointer.is_dir:
        return [Listed(t.rel, "file", t.pointer.size, t.pointer.digest.hex)]
    return [
        Listed(f"{t.rel}/{e.path}", "file", e.size, e.digest.hex, None, e.executable) for e in folder_entries(repo, t)
    ]


def folder_entries(repo: Repo, t: Tracked, remote: Callable[[], Store | None] | None = None) -> list[Entry]:
    """A tracked folder's manifest entries, from the cache or else a remote: ``remote()``
    (a caller reading many objects opens one remote for all) or the default one."""
    folder_entries_ready(repo, t, remote)
    return read_manifest(repo, t)


def folder_entries_ready(repo: Repo, t: Tracked, remote: Callable[[], Store | None] | None = None) -> None:
    """Bring a tracked folder's manifest (every node) into the cache from a remote when
    the cache lacks it (see ``folder_entries``), so it can be walked from the cache."""
    if not repo.cache.has_manifest(t.pointer.digest):
        from ..transfer import fetch_manifest

        store = remote() if remote is not None else default_remote(repo)
        if store is not None:
            with repo.hasher() as hasher:
                fetch_manifest(repo.cache, store, t.pointer.digest, hasher, t.rel)


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
