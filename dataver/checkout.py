"""Making the workspace match pointers: plan what differs, then apply it.

Planning reads only (stat cache, hashing); nothing is touched until the whole plan
is known. A file whose current content is not in the cache would be lost by an
overwrite or delete, so the plan lists it as a conflict and ``apply`` refuses unless
forced. Each file is placed by writing a temporary sibling and renaming it over the
old one, so a kill leaves every file either old or new. Writes never go through a
symbolic link inside a tracked folder (a manifest must not steer writes elsewhere).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat as stat_mod
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from . import linking, tree
from .config import env_int
from .digest import ALGORITHMS, Digest
from .errors import CORRUPT_CACHE, IntegrityError, PathError, PointerError, StorageError, Unrestored, WouldLoseData
from .fsutil import remove_temporaries, sibling_temporaries
from .hashing import HashedFile, digest_bytes
from .history import check_not_nested
from .manifest import Entry
from .odb import copy_verified
from .progress import NO_PROGRESS, Progress
from .repo import Repo
from .safepath import reserved_name
from .state import FileStat, Stat, StatRecorder
from .store import ObjRef
from .workspace import (
    STREAM_FILES,
    FolderScan,
    Tracked,
    file_digest,
    hash_files,
    known_digests,
    matching_subfolders,
    outside,
    read_manifest,
    scan_folder,
    scan_outside,
)


@dataclass(slots=True)
class Action:
    op: str  # "create", "replace" or "delete"
    path: str  # absolute (the repo-relative form only for messages: repo.rel(path))
    root: str  # the tracked target it belongs to (absolute): the one folder that may be a link
    digest: Digest | None = None
    size: int = 0
    executable: bool = False


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # rel paths whose changes are not in the cache
    missing: list[tuple[str, Digest]] = field(default_factory=list)  # (rel path, digest) absent from cache
    unchanged: int = 0
    folders: list[str] = field(default_factory=list)  # tracked folder roots touched (absolute)
    temporaries: list[str] = field(default_factory=list)  # dataver's leftovers of a killed run (absolute)
    failed: list[Unrestored] = field(default_factory=list)  # folders whose manifest is corrupt in the cache
    # Big folders with nothing on disk yet (a fresh clone's pull): every node checked here,
    # their files created by ``apply`` a batch at a time as it walks the manifest again, so
    # no action per file is held (files whose object the cache lacks go into ``missing``).
    streamed: list[Tracked] = field(default_factory=list)


def plan(repo: Repo, tracked: list[Tracked], progress: Progress = NO_PROGRESS) -> Plan:
    """What it takes to make the workspace match ``tracked``. Every path the plan
    would write or delete is checked here, before anything is touched: a hostile
    pointer refuses the whole command, not just its own part."""
    check_targets(repo, tracked)
    p = Plan()
    manifests: dict[str, list[Entry]] = {}  # every entry checked (parsing is the check) before any folder is planned
    scans: dict[str, tuple[FolderScan, set[str]]] = {}  # scanned folders, and their subfolders known to match
    for t in tracked:
        if t.pointer.is_dir and repo.cache.has_manifest(t.pointer.digest):
            try:
                if os.path.isdir(t.path):
                    big = (t.pointer.files or 0) > STREAM_FILES  # prints first, then the files of what changed
                    scan = scan_folder(t.path, t.rel, repo, keep=not big)
                    read = tree.keeping(repo.cache.read_manifest_bytes, t.pointer.digest)
                    same = set(matching_subfolders(repo, t, scan, read))
                    if big:
                        scan = scan_outside(repo, t, scan, same)
                    scans[t.path] = scan, same
                    skip = (lambda sub, same=same: sub in same) if same else None
                    manifests[t.path] = list(tree.walk(read, t.pointer.digest, f"manifest of {t.rel}", skip))
                elif (t.pointer.files or 0) > _create_streamed_over() and not os.path.lexists(t.path):
                    for _ in tree.walk(repo.cache.read_manifest_bytes, t.pointer.digest, f"manifest of {t.rel}"):
                        pass  # every node and path checked before anything is written
                    p.streamed.append(t)
                else:
                    manifests[t.path] = read_manifest(repo, t)
            except IntegrityError:  # a damaged cache copy costs this folder only
                where = repo.cache.path(ObjRef(t.pointer.digest, manifest=True))
                p.failed.append(Unrestored(t.rel, t.pointer.digest, CORRUPT_CACHE, where, manifest=True))
    damaged = {u.path for u in p.failed}
    streamed = {t.path for t in p.streamed}
    for t in tracked:
        if t.path in streamed:
            p.folders.append(t.path)
        elif t.pointer.is_dir:
            if t.rel not in damaged:
                _plan_folder(repo, t, manifests.pop(t.path, None), p, progress, scans.pop(t.path, None))
        else:
            _plan_file(repo, t, p, progress)
    p.temporaries += sibling_temporaries(t.path for t in tracked)
    _check_no_links(repo, p, tracked)
    return p


def check_targets(repo: Repo, tracked: list[Tracked]) -> None:
    """Targets that must not be written at all, whatever they hold: one inside another
    (each pointer's own path check is done where it is read), or a symbolic link git
    tracks itself (committed beside the pointer, ``data -> ~/.ssh`` would steer the
    writes wherever it leads; a link the user made, to data on another disk, is fine).
    Only links are looked up in git's index, so a plain checkout does not load git."""
    check_not_nested(sorted(t.rel for t in tracked))
    for t in tracked:
        if os.path.islink(t.path) and repo.git is not None and repo.git.tracks(t.rel):
            raise PointerError(
                f"{t.rel}.dv: its target {t.rel} is tracked by git itself",
                f"a path is tracked by git or by dataver, not both: remove one (git rm --cached {t.rel}, or "
                f"git rm {t.rel}.dv)",
            )


def _check_no_links(repo: Repo, p: Plan, tracked: list[Tracked]) -> None:
    """No write or delete may pass through a symbolic link between the repository root
    and the file, except the tracked folder itself (``data -> /big-disk/data``, made by
    the user): a link inside a folder, or above it, would steer writes elsewhere."""
    checked: set[str] = set()
    for a in p.actions:
        _check_chain(repo, a.path, a.root, checked)
    for t in p.streamed:  # nothing below it yet: the folders above it
        _check_chain(repo, os.path.join(t.path, "x"), t.path, checked)
    roots = {t.path for t in tracked}
    for tmp in p.temporaries:
        probe = os.path.dirname(tmp)
        while len(probe) > len(repo.root) and probe not in roots:
            probe = os.path.dirname(probe)
        _check_chain(repo, tmp, probe if probe in roots else "", checked)


def _check_chain(repo: Repo, path: str, root: str, checked: set[str]) -> None:
    folder = os.path.dirname(path)
    while len(folder) > len(repo.root) and folder not in checked:
        if folder != root and os.path.islink(folder):
            raise PathError(
                f"refusing to write {repo.rel(path)}: {repo.rel(folder)} is a symbolic link",
                "replace the link with a real folder, then re-run",
            )
        checked.add(folder)
        folder = os.path.dirname(folder)


def _saved(
    repo: Repo, digest: Digest | None, path: str | None = None, st: Stat | None = None, progress: Progress = NO_PROGRESS
) -> bool:
    """Whether the cache holds the content of the workspace file ``path`` (``st`` its
    stat, ``digest`` its digest under the algorithm it is compared with). A repository
    that switched ``core.hash`` may hold it under the other algorithm, the one it was
    added or checked out with: those are asked too (the stat cache first, hashing
    last, and only where the cache has objects of that algorithm) before the file
    counts as unsaved."""
    if digest is None:
        return False
    if repo.cache.has_blob(digest):
        return True
    if path is None or st is None:
        return False
    for algorithm in ALGORITHMS:
        if algorithm != digest.algorithm and os.path.isdir(os.path.join(repo.cache.root, algorithm)):
            if repo.cache.has_blob(file_digest(repo, path, st, algorithm, progress)):
                return True
    return False


def _plan_file(repo: Repo, t: Tracked, p: Plan, progress: Progress) -> None:
    want = t.pointer.digest
    try:
        st = os.lstat(t.path)
    except FileNotFoundError:
        st = None
    into_cache = st is not None and stat_mod.S_ISLNK(st.st_mode) and linking.is_protected_link(t.path, repo.cache.root)
    if into_cache:
        # symlink mode: the link holds its object's content (dangling: nothing to lose)
        try:
            st = os.stat(t.path)
        except FileNotFoundError:
            pass
    if st is not None and stat_mod.S_ISREG(st.st_mode):
        current = file_digest(repo, t.path, st, want.algorithm, progress)
        if current == want:
            p.unchanged += 1
            return
        if not _saved(repo, current, t.path, st, progress):
            p.conflicts.append(t.rel)
    elif st is not None and not into_cache:
        if not (stat_mod.S_ISDIR(st.st_mode) and _folder_saved(repo, t, progress)):
            p.conflicts.append(t.rel)  # a folder or link where the file belongs
    if not repo.cache.has_blob(want):
        p.missing.append((t.rel, want))
        return
    # a file of a tracked folder named on its own (ops.targets.PartFile): the folder is
    # the one link allowed on its way, and the manifest says whether it is executable
    root = getattr(t, "root", "") or t.path
    executable = getattr(t, "executable", False)
    if st is not None and stat_mod.S_ISDIR(st.st_mode):
        p.actions.append(Action("delete", t.path, root))  # a folder cannot be renamed over
    p.actions.append(Action("create" if st is None else "replace", t.path, root, want, t.pointer.size, executable))


def _folder_saved(repo: Repo, t: Tracked, progress: Progress) -> bool:
    """Whether every file of the folder standing where ``t``'s file belongs is in the cache
    (it was a tracked folder at another revision): then replacing it loses nothing."""
    from .errors import DataverError

    try:
        scan = scan_folder(t.path, t.rel, repo)
    except DataverError:
        return False
    if scan.reserved:  # a git repository inside: never deleted, --force or not
        raise PathError(
            f"refusing to replace the folder {t.rel} with a file: it holds {t.rel}/{scan.reserved[0]}",
            f"move {t.rel} away, then re-run",
        )
    algorithm = t.pointer.digest.algorithm
    current, unknown = known_digests(repo, t.rel, scan, algorithm)
    hashed = hash_files(repo, [os.path.join(t.path, r) for r in unknown], algorithm, progress)
    current.update({r: hashed[os.path.join(t.path, r)].digest for r in unknown})
    return all(_saved(repo, d, os.path.join(t.path, r), scan.files[r], progress) for r, d in current.items())


def _plan_folder(
    repo: Repo,
    t: Tracked,
    entries: list[Entry] | None,
    p: Plan,
    progress: Progress,
    scanned: tuple[FolderScan, set[str]] | None = None,
) -> None:
    if entries is None:
        p.missing.append((t.rel, t.pointer.digest))
        return
    p.folders.append(t.path)
    algorithm = t.pointer.digest.algorithm  # the manifest's entries'
    current: dict[str, Digest] = {}
    files: Mapping[str, FileStat] = {}
    if os.path.isdir(t.path):
        scan, same = scanned if scanned is not None else (scan_folder(t.path, t.rel, repo), set())
        p.temporaries += [os.path.join(t.path, rel) for rel in scan.temporaries]
        if same:  # subfolders that match: neither their files nor their entries are looked at
            scan.files = outside(scan.files, same)
            p.unchanged += sum(scan.prints()[sub].files for sub in same)
        files = scan.files
        current, unknown = known_digests(repo, t.rel, scan, algorithm)
        hashed = hash_files(repo, [os.path.join(t.path, r) for r in unknown], algorithm, progress)
        current.update({os.path.relpath(k, t.path).replace(os.sep, "/"): h.digest for k, h in hashed.items()})
    elif os.path.lexists(t.path):
        st = os.stat(t.path) if os.path.isfile(t.path) else None
        cur = file_digest(repo, t.path, st, algorithm, progress) if st is not None else None
        if not _saved(repo, cur, t.path, st, progress):
            p.conflicts.append(t.rel)
        p.actions.append(Action("delete", t.path, t.path))
    extra = files.keys() - {e.path for e in entries} if files else set()  # files the manifest lacks
    for rel in sorted(extra, reverse=True):
        if not _saved(repo, current.get(rel), os.path.join(t.path, rel), files[rel], progress):
            p.conflicts.append(f"{t.rel}/{rel}")
        p.actions.append(Action("delete", os.path.join(t.path, rel), t.path))
    scanned = os.path.isdir(t.path)
    for e in entries:
        have = current.get(e.path)
        if have is None and scanned:  # not seen by the scan, yet maybe there: a file .dataverignore hides
            full = os.path.join(t.path, *e.path.split("/"))
            try:
                hidden = os.stat(full)
            except OSError:
                hidden = None
            if hidden is not None and stat_mod.S_ISREG(hidden.st_mode):
                have = file_digest(repo, full, hidden, algorithm, progress)
                if have == e.digest and bool(hidden.st_mode & 0o100) == e.executable:
                    p.unchanged += 1
                    continue
                if not _saved(repo, have, full, hidden, progress):
                    p.conflicts.append(f"{t.rel}/{e.path}")
        elif have == e.digest and bool(files[e.path].st_mode & 0o100) == e.executable:
            p.unchanged += 1
            continue
        elif have is not None and have != e.digest:
            if not _saved(repo, have, os.path.join(t.path, e.path), files[e.path], progress):
                p.conflicts.append(f"{t.rel}/{e.path}")
        if not repo.cache.has_blob(e.digest):
            p.missing.append((f"{t.rel}/{e.path}", e.digest))
            continue
        op = "create" if have is None else "replace"
        p.actions.append(Action(op, os.path.join(t.path, e.path), t.path, e.digest, e.size, e.executable))


@dataclass
class Applied:
    created: int = 0
    replaced: int = 0
    deleted: int = 0
    link_types: dict[str, int] = field(default_factory=dict)
    temporaries: int = 0  # dataver's own leftovers of a killed run, removed
    failed: list[Unrestored] = field(default_factory=list)  # not written: the cache object is corrupt


def apply(repo: Repo, p: Plan, force: bool = False, progress: Progress = NO_PROGRESS) -> Applied:
    """Carry out a plan. Refuses (WouldLoseData) if it has conflicts and not ``force``.

    A cache object found corrupt while it is copied out does not stop the others: that
    file is left as it was and listed in ``failed``. The object stays in the cache (as
    every corrupt object does until ``fetch --repair`` replaces it); each later copy
    hashes it again and refuses it again.
    """
    if p.conflicts and not force:
        shown = ", ".join(p.conflicts[:10]) + (f" and {len(p.conflicts) - 10} more" if len(p.conflicts) > 10 else "")
        raise WouldLoseData(
            f"checkout would overwrite or delete {len(p.conflicts)} changed file(s) not saved in the cache: {shown}",
            "save them with dataver add, move them away, or re-run with --force to discard them",
        )
    done = Applied()
    done.temporaries = remove_temporaries(p.temporaries)
    for a in p.actions:
        if a.op == "delete":
            with _writing(a.path):
                _remove(a.path)
            done.deleted += 1
    for folder in p.folders:
        _prune_empty_dirs(folder)
        if not os.path.lexists(folder):
            with _writing(folder):
                os.makedirs(folder)  # an empty tracked folder has no file whose write creates it
    writes = [a for a in p.actions if a.op != "delete"]
    if not writes and not p.streamed:
        return done
    progress.start(
        "checkout",
        total_bytes=sum(a.size for a in writes) + sum(t.pointer.size for t in p.streamed),
        total_files=len(writes) + sum(t.pointer.files or 0 for t in p.streamed),
    )
    checked_dirs: set[str] = set()
    recorder = StatRecorder(repo.state, repo.root)
    with repo.hasher() as hasher:
        _write(repo, writes, hasher, recorder, checked_dirs, done, progress)
        for t in p.streamed:
            for batch in _creations(repo, t, p):
                _write(repo, batch, hasher, recorder, checked_dirs, done, progress)
    progress.close()
    recorder.flush()
    return done


STREAM_BATCH = 20_000  # files of a streamed folder created per batch
STREAM_CREATE_ENV = "DATAVER_STREAM_CREATE_OVER"  # another size above which a new folder is streamed (tests)
STREAM_BATCH_ENV = "DATAVER_STREAM_BATCH"  # another STREAM_BATCH (tests: many batches from a few files)


def _create_streamed_over() -> int:
    """A folder not on disk with more files than this is created batch by batch
    (``Plan.streamed``): ``STREAM_FILES``, or ``DATAVER_STREAM_CREATE_OVER``."""
    return env_int(STREAM_CREATE_ENV, STREAM_FILES)


def _creations(repo: Repo, t: Tracked, p: Plan) -> Iterator[list[Action]]:
    """The files of a streamed folder (``Plan.streamed``) to create, a batch at a time,
    from a second walk of its manifest (the plan checked every node of it)."""
    batch: list[Action] = []
    size = env_int(STREAM_BATCH_ENV, STREAM_BATCH, minimum=1)
    for e in tree.walk(repo.cache.read_manifest_bytes, t.pointer.digest, f"manifest of {t.rel}"):
        if not repo.cache.has_blob(e.digest):
            p.missing.append((f"{t.rel}/{e.path}", e.digest))
            continue
        batch.append(Action("create", os.path.join(t.path, e.path), t.path, e.digest, e.size, e.executable))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write(
    repo: Repo,
    writes: list[Action],
    hasher,
    recorder: StatRecorder,
    checked_dirs: set[str],
    done: Applied,
    progress: Progress,
) -> None:
    """Place the file of each write action from the cache, each recorded in the stat cache."""
    for a in writes:
        _prepare_parent(repo, a, checked_dirs)

    def place(a: Action, prog: Progress) -> tuple[Action, str | None]:
        assert a.digest is not None
        digest = a.digest

        def copy(src: str, tmp: str, mode: int) -> None:
            return copy_verified(src, digest, tmp, hasher, prog, mode)

        # Objects hashed moments ago by this process (a pull's downloads) are copied
        # plainly; anything else is verified while it is copied out.
        verify = not repo.cache.verified_here(digest)
        src = repo.cache.blob_path(digest)
        try:
            data = None if os.path.exists(src) else repo.cache.packed_bytes(ObjRef(digest))
            if data is not None:  # a small packed object: written from its bytes
                if verify:
                    if digest_bytes(data, hasher.chunk_size, digest.algorithm) != digest:
                        return a, None
                    prog.advance(len(data))
                return a, linking.place_bytes(data, a.path, a.executable)
            kind = linking.place(src, a.path, repo.link_types, a.executable, copy if verify else None)
        except IntegrityError:  # place removed its temporary: the file is as it was
            return a, None
        return a, kind

    for a, kind in hasher.map_sized([(a, a.size) for a in writes], place, progress):
        if kind is None:
            assert a.digest is not None
            done.failed.append(Unrestored(repo.rel(a.path), a.digest, CORRUPT_CACHE, repo.cache.path(ObjRef(a.digest))))
            continue  # nothing written: nothing for the stat cache to record
        done.link_types[kind] = done.link_types.get(kind, 0) + 1
        if a.op == "create":
            done.created += 1
        else:
            done.replaced += 1
        st = os.stat(a.path)
        assert a.digest is not None
        recorder.add(HashedFile(a.path, a.digest, st.st_size, st.st_ino, st.st_mtime_ns, a.executable, st.st_ctime_ns))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _prune_empty_dirs(folder: str) -> None:
    """Remove empty subfolders of a tracked folder, deepest first; never inside a
    ``.git``/``.dataver`` (a nested repository's empty ``refs/tags``) or a link."""
    if not os.path.isdir(folder) or os.path.islink(folder):
        return
    found = []
    for here, subdirs, _files in os.walk(folder):  # does not descend into links
        subdirs[:] = [d for d in subdirs if reserved_name(d) is None]
        if here != folder:
            found.append(here)
    for here in reversed(found):  # children before their parents
        try:
            os.rmdir(here)
        except OSError:
            pass  # not empty; or left behind, which loses nothing


def _prepare_parent(repo: Repo, a: Action, checked: set[str]) -> None:
    """Create the parent folders of a write, refusing to pass through symlinks."""
    parent = os.path.dirname(a.path)
    if parent in checked:
        return
    probe = parent
    chain = []
    while len(probe) > len(repo.root) and probe not in checked:
        chain.append(probe)
        probe = os.path.dirname(probe)
    for d in reversed(chain):
        if os.path.islink(d) and d != a.root:
            raise PathError(
                f"refusing to write {repo.rel(a.path)}: {repo.rel(d)} is a symbolic link",
                "replace the link with a real folder, then re-run",
            )
        if os.path.lexists(d) and not os.path.isdir(d):
            raise PathError(
                f"cannot write {repo.rel(a.path)}: {repo.rel(d)} is a file where a folder belongs",
                "move it away, then re-run",
            )
        with _writing(d):
            os.makedirs(d, exist_ok=True)
        checked.add(d)
    if os.path.isdir(a.path) and not os.path.islink(a.path):
        with _writing(a.path):
            os.rmdir(a.path)  # emptied by the deletes above


@contextlib.contextmanager
def _writing(path: str):
    """Turn an OSError while changing the workspace into StorageError naming ``path``."""
    try:
        yield
    except OSError as e:
        raise StorageError(
            f"cannot write {path}: {e.strerror}", "fix its permissions or free space, then re-run"
        ) from None
