"""Reading the working tree: which pointers exist, what tracked folders hold, and
how the workspace compares with the pointers and the cache (status records).

Digests of workspace files come from the stat cache where it still matches, and
from the hasher otherwise (hashed files are recorded back).
"""

from __future__ import annotations

import array
import errno
import os
import stat as stat_mod
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, KeysView, Mapping

import xxhash

from . import manifest, pointer, tree
from .digest import Digest
from .errors import PathError, PointerError, SymlinkLoop, UnreadableFile
from .hashing import HashedFile
from .ignore import IGNORE_FILE, Rule, ignored, read_rule, rules_above
from .linking import is_temp_name
from .manifest import Entry
from .odb import ObjectStore
from .pointer import Pointer
from .progress import NO_PROGRESS, Progress
from .repo import Repo
from .safepath import check_target, reserved_in, reserved_name
from .state import COARSE_RACY_WINDOW_NS, FileStat, Stat, StatRecorder, is_racy, stat_key

_FINGERPRINT_SEED = int.from_bytes(b"dvfinger", "little")
_MAY_BE_RESERVED = frozenset(".gGdD")  # first letters of every ASCII spelling of .git or .dataver (safepath)
STREAM_FILES = 50_000  # status of a folder this big takes its fingerprint without keeping its files
# A prints-only scan shares a folder out to other processes (scan_processes) once it has
# listed this many files and has SHARE_DIRS_PER_PROCESS folders per process left to list.
SHARE_MIN_FILES = 20_000
SHARE_DIRS_PER_PROCESS = 4

UNCHANGED, MODIFIED, ADDED, DELETED, MISSING = "unchanged", "modified", "added", "deleted", "missing"


@dataclass(frozen=True)
class Tracked:
    """A pointer file and the path it tracks."""

    pointer_path: str  # absolute
    path: str  # absolute target
    rel: str  # repo-relative target, posix
    pointer: Pointer


@dataclass(slots=True)
class Record:
    """One status line: a tracked path or a file inside a tracked folder."""

    path: str  # repo-relative
    state: str  # UNCHANGED, MODIFIED, ADDED, DELETED, MISSING
    in_cache: bool | None  # is the content the pointer records in the cache? None: not applicable
    tracked: str  # repo-relative target of the pointer this belongs to


class ScanFiles(Mapping[str, FileStat]):
    """A scanned folder's files: relative posix name -> ``FileStat``, kept as columns.

    One dict entry and five array slots per file (~100 bytes) instead of a tuple and
    four int objects (~200 bytes): 200,000 files hold ~25 MB less in every command
    that scans. A ``FileStat`` is built when one is asked for.
    """

    __slots__ = ("_index", "_ino", "_size", "_mtime", "_mode", "_ctime")

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._ino, self._size = array.array("Q"), array.array("Q")
        self._mtime, self._mode = array.array("q"), array.array("L")
        self._ctime = array.array("q")

    def add(self, name: str, st: os.stat_result) -> None:
        self._index[name] = len(self._ino)
        self._ino.append(st.st_ino)
        self._size.append(st.st_size)
        self._mtime.append(st.st_mtime_ns)
        self._mode.append(st.st_mode)
        self._ctime.append(st.st_ctime_ns)

    def _at(self, i: int) -> FileStat:
        return _new_tuple(FileStat, (self._ino[i], self._size[i], self._mtime[i], self._mode[i], self._ctime[i]))

    def __getitem__(self, name: str) -> FileStat:
        return self._at(self._index[name])

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> KeysView[str]:
        return self._index.keys()

    def items(self) -> Iterator[tuple[str, FileStat]]:  # type: ignore[override]
        at = self._at
        return ((name, at(i)) for name, i in self._index.items())

    def values(self) -> Iterator[FileStat]:  # type: ignore[override]
        return map(self._at, self._index.values())


_new_tuple = tuple.__new__  # builds a FileStat without NamedTuple's Python-level __new__


@dataclass(slots=True)
class DirPrint:
    """One folder of a scan: what its fingerprint is made of, and its totals below."""

    own: bytes  # digest of its own files' names, inodes, sizes, modes and mtimes
    subdirs: list[str]  # names of its subfolders
    racy: bool  # a file of its own was modified too recently to trust its mtime
    files: int = 0  # files below it, all levels (filled in by FolderScan.prints)
    size: int = 0
    combined: str | None = None  # the fingerprint of everything below it; None if racy


