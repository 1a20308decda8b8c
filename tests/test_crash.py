"""SIGKILL crash safety of ``add`` and ``checkout``.

Real ``python -m dataver`` processes in a real git repository are killed with
SIGKILL in the middle of their work, over a data set big enough that the kills land
inside the work (160 small files, some in subfolders, two multi-chunk files, and a
multi-chunk file tracked on its own; ``-m slow``: 1200 small files and bigger files).
A kill is made in one of two ways:

- *at a file-system call*, where strace can run: strace kills the command exactly as
  it enters its n-th call of one kind (rename, link, unlink, mkdir, chmod, write; for
  a sample also the kernel copies copy_file_range and sendfile). That is where a
  narrow unsafe window would be, such as between deleting a file and linking its
  replacement;
- *timed*, in CPU seconds of the child counted from its first change to the files,
  drawn from the span an uninterrupted run was measured to spend changing files (a
  tenth of these go to start-up and planning instead); CPU time keeps the kills
  inside the work even when a loaded machine stretches the wall-clock time.

Each test kills its command as a :class:`Plan` says. By default (``[sample]``): first
a *sample* of file-system calls, the same calls on every run, each killed from the
command's starting state: the first and the last rename and write it makes, and the
middle call of every other kind it makes; then one round of two seeded kills (timed,
or at a call of each kind in turn) on the state the sample's last kill left, and the
re-run. ``-m slow`` adds ``[rounds]``: several rounds of seeded kills, half of them
at calls, that follow each other on the same state, as when a user re-runs after a
crash, before the command is let finish (what the default run did before the
samples); ``[sweep]``: a denser sample (of every kind of call, the first, the last
and three between); ``test_many_sigkills``: bigger data, more link modes; and
``test_folder_trees_survive_sigkill``: a folder of 13,000 small files, 4,334 directly in it,
whose manifest is a tree node cut into pieces (add, and checkout between two versions).

After every kill:

1. no user file is lost or torn: every file under the tracked paths holds exactly
   its old bytes or the bytes being checked out (``add`` must leave every file with
   its original bytes); a path that exists in both versions is never missing, and
   nothing but dataver's temporary files (``.dataver-tmp-`` names) appears;
2. every object under ``.dataver/cache/xxh3-128/`` hashes to its name and is
   read-only, and nothing else sits there;
3. every pointer file (and the ``.gitignore``) is complete: it parses, it is exactly
   what an uninterrupted run writes (or what was there before), and every object it
   needs is in the cache;
4. re-running the same command to completion exits 0, and the workspace then holds
   the exact bytes with ``dataver status`` clean and no dataver temporary file left
   anywhere in it (the re-run removes what the killed runs left).

Kills that land before the command did any work prove nothing, so each test also
asserts that a good share of its kills interrupted real work (the repository had
changed but the command had not finished).

Each test prints its counts (with ``-s``); the run's terminal summary adds them up
over all crash tests (this file and ``test_crash_sync.py``): kills per command,
invariant checks and object re-hashes. The default run makes 98 kills (add 21,
checkout 21, push 8, pull 11, gc 5, import 21, get 11), ``-m slow`` 656 more; a command
is measured once per test, and its sample and rounds share one set-up.

``DATAVER_CRASH_SEED`` replays a seed (CPU-timed kill moments still vary from run to
run); ``DATAVER_CRASH_DEBUG=1`` prints every kill (with ``-s``);
``DATAVER_CRASH_STRACE=0`` leaves strace out (a sample then kills at evenly spaced
moments of the work instead).
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from dataver import packfmt, pointer, tree
from dataver.hashing import Hasher, digest_bytes, digest_manifest
from dataver.odb import ObjectStore
from dataver.store import ObjRef

MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SEED = int(os.environ.get("DATAVER_CRASH_SEED", "20240611"))
TEMP_MARK = ".dataver-tmp-"
HEX = frozenset("0123456789abcdef")
TARGETS = ("data", "model.bin")  # a tracked folder and a tracked single file
POINTERS = tuple(t + ".dv" for t in TARGETS)
IGNORE_LINES = {"/data", "/model.bin"}
CHECKS_PER_KILL = 4  # workspace, cache, pointers, .gitignore
CHECKS_PER_ROUND = 6  # re-run exit 0, pointers, exact workspace, cache, clean status, no temporaries

Version = dict[str, bytes]  # repo-relative posix path -> content

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="times kills with /proc CPU times")


@dataclass(frozen=True)
class Scale:
    small: int  # small files in data/ (some in subfolders)
    big: tuple[int, ...]  # multi-chunk files in data/
    model: int  # model.bin, tracked as a single file
    small_max: int = 16 * 1024  # the small files' sizes: 0 to this many bytes


CI = Scale(small=160, big=(9 * MiB + 4321, 17 * MiB), model=10 * MiB)
SLOW = Scale(small=1200, big=(24 * MiB, 40 * MiB, 33 * MiB + 12345), model=32 * MiB)
# data/ over tree.FLAT_MAX files, and over FLAT_MAX directly in it: its manifest is a
# node cut into pieces, with subfolders of their own (the folder-tree write paths)
TREE = Scale(small=13_000, big=(), model=MiB, small_max=600)


# -- data ------------------------------------------------------------------------------
def version_a(rng: random.Random, scale: Scale) -> Version:
    files: Version = {}
    for i in range(scale.small):
        rel = f"data/sub{i % 4}/s{i:04d}.bin" if i % 3 else f"data/s{i:04d}.bin"
        files[rel] = rng.randbytes(rng.randint(0, scale.small_max))
    for i, size in enumerate(scale.big):
        files[f"data/big{i}.bin"] = os.urandom(size)
    files["data/swap"] = b"a file in version A, a folder in version B\n"
    files["model.bin"] = os.urandom(scale.model)
    return files


def _patched(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    offset = rng.randrange(len(buf) - 4096)
    buf[offset : offset + 4096] = os.urandom(4096)
    return bytes(buf)


def version_b(rng: random.Random, a: Version) -> Version:
    """Version A with files modified, deleted and added, one big file kept, a file turned folder."""
    b: Version = {}
    for rel, data in a.items():
        if rel == "data/swap":
            continue
        if rel == "data/big1.bin" or rel == "model.bin":
            b[rel] = _patched(data, rng)
            continue
        if rel.startswith("data/big"):
            b[rel] = data
            continue
        roll = rng.random()
        if roll < 0.2:
            continue  # deleted
        b[rel] = rng.randbytes(rng.randint(0, 16 * 1024)) if roll < 0.5 else data
    for i in range(len(a) // 10):
        b[f"data/sub{i % 3}/new{i:04d}.bin"] = rng.randbytes(rng.randint(0, 16 * 1024))
    b["data/swap/inner.bin"] = b"a file inside what was a file in version A\n"
    return b


def write_version(root: Path, version: Version) -> None:
    for target in TARGETS:
        remove(root / target)
    for rel, data in version.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    past = time.time() - 10  # outside the stat cache's racy window
    for rel in version:
        os.utime(root / rel, (past, past))


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def is_temp(name: str) -> bool:
    return TEMP_MARK in name


# -- processes -------------------------------------------------------------------------
def dv(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dataver", *args], cwd=root, capture_output=True, text=True, timeout=120
    )


def dv_ok(root: Path, *args: str) -> subprocess.CompletedProcess:
    r = dv(root, *args)
    assert r.returncode == 0, f"dataver {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


def start(root: Path, args: tuple[str, ...], stderr, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "dataver", *args], cwd=root, stdout=subprocess.DEVNULL, stderr=stderr
    )


_PROBE = "import os, threading; t = threading.Thread(target=os.rename, args=('/nonexistent-a', '/nonexistent-b'))"


@functools.cache
def strace() -> tuple[str, ...] | None:
    """The strace command line that can kill a thread of a process tree at a syscall, or None.

    (Not ``--seccomp-bpf``: with it, strace 6.1 does not inject into threads.)
    """
    if os.environ.get("DATAVER_CRASH_STRACE") == "0":
        return None
    exe = shutil.which("strace")
    if exe is None:
        warnings.warn("crash tests: no strace here; every kill is CPU-timed", stacklevel=1)
        return None
    argv = (exe, "-f", "-qq")
    inject = ("-o", os.devnull, "-e", "trace=rename", "-e", "inject=rename:signal=KILL:when=1")
    for _ in range(3):
        try:
            probe = subprocess.run(
                [*argv, *inject, sys.executable, "-c", _PROBE + "; t.start(); t.join()"],
                capture_output=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
            return argv
    warnings.warn("crash tests: strace cannot kill at file-system calls here; every kill is CPU-timed", stacklevel=1)
    return None


def count_syscalls(root: Path, args: tuple[str, ...]) -> dict[str, int]:
    """Run ``dataver ARGS`` under strace: how often it makes each TRAP_SYSCALLS and
    COPY_SYSCALLS call (the most any one thread makes: strace counts injections per thread)."""
    tracer = strace()
    assert tracer is not None
    with tempfile.NamedTemporaryFile(suffix=".strace") as log, tempfile.TemporaryFile() as err:
        traced = f"trace={TRAP_SYSCALLS},{','.join(COPY_SYSCALLS)}"
        proc = start(root, args, err, (*tracer, "-o", log.name, "-e", traced))
        code = proc.wait(timeout=300)
        err.seek(0)
        assert code == 0, f"dataver {' '.join(args)} failed under strace:\n{err.read().decode()}"
        per_thread: dict[tuple[str, str], int] = {}
        for line in Path(log.name).read_text(errors="replace").splitlines():
            tid, _, call = line.partition(" ")
            name = call.lstrip().split("(", 1)[0]  # strace pads the thread id to five columns
            if "(" in call and name.isidentifier():
                per_thread[tid, name] = per_thread.get((tid, name), 0) + 1
    counts: dict[str, int] = {}
    for (_, name), n in per_thread.items():
        counts[name] = max(counts.get(name, 0), n)
    return counts


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) the process has used; None once it is gone.

    Read from the process's CPU-time clock (Linux's ``clock_getcpuclockid``: to the
    nanosecond, where ``/proc/PID/stat`` counts clock ticks of 10 ms, as long as some
    commands' whole work), else from ``/proc``.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of the whole process
    except (OSError, OverflowError):
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(frozen=True)
class Timing:
    """When an uninterrupted run changes files, in CPU seconds of the child process.

    Kills are timed by the child's CPU time rather than the wall clock: CPU time tracks
    how far the command got even when a loaded machine stretches its run.
    """

    first: float  # the first visible change (before it: start-up and planning)
    last: float  # the last visible change (after it: exiting)
    calls: dict[str, int]  # TRAP_SYSCALLS calls per kind (with strace; else empty)
    copies: dict[str, int] = field(default_factory=dict)  # COPY_SYSCALLS calls per kind, likewise


def measure(
    root: Path,
    args: tuple[str, ...],
    prepare: Callable[[], None],
    runs: int = 1,
    stamps: Callable[[], object] | None = None,
    changed: Callable[[], object] | None = None,
    only_calls: tuple[str, ...] = (),
) -> Timing:
    """Watch uninterrupted runs, each from the state ``prepare()`` sets up.

    ``stamps()`` is a cheap snapshot that tells the first change (default:
    :func:`folder_stamps`), ``changed()`` a full one that tells the last (default:
    :func:`snapshot`). With ``only_calls``, only those file-system calls are counted.
    """
    stamps = stamps or functools.partial(folder_stamps, root)
    changed = changed or functools.partial(snapshot, root)
    firsts, lasts = [], []
    for _ in range(runs):
        prepare()
        with tempfile.TemporaryFile() as err:
            # The first change is seen as run_and_kill sees it; the last from a full listing.
            marks, before = stamps(), changed()
            proc = start(root, args, err)
            first = last = None
            while proc.poll() is None:
                cpu = cpu_seconds(proc.pid)
                if cpu is not None and first is None and stamps() != marks:
                    first = cpu
                now = changed()
                if cpu is not None and now != before:
                    first = cpu if first is None else first
                    last, before = cpu, now
                time.sleep(0.002)
            err.seek(0)
            assert proc.wait() == 0, f"dataver {' '.join(args)} failed:\n{err.read().decode()}"
        assert first is not None and last is not None, f"dataver {' '.join(args)} changed nothing"
        firsts.append(first)
        lasts.append(last)
    calls: dict[str, int] = {}
    if strace():
        prepare()
        calls = count_syscalls(root, args)
        if only_calls:
            calls = {k: n for k, n in calls.items() if k in only_calls}
    copies = {k: n for k, n in calls.items() if k in COPY_SYSCALLS}
    calls = {k: n for k, n in calls.items() if k not in COPY_SYSCALLS}
    return Timing(min(firsts), max(min(lasts), min(firsts) + 0.02), calls, copies)


def folder_stamps(root: Path) -> tuple:
    """Cheap change detector: the mtimes of the folders a command creates files in."""
    folders = [root, root / ".dataver" / "cache", root / ".dataver" / "cache" / "tmp"]
    folders += [Path(here) for here, _dirs, _files in os.walk(root / "data")]
    return stat_stamps(folders)


def stat_stamps(folders: list[Path]) -> tuple:
    """Inodes and mtimes of ``folders``: they change as a file in them is added or removed."""
    out = []
    for folder in folders:
        try:
            st = os.stat(folder)
            out.append((folder, st.st_ino, st.st_mtime_ns))
        except FileNotFoundError:
            out.append((folder, None, None))
    return tuple(out)


def run_and_kill(
    root: Path,
    args: tuple[str, ...],
    cpu: float,
    stamps: Callable[[], object] | None = None,
    watch_from: float = 0.0,
) -> bool:
    """Start ``dataver ARGS`` and SIGKILL it once it has used ``cpu`` CPU seconds; False if
    it finished first.

    With ``stamps``, ``cpu`` counts from the command's first change to the files: the
    first time ``stamps()`` differs from before the start. It is looked at only once the
    command has used ``watch_from`` CPU seconds (start-up changes nothing), to leave the
    CPU to the command.
    """
    with tempfile.TemporaryFile() as err:
        marks = stamps() if stamps is not None else None
        proc = start(root, args, err)
        target = cpu if stamps is None else None
        try:
            while proc.poll() is None:
                used = cpu_seconds(proc.pid)
                if used is not None and target is None and used >= watch_from and stamps() != marks:
                    target = used + cpu
                if used is not None and target is not None and used >= target:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.001)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code == -signal.SIGKILL:
            return True
        err.seek(0)
        assert code == 0, f"dataver {' '.join(args)} failed on its own ({code}):\n{err.read().decode()}"
        return False


def run_and_kill_at(root: Path, args: tuple[str, ...], syscall: str, n: int) -> bool:
    """Run ``dataver ARGS`` under strace and SIGKILL it as it enters its ``n``-th
    ``syscall`` (in any one thread); False if it finished first."""
    tracer = strace()
    assert tracer is not None
    inject = ("-o", os.devnull, "-e", f"trace={syscall}", "-e", f"inject={syscall}:signal=KILL:when={n}")
    with tempfile.TemporaryFile() as err:
        proc = start(root, args, err, (*tracer, *inject))
        code = proc.wait(timeout=300)
        if code in (-signal.SIGKILL, 128 + signal.SIGKILL):  # strace dies the way its tracee did
            return True
        err.seek(0)
        assert code == 0, f"dataver {' '.join(args)} failed on its own ({code}):\n{err.read().decode()}"
        return False


# -- invariants ------------------------------------------------------------------------
def check_workspace(root: Path, old: Version, new: Version, symlinks: bool = False) -> bool:
    """Invariant 1. Returns True if the workspace is exactly ``new``.

    With ``symlinks``, a file may be a symbolic link into the cache (symlink mode).
    """
    found: dict[str, Path] = {}
    for here, _dirs, names in os.walk(root / "data"):
        for name in names:
            if not is_temp(name):
                path = Path(here, name)
                found[path.relative_to(root).as_posix()] = path
    if (root / "model.bin").exists() or (root / "model.bin").is_symlink():
        found["model.bin"] = root / "model.bin"
    for rel in old.keys() & new.keys():
        assert rel in found, f"{rel} is missing: a kill lost a user file"
    done = found.keys() == new.keys()
    for rel, path in found.items():
        assert rel in old or rel in new, f"unexpected file {rel} in the workspace"
        if path.is_symlink():
            cache = os.path.realpath(root / ".dataver" / "cache") + os.sep
            assert symlinks, f"{rel} became a symbolic link"
            assert os.path.realpath(path).startswith(cache), f"{rel} links outside the cache"
        data = path.read_bytes()
        if data == new.get(rel):
            continue
        done = False
        assert data == old.get(rel), (
            f"{rel} holds {len(data)} bytes that are neither its old version "
            f"({_size(old.get(rel))}) nor its new one ({_size(new.get(rel))}): torn or wrong"
        )
    return done


def check_no_temporaries(root: Path) -> None:
    """After a re-run: no dataver temporary is left anywhere in the workspace (a
    killed run's are removed by the next one; ``.git``/``.dataver`` are not looked in)."""
    for here, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in (".git", ".dataver")]
        left = [n for n in names + dirs if is_temp(n)]
        assert not left, f"dataver temporaries left in {here} after a re-run: {left}"


