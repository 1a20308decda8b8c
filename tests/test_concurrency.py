"""Two dataver processes at once: the locks serialise them, name the holder, time
out cleanly, and a killed holder never leaves a stale lock; two pulls, push + gc and
pull + gc, in one repository or across repositories sharing a cache, never lose or
corrupt anything."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
from conftest import cli_proc, git_commit, make_tree, write
from remote_view import FolderView

from dataver.digest import DEFAULT_ALGORITHM, Digest
from dataver.errors import LockTimeout
from dataver.hashing import digest_bytes, digest_manifest
from dataver.lock import FileLock


def _hold_lock(path: str, shared: bool = False) -> subprocess.Popen:
    """A separate process that takes a lock and sleeps until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from dataver.lock import FileLock
        FileLock({path!r}, "test lock", shared={shared}).acquire()
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_waits_then_proceeds(repo_dir):
    make_tree(repo_dir / "a", 50)
    make_tree(repo_dir / "b", 50, seed=1)
    holder = _hold_lock(str(repo_dir / ".dataver" / "lock"))
    try:
        adder = subprocess.Popen(
            [sys.executable, "-m", "dataver", "add", "a"],
            cwd=repo_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        assert adder.poll() is None, "add must wait while another process holds the repository lock"
        assert not (repo_dir / "a.dv").exists()
    finally:
        holder.kill()
        holder.wait()
    out, err = adder.communicate(timeout=60)
    assert adder.returncode == 0, err
    assert f"waiting for the repository lock held by PID {holder.pid}" in err
    assert (repo_dir / "a.dv").exists()


def test_lock_timeout_names_the_holder(repo_dir):
    write(repo_dir / "w.bin", b"weights")
    assert cli_proc("config", "core.lock_timeout", "0.5", cwd=repo_dir).returncode == 0
    holder = _hold_lock(str(repo_dir / ".dataver" / "lock"))
    try:
        p = cli_proc("add", "w.bin", cwd=repo_dir)
    finally:
        holder.kill()
        holder.wait()
    assert p.returncode == LockTimeout.exit_code
    assert f"error: the repository lock is held by PID {holder.pid}" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (repo_dir / "w.bin.dv").exists()


def test_killed_holder_leaves_no_stale_lock(repo_dir):
    write(repo_dir / "w.bin", b"weights")
    holder = _hold_lock(str(repo_dir / ".dataver" / "lock"))
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    p = cli_proc("add", "w.bin", cwd=repo_dir)
    assert p.returncode == 0, p.stderr
    assert "waiting" not in p.stderr
    assert time.monotonic() - start < 10


def _second_repo_sharing(tmp_path, first) -> str:
    root = tmp_path / "second"
    root.mkdir()
    pygit2.init_repository(str(root))
    assert cli_proc("init", cwd=root).returncode == 0
    shared = str(first / ".dataver" / "cache")
    assert cli_proc("config", "cache.dir", shared, cwd=root).returncode == 0
    return str(root)


def test_gc_in_one_repo_excludes_add_in_another_sharing_the_cache(repo_dir, tmp_path):
    other = _second_repo_sharing(tmp_path, repo_dir)
    write(Path(other) / "model.bin", os.urandom(100_000))
    # While any command uses the cache (shared lock), gc's exclusive lock must wait...
    user = _hold_lock(str(repo_dir / ".dataver" / "cache" / "lock"), shared=True)
    try:
        assert cli_proc("config", "core.lock_timeout", "0.5", cwd=repo_dir).returncode == 0
        p = cli_proc("gc", "-y", cwd=repo_dir)
        assert p.returncode == LockTimeout.exit_code, p.stderr
        assert "the cache lock is held by" in p.stderr
        # ...while another shared user (add in the second repo) goes ahead.
        p = cli_proc("add", "model.bin", cwd=other)
        assert p.returncode == 0, p.stderr
    finally:
        user.kill()
        user.wait()
    # The second repo's object is in the shared cache; gc in the first repo would
    # delete it (it is not referenced there) only once nothing else uses the cache.
    digest = open(os.path.join(other, "model.bin.dv")).read().split("digest: ")[1].split()[0]
    blob = repo_dir / ".dataver" / "cache" / "xxh3-128" / digest[:2] / digest[2:]
    assert blob.exists()


def test_file_lock_shared_holders_coexist_and_exclude_exclusive(tmp_path):
    path = str(tmp_path / "lock")
    a = FileLock(path, "the cache lock", shared=True, timeout=0.2)
    b = FileLock(path, "the cache lock", shared=True, timeout=0.2)
    with a, b:
        try:
            FileLock(path, "the cache lock", shared=False, timeout=0.3).acquire()
        except LockTimeout as e:
            assert "the cache lock is held by" in e.message
        else:
            raise AssertionError("an exclusive lock was granted while shared holders exist")
    with FileLock(path, "the cache lock", shared=False, timeout=0.2):
        pass


# ---------------------------------------------------------------------------------
# Two data-moving commands at once: pull + pull, push + gc, pull + gc, in one
# repository and across repositories that share a cache (cache.dir) and a remote.
#
# Each scenario runs two real dataver processes that overlap in time. To make the
# overlap certain rather than a matter of timing, the first process stops itself
# (SIGSTOP) the moment it has taken the cache lock (and, holding it exclusively,
# written its PID), i.e. at the start of its work; the second is then started and
# must wait for it (its "waiting for ... held by ..." line proves that it ran while
# the first held the lock); then the first is resumed and both finish. Two pulls
# sharing a cache hold the lock shared: both stop inside it, the kernel shows both
# holding it at once, then they are resumed together and race on the same objects.
# Afterwards every workspace file, every cache and remote object and both exit codes
# are checked.
# ---------------------------------------------------------------------------------

linux_only = pytest.mark.skipif(
    not os.path.exists("/proc/locks"), reason="reads /proc to see a process stop and which locks it holds"
)

# Runs dataver's CLI, and stops the process (SIGSTOP to itself) right after it takes
# the flock on the file named by argv[1]: after flock() for a shared lock, after the
# PID is written for an exclusive one. Only the standard library is wrapped.
_STOP_AFTER_LOCK = """
import fcntl, os, runpy, signal, sys
target = os.path.realpath(sys.argv.pop(1))
real_flock, real_pwrite, stopped = fcntl.flock, os.pwrite, []

def is_target(fd):
    try:
        return os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")) == target
    except OSError:
        return False

def stop():
    if not stopped:
        stopped.append(True)
        os.kill(os.getpid(), signal.SIGSTOP)

def flock(fd, op):
    real_flock(fd, op)
    if op & fcntl.LOCK_SH and is_target(fd):
        stop()

def pwrite(fd, data, offset):
    n = real_pwrite(fd, data, offset)
    if is_target(fd):
        stop()
    return n

fcntl.flock, os.pwrite = flock, pwrite
sys.argv[0] = "dataver"
runpy.run_module("dataver", run_name="__main__", alter_sys=True)
"""


class _Bg:
    """A dataver process in the background; its output goes to files the test reads
    while it runs."""

    def __init__(self, logs: Path, name: str, args: tuple[str, ...], cwd: Path, stop_after_lock: Path | None):
        self.name = name
        self.out_path = logs / f"{name}.out"
        self.err_path = logs / f"{name}.err"
        if stop_after_lock is None:
            argv = [sys.executable, "-m", "dataver", *args]
        else:
            argv = [sys.executable, "-c", _STOP_AFTER_LOCK, str(stop_after_lock), *args]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def stderr(self) -> str:
        return self.err_path.read_text()

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        return code, self.out_path.read_text(), self.stderr()


@pytest.fixture
def bg(tmp_path):
    """Start background dataver processes; any left running (a failed test) are
    resumed and killed at teardown."""
    logs = tmp_path / "logs"
    logs.mkdir()
    started: list[_Bg] = []

    def start(name: str, cwd: Path, *args: str, stop_after_lock: Path | None = None) -> _Bg:
        b = _Bg(logs, name, args, cwd, stop_after_lock)
        started.append(b)
        return b

    yield start
    for b in started:
        if b.proc.poll() is None:
            os.kill(b.pid, signal.SIGCONT)
            b.proc.kill()
            b.proc.wait()


def _wait_for(predicate, what: str, timeout: float = 30.0, interval: float = 0.001) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _lock_mode(pid: int, lock_path: Path) -> str | None:
    """How the kernel lists ``pid`` as holding a flock on ``lock_path``: "READ"
    (shared), "WRITE" (exclusive), or None."""
    try:
        ino = os.stat(lock_path).st_ino
    except FileNotFoundError:
        return None
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                continue  # "->" marks a blocked waiter, not a holder
            if fields[4] == str(pid) and fields[5].rsplit(":", 1)[-1] == str(ino):
                return fields[3]
    return None


def _holds_lock(pid: int, lock_path: Path) -> bool:
    return _lock_mode(pid, lock_path) is not None


def _is_stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def _wait_stopped_holding(b: _Bg, lock_path: Path) -> None:
    """Wait until ``b`` (started with ``stop_after_lock=lock_path``) has stopped itself
    holding the lock; check with the kernel that it holds it."""

    def stopped() -> bool:
        if b.proc.poll() is not None:
            raise AssertionError(
                f"{b.name} exited {b.proc.returncode} without stopping after taking {lock_path} "
                f"(does dataver still take it with fcntl.flock?):\n{b.stderr()}"
            )
        return _is_stopped(b.pid)

    _wait_for(stopped, f"{b.name} to take {lock_path} and stop")
    mode = _lock_mode(b.pid, lock_path)
    assert mode is not None, f"{b.name} stopped without holding {lock_path}"
    if mode == "WRITE":  # an exclusive holder has written its PID for waiters to name
        assert lock_path.read_text().strip() == str(b.pid)


def _resume(*procs: _Bg) -> None:
    for b in procs:
        os.kill(b.pid, signal.SIGCONT)


def _wait_stderr(b: _Bg, text: str) -> None:
    def seen() -> bool:
        if text in b.stderr():
            return True
        if b.proc.poll() is not None:
            raise AssertionError(f"{b.name} exited {b.proc.returncode} without printing {text!r}:\n{b.stderr()}")
        return False

    _wait_for(seen, f"{b.name} to print {text!r}", timeout=20, interval=0.01)


@dataclass
class _Project:
    root: Path  # the origin repository: v1 and v2 committed, workspace at v2 (branch tip)
    remote: Path  # a local-folder remote "storage", set as default in the committed config
    v1: dict[str, bytes]  # repo-relative path -> bytes of every tracked file at v1
    v2: dict[str, bytes]
    objs_v1: set[str]  # the store-relative object paths the pointers at v1 need
    objs_v2: set[str]


def _needed(root: Path, files: dict[str, bytes]) -> set[str]:
    """Object paths (``xxh3-128/ab/cdef...[.manifest]``) the pointers in ``root`` need,
    computed from the bytes and the folder pointer's digest, not by dataver."""
    objs = {digest_bytes(data).relpath() for data in files.values()}
    text = (root / "data.dv").read_text()
    hex_ = text.split("digest: ")[1].split()[0]
    return objs | {Digest(DEFAULT_ALGORITHM, hex_).relpath() + ".manifest"}


def _make_project(root: Path, remote: Path, cli, push_v2: bool = False) -> _Project:
    """Two versions of a tracked folder ``data`` (60 files, some in subfolders) and a
    tracked file ``model.bin`` (4 MiB at v1, 12 MiB at v2: more than one hash chunk).
    v1 is tagged and pushed; v2 is committed on top and pushed only if asked."""
    rng = random.Random(7)
    assert cli("remote", "add", "storage", str(remote), "--default", cwd=root).code == 0
    v1 = {f"data/{rel}": data for rel, data in make_tree(root / "data", 60, seed=1, max_size=200_000).items()}
    v1["model.bin"] = rng.randbytes(4 << 20)
    write(root / "model.bin", v1["model.bin"])
    r = cli("add", "-q", "data", "model.bin", cwd=root)
    assert r.code == 0, r.err
    git_commit(root, "v1")
    subprocess.run(["git", "tag", "v1"], cwd=root, check=True)
    objs_v1 = _needed(root, v1)
    assert cli("push", "-q", cwd=root).code == 0
    v2 = dict(v1)
    for i, rel in enumerate(sorted(k for k in v1 if k.startswith("data/"))):
        if i % 5 == 0:  # changed
            v2[rel] = rng.randbytes(rng.randint(1, 200_000))
            write(root / rel, v2[rel])
        elif i % 7 == 0:  # deleted
            del v2[rel]
            (root / rel).unlink()
    for i in range(10):  # added, one in a new subfolder
        rel = f"data/new/n{i}.bin" if i % 2 else f"data/n{i}.bin"
        v2[rel] = rng.randbytes(rng.randint(1, 200_000))
        write(root / rel, v2[rel])
    v2["model.bin"] = rng.randbytes(12 << 20)
    write(root / "model.bin", v2["model.bin"])
    r = cli("add", "-q", "data", "model.bin", cwd=root)
    assert r.code == 0, r.err
    git_commit(root, "v2")
    if push_v2:
        assert cli("push", "-q", cwd=root).code == 0
    objs_v2 = _needed(root, v2)
    assert objs_v1 - objs_v2 and objs_v2 - objs_v1  # each version has objects of its own
    return _Project(root, remote, v1, v2, objs_v1, objs_v2)


def _clone(p: _Project, dest: Path, cli, cache_dir: Path | None = None) -> Path:
    subprocess.run(["git", "clone", "-q", str(p.root), str(dest)], check=True)
    if cache_dir is not None:
        assert cli("config", "cache.dir", str(cache_dir), cwd=dest).code == 0
    return dest


def _store(root: Path) -> set[str]:
    """Every object in a cache or local-folder remote (loose or packed), as store-relative paths."""
    return {k for k in FolderView(root).keys() if k.startswith(f"{DEFAULT_ALGORITHM}/")}


def _check_store(root: Path) -> None:
    """Every object's bytes hash to its name; no temporary file or lock is left behind."""
    view = FolderView(root)
    for rel in _store(root):
        data = view.read(rel)
        name = rel.split("/", 1)[1].replace("/", "")
        if name.endswith(".manifest"):
            assert digest_manifest(data).hex == name[: -len(".manifest")], f"corrupt manifest {rel}"
        else:
            assert digest_bytes(data).hex == name, f"corrupt object {rel}"
    for leftovers in (root / "tmp", root / "locks"):
        assert not leftovers.is_dir() or not os.listdir(leftovers), f"left in {leftovers}: {os.listdir(leftovers)}"


def _check_workspace(root: Path, files: dict[str, bytes]) -> None:
    """Exactly the expected files, byte for byte, in the tracked folder and file."""
    present = {str(p.relative_to(root)) for p in (root / "data").rglob("*") if p.is_file()}
    assert present == {rel for rel in files if rel.startswith("data/")}
    for rel, data in files.items():
        assert (root / rel).read_bytes() == data, f"{rel} has the wrong bytes"


def _verify(cli, root: Path, *extra: str) -> None:
    r = cli("verify", *extra, cwd=root)
    assert r.code == 0, r.out + r.err
    assert "verify: everything matches" in r.err


def _cache_lock(cache_root: Path) -> Path:
    return cache_root / "lock"


def _clean(err: str) -> None:
    assert "Traceback" not in err, err
    assert "error:" not in err, err


@linux_only
def test_two_pulls_at_once_in_one_repo(repo_dir, tmp_path, cli, bg):
    p = _make_project(repo_dir, tmp_path / "remote", cli, push_v2=True)
    clone = _clone(p, tmp_path / "clone", cli)
    lock = _cache_lock(clone / ".dataver" / "cache")
    first = bg("first", clone, "pull", "--json", stop_after_lock=lock)
    _wait_stopped_holding(first, lock)
    second = bg("second", clone, "pull", "--json")
    _wait_stderr(second, f"waiting for the repository lock held by PID {first.pid}")
    time.sleep(0.3)
    assert second.proc.poll() is None, "the second pull ran while the first held the repository lock"
    _resume(first)
    code1, out1, err1 = first.finish()
    code2, out2, err2 = second.finish()
    assert (code1, code2) == (0, 0), err1 + err2
    _clean(err1)
    _clean(err2)
    r1, r2 = json.loads(out1), json.loads(out2)
    n_objs, n_files = len(p.objs_v2), len(p.v2)
    # The first moved everything; the second, run after it, found nothing to do.
    assert (r1["transferred"], r1["created"], r1["missing"]) == (n_objs, n_files, [])
    assert (r2["transferred"], r2["present"], r2["created"], r2["unchanged"]) == (0, n_objs, 0, n_files)
    _check_workspace(clone, p.v2)
    assert _store(clone / ".dataver" / "cache") == p.objs_v2
    _check_store(clone / ".dataver" / "cache")
    _verify(cli, clone)


@linux_only
def test_two_pulls_at_once_in_clones_sharing_a_cache(repo_dir, tmp_path, cli, bg):
    p = _make_project(repo_dir, tmp_path / "remote", cli, push_v2=True)
    shared = tmp_path / "shared-cache"
    a = _clone(p, tmp_path / "a", cli, cache_dir=shared)
    b = _clone(p, tmp_path / "b", cli, cache_dir=shared)
    lock = _cache_lock(shared)
    pa = bg("pull-a", a, "pull", "--json", stop_after_lock=lock)
    pb = bg("pull-b", b, "pull", "--json", stop_after_lock=lock)
    # Both hold the (shared) cache lock at the same moment, stopped at the start of
    # their work; resumed together, they fetch the same objects into one cache at once.
    _wait_stopped_holding(pa, lock)
    _wait_stopped_holding(pb, lock)
    assert _holds_lock(pa.pid, lock) and _holds_lock(pb.pid, lock)
    _resume(pa, pb)
    code_a, out_a, err_a = pa.finish()
    code_b, out_b, err_b = pb.finish()
    assert (code_a, code_b) == (0, 0), err_a + err_b
    _clean(err_a)
    _clean(err_b)
    assert "waiting" not in err_a + err_b  # a shared lock: neither waited for the other
    for out in (out_a, out_b):
        r = json.loads(out)
        assert r["transferred"] + r["present"] == len(p.objs_v2) and r["missing"] == []
        assert r["created"] == len(p.v2)
    for clone in (a, b):
        _check_workspace(clone, p.v2)
        _verify(cli, clone)
    assert _store(shared) == p.objs_v2
    _check_store(shared)


def _run_first_then_second(bg, first: tuple, second: tuple, lock: Path, waiting: str) -> tuple[tuple, tuple]:
    """Start ``first`` and stop it once it holds ``lock``; start ``second`` and check
    that it waits (printing ``waiting`` with the first's PID filled in); then let both
    finish. Each of ``first``/``second`` is (name, cwd, *args)."""
    one = bg(*first, stop_after_lock=lock)
    _wait_stopped_holding(one, lock)
    two = bg(*second)
    _wait_stderr(two, waiting.format(pid=one.pid))
    time.sleep(0.3)
    assert two.proc.poll() is None, f"{two.name} went ahead while {one.name} held {lock}"
    _resume(one)
    r1 = one.finish()
    r2 = two.finish()
    return r1, r2


GC_WHERE = pytest.mark.parametrize("where", ["cache", "remote"], ids=["gc", "gc-remote"])
ORDER = pytest.mark.parametrize("gc_first", [False, True], ids=["push-first", "gc-first"])


def _gc_args(where: str) -> tuple[str, ...]:
    return ("gc", "-y") if where == "cache" else ("gc", "-y", "-r", "storage")


def _check_after_push_and_gc(p: _Project, where: str, cache: Path) -> None:
    """gc keeps what the workspace's pointers (v2) need and drops v1's leftovers from
    the place it collects; push leaves all of v2 on the remote."""
    if where == "cache":
        assert _store(cache) == p.objs_v2
        assert _store(p.remote) == p.objs_v1 | p.objs_v2
    else:
        assert _store(cache) == p.objs_v1 | p.objs_v2
        assert _store(p.remote) == p.objs_v2
    _check_store(cache)
    _check_store(p.remote)


@linux_only
@GC_WHERE
@ORDER
def test_push_and_gc_at_once_in_one_repo(repo_dir, tmp_path, cli, bg, where, gc_first):
    p = _make_project(repo_dir, tmp_path / "remote", cli)
    cache = repo_dir / ".dataver" / "cache"
    assert _store(cache) == p.objs_v1 | p.objs_v2 and _store(p.remote) == p.objs_v1
    push = ("push", repo_dir, "push")
    gc = ("gc", repo_dir, *_gc_args(where))
    first, second = (gc, push) if gc_first else (push, gc)
    (c1, _, e1), (c2, _, e2) = _run_first_then_second(
        bg, first, second, _cache_lock(cache), "waiting for the repository lock held by PID {pid}"
    )
    assert (c1, c2) == (0, 0), e1 + e2
    _clean(e1)
    _clean(e2)
    push_err, gc_err = (e2, e1) if gc_first else (e1, e2)
    n_v2_only = len(p.objs_v2 - p.objs_v1)
    # push uploads v2's new objects (gc, either way, never removes one of them)...
    assert f"pushed {n_v2_only} object(s)" in push_err
    # ...and gc removes exactly v1's leftovers, from the cache or from the remote.
    assert f"removed {len(p.objs_v1 - p.objs_v2)} object(s)" in gc_err
    _check_after_push_and_gc(p, where, cache)
    _check_workspace(repo_dir, p.v2)
    _verify(cli, repo_dir)
    _verify(cli, repo_dir, "--remote", "storage")


@linux_only
@GC_WHERE
@ORDER
def test_push_and_gc_at_once_across_repos_sharing_cache_and_remote(repo_dir, tmp_path, cli, bg, where, gc_first):
    """push in one repository while gc runs in a clone at the same commit that shares its
    cache (cache.dir) and remote: the objects the clone's pointers reference are the
    ones push needs, so gc keeps them, in either order."""
    p = _make_project(repo_dir, tmp_path / "remote", cli)
    cache = repo_dir / ".dataver" / "cache"
    other = _clone(p, tmp_path / "other", cli, cache_dir=cache)
    r = cli("checkout", "-q", cwd=other)
    assert r.code == 0, r.err
    push = ("push", repo_dir, "push")
    gc = ("gc", other, *_gc_args(where))
    if gc_first:  # gc holds the cache lock exclusively and names itself
        (c_gc, _, gc_err), (c_push, _, push_err) = _run_first_then_second(
            bg, gc, push, _cache_lock(cache), "waiting for the cache lock held by PID {pid}"
        )
    else:  # push holds it shared: shared holders write no PID
        (c_push, _, push_err), (c_gc, _, gc_err) = _run_first_then_second(
            bg, push, gc, _cache_lock(cache), "waiting for the cache lock held by another dataver process"
        )
    assert (c_push, c_gc) == (0, 0), push_err + gc_err
    _clean(push_err)
    _clean(gc_err)
    assert f"pushed {len(p.objs_v2 - p.objs_v1)} object(s)" in push_err
    assert f"removed {len(p.objs_v1 - p.objs_v2)} object(s)" in gc_err
    _check_after_push_and_gc(p, where, cache)
    for root in (repo_dir, other):
        _check_workspace(root, p.v2)
        _verify(cli, root)
        _verify(cli, root, "--remote", "storage")


@linux_only
@pytest.mark.parametrize("gc_rev", ["v2", "v1"], ids=["gc-repo-at-same-commit", "gc-repo-at-older-commit"])
@pytest.mark.parametrize("gc_first", [False, True], ids=["pull-first", "gc-first"])
def test_pull_and_gc_at_once_across_repos_sharing_a_cache(repo_dir, tmp_path, cli, bg, gc_rev, gc_first):
    """A fresh clone pulls v2 into a shared cache while gc runs in another clone of it.

    The gc repository pulled v1 earlier (the shared cache holds v1), then its pointers
    moved to ``gc_rev``. At v2 it references everything the pull needs, so whatever
    the order the cache ends up with exactly v2 and both verify. At v1 it references
    none of v2's new objects: gc cannot run in the middle of the pull (the pull still
    gets every byte right), but once the pull is done gc removes them, as documented
    for shared caches; a second pull brings them back."""
    p = _make_project(repo_dir, tmp_path / "remote", cli, push_v2=True)
    shared = tmp_path / "shared-cache"
    collector = _clone(p, tmp_path / "collector", cli, cache_dir=shared)
    subprocess.run(["git", "checkout", "-q", "v1"], cwd=collector, check=True)
    r = cli("pull", "-q", cwd=collector)
    assert r.code == 0, r.err
    if gc_rev == "v2":  # move its pointers (not its data) to the branch tip
        subprocess.run(["git", "checkout", "-q", "-"], cwd=collector, check=True)
    assert _store(shared) == p.objs_v1
    puller = _clone(p, tmp_path / "puller", cli, cache_dir=shared)
    pull = ("pull", puller, "pull", "--json")
    gc = ("gc", collector, "gc", "-y")
    if gc_first:
        (c_gc, _, gc_err), (c_pull, out, pull_err) = _run_first_then_second(
            bg, gc, pull, _cache_lock(shared), "waiting for the cache lock held by PID {pid}"
        )
    else:
        (c_pull, out, pull_err), (c_gc, _, gc_err) = _run_first_then_second(
            bg, pull, gc, _cache_lock(shared), "waiting for the cache lock held by another dataver process"
        )
    assert (c_pull, c_gc) == (0, 0), pull_err + gc_err
    _clean(pull_err)
    assert "Traceback" not in gc_err
    pulled = json.loads(out)
    assert pulled["missing"] == [] and pulled["created"] == len(p.v2)
    _check_workspace(puller, p.v2)  # every byte right, whichever ran first
    _check_store(shared)
    wanted_by_gc = p.objs_v2 if gc_rev == "v2" else p.objs_v1
    if gc_rev == "v2" or gc_first:
        assert _store(shared) == wanted_by_gc | p.objs_v2
        _verify(cli, puller)
    else:  # gc ran after the pull and kept only what its own pointers (v1) need
        assert _store(shared) == p.objs_v1
        assert cli("pull", "-q", cwd=puller).code == 0
        _verify(cli, puller)
    _check_workspace(puller, p.v2)
    if gc_rev == "v2":  # its pointers moved without their data; its own gc dropped v1's
        r = cli("checkout", "-q", "--force", cwd=collector)
        assert r.code == 0, r.err
    _check_workspace(collector, p.v2 if gc_rev == "v2" else p.v1)
    _verify(cli, collector)


@pytest.mark.parametrize("op", ["add", "checkout", "push", "move", "remove", "gc"])
def test_library_ops_take_the_repository_lock_themselves(repo_dir, tmp_path, op):
    """issue 14: locking was decided in the CLI, so ops called from Python wrote while
    another process held the lock. Each op that writes takes it itself (and the CLI's
    own lock around an op is re-entrant: the CLI tests run every command that way)."""
    from dataver.errors import LockTimeout
    from dataver.ops.add import add
    from dataver.ops.core import checkout
    from dataver.ops.gc import gc
    from dataver.ops.move import move, remove
    from dataver.ops.sync import push
    from dataver.repo import Repo

    write(repo_dir / "w.bin", b"weights")
    assert cli_proc("add", "w.bin", cwd=repo_dir).returncode == 0
    assert cli_proc("remote", "add", "-d", "r", str(tmp_path / "store"), cwd=repo_dir).returncode == 0
    assert cli_proc("config", "core.lock_timeout", "0.5", cwd=repo_dir).returncode == 0
    calls = {
        "add": lambda r: add(r, ["w.bin"]),
        "checkout": lambda r: checkout(r),
        "push": lambda r: push(r),
        "move": lambda r: move(r, "w.bin", "v.bin"),
        "remove": lambda r: remove(r, ["w.bin"]),
        "gc": lambda r: gc(r),
    }
    before = sorted(p.name for p in repo_dir.iterdir())
    holder = _hold_lock(str(repo_dir / ".dataver" / "lock"))
    try:
        with Repo.find(str(repo_dir)) as repo:
            with pytest.raises(LockTimeout, match=f"held by PID {holder.pid}"):
                calls[op](repo)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in repo_dir.iterdir()) == before  # nothing written
    assert not (tmp_path / "store").exists()
    with Repo.find(str(repo_dir)) as repo:  # once the holder is gone, the same call goes ahead
        with repo.lock(cache_exclusive=op == "gc"):  # and inside a lock the caller holds (re-entrant)
            calls[op](repo)