@dataclass
class FolderScan:
    files: Mapping[str, FileStat] = field(default_factory=ScanFiles)  # rel-to-folder posix -> stat
    started_ns: int = field(default_factory=time.time_ns)  # wall clock before the first stat
    temporaries: list[str] = field(default_factory=list)  # dataver's own leftovers (rel), never tracked
    reserved: list[str] = field(default_factory=list)  # .git/.dataver found inside (rel), never tracked
    dirs: dict[str, DirPrint] = field(default_factory=dict)  # "" or "a/b/" -> its print
    pointer_like: list[str] = field(default_factory=list)  # with keep=False: files named *.dv (rel)
    _done: bool = False

    def fingerprint(self) -> str | None:
        """A digest of every file's name, inode, size, mtime and executable bit.

        Equal fingerprints mean git's "stat clean" for the whole folder, so a
        recorded (fingerprint -> manifest) pair lets status and re-add skip the
        per-file work. None when a file was modified too recently for its mtime to
        be trusted (the stat cache's racy-timestamp rule, measured from the scan).
        Made of the fingerprints of its subfolders (``prints``), as a tree's digest
        is of its subtrees', so an unchanged subfolder vouches for itself too.
        """
        return self.prints()[""].combined

    def prints(self) -> dict[str, DirPrint]:
        """Every folder's print with its totals and fingerprint, computed bottom-up."""
        if not self._done:
            for prefix in sorted(self.dirs, key=lambda p: p.count("/"), reverse=True):
                d = self.dirs[prefix]
                h = xxhash.xxh3_128(d.own, seed=_FINGERPRINT_SEED)
                racy = d.racy
                for name in sorted(d.subdirs):
                    sub = self.dirs.get(f"{prefix}{name}/")
                    if sub is None:  # not scanned (top_only): no fingerprint, no totals
                        racy = True
                        continue
                    d.files += sub.files
                    d.size += sub.size
                    racy = racy or sub.combined is None
                    h.update(f"\n{name}\0{sub.combined}".encode("utf-8", "surrogateescape"))
                d.combined = None if racy else h.hexdigest()
            self._done = True
        return self.dirs


def _own_print(names: list[str], stats: list[tuple[int, int, int, int, int]], started_ns: int) -> DirPrint:
    """The print of one folder's own files (``stats``: inode, size, mode, mtime, ctime)."""
    order = sorted(range(len(names)), key=names.__getitem__)
    h = xxhash.xxh3_128(seed=_FINGERPRINT_SEED)
    h.update("\n".join([names[i] for i in order]).encode("utf-8", "surrogateescape"))
    h.update(b"\0")
    h.update(array.array("Q", [v for i in order for v in stats[i][:3]]).tobytes())
    h.update(array.array("q", [v for i in order for v in stats[i][3:]]).tobytes())
    newest = max((s[3] for s in stats), default=0)
    racy = started_ns - newest < COARSE_RACY_WINDOW_NS and any(is_racy(s[3], started_ns) for s in stats)
    d = DirPrint(h.digest(), [], racy)
    d.files = len(names)
    d.size = sum(s[1] for s in stats)
    return d


def pointer_for(target: str) -> str:
    return target + pointer.SUFFIX


def load_tracked(repo: Repo, pointer_path: str) -> Tracked:
    try:
        with open(pointer_path, "rb") as f:
            data = f.read(pointer.MAX_POINTER_BYTES + 1)
    except OSError as e:
        raise UnreadableFile(f"cannot read {repo.rel(pointer_path)}: {e.strerror}") from None
    ptr = pointer.loads(data, repo.rel(pointer_path))
    target = pointer_path[: -len(pointer.SUFFIX)]
    check_target(repo.rel(target), repo.rel(pointer_path))
    return Tracked(pointer_path, target, repo.rel(target), ptr)


def find_tracked(repo: Repo, user_paths: list[str] | None = None) -> list[Tracked]:
    """The pointers named by ``user_paths`` (targets or .dv files), or all in the repo."""
    if user_paths:
        out = []
        for up in user_paths:
            path = repo.resolve(up)
            if path.endswith(pointer.SUFFIX) and os.path.isfile(path):
                out.append(_load_outermost(repo, path))
            elif os.path.isfile(pointer_for(path)):
                out.append(_load_outermost(repo, pointer_for(path)))
            else:
                owner = tracked_ancestor(repo, path)
                hint = (
                    f"it is inside the tracked folder {repo.rel(owner)}; name that instead"
                    if owner
                    else f"track it first: dataver add {up}"
                )
                raise PathError(f"{up} is not tracked by dataver (no {os.path.basename(path)}.dv)", hint)
        return out
    return [load_tracked(repo, p) for p in _walk_pointers(repo.root)]


def _load_outermost(repo: Repo, pointer_path: str) -> Tracked:
    """A pointer the user named, refused if its target lies inside a tracked folder (a
    repo-wide walk never looks inside one, so only a named pointer can be nested)."""
    t = load_tracked(repo, pointer_path)
    owner = tracked_ancestor(repo, t.path)
    if owner is not None:
        raise PointerError(
            f"{repo.rel(pointer_path)}: its target {t.rel} is inside {repo.rel(owner)}, "
            f"which {repo.rel(owner)}.dv tracks",
            "a tracked folder's files belong to its manifest; remove one of the two pointers",
        )
    return t


def tracked_ancestor(repo: Repo, path: str) -> str | None:
    """The tracked folder that contains ``path``, if any."""
    probe = os.path.dirname(path)
    while len(probe) > len(repo.root):
        if os.path.isfile(pointer_for(probe)):
            return probe
        probe = os.path.dirname(probe)
    return None