def _size(data: bytes | None) -> str:
    return "absent" if data is None else f"{len(data)} bytes"


def check_cache(root: Path, hasher: Hasher, verified: set | None = None) -> int:
    """Invariant 2. Returns the number of objects hashed.

    ``verified`` remembers objects already hashed, by path, inode, size, mtime and
    ctime: a changed object changes its ctime, so only new or changed ones are hashed.
    """
    n = check_packs(root, verified)
    base = root / ".dataver" / "cache" / "xxh3-128"
    if not base.exists():
        return n
    for fan in os.scandir(base):
        assert fan.is_dir(follow_symlinks=False), f"stray entry in the cache: {fan.path}"
        assert len(fan.name) == 2 and set(fan.name) <= HEX, f"stray folder in the cache: {fan.path}"
        for obj in os.scandir(fan.path):
            is_manifest = obj.name.endswith(".manifest")
            hex_ = fan.name + (obj.name[: -len(".manifest")] if is_manifest else obj.name)
            assert len(hex_) == 32 and set(hex_) <= HEX, f"stray file in the cache: {obj.path}"
            st = os.lstat(obj.path)
            assert stat.S_ISREG(st.st_mode), f"cache object {obj.path} is not a regular file"
            assert st.st_mode & 0o222 == 0, f"cache object {obj.path} is writable ({oct(st.st_mode)})"
            key = (obj.path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if verified is not None and key in verified:
                continue
            if is_manifest:
                data = Path(obj.path).read_bytes()
                got = digest_manifest(data).hex
                tree.check_object(data, obj.path, "xxh3-128")  # a flat manifest or a tree node
            else:
                got = hasher.hash_file(obj.path).digest.hex
            assert got == hex_, f"cache object {obj.path} holds bytes that hash to {got}: a bad object"
            if verified is not None:
                verified.add(key)
            n += 1
    return n


def check_packs(root: Path, verified: set | None = None) -> int:
    """Invariant 2 for cache packs: each pack under ``packs/`` is whole (named by the hash
    of its bytes, read-only, its trailer checks, its entries in key order) and every
    object in it hashes to its name. Returns the number of objects hashed."""
    base = root / ".dataver" / "cache" / "packs"
    if not base.exists():
        return 0
    n = 0
    for entry in os.scandir(base):
        path = entry.path
        st = os.lstat(path)
        key = (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if verified is not None and key in verified:
            continue
        assert entry.name.endswith(".pack") and len(entry.name) == 37, f"stray file in the cache's packs: {path}"
        assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o222 == 0, f"cache pack {path} is writable or no file"
        raw = Path(path).read_bytes()
        assert entry.name[:-5] == packfmt.object_id(raw), f"cache pack {path} is not what its name says: torn"
        entries = packfmt.parse_trailer(raw, path, len(raw))
        keys = [e.key() for e in entries]
        assert keys == sorted(set(keys)), f"cache pack {path} has entries out of order"
        for e in entries:
            stored = raw[e.offset : e.offset + e.stored]
            if e.kind == packfmt.KIND_MANIFEST:
                data = packfmt.decompress(stored, e.size, path) if e.codec == packfmt.CODEC_ZSTD else stored
                assert digest_manifest(data) == e.digest, f"cache pack {path} holds a bad manifest"
                tree.check_object(data, path, "xxh3-128")
            else:
                assert digest_bytes(stored) == e.digest, f"cache pack {path} holds a bad blob {e.digest.short()}"
            n += 1
        if verified is not None:
            verified.add(key)
    return n


def check_pointers(root: Path, allowed: dict[str, set[bytes | None]]) -> None:
    """Invariant 3: each pointer is absent or complete, as allowed, with its objects cached."""
    store = ObjectStore(str(root / ".dataver" / "cache"))  # loose and packed objects alike
    try:
        for name in POINTERS:
            path = root / name
            data = path.read_bytes() if path.exists() else None
            assert data in allowed[name], f"{name} is {'absent' if data is None else 'unexpected: ' + data.decode()!r}"
            if data is None:
                continue
            ptr = pointer.loads(data, name)
            if not ptr.is_dir:
                assert store.has_blob(ptr.digest), f"{name} was written before its object"
                continue

            def read(d, name=name):
                assert store.has_manifest(d), f"{name} was written before its manifest {d.short()} (a node or the top)"
                return store.read(ObjRef(d, manifest=True))

            for entry in tree.walk(read, ptr.digest, name):  # every node of a folder tree
                assert store.has_blob(entry.digest), f"{name} lists {entry.path}, absent from the cache"
    finally:
        store.packs.close()


def check_gitignore(root: Path, complete: bool = False) -> None:
    path = root / ".gitignore"
    if not path.exists():
        assert not complete, ".gitignore is missing"
        return
    text = path.read_text()
    lines = text.splitlines()
    assert text.endswith("\n") and set(lines) <= IGNORE_LINES, f".gitignore is torn: {text!r}"
    assert not complete or set(lines) == IGNORE_LINES, f".gitignore lacks entries: {text!r}"


def snapshot(root: Path) -> frozenset:
    """Names, inodes and sizes of everything a command may touch (to tell if it did work)."""
    out = set()
    top = str(root)
    stack = [top, os.path.join(top, "data"), os.path.join(top, ".dataver", "cache")]
    while stack:
        here = stack.pop()
        try:
            entries = list(os.scandir(here))
        except FileNotFoundError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    if here != top:
                        stack.append(e.path)
                    continue
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed or removed by a running command
            out.add((e.path, st.st_ino, st.st_size))
    return frozenset(out)


# -- the kill loop ----------------------------------------------------------------------
STARTUP_SHARE = 0.1  # share of CPU-timed kills aimed before the first change (start-up, planning)
SYSCALL_SHARE = 0.5  # share of kills made at a file-system call, where strace can do it
WATCH_FROM = 0.6  # look for a run's first change once it has used this share of the measured start-up
# Calls that create, rename, link, delete, protect or write files: a kill just before
# one of them is where a missing temporary-file-and-rename step would show.
TRAP_SYSCALLS = (
    "rename,renameat,renameat2,link,linkat,symlink,symlinkat,unlink,unlinkat,mkdir,mkdirat,rmdir,"
    "chmod,fchmod,fchmodat,write,pwrite64"
)
# Kernel copies that fill a file (a cache temporary; a workspace file if someone wrote it
# in place): samples kill at them too, the seeded kills only at TRAP_SYSCALLS.
COPY_SYSCALLS = ("copy_file_range", "sendfile")
# The calls that publish and fill files: a sample kills at the first and the last of each.
PUBLISH_SYSCALLS = frozenset({"rename", "renameat", "renameat2", "write", "pwrite64"})  # pwrite64: a pack's body
SAMPLE_MOMENTS = 8  # without strace, a sample's kills at evenly spaced moments (times inner + 1)


@dataclass
class Tally:
    kills: int = 0
    checks: int = 0  # invariant checks made (after kills and after re-runs)
    mid_work: int = 0  # kills that interrupted real work (something changed, not finished)
    finished_first: int = 0  # runs that completed before their kill (state reset, retried)
    at_syscalls: int = 0  # kills made by strace as the command entered a file-system call
    objects: int = 0  # objects re-hashed by the checks
    rounds: int = 0


@dataclass(frozen=True)
class Plan:
    """Where a crash test kills its command.

    With ``inner`` set, first a *sample*: one kill at each file-system call
    :func:`sample_points` picks (``inner`` evenly spaced calls of each kind besides its
    first and last), each from the command's starting state, so the same calls are hit
    on every run. Then ``rounds`` rounds of ``kills`` seeded kills (at a call, or timed
    in CPU seconds), each on the state the last left, each round ending in the re-run
    that must complete; the first round goes on from the state the sample's last kill
    left.
    """

    rounds: int
    kills: int
    inner: int | None = None  # None: no sample


def sample_points(calls: dict[str, int], inner: int) -> list[tuple[str, int]]:
    """The calls a sample kills at, in a fixed order (by kind, then ordinal), from how
    many of each kind an uninterrupted run makes (``calls``).

    Of each PUBLISH_SYSCALLS kind: the first call, the last, and ``inner`` evenly spaced
    between them. Of every other kind: the middle call, or with ``inner`` > 0 the same
    as a publishing kind. A command that makes no publishing call (``gc``, which only
    unlinks) gets of each kind the first, the last and at least one between.
    """
    publishing = {kind for kind in calls if kind in PUBLISH_SYSCALLS}
    full = publishing if publishing and inner == 0 else set(calls)
    between = inner if publishing else max(inner, 1)
    points = []
    for kind in sorted(calls):
        count = min(calls[kind], 65535)  # strace's limit
        if kind in full:
            picks = {1, count} | {1 + round(i * (count - 1) / (between + 1)) for i in range(1, between + 1)}
        else:
            picks = {(count + 1) // 2}
        points += [(kind, n) for n in sorted(picks)]
    return points


@dataclass
class Job:
    """A command killed several times in a row from one starting state, then let finish."""

    cwd: Path
    args: tuple[str, ...]
    restart: Callable[[], None]  # back to the starting state (after a run finished before its kill)
    check_kill: Callable[[], bool]  # the invariants after a kill; True if the work looks complete
    checks_per_kill: int  # how many invariants check_kill checks
    finish: Callable[[], None]  # re-run to completion, then check the result
    checks_per_round: int  # how many invariants finish checks
    changed: Callable[[], object]  # snapshot of what the command changes (did a kill interrupt work?)
    stamps: Callable[[], object]  # cheap snapshot that tells the command's first change
    syscall_share: float = SYSCALL_SHARE
    next_args: Callable[[], tuple[str, ...]] | None = None  # the re-run's command, if it depends on the state


class Crasher:
    """Kills the runs of one command; ``timing`` is what :func:`measure` saw of it."""

    def __init__(self, rng: random.Random, tally: Tally, timing: Timing):
        self.rng, self.tally, self.timing = rng, tally, timing
        self.kinds: list[str] = []  # kinds of file-system call to kill at next
        self.debug = bool(os.environ.get("DATAVER_CRASH_DEBUG"))
        if self.debug:
            print(timing)

    def run(self, job: Job, kills: int) -> None:
        """``kills`` kills in a row (each on the state the last left), then the re-run."""
        progress = 0.0  # seconds of work done by this round's runs so far (an estimate)
        finished = False  # the command's work is complete (a kill came too late)
        for _ in range(kills):
            if finished:  # the last kill came after the work was done: start over
                job.restart()
                progress = 0.0
            progress, finished = self.kill_and_check(job, progress)
        job.finish()
        self.tally.checks += job.checks_per_round
        self.tally.rounds += 1

    def follow(self, job: Job, plan: Plan, prepare: Callable[[], None]) -> int:
        """Kill ``job``'s command as ``plan`` says: its sample, then its rounds, each
        round from the state ``prepare()`` sets up (the first round after a sample goes
        on from the state the sample's last kill left). Returns the sample's kills."""
        sampled = self.sample(job, plan)
        for r in range(plan.rounds):
            if r or not sampled:
                prepare()
            self.run(job, plan.kills)
        return sampled

    def sample(self, job: Job, plan: Plan) -> int:
        """A kill at each of the plan's :func:`sample_points`, each from the starting
        state (``job.restart()``); returns how many. A multi-threaded command spreads
        its calls over its threads differently from run to run (strace counts each
        thread's calls), so a run that finishes before the n-th call is run again from
        the start, to be killed at an earlier one."""
        if plan.inner is None:
            return 0
        t = self.timing
        calls = {**t.calls, **t.copies}
        points: list[tuple[str | None, float]] = list(sample_points(calls, plan.inner))
        if not calls:  # no strace: as many kills instead, at evenly spaced moments of the work
            moments = SAMPLE_MOMENTS * (plan.inner + 1)
            points = [(None, (i + 0.5) / moments) for i in range(moments)]
        window = t.last - t.first
        for syscall, where in points:
            for _ in range(8):
                job.restart()
                args = job.next_args() if job.next_args is not None else job.args
                before = job.changed()
                if syscall is not None:
                    how = f"at {syscall} call {int(where)} of {calls[syscall]}"
                    killed = run_and_kill_at(job.cwd, args, syscall, int(where))
                else:
                    how = f"{where * window:.3f} CPU s after its first change"
                    killed = run_and_kill(job.cwd, args, where * window, job.stamps, WATCH_FROM * t.first)
                if killed:
                    break
                self.tally.finished_first += 1
                where = max(1, where - max(1, where // 4)) if syscall is not None else where / 2
            else:
                pytest.fail(f"dataver {' '.join(job.args)} kept finishing before its kill {how}")
            self.tally.at_syscalls += syscall is not None
            self.check(job, args, before, f"{how} (sample)")
        return len(points)

    def kill_and_check(self, job: Job, progress: float) -> tuple[float, bool]:
        t = self.timing
        window = t.last - t.first
        # The share of the work to aim in: earlier kills of the round did some of it.
        span = max(1.0 - progress / window, 0.3)
        for _ in range(12):
            args = job.next_args() if job.next_args is not None else job.args
            before = job.changed()
            pos = self.rng.random() * span  # where to kill, as a share of the work
            if t.calls and self.rng.random() < job.syscall_share:
                if not self.kinds:  # each kind of call in turn: rare ones (mkdir, rmdir) count as much
                    self.kinds = self.rng.sample(sorted(t.calls), len(t.calls))
                syscall = self.kinds.pop()
                n = min(1 + int(pos * t.calls[syscall]), 65535)  # strace's limit
                how = f"at {syscall} call {n} of {t.calls[syscall]}"
                killed = at_syscall = run_and_kill_at(job.cwd, args, syscall, n)
            elif self.rng.random() < STARTUP_SHARE:
                pos, cpu = 0.0, self.rng.uniform(0, t.first)
                how = f"at {cpu:.3f} CPU s (start-up)"
                killed, at_syscall = run_and_kill(job.cwd, args, cpu), False
            else:
                cpu = pos * window
                how = f"{cpu:.3f} CPU s after its first change"
                killed = run_and_kill(job.cwd, args, cpu, job.stamps, WATCH_FROM * t.first)
                at_syscall = False
            if killed:
                progress += pos * window
                self.tally.at_syscalls += at_syscall
                break
            # It finished before the kill: start over from the same state, a bit earlier.
            self.tally.finished_first += 1
            span = max(pos, 0.02)
            progress = 0.0
            job.restart()
        else:
            pytest.fail(f"dataver {' '.join(job.args)} kept finishing before it could be killed")
        return progress, self.check(job, args, before, how)

    def check(self, job: Job, args: tuple[str, ...], before: object, how: str) -> bool:
        """After a kill: the invariants and the counts; True if the work looks complete.
        ``before`` is ``job.changed()`` from before the killed run."""
        self.tally.kills += 1
        finished = job.check_kill()
        self.tally.checks += job.checks_per_kill
        changed = job.changed() != before
        self.tally.mid_work += changed and not finished
        if self.debug:
            print(f"kill {args[0]} {how}: changed={changed} finished={finished}")
        return finished


def workspace_job(
    root: Path,
    args: tuple[str, ...],
    old: Version,
    new: Version,
    pointers_during: dict[str, set[bytes | None]],
    pointers_after: dict[str, bytes | None],
    restart: Callable[[], None],
    hasher: Hasher,
    tally: Tally,
    verified: set,
    symlinks: bool = False,
) -> Job:
    """``add`` or ``checkout`` turning the workspace ``old`` into ``new``, and the four invariants."""

    def check_kill() -> bool:
        done = check_workspace(root, old, new, symlinks)
        tally.objects += check_cache(root, hasher, verified)
        check_pointers(root, pointers_during)
        check_gitignore(root)
        return done and read_pointers(root) == pointers_after

    def finish() -> None:
        """Invariant 4: the re-run succeeds and leaves the exact data, cached, with a clean status."""
        dv_ok(root, *args)
        check_pointers(root, {p: {b} for p, b in pointers_after.items()})
        exact = check_workspace(root, new, new, symlinks)
        assert exact, "the workspace does not hold exactly the wanted files"
        tally.objects += check_cache(root, hasher)  # every object, afresh
        check_gitignore(root, complete=True)
        status = dv_ok(root, "status")
        assert status.stdout.strip() == "", f"status is not clean after the re-run:\n{status.stdout}"
        check_no_temporaries(root)

    return Job(
        root,
        args,
        restart,
        check_kill,
        CHECKS_PER_KILL,
        finish,
        CHECKS_PER_ROUND,
        changed=functools.partial(snapshot, root),
        stamps=functools.partial(folder_stamps, root),
    )


def read_pointers(root: Path) -> dict[str, bytes | None]:
    return {p: (root / p).read_bytes() if (root / p).exists() else None for p in POINTERS}


def write_pointers(root: Path, pointers: dict[str, bytes | None]) -> None:
    for p, b in pointers.items():
        assert b is not None
        (root / p).write_bytes(b)


def reset_dataver(root: Path) -> None:
    """Forget everything dataver stored (cache, stat cache, pointers); keep the workspace."""
    remove(root / ".dataver" / "cache")
    for name in ("state.db", "state.db-wal", "state.db-shm", ".gitignore", *POINTERS):
        target = root / ".dataver" / name if name.startswith("state") else root / name
        remove(target)


def set_link(root: Path, link: str) -> None:
    if link != "default":
        dv_ok(root, "config", "cache.link", f"{link},copy")


class CrashTotals:
    """The crash tests' tallies of one pytest run, summed up in its terminal summary."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, Tally, float]] = []  # (test, command, tally, seconds)

    def add(self, name: str, command: str, tally: Tally, seconds: float) -> None:
        self.rows.append((name, command, tally, seconds))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.rows:
            return
        per_command: dict[str, int] = {}
        for _, command, tally, _ in self.rows:
            per_command[command] = per_command.get(command, 0) + tally.kills

        def total(field: str) -> int:
            return sum(getattr(tally, field) for _, _, tally, _ in self.rows)

        terminalreporter.write_sep("-", "SIGKILL crash harness")
        terminalreporter.write_line(
            f"crash tests, seed {SEED}: {total('kills')} kills "
            f"({', '.join(f'{c} {n}' for c, n in per_command.items())}; "
            f"{total('mid_work')} mid-work, {total('at_syscalls')} at file-system calls), "
            f"{total('checks')} invariant checks, {total('objects')} object re-hashes, "
            f"{len(self.rows)} tests, {sum(row[3] for row in self.rows):.1f}s"
        )


TOTALS = CrashTotals()


def totals_of(config: pytest.Config) -> CrashTotals:
    """The run's :class:`CrashTotals`, printed at the end of the run (``report`` adds to it)."""
    if not config.pluginmanager.is_registered(TOTALS):
        config.pluginmanager.register(TOTALS, "dataver-crash-totals")
    return TOTALS


@pytest.fixture
def crash_totals(request) -> CrashTotals:
    return totals_of(request.config)


def report(
    totals: CrashTotals,
    name: str,
    command: str,
    tally: Tally,
    started: float,
    rounds: int,
    kills: int,
    checks: int,
) -> None:
    """Print the test's counts (and add them to the run's totals); check they are as planned."""
    seconds = time.monotonic() - started
    print(
        f"\ncrash test [{name}, seed {SEED}]: {tally.kills} kills ({tally.mid_work} mid-work, "
        f"{tally.at_syscalls} at file-system calls, {tally.finished_first} runs finished first), "
        f"{tally.checks} invariant checks, "
        f"{tally.objects} object re-hashes, {seconds:.1f}s"
    )
    totals.add(name, command, tally, seconds)
    assert tally.kills == kills
    assert tally.rounds == rounds
    assert tally.checks == checks
    # The kills must interrupt real work, or they prove nothing.
    assert tally.mid_work >= max(1, tally.kills // 4), f"only {tally.mid_work} of {tally.kills} kills interrupted work"


def report_rounds(totals: CrashTotals, name: str, command: str, tally: Tally, started: float, plan: Plan, sampled: int):
    """:func:`report` for ``sampled`` kills of a sample and the ``plan``'s rounds, with the workspace invariants."""
    checks = sampled * CHECKS_PER_KILL + plan.rounds * (plan.kills * CHECKS_PER_KILL + CHECKS_PER_ROUND)
    report(totals, name, command, tally, started, plan.rounds, sampled + plan.rounds * plan.kills, checks)


# -- scenarios ---------------------------------------------------------------------------
def crash_add(root: Path, name: str, scale: Scale, link: str, plan: Plan, totals: CrashTotals) -> None:
    """``add`` from an empty cache, killed repeatedly; the workspace must never change."""
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-{name}")
    files = version_a(rng, scale)
    write_version(root, files)
    set_link(root, link)
    args = ("add", *TARGETS)

    def fresh() -> None:
        if link == "symlink":
            write_version(root, files)  # the workspace links point into the cache about to go
        reset_dataver(root)

    timing = measure(root, args, fresh)
    expected = read_pointers(root)
    during = {p: {None, b} for p, b in expected.items()}
    with Hasher() as hasher:
        crasher = Crasher(rng, tally, timing)
        job = workspace_job(root, args, files, files, during, expected, fresh, hasher, tally, set(), link == "symlink")
        sampled = crasher.follow(job, plan, fresh)
    report_rounds(totals, name, "add", tally, started, plan, sampled)


def crash_checkout_restore(root: Path, name: str, scale: Scale, link: str, plan: Plan, totals: CrashTotals) -> None:
    """``checkout`` into a workspace whose tracked data was deleted."""
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-{name}")
    files = version_a(rng, scale)
    write_version(root, files)
    set_link(root, link)
    dv_ok(root, "add", *TARGETS)
    pointers = read_pointers(root)
    args = ("checkout",)

    def deleted() -> None:
        for target in TARGETS:
            remove(root / target)

    timing = measure(root, args, deleted)
    symlinks = link == "symlink"
    assert check_workspace(root, files, files, symlinks)
    with Hasher() as hasher:
        crasher = Crasher(rng, tally, timing)
        during = {p: {b} for p, b in pointers.items()}
        job = workspace_job(root, args, {}, files, during, pointers, deleted, hasher, tally, set(), symlinks)
        sampled = crasher.follow(job, plan, deleted)
    report_rounds(totals, name, "checkout", tally, started, plan, sampled)


def crash_checkout_switch(root: Path, name: str, scale: Scale, link: str, plan: Plan, totals: CrashTotals) -> None:
    """``checkout`` that replaces, deletes and creates files, all saved in the cache (A <-> B)."""
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-{name}")
    a = version_a(rng, scale)
    b = version_b(rng, a)
    set_link(root, link)
    write_version(root, a)
    dv_ok(root, "add", *TARGETS)
    pointers = {"a": read_pointers(root)}
    write_version(root, b)
    dv_ok(root, "add", *TARGETS)
    pointers["b"] = read_pointers(root)
    assert pointers["a"] != pointers["b"]
    versions = {"a": a, "b": b}
    current = ["b"]

    def switch() -> None:  # point at the other version; measure() then checks it out
        current[0] = "a" if current[0] == "b" else "b"
        write_pointers(root, pointers[current[0]])

    args = ("checkout",)
    symlinks = link == "symlink"
    timing = measure(root, args, switch, runs=2)  # B -> A, A -> B (and B -> A under strace)
    assert check_workspace(root, versions[current[0]], versions[current[0]], symlinks)
    verified: set = set()
    with Hasher() as hasher:
        crasher = Crasher(rng, tally, timing)

        def job_for(was: str, now: str) -> Job:
            def back() -> None:  # the workspace to ``was``, pointers at ``now``
                write_pointers(root, pointers[was])
                dv_ok(root, *args)
                write_pointers(root, pointers[now])

            ptrs = pointers[now]
            during = {p: {v} for p, v in ptrs.items()}
            return workspace_job(
                root, args, versions[was], versions[now], during, ptrs, back, hasher, tally, verified, symlinks
            )

        # The sample kills the checkout measure() counted: into the current version from the other.
        job = job_for("a" if current[0] == "b" else "b", current[0])
        sampled = crasher.sample(job, plan)
        for r in range(plan.rounds):
            if r or not sampled:
                was = current[0]
                switch()
                job = job_for(was, current[0])
            crasher.run(job, plan.kills)
    report_rounds(totals, name, "checkout", tally, started, plan, sampled)


# -- tests -------------------------------------------------------------------------------
# By default each command is killed at a sample of its file-system calls (each kind's
# first and last), then in one round of seeded kills ending in the re-run. ``-m slow``
# adds, per command, the seeded rounds (many kills each) and a denser sample (each
# kind's first, last and three calls between), and the bigger data of test_many_sigkills.
SAMPLE = Plan(rounds=1, kills=2, inner=0)
SWEEP = Plan(rounds=1, kills=2, inner=3)


def plans(rounds: int, kills: int) -> list:
    """The parameters of a crash test: the default sample, and under ``-m slow`` the
    seeded ``rounds`` of ``kills`` kills and the denser sample."""
    return [
        pytest.param(SAMPLE, id="sample"),
        pytest.param(Plan(rounds, kills), id="rounds", marks=pytest.mark.slow),
        pytest.param(SWEEP, id="sweep", marks=pytest.mark.slow),
    ]


@pytest.mark.parametrize("link", ["default", "hardlink"])
@pytest.mark.parametrize("plan", plans(3, 6))
def test_add_survives_sigkill(repo_dir, crash_totals, link, plan):
    crash_add(repo_dir, f"add/{link}", CI, link, plan, crash_totals)


@pytest.mark.parametrize("plan", plans(2, 7))
def test_checkout_into_empty_workspace_survives_sigkill(repo_dir, crash_totals, plan):
    crash_checkout_restore(repo_dir, "checkout-restore", CI, "default", plan, crash_totals)


@pytest.mark.parametrize("plan", plans(4, 6))
def test_checkout_replacing_cached_files_survives_sigkill(repo_dir, crash_totals, plan):
    crash_checkout_switch(repo_dir, "checkout-switch", CI, "default", plan, crash_totals)


SCENARIOS = {"add": crash_add, "checkout-restore": crash_checkout_restore, "checkout-switch": crash_checkout_switch}


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario,link,rounds,kills",
    [
        ("add", "default", 5, 6),
        ("add", "hardlink", 5, 6),
        ("add", "symlink", 3, 6),
        ("checkout-restore", "default", 5, 6),
        ("checkout-restore", "hardlink", 3, 6),
        ("checkout-switch", "default", 6, 5),
        ("checkout-switch", "hardlink", 4, 5),
    ],
)
def test_many_sigkills(repo_dir, crash_totals, scenario, link, rounds, kills):
    plan = Plan(rounds, kills)
    SCENARIOS[scenario](repo_dir, f"{scenario}/{link}/slow", SLOW, link, plan, crash_totals)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["add", "checkout-switch"])
def test_folder_trees_survive_sigkill(repo_dir, crash_totals, scenario):
    """A folder of 13,000 files, 4,334 directly in it: a node in pieces with subfolder
    nodes, written by add and by a re-add of version B, and checked out."""
    assert len(range(0, TREE.small, 3)) > tree.FLAT_MAX  # the files in data/ itself (i % 3 == 0)
    SCENARIOS[scenario](repo_dir, f"{scenario}/tree/slow", TREE, "default", SWEEP, crash_totals)
