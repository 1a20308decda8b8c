"""Two dataver processes at once: the locks serialise them, name the holder, time
out cleanly, and a killed holder never leaves a stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pygit2
from conftest import cli_proc, make_tree, write

from dataver.errors import LockTimeout
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