def _walk_pointers(root: str) -> list[str]:
    found: list[str] = []
    stack = [root]
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError:
            continue
        names = {e.name for e in entries}
        for e in entries:
            if e.name.endswith(pointer.SUFFIX) and e.is_file() and _meant_as_pointer(e.path, names, e.name):
                found.append(e.path)
            elif (
                e.is_dir(follow_symlinks=False)
                and reserved_name(e.name) is None  # .git, .dataver: never looked into
                and e.name + pointer.SUFFIX not in names
            ):
                stack.append(e.path)
    return sorted(found)


def _meant_as_pointer(path: str, siblings: set[str], name: str) -> bool:
    """A ``*.dv`` file is a pointer if it reads like one or the path it would track
    exists; other ``.dv`` files (raw DV video, say) are not ours to parse."""
    return name[: -len(pointer.SUFFIX)] in siblings or pointer.looks_like_pointer(path)


def scan_folder(
    folder: str,
    display: str,
    repo: Repo | None = None,
    keep: bool = True,
    top_only: bool = False,
    inside: str | None = None,
    leave: frozenset[str] = frozenset(),
) -> FolderScan:
    """Every regular file under ``folder``, following symlinks, refusing loops.

    Symlink policy: a link inside a tracked folder is followed and its target's
    content tracked as a regular file, but (given ``repo``) only if the target lies
    inside the tracked folder, the repository (not its ``.git``/``.dataver``) or the
    cache (symlink checkouts); a link out of all of them would pull outside data into
    the repository's history, so it is refused. Names that spell ``.git`` or
    ``.dataver`` are never data (a nested repository's): they are skipped, as
    dataver's own temporaries are, and listed in the scan.

    Every folder's print (``FolderScan.dirs``) is taken as it is listed. ``keep=False``:
    the files are not kept (``scan.files`` stays empty), only the prints: what a
    fingerprint needs, in memory that grows with the folders, not the files (names that
    could be pointer files, ``*.dv``, are kept in ``pointer_like``). ``top_only``: the
    folder's own files, not its subfolders' (their names are in its print). ``inside``:
    the tracked folder ``folder`` lies in (a part of one is scanned), for the link policy.
    ``leave``: subfolders ("a/b/") not entered (their parents' prints are then partial:
    see ``scan_outside``).
    """
    scan = FolderScan()
    confine = None
    if repo is not None:
        cache = os.path.realpath(repo.cache.root) + os.sep
        confine = (cache, os.path.realpath(inside or folder) + os.sep, os.path.realpath(repo.root) + os.sep)
    try:
        top = os.stat(folder)
    except OSError as e:
        raise PathError(f"cannot read folder {display}: {e.strerror}") from None
    rules = rules_above(repo.root, folder) if repo is not None else ()  # .dataverignore files above it
    stack: list[tuple[str, str, frozenset, tuple[Rule, ...]]] = [
        (folder, "", frozenset({(top.st_dev, top.st_ino)}), rules)
    ]
    workers = 1 if keep or top_only else scan_processes()
    if workers > 1:  # breadth-first until the folder proves big, then shares of it in parallel
        _list_dirs(stack, scan, display, confine, keep, top_only, leave, share_at=SHARE_DIRS_PER_PROCESS * workers)
        if stack:
            _scan_shares(stack, scan, display, confine, leave, workers)
            return scan
    _list_dirs(stack, scan, display, confine, keep, top_only, leave)
    return scan


def scan_processes() -> int:
    """How many processes a prints-only scan of a big folder uses: the CPUs this process
    may run on (at most 8), or ``DATAVER_SCAN_PROCESSES`` (1: never more than this one)."""
    raw = os.environ.get("DATAVER_SCAN_PROCESSES", "").strip()
    if raw.isdigit():
        return max(1, min(int(raw), 64))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _scan_shares(
    stack: list[tuple[str, str, frozenset, tuple[Rule, ...]]],
    scan: FolderScan,
    display: str,
    confine: tuple[str, ...] | None,
    leave: frozenset[str],
    workers: int,
) -> None:
    """The folders left in ``stack`` (and all below them) listed by ``workers`` processes:
    this one and ``workers - 1`` others running ``dataver.scanshare``, each a share of
    every ``workers``-th folder. Python's per-file cost (a stat, a tuple, the print) is
    the wall of a million-file scan, and one interpreter runs on one core. A share whose
    process fails to start or to answer is listed here instead; a user error it met
    (a symbolic link loop, an unreadable folder) is raised here as it would have been."""
    import marshal
    import subprocess
    import sys

    shares = [stack[i::workers] for i in range(workers)]
    stack.clear()
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    started: list[tuple[subprocess.Popen | None, list]] = []
    try:
        for share in shares[1:]:
            job = marshal.dumps((share_job(share), display, confine, sorted(leave), scan.started_ns))
            proc = None
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "dataver.scanshare"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    cwd=package_root,  # -m puts the working folder first: never a repository's
                )
                assert proc.stdin is not None
                proc.stdin.write(job)
                proc.stdin.close()
            except OSError:  # could not start, or died at once: this share is listed here, below
                if proc is not None:
                    proc.kill()
                    proc.wait()
                    if proc.stdout is not None:
                        proc.stdout.close()
                proc = None
            started.append((proc, share))
        _list_dirs(shares[0], scan, display, confine, False, False, leave)
        for proc, share in started:
            answer = None
            if proc is not None:
                assert proc.stdout is not None
                out = proc.stdout.read()
                proc.stdout.close()
                if proc.wait() == 0:
                    try:
                        answer = marshal.loads(out)
                    except (EOFError, ValueError, TypeError):
                        answer = None
            if answer is None:
                _list_dirs(share, scan, display, confine, False, False, leave)
            else:
                merge_share(scan, answer)
    finally:
        for proc, _ in started:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def share_job(share: list[tuple[str, str, frozenset, tuple[Rule, ...]]]) -> list:
    """A share of folders in marshal's types (``_scan_shares``, ``dataver.scanshare``)."""
    return [
        (path, prefix, sorted(ancestors), [(r.source, r.lead, r.strip, r.lines) for r in rules])
        for path, prefix, ancestors, rules in share
    ]


