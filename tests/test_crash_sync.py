"""SIGKILL crash safety of ``push``, ``pull``, ``gc`` and ``import``.

The same method as ``test_crash.py`` (whose helpers this reuses): real
``python -m dataver`` processes are SIGKILLed at seeded moments, half of them (where
strace can) exactly as the command enters its n-th file-system call of one kind, the
others at a random share of the CPU time an uninterrupted run was measured to use.
Several kills follow each other on the same state before the command is let finish.

After every kill:

- ``push`` (to a local-folder remote): every object on the remote hashes to its name,
  is one the pointers need, and a manifest there never precedes its blobs; nothing but
  ``xxh3-128/`` and ``tmp/`` appears on the remote; the local cache is untouched. The
  re-run completes the remote, and a fresh ``git clone`` + ``dataver pull`` from it
  gives exact bytes.
- ``pull`` (in a fresh clone): every cache object hashes to its name; every workspace
  file is absent or exactly right; pointers are untouched. The re-run gives exact
  bytes and a clean ``status``.
- ``gc -y`` (with objects to remove): every object left hashes to its name; no object
  the workspace's pointers reference is gone, and ``checkout`` of deleted data still
  restores exact bytes. The re-run removes exactly the rest.
- ``import`` (from a local source repository): the pointer is absent or complete with
  every object it needs in the cache; no workspace file is partial. The re-run
  (``import`` again, or ``checkout`` where the pointer was written) gives exact bytes.

``DATAVER_CRASH_SEED``, ``DATAVER_CRASH_DEBUG=1`` and ``DATAVER_CRASH_STRACE=0`` work
as in ``test_crash.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from test_crash import (
    HEX,
    POINTERS,
    SEED,
    TARGETS,
    MiB,
    Scale,
    Version,
    check_cache,
    check_workspace,
    count_syscalls,
    dv,
    dv_ok,
    is_temp,
    read_pointers,
    remove,
    run_and_kill,
    run_and_kill_at,
    start,
    strace,
    version_a,
    version_b,
    write_version,
)

from dataver import manifest, pointer
from dataver.hashing import Hasher, digest_manifest

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="times kills with /proc CPU times")

# A few hundred small files, a 12 MiB file in data/ and a 16 MiB model.bin.
SYNC = Scale(small=250, big=(12 * MiB + 4321,), model=16 * MiB)
ALGO = "xxh3-128"
ROUNDS, KILLS = 2, 4  # 8 kills per command


# -- helpers --------------------------------------------------------------------------------
def git(cwd: Path, *args: str) -> None:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"git {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"


def commit_all(root: Path, message: str = "data") -> None:
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


def new_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    dv_ok(root, "init")
    return root


def store_objects(base: Path) -> set[str]:
    """Objects of a store (cache or remote folder) as ``xxh3-128/ab/cd...[.manifest]``."""
    out = set()
    top = base / ALGO
    if not top.is_dir():
        return out
    for fan in os.scandir(top):
        for obj in os.scandir(fan.path):
            out.add(f"{ALGO}/{fan.name}/{obj.name}")
    return out


def needed(cache: Path, pointers: list[bytes]) -> set[str]:
    """Objects the pointers need (their manifests read from ``cache``)."""
    out = set()
    for data in pointers:
        ptr = pointer.loads(data, "pointer")
        rel = ptr.digest.relpath()
        if not ptr.is_dir:
            out.add(rel)
            continue
        out.add(rel + ".manifest")
        out.update(e.digest.relpath() for e in manifest.loads((cache / (rel + ".manifest")).read_bytes()))
    return out


def check_store(base: Path, hasher: Hasher, verified: set | None, allowed: set[str]) -> int:
    """Every object under ``base/xxh3-128`` is one of ``allowed`` and hashes to its name;
    a manifest never sits there without all its blobs. Returns objects hashed."""
    n = 0
    have = store_objects(base)
    for rel in sorted(have):
        path = base / rel
        _, fan, name = rel.split("/")
        is_manifest = name.endswith(".manifest")
        hex_ = fan + name.removesuffix(".manifest")
        assert len(hex_) == 32 and set(hex_) <= HEX, f"stray file in the store: {path}"
        assert rel in allowed, f"{path} is no object the pointers need"
        st = os.lstat(path)
        key = (rel, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if verified is not None and key in verified:
            continue
        if is_manifest:
            data = path.read_bytes()
            got = digest_manifest(data).hex
            entries = manifest.loads(data, str(path))
            lacking = [e.path for e in entries if e.digest.relpath() not in have]
            assert not lacking, f"manifest {path} is on the store before its blobs ({len(lacking)} absent)"
        else:
            got = hasher.hash_file(str(path)).digest.hex
        assert got == hex_, f"{path} holds bytes that hash to {got}: a bad object"
        if verified is not None:
            verified.add(key)
        n += 1
    return n


def tree_state(base: Path) -> frozenset:
    """Names, inodes, sizes, mtimes and modes of everything under ``base``."""
    out = set()
    for here, _dirs, names in os.walk(base):
        for name in names:
            st = os.lstat(os.path.join(here, name))
            out.add((os.path.join(here, name), st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode))
    return frozenset(out)


def watch(*bases: Path) -> frozenset:
    """Cheap "did anything change" snapshot (names, inodes, sizes) of several trees."""
    out = set()
    for base in bases:
        for here, _dirs, names in os.walk(base):
            for name in names:
                try:
                    st = os.lstat(os.path.join(here, name))
                except FileNotFoundError:
                    continue
                out.add((os.path.join(here, name), st.st_ino, st.st_size))
    return frozenset(out)


def subset(files: Version, target: str) -> Version:
    return {k: v for k, v in files.items() if k == target or k.startswith(target + "/")}


# -- the kill loop -----------------------------------------------------------------------------
@dataclass
class Tally:
    kills: int = 0
    checks: int = 0
    mid_work: int = 0
    finished_first: int = 0
    at_syscalls: int = 0
    objects: int = 0
    rounds: int = 0


@dataclass
class Job:
    """One command, killed ``kills`` times from one starting state, then let finish."""

    cwd: Path
    args: tuple[str, ...]
    restart: Callable[[], None]  # to the starting state
    changed: Callable[[], frozenset]  # snapshot of what the command changes
    check_kill: Callable[[], bool]  # invariants after a kill; True if the work looks complete
    checks_per_kill: int
    finish: Callable[[], None]  # re-run to completion and check
    checks_per_round: int
    syscall_share: float = 0.5
    only_calls: tuple[str, ...] = ()  # kill only at these file-system calls (default: all kinds)
    next_args: Callable[[], tuple[str, ...]] | None = None  # the re-run's command, if it depends on the state


@dataclass(frozen=True)
class Timing:
    cpu: float  # CPU seconds of an uninterrupted run
    calls: dict[str, int]


def cpu_of_run(cwd: Path, args: tuple[str, ...]) -> float:
    with open(os.devnull, "wb") as err:
        proc = start(cwd, args, err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"dataver {' '.join(args)} failed: {dv(cwd, *args).stderr}"
    return usage.ru_utime + usage.ru_stime


def measure(job: Job) -> Timing:
    cpus = []
    for _ in range(2):
        job.restart()
        cpus.append(cpu_of_run(job.cwd, job.args))
    calls: dict[str, int] = {}
    if strace():
        job.restart()
        calls = count_syscalls(job.cwd, job.args)
    return Timing(min(cpus), calls)


class Crasher:
    def __init__(self, rng: random.Random, tally: Tally):
        self.rng, self.tally = rng, tally
        self.debug = bool(os.environ.get("DATAVER_CRASH_DEBUG"))

    def run(self, job: Job, kills: int) -> None:
        timing = measure(job)
        if job.only_calls and timing.calls:
            timing = Timing(timing.cpu, {k: n for k, n in timing.calls.items() if k in job.only_calls})
        if self.debug:
            print(job.args[0], timing)
        job.restart()
        finished = False
        kinds: list[str] = []
        for _ in range(kills):
            if finished:
                job.restart()
            span = 1.0
            args = job.next_args() if job.next_args is not None and not finished else job.args
            for _ in range(12):
                before = job.changed()
                pos = self.rng.random() * span
                if timing.calls and self.rng.random() < job.syscall_share:
                    if not kinds:
                        kinds = self.rng.sample(sorted(timing.calls), len(timing.calls))
                    syscall = kinds.pop()
                    n = min(1 + int(pos * timing.calls[syscall]), 65535)
                    how = f"at {syscall} call {n} of {timing.calls[syscall]}"
                    killed = at_syscall = run_and_kill_at(job.cwd, args, syscall, n)
                else:
                    cpu = timing.cpu * (0.3 + 0.7 * pos)  # the first ~0.3 is interpreter start-up
                    how = f"at {cpu:.3f} CPU s of {timing.cpu:.3f}"
                    killed, at_syscall = run_and_kill(job.cwd, args, cpu, False), False
                if killed:
                    self.tally.at_syscalls += at_syscall
                    break
                self.tally.finished_first += 1
                span = max(pos, 0.05)
                job.restart()
                args = job.args
            else:
                pytest.fail(f"dataver {' '.join(job.args)} kept finishing before it could be killed")
            self.tally.kills += 1
            finished = job.check_kill()
            self.tally.checks += job.checks_per_kill
            changed = job.changed() != before
            self.tally.mid_work += changed and not finished
            if self.debug:
                print(f"kill {' '.join(args[:1])} {how}: changed={changed} finished={finished}")
        job.finish()
        self.tally.checks += job.checks_per_round
        self.tally.rounds += 1


def report(name: str, tally: Tally, started: float, jobs: list[Job], kills: int) -> None:
    print(
        f"\ncrash test [{name}, seed {SEED}]: {tally.kills} kills ({tally.mid_work} mid-work, "
        f"{tally.at_syscalls} at file-system calls, {tally.finished_first} runs finished first), "
        f"{tally.checks} invariant checks, {tally.objects} object re-hashes, {time.monotonic() - started:.1f}s"
    )
    assert tally.kills == len(jobs) * kills
    assert tally.rounds == len(jobs)
    assert tally.checks == sum(kills * j.checks_per_kill + j.checks_per_round for j in jobs)
    assert tally.mid_work >= max(1, tally.kills // 4), f"only {tally.mid_work} of {tally.kills} kills interrupted work"


# -- scenarios -----------------------------------------------------------------------------------
def tracked_repo(root: Path, rng: random.Random, remote: Path | None = None) -> Version:
    """Version A added and committed in ``root`` (with ``remote`` as its default remote)."""
    files = version_a(rng, SYNC)
    write_version(root, files)
    dv_ok(root, "add", *TARGETS)
    if remote is not None:
        dv_ok(root, "remote", "add", "origin", str(remote), "--default")
    commit_all(root)
    return files


def clone_and_pull(root: Path, clone: Path, files: Version, hasher: Hasher, tally: Tally) -> None:
    remove(clone)
    git(root.parent, "clone", "-q", str(root), str(clone))
    dv_ok(clone, "pull")
    assert check_workspace(clone, files, files), "a fresh clone's pull does not give the exact files"
    tally.objects += check_cache(clone, hasher)
    status = dv_ok(clone, "status")
    assert status.stdout.strip() == "", f"status of the fresh clone is not clean:\n{status.stdout}"


def test_push_survives_sigkill(repo_dir):
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-push")
    remote = repo_dir.parent / "remote"
    files = tracked_repo(repo_dir, rng, remote)
    cache = repo_dir / ".dataver" / "cache"
    wanted = store_objects(cache)
    assert wanted == needed(cache, [p for p in read_pointers(repo_dir).values() if p is not None])
    cache_before = tree_state(cache)
    verified: set = set()

    def restart() -> None:
        remove(remote)
        verified.clear()

    def check_kill() -> bool:
        tally.objects += check_store(remote, hasher, verified, wanted)
        stray = {p.name for p in remote.iterdir()} - {ALGO, "tmp"} if remote.exists() else set()
        assert not stray, f"unexpected entries on the remote: {stray}"
        assert tree_state(cache) == cache_before, "push changed the local cache"
        return store_objects(remote) == wanted

    def finish() -> None:
        dv_ok(repo_dir, "push")
        assert store_objects(remote) == wanted, "the re-run of push left objects missing on the remote"
        tally.objects += check_store(remote, hasher, None, wanted)
        assert tree_state(cache) == cache_before, "push changed the local cache"
        clone_and_pull(repo_dir, repo_dir.parent / "clone", files, hasher, tally)

    jobs = [Job(repo_dir, ("push",), restart, lambda: watch(remote), check_kill, 4, finish, 6) for _ in range(ROUNDS)]
    with Hasher() as hasher:
        crasher = Crasher(rng, tally)
        for job in jobs:
            crasher.run(job, KILLS)
    report("push", tally, started, jobs, KILLS)


def test_pull_survives_sigkill(repo_dir):
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-pull")
    remote = repo_dir.parent / "remote"
    files = tracked_repo(repo_dir, rng, remote)
    dv_ok(repo_dir, "push")
    pointers = read_pointers(repo_dir)
    clone = repo_dir.parent / "clone"
    verified: set = set()

    def restart() -> None:
        remove(clone)
        git(repo_dir.parent, "clone", "-q", str(repo_dir), str(clone))
        verified.clear()

    def check_kill() -> bool:
        done = check_workspace(clone, {}, files)
        tally.objects += check_cache(clone, hasher, verified)
        assert read_pointers(clone) == pointers, "pull changed a pointer"
        return done

    def finish() -> None:
        dv_ok(clone, "pull")
        assert check_workspace(clone, files, files), "the re-run of pull does not give the exact files"
        assert read_pointers(clone) == pointers, "pull changed a pointer"
        tally.objects += check_cache(clone, hasher)
        status = dv_ok(clone, "status")
        assert status.stdout.strip() == "", f"status is not clean after the re-run:\n{status.stdout}"

    def changed() -> frozenset:
        return watch(clone / ".dataver" / "cache", clone / "data") | watch_file(clone / "model.bin")

    jobs = [Job(clone, ("pull",), restart, changed, check_kill, 3, finish, 5) for _ in range(ROUNDS)]
    with Hasher() as hasher:
        crasher = Crasher(rng, tally)
        for job in jobs:
            crasher.run(job, KILLS)
    report("pull", tally, started, jobs, KILLS)


def watch_file(path: Path) -> frozenset:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return frozenset()
    return frozenset({(str(path), st.st_ino, st.st_size)})


def test_gc_survives_sigkill(repo_dir):
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-gc")
    a = tracked_repo(repo_dir, rng)
    b = version_b(rng, a)
    write_version(repo_dir, b)
    dv_ok(repo_dir, "add", *TARGETS)
    cache = repo_dir / ".dataver" / "cache"
    keep = needed(cache, [p for p in read_pointers(repo_dir).values() if p is not None])
    everything = store_objects(cache)
    assert len(everything - keep) > 100, "gc would have too little to remove"
    backup = repo_dir.parent / "cache-backup"
    shutil.copytree(cache, backup, copy_function=os.link)
    verified: set = set()

    def restart() -> None:
        remove(cache)
        shutil.copytree(backup, cache, copy_function=os.link)

    def checkout_restores() -> None:
        for target in TARGETS:
            remove(repo_dir / target)
        dv_ok(repo_dir, "checkout")
        assert check_workspace(repo_dir, b, b), "checkout does not restore the exact files after gc"

    def check_kill() -> bool:
        tally.objects += check_cache(repo_dir, hasher, verified)
        lost = keep - store_objects(cache)
        assert not lost, f"gc deleted {len(lost)} objects the workspace's pointers need, e.g. {sorted(lost)[0]}"
        checkout_restores()
        return store_objects(cache) == keep

    def finish() -> None:
        dv_ok(repo_dir, "gc", "-y")
        left = store_objects(cache)
        assert left == keep, f"the re-run of gc kept {len(left - keep)} extra and lost {len(keep - left)} objects"
        tally.objects += check_cache(repo_dir, hasher)
        checkout_restores()
        status = dv_ok(repo_dir, "status")
        assert status.stdout.strip() == "", f"status is not clean after the re-run:\n{status.stdout}"

    # gc's deleting is over in milliseconds: most kills go at its unlink calls.
    jobs = [
        Job(
            repo_dir,
            ("gc", "-y"),
            restart,
            lambda: watch(cache),
            check_kill,
            3,
            finish,
            5,
            syscall_share=0.75,
            only_calls=("unlink", "unlinkat"),
        )
        for _ in range(ROUNDS)
    ]
    with Hasher() as hasher:
        crasher = Crasher(rng, tally)
        for job in jobs:
            crasher.run(job, KILLS)
    report("gc", tally, started, jobs, KILLS)


def test_import_survives_sigkill(repo_dir):
    started, tally = time.monotonic(), Tally()
    rng = random.Random(f"{SEED}-import")
    files = tracked_repo(repo_dir, rng)
    dest = new_repo(repo_dir.parent / "dest")
    cache = dest / ".dataver" / "cache"
    verified: set = set()
    jobs = []
    for target in ("data", "model.bin"):
        want = subset(files, target)
        ptr_path = dest / (target + ".dv")
        args = ("import", str(repo_dir), target)
        expected: list[bytes] = []

        def restart(target: str = target) -> None:
            remove(cache)
            for name in (*TARGETS, *POINTERS, ".gitignore", *(f".dataver/state.db{s}" for s in ("", "-wal", "-shm"))):
                remove(dest / name)
            for leftover in dest.iterdir():
                if is_temp(leftover.name):
                    remove(leftover)
            verified.clear()

        def check_kill(
            target: str = target, want: Version = want, ptr_path: Path = ptr_path, expected: list = expected
        ) -> bool:
            done = check_workspace(dest, {}, want)
            tally.objects += check_cache(dest, hasher, verified)
            for other in POINTERS:
                if dest / other != ptr_path:
                    assert not (dest / other).exists(), f"import wrote {other}"
            if not ptr_path.exists():
                assert not (dest / target).exists(), f"{target} was checked out before its pointer was written"
                return False
            data = ptr_path.read_bytes()
            assert data == expected[0], f"{ptr_path.name} is not what a complete import writes: {data!r}"
            lacking = needed(cache, [data]) - store_objects(cache)
            assert not lacking, f"{ptr_path.name} was written before {len(lacking)} of its objects were cached"
            return done

        def finish(
            target: str = target, want: Version = want, ptr_path: Path = ptr_path, expected: list = expected
        ) -> None:
            if ptr_path.exists():
                dv_ok(dest, "checkout")
            else:
                dv_ok(dest, "import", str(repo_dir), target)
            data = ptr_path.read_bytes()
            assert data == expected[0], "the re-run wrote another pointer"
            assert needed(cache, [data]) <= store_objects(cache), "objects of the imported pointer are missing"
            assert check_workspace(dest, want, want), "the re-run of import does not give the exact files"
            tally.objects += check_cache(dest, hasher)
            status = dv_ok(dest, "status")
            assert status.stdout.strip() == "", f"status is not clean after the re-run:\n{status.stdout}"

        def changed(ptr_path: Path = ptr_path) -> frozenset:
            return watch(cache, dest / "data") | watch_file(dest / "model.bin") | watch_file(ptr_path)

        def next_args(ptr_path: Path = ptr_path, args: tuple[str, ...] = args) -> tuple[str, ...]:
            return ("checkout",) if ptr_path.exists() else args  # import refuses a written pointer

        restart()  # what a complete import writes
        dv_ok(dest, *args)
        expected.append(ptr_path.read_bytes())
        restart()
        jobs.append(Job(dest, args, restart, changed, check_kill, 4, finish, 5, next_args=next_args))
    with Hasher() as hasher:
        crasher = Crasher(rng, tally)
        for job in jobs:
            crasher.run(job, KILLS)
    report("import", tally, started, jobs, KILLS)