def scan_share(job: bytes) -> bytes:
    """``dataver.scanshare``'s work: list a share of folders (``share_job``) as
    ``_list_dirs`` does, prints only; the answer is ``merge_share``'s input, or a user
    error's class name, message and hint."""
    import marshal

    share, display, confine, leave, started_ns = marshal.loads(job)
    scan = FolderScan(started_ns=started_ns)
    stack = [
        (path, prefix, frozenset(map(tuple, ancestors)), tuple(Rule(*r) for r in rules))
        for path, prefix, ancestors, rules in share
    ]
    try:
        _list_dirs(stack, scan, display, None if confine is None else tuple(confine), False, False, frozenset(leave))
    except (PathError, PointerError) as e:
        return marshal.dumps(("error", type(e).__name__, e.message, e.hint))
    dirs = {prefix: (d.own, d.subdirs, d.racy, d.files, d.size) for prefix, d in scan.dirs.items()}
    return marshal.dumps(("ok", dirs, scan.temporaries, scan.reserved, scan.pointer_like))


_SHARE_ERRORS = {cls.__name__: cls for cls in (PathError, UnreadableFile, SymlinkLoop, PointerError)}


def merge_share(scan: FolderScan, answer: tuple) -> None:
    """Add a share's answer (``scan_share``) to ``scan``, or raise the error it met."""
    if answer[0] == "error":
        raise _SHARE_ERRORS.get(answer[1], PathError)(answer[2], answer[3])
    _, dirs, temporaries, reserved, pointer_like = answer
    for prefix, (own, subdirs, racy, files, size) in dirs.items():
        scan.dirs[prefix] = DirPrint(own, subdirs, racy, files, size)  # its own files' totals (not yet summed)
    scan.temporaries += temporaries
    scan.reserved += reserved
    scan.pointer_like += pointer_like


def _list_dirs(
    stack: list[tuple[str, str, frozenset, tuple[Rule, ...]]],
    scan: FolderScan,
    display: str,
    confine: tuple[str, ...] | None,
    keep: bool,
    top_only: bool,
    leave: frozenset[str],
    share_at: int = 0,
) -> None:
    """scan_folder's walk: list each folder of ``stack`` (path, prefix, the (device,
    inode) of its ancestors) into ``scan``, pushing its subfolders. ``share_at``: walk
    breadth-first and stop once that many folders wait and ``SHARE_MIN_FILES`` files
    were listed (what is left is then shared out: ``_scan_shares``)."""
    files = scan.files
    S_ISREG, S_ISDIR = stat_mod.S_ISREG, stat_mod.S_ISDIR
    started = scan.started_ns
    listed = 0
    while stack:
        if share_at and len(stack) >= share_at and listed >= SHARE_MIN_FILES:
            return
        here, prefix, ancestors, rules = stack.pop(0) if share_at else stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError as e:
            raise UnreadableFile(f"cannot list {display}/{prefix}: {e.strerror}") from None
        if any(e.name == IGNORE_FILE for e in entries):
            rule = read_rule(os.path.join(here, IGNORE_FILE), f"{display}/{prefix}{IGNORE_FILE}", strip=len(prefix))
            if rule is not None:
                rules = (*rules, rule)
        names: list[str] = []
        stats: list[tuple[int, int, int, int, int]] = []
        subdirs: list[str] = []
        for e in entries:
            name = e.name
            rel = prefix + name
            if name[0] == "." and is_temp_name(name):
                scan.temporaries.append(rel)
                continue
            # a nested repository's .git: never data (as in DVC); only names that could spell
            # a reserved one need the full check (an ASCII spelling starts with . g or d)
            if (name[0] in _MAY_BE_RESERVED or not name.isascii() or "\\" in name) and reserved_name(name) is not None:
                scan.reserved.append(rel)
                continue
            if rules and ignored(rules, rel, e.is_dir()):  # .dataverignore: not data, not looked into
                continue
            if confine is not None and e.is_symlink():
                _check_link(e.path, rel, display, confine)
            try:
                st = e.stat()  # follows symlinks
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise SymlinkLoop(f"{display}/{rel} is a symbolic link loop") from None
                if err.errno == errno.ENOENT and e.is_symlink():
                    raise PathError(
                        f"{display}/{rel} is a broken symbolic link", "remove it or fix its target"
                    ) from None
                raise UnreadableFile(f"cannot read {display}/{rel}: {err.strerror}") from None
            mode = st.st_mode
            if S_ISREG(mode):
                if not name.isprintable():  # rare: only then can it hold a line break or a non-UTF-8 byte
                    _check_name(rel, display)
                names.append(name)
                stats.append((st.st_ino, st.st_size, mode, st.st_mtime_ns, st.st_ctime_ns))
                if keep:
                    files.add(rel, st)
                elif name.endswith(pointer.SUFFIX):
                    scan.pointer_like.append(rel)
            elif S_ISDIR(mode):
                if not name.isprintable():  # its files' paths will contain this name
                    _check_name(rel, display)
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    raise SymlinkLoop(f"{display}/{rel} is a symbolic link loop (it leads back to a parent)")
                if not top_only and (not leave or rel + "/" not in leave):
                    stack.append((e.path, rel + "/", ancestors | {key}, rules))
                subdirs.append(name)
            else:
                raise PathError(f"{display}/{rel} is not a regular file or folder (dataver tracks only those)")
        here_print = _own_print(names, stats, started)
        here_print.subdirs = subdirs
        scan.dirs[prefix] = here_print
        listed += len(names)


def scan_outside(repo: Repo, t: Tracked, first: FolderScan, same: Iterable[str]) -> FolderScan:
    """``first``, a scan of ``t``'s folder that kept no files (its prints, temporaries and
    reserved names cover the whole folder), given the files outside the subfolders
    ``same`` ("a/b/") from a second scan that does not enter them: what status and
    checkout of a big folder keep, so their memory follows the parts that changed, not
    the folder's size. The prints stay the first scan's (a change between the two scans
    then shows at the next scan, as one just after a scan would)."""
    first.files = scan_folder(t.path, t.rel, repo, leave=frozenset(same)).files
    return first


def _check_link(path: str, rel: str, display: str, confine: tuple[str, ...]) -> None:
    """A link inside a tracked folder must lead into the cache (``confine[0]``), the
    folder or the repository, and not into a ``.git`` or ``.dataver`` folder: its
    content would be tracked, and a checkout's deletes would reach through it."""
    target = os.path.realpath(path)
    inside = next((root for root in confine if (target + os.sep).startswith(root)), None)
    if inside is None:
        raise PathError(
            f"{display}/{rel} is a symbolic link to {target}, outside the tracked folder and the repository",
            "copy the data in, or track the target's folder where it is",
        )
    where = None if inside == confine[0] else reserved_in(target[len(inside) :].split(os.sep))
    if where is not None:
        raise PathError(
            f"{display}/{rel} is a symbolic link into {where} ({target}), which dataver never tracks",
            "remove the link",
        )


def _check_name(rel: str, display: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise PathError(f"{display}/{rel!r}: file names must be valid UTF-8") from None
    if "\n" in rel or "\r" in rel:
        raise PathError(f"{display}/{rel!r}: file names with line breaks cannot be tracked")


def known_digests(repo: Repo, folder_rel: str, scan: FolderScan, algorithm: str) -> tuple[dict[str, Digest], list[str]]:
    """Split a scanned folder into files the stat cache knows (``algorithm`` digests)
    and files to hash. A few files among many (the rest left out: ``outside``) are
    looked up by path rather than by reading every row under the folder."""
    if len(scan.files) * 2 < scan.prints()[""].files:
        known = repo.state.known_paths(folder_rel, scan.files, algorithm)
    else:
        known = repo.state.known_under(folder_rel, scan.files, algorithm)
    return known, [rel for rel in scan.files if rel not in known]


def outside(files: Mapping[str, FileStat], prefixes: set[str]) -> Mapping[str, FileStat]:
    """``files`` less those under the folders ``prefixes`` ("a/b/"); all of them when
    there is none."""
    if not prefixes:
        return files
    out = {}
    for name in files:
        cut = name.find("/")
        while cut >= 0 and name[: cut + 1] not in prefixes:
            cut = name.find("/", cut + 1)
        if cut < 0:
            out[name] = files[name]
    return out


def hash_files(repo: Repo, paths: list[str], algorithm: str, progress: Progress = NO_PROGRESS) -> dict[str, HashedFile]:
    """Hash absolute ``paths`` in parallel with ``algorithm`` and record them in the
    stat cache."""
    if not paths:
        return {}
    progress.start("hashing", total_files=len(paths))
    with repo.hasher() as hasher:
        out = {h.path: h for h in hasher.hash_many(paths, progress, algorithm)}
    progress.close()
    repo.state.put_many(repo.root, out.values())
    return out


def file_digest(repo: Repo, path: str, st: Stat, algorithm: str, progress: Progress = NO_PROGRESS) -> Digest:
    """The ``algorithm`` digest of a workspace file: from the stat cache, else hashed."""
    d = repo.state.get(repo.rel(path), st, algorithm)
    return d if d is not None else hash_files(repo, [path], algorithm, progress)[path].digest


def manifest_entries(cache: ObjectStore, digest: Digest, display: str) -> list[Entry]:
    """The one reader of a folder manifest in the cache (flat, or a tree of nodes): bytes
    checked against the digest (and a size bound), then parsed, every path through the
    path check."""
    return tree.entries(cache.read_manifest_bytes, digest, f"manifest of {display}")


def folder_files(cache: ObjectStore, digest: Digest, display: str) -> Iterator[Entry]:
    """``manifest_entries``, streamed (a tree's nodes are read as the walk reaches them)."""
    return tree.walk(cache.read_manifest_bytes, digest, f"manifest of {display}")


def folder_listing(cache: ObjectStore, digest: Digest, display: str) -> Iterator[tuple[str, str]]:
    """``(path, hex digest)`` of every file of a folder manifest ``add`` or a checked
    read accepted before (the caller knows it by digest): a flat manifest's lines are
    split, not validated again; a tree is walked."""
    data = cache.read_manifest_bytes(digest)
    if not tree.is_tree(data):
        return manifest.known_good_entries(data)
    del data
    return ((e.path, e.digest.hex) for e in folder_files(cache, digest, display))


def folder_hexes(cache: ObjectStore, digest: Digest, display: str) -> list[str]:
    """The hex digest of every file of a folder manifest, for cache look-ups: in no set
    order, the lines not validated (``tree.file_hexes``)."""
    return list(tree.file_hexes(cache.read_manifest_bytes, digest, f"manifest of {display}"))


def read_manifest(repo: Repo, tracked: Tracked) -> list[Entry]:
    return manifest_entries(repo.cache, tracked.pointer.digest, tracked.rel)


# -- status -------------------------------------------------------------------------
def status(
    repo: Repo,
    tracked: list[Tracked],
    progress: Progress = NO_PROGRESS,
    check_cache: bool = True,
    per_file: bool = True,
) -> list[Record]:
    """One record per tracked file, and per file of a tracked folder. ``per_file=False``:
    a folder in which nothing changed (and whose objects are all in the cache) is one
    record, its own path, instead of one per file (a million-file folder's status then
    holds no per-file record)."""
    records: list[Record] = []
    for t in tracked:
        if t.pointer.is_dir:
            records += _folder_status(repo, t, progress, check_cache, per_file)
        else:
            records.append(_file_status(repo, t, progress, check_cache))
    return records


def _file_status(repo: Repo, t: Tracked, progress: Progress, check_cache: bool) -> Record:
    in_cache = repo.cache.has_blob(t.pointer.digest) if check_cache else None
    try:
        st = os.stat(t.path)
    except FileNotFoundError:
        return Record(t.rel, MISSING, in_cache, t.rel)
    except OSError as e:
        raise UnreadableFile(f"cannot read {t.rel}: {e.strerror}") from None
    if not stat_mod.S_ISREG(st.st_mode) or st.st_size != t.pointer.size:
        return Record(t.rel, MODIFIED, in_cache, t.rel)
    same = file_digest(repo, t.path, st, t.pointer.digest.algorithm, progress) == t.pointer.digest
    return Record(t.rel, UNCHANGED if same else MODIFIED, in_cache, t.rel)


def _folder_status(repo: Repo, t: Tracked, progress: Progress, check_cache: bool, per_file: bool) -> list[Record]:
    if not repo.cache.has_manifest(t.pointer.digest):
        # Without the manifest we cannot compare file by file, but the folder's
        # current manifest digest still tells whether it matches the pointer.
        if not os.path.isdir(t.path):
            return [Record(t.rel, MISSING, False, t.rel)]
        scan = scan_folder(t.path, t.rel, repo)
        algorithm = t.pointer.digest.algorithm
        current = manifest_digest_of(build_entries(repo, t.path, t.rel, scan, algorithm, progress), algorithm)
        return [Record(t.rel, UNCHANGED if current == t.pointer.digest else MODIFIED, False, t.rel)]
    keep = (t.pointer.files or 0) <= STREAM_FILES  # a big folder: its fingerprint first, files not kept
    if os.path.isdir(t.path):
        watch = repo.fsmonitor.watch(t.rel, t.path, t.pointer.digest)  # unchanged since a scan, says watchman?
        if watch.unchanged:
            return _unchanged_folder(repo, t, check_cache, per_file)
        scan = scan_folder(t.path, t.rel, repo, keep=keep)
        fingerprint = scan.fingerprint()
        vouched = repo.state.folder_manifest(t.rel, fingerprint, t.pointer.digest.algorithm) if fingerprint else None
        if vouched == t.pointer.digest:
            watch.vouched(t.pointer.digest)
            del scan  # its records' memory goes to the status records instead
            return _unchanged_folder(repo, t, check_cache, per_file)
    if not os.path.isdir(t.path):
        entries = read_manifest(repo, t)
        return [Record(t.rel, MISSING, _all_in_cache(repo, entries) if check_cache else None, t.rel)]
    # Subfolders whose fingerprint vouches for the manifest the pointer names for them are
    # not compared file by file: after a change, only the changed parts are.
    read = tree.keeping(repo.cache.read_manifest_bytes, t.pointer.digest)
    same = matching_subfolders(repo, t, scan, read)
    if not keep:  # something changed: file by file, from a scan that keeps the other parts' files
        scan = scan_outside(repo, t, scan, same)
    skip = (lambda sub: sub in same) if same else None
    entries = list(tree.walk(read, t.pointer.digest, f"manifest of {t.rel}", skip))
    if same:
        scan.files = outside(scan.files, set(same))
    if not entries and not scan.files and not same:
        return [Record(t.rel, UNCHANGED, True if check_cache else None, t.rel)]  # an empty tracked folder
    records = _compare_folder(repo, t, scan, entries, progress, check_cache)
    if same:
        records += _matched_records(repo, t, same, check_cache, per_file)
        if per_file:
            records.sort(key=lambda r: r.path)
    if all(r.state == UNCHANGED for r in records):
        if fingerprint is not None:
            repo.state.put_folder(t.rel, fingerprint, t.pointer.digest)
        watch.vouched(t.pointer.digest)  # the clock needs no racy rule: later writes are events
    return records


def _compare_folder(
    repo: Repo, t: Tracked, scan: FolderScan, entries: list[Entry], progress: Progress, check_cache: bool
) -> list[Record]:
    """Status records of a folder file by file: one per manifest entry, in its order,
    then the added files. The stat-cache rows are merged with the manifest as both
    stream in path order, so nothing per file is built beyond the records (a
    200,000-file folder right after a pull has no fingerprint yet and comes here)."""
    files = scan.files
    algorithm = t.pointer.digest.algorithm  # every entry's: the manifest was read by it
    absent: set[str] = set()
    if check_cache:
        hexes = [e.digest.hex for e in entries]
        present = repo.cache.hexes_present(hexes, algorithm)
        absent = {h for h in hexes if h not in present}
        del hexes, present
    rows = repo.state.recorded_under(t.rel, algorithm)
    row = next(rows, None)
    records: list[Record] = []
    to_hash: list[tuple[int, int]] = []  # (entry index, size): same size, but no stat-cache row vouches
    seen = 0
    for i, e in enumerate(entries):
        while row is not None and row[0] < e.path:
            row = next(rows, None)
        in_cache = (e.digest.hex not in absent) if check_cache else None
        st = files.get(e.path)
        if st is None:
            records.append(Record(f"{t.rel}/{e.path}", DELETED, in_cache, t.rel))
            continue
        seen += 1
        state = MODIFIED
        if row is not None and row[0] == e.path and row[1] == stat_key(st):
            if row[2] == e.digest.hex and bool(st.st_mode & 0o100) == e.executable:
                state = UNCHANGED
        elif st.st_size == e.size:
            to_hash.append((i, st.st_size))
        records.append(Record(f"{t.rel}/{e.path}", state, in_cache, t.rel))
    rows.close()
    if to_hash:
        _hash_into(repo, t, to_hash, entries, records, progress)
    if seen < len(files):
        listed = {e.path for e in entries}
        records += [Record(f"{t.rel}/{rel}", ADDED, None, t.rel) for rel in sorted(files.keys() - listed)]
    return records


def _hash_into(
    repo: Repo,
    t: Tracked,
    sized: list[tuple[int, int]],
    entries: list[Entry],
    records: list[Record],
    progress: Progress,
) -> None:
    """Hash the files of ``entries[i]`` for each ``(i, size)`` and mark ``records[i]``
    unchanged where the content and executable bit match; results are folded in and
    recorded in the stat cache as they stream (after a pull, that can be every file)."""
    progress.start("hashing", total_files=len(sized))
    recorder = StatRecorder(repo.state, repo.root)
    with repo.hasher() as hasher:

        def one(i: int, prog: Progress) -> tuple[int, HashedFile]:
            path = os.path.join(t.path, entries[i].path)
            return i, hasher.hash_file(path, progress=prog, algorithm=t.pointer.digest.algorithm)

        for i, h in hasher.map_sized(sized, one, progress):
            if h.digest == entries[i].digest and h.executable == entries[i].executable:
                records[i].state = UNCHANGED
            recorder.add(h)
    recorder.flush()
    progress.close()


def _unchanged_folder(repo: Repo, t: Tracked, check_cache: bool, per_file: bool = True) -> list[Record]:
    """Status records of a folder whose fingerprint vouches for every file."""
    if not per_file and (not check_cache or _folder_in_cache(repo, t)):
        return [Record(t.rel, UNCHANGED, True if check_cache else None, t.rel)]
    absent: set[str] = set()
    if check_cache:
        hexes = folder_hexes(repo.cache, t.pointer.digest, t.rel)
        if not hexes:
            return [Record(t.rel, UNCHANGED, True, t.rel)]  # an empty tracked folder
        present = repo.cache.hexes_present(hexes, t.pointer.digest.algorithm)
        absent = {h for h in hexes if h not in present}  # usually none
        del hexes, present
    records = [
        Record(f"{t.rel}/{path}", UNCHANGED, (h not in absent) if check_cache else None, t.rel)
        for path, h in folder_listing(repo.cache, t.pointer.digest, t.rel)
    ]
    return records or [Record(t.rel, UNCHANGED, None, t.rel)]


def _folder_in_cache(repo: Repo, t: Tracked) -> bool:
    """Whether the cache holds every blob of the folder: looked up file by file, unless
    the cache's stamp is the one under which that was last found true."""
    digest = t.pointer.digest
    stamp = repo.cache.stamp(digest.algorithm)  # before the look-up: a change during it shows
    if stamp is not None and repo.state.presence_stamp(digest) == stamp:
        return True
    names = tree.file_hexes(repo.cache.read_manifest_bytes, digest, f"manifest of {t.rel}")
    held = repo.cache.count_held(names, digest.algorithm) is not None
    if held and stamp is not None:
        repo.state.put_presence(digest, stamp)
    return held


def matching_subfolders(repo: Repo, t: Tracked, scan: FolderScan, read: tree.Read) -> dict[str, Digest]:
    """Subfolders ("a/b/" -> manifest digest) that a tree node of the pointer's manifest
    names and whose files the workspace holds unchanged: the fingerprint of the
    workspace's subfolder vouches for that same manifest (recorded by an add, under the
    cache's generation). Status and checkout leave them alone."""
    algorithm = t.pointer.digest.algorithm
    prints = scan.prints()
    generation = repo.cache.generation()
    same: dict[str, Digest] = {}
    todo = [("", t.pointer.digest)]
    while todo:
        prefix, digest = todo.pop()
        for name, child in tree.subfolders(read, digest, f"manifest of {t.rel}"):
            sub = f"{prefix}{name}/"
            here = prints.get(sub)
            if here is None or here.combined is None:
                continue
            have = repo.state.folder_manifest(f"{t.rel}/{sub[:-1]}", f"{here.combined}@{generation}", algorithm)
            if have == child and repo.cache.has_manifest(child):
                same[sub] = child
            else:
                todo.append((sub, child))
    return same


def _subfolders_in_cache(repo: Repo, t: Tracked, same: dict[str, Digest]) -> dict[str, bool]:
    """``_folder_in_cache`` of many subfolders: those the presence table does not vouch
    for are looked up together, ~100,000 objects at a time (one listing per fan-out
    folder for all of them, not per subfolder)."""
    algorithm = t.pointer.digest.algorithm
    stamp = repo.cache.stamp(algorithm)  # before the look-ups: a change during them shows
    held: dict[str, bool] = {}
    batch: list[tuple[str, Digest, list[str]]] = []
    count = 0

    def flush() -> None:
        nonlocal batch, count
        present = repo.cache.hexes_present([h for _, _, hexes in batch for h in hexes], algorithm)
        for sub, digest, hexes in batch:
            held[sub] = all(h in present for h in hexes)
            if held[sub] and stamp is not None:
                repo.state.put_presence(digest, stamp)
        batch, count = [], 0

    for sub, digest in sorted(same.items()):
        if stamp is not None and repo.state.presence_stamp(digest) == stamp:
            held[sub] = True
            continue
        hexes = folder_hexes(repo.cache, digest, f"{t.rel}/{sub[:-1]}")
        batch.append((sub, digest, hexes))
        count += len(hexes)
        if count >= 100_000:
            flush()
    if batch:
        flush()
    return held


def _matched_records(
    repo: Repo, t: Tracked, same: dict[str, Digest], check_cache: bool, per_file: bool
) -> list[Record]:
    """Status records of subfolders found unchanged by ``matching_subfolders``: one per
    file, or one per subfolder when the files are not asked for."""
    out: list[Record] = []
    if not per_file:
        held = _subfolders_in_cache(repo, t, same) if check_cache else {}
        return [Record(f"{t.rel}/{sub[:-1]}", UNCHANGED, held.get(sub), t.rel) for sub in sorted(same)]
    for sub, digest in sorted(same.items()):
        where = f"{t.rel}/{sub[:-1]}"
        listing = list(folder_listing(repo.cache, digest, where))
        absent: set[str] = set()
        if check_cache:
            hexes = [h for _, h in listing]
            present = repo.cache.hexes_present(hexes, digest.algorithm)
            absent = {h for h in hexes if h not in present}
        out += [
            Record(f"{where}/{path}", UNCHANGED, (h not in absent) if check_cache else None, t.rel)
            for path, h in listing
        ]
    return out


def build_entries(
    repo: Repo, folder: str, folder_rel: str, scan: FolderScan, algorithm: str, progress: Progress = NO_PROGRESS
) -> list[Entry]:
    """Manifest entries (``algorithm`` digests) for a scanned folder, hashing only what
    the stat cache lacks."""
    known, unknown = known_digests(repo, folder_rel, scan, algorithm)
    hashed = hash_files(repo, [os.path.join(folder, rel) for rel in unknown], algorithm, progress)
    for rel in unknown:
        known[rel] = hashed[os.path.join(folder, rel)].digest
    return [Entry(rel, known[rel], st.st_size, bool(st.st_mode & 0o100)) for rel, st in scan.files.items()]


def manifest_digest_of(entries: list[Entry], algorithm: str) -> Digest:
    """The digest of the ``algorithm`` manifest (flat, or the root of a tree) listing
    ``entries``; nothing is stored."""
    from .hashing import digest_manifest

    return tree.build(entries, algorithm, lambda data: digest_manifest(data, algorithm))


def _all_in_cache(repo: Repo, entries: list[Entry]) -> bool:
    digests = [e.digest for e in entries]
    return len(repo.cache.blobs_present(digests)) == len(set(digests))
