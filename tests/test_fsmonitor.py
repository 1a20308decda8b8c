"""watchman as a file-system monitor: status and re-add of a tracked folder that
watchman says is unchanged skip the scan, and every kind of change, a restarted
watchman, a turned-off or absent monitor fall back to a scan that stays correct.

A private watchman server runs for these tests (its own socket, state, log and pid
files in a temp folder); dataver reaches it through ``WATCHMAN_SOCK``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import age, make_tree, write

WATCHMAN = shutil.which("watchman")
UNCHANGED = "fsmonitor: data unchanged since the last scan (watchman)"


class Server:
    """A watchman server of its own, started in the foreground and stopped by PID."""

    def __init__(self, where: Path):
        where.mkdir(parents=True, exist_ok=True)
        self.sock = str(where / "sock")
        files = {f"--{k}file": str(where / k) for k in ("state", "log", "pid")}
        self.proc = subprocess.Popen(
            [WATCHMAN, "--foreground", "--no-save-state", f"--sockname={self.sock}"]
            + [f"{k}={v}" for k, v in files.items()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while subprocess.run(self.cli("get-pid"), capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"watchman did not start: see {files['--logfile']}")
            time.sleep(0.05)

    def cli(self, *args: str) -> list[str]:
        return [WATCHMAN, f"--sockname={self.sock}", "--no-spawn", "--no-local", *args]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if WATCHMAN is None:
        pytest.skip("watchman is not installed (apt-get install watchman)")
    s = Server(tmp_path_factory.mktemp("watchman"))
    yield s
    s.stop()


@pytest.fixture
def monitored(server, monkeypatch, repo_dir, cli):
    """A repository with a tracked folder ``data`` whose watchman clock is recorded."""
    monkeypatch.setenv("WATCHMAN_SOCK", server.sock)
    monkeypatch.delenv("DATAVER_FSMONITOR")
    assert cli("config", "core.fsmonitor", "true").code == 0  # auto only uses a watch that exists
    files = make_tree(repo_dir / "data", 12, max_size=256)
    age(repo_dir / "data")
    assert cli("add", "data").code == 0  # the add's scan vouches for the folder: a clock is recorded
    # A clock taken while watchman still crawls a new watch can read as a fresh
    # instance: then this status scans and records another.
    cli("status")
    assert UNCHANGED in cli("status", "-v").err
    return files


def _status(cli) -> dict[str, str]:
    r = cli("status", "--json")
    assert r.code == 0, r.err
    return {rec["path"]: rec["state"] for rec in json.loads(r.out)}


def _changed(cli) -> dict[str, str]:
    verbose = cli("status", "-v")
    assert verbose.code == 0 and UNCHANGED not in verbose.err, verbose.err
    return {p: s for p, s in _status(cli).items() if s != "unchanged"}


def test_unchanged_folder_is_not_scanned(monitored, cli, monkeypatch):
    import dataver.workspace

    def no_scan(*args, **kwargs):
        raise AssertionError("scanned a folder watchman vouches for")

    monkeypatch.setattr(dataver.workspace, "scan_folder", no_scan)
    states = _status(cli)
    assert states == {f"data/{rel}": "unchanged" for rel in monitored}
    r = cli("status", "-v")
    assert r.code == 0 and UNCHANGED in r.err and "everything matches" in r.err
    monkeypatch.setattr("dataver.ops.add.scan_folder", no_scan)
    r = cli("add", "data")
    assert r.code == 0 and "up to date" in r.err and "0 hashed" in r.err


def test_same_size_edit_with_mtime_set_back(monitored, cli, repo_dir):
    rel = next(r for r, data in monitored.items() if data)
    p = repo_dir / "data" / rel
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[0] ^= 0xFF
    os.chmod(p, 0o644)
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # stat data as before but the ctime
    assert _changed(cli) == {f"data/{rel}": "modified"}


def test_created_file(monitored, cli, repo_dir):
    age(write(repo_dir / "data" / "sub1" / "new.bin", b"new"))
    assert _changed(cli) == {"data/sub1/new.bin": "added"}


def test_deleted_file(monitored, cli, repo_dir):
    rel = sorted(monitored)[3]
    (repo_dir / "data" / rel).unlink()
    assert _changed(cli) == {f"data/{rel}": "deleted"}


def test_renamed_file(monitored, cli, repo_dir):
    rel = sorted(monitored)[2]
    os.rename(repo_dir / "data" / rel, repo_dir / "data" / "renamed.bin")
    assert _changed(cli) == {f"data/{rel}": "deleted", "data/renamed.bin": "added"}


def test_made_executable(monitored, cli, repo_dir):
    rel = sorted(monitored)[1]
    p = repo_dir / "data" / rel
    st = p.stat()
    os.chmod(p, st.st_mode | 0o100)
    assert _changed(cli) == {f"data/{rel}": "modified"}


def test_rescan_records_a_new_clock(monitored, cli, repo_dir):
    rel = sorted(monitored)[0]
    (repo_dir / "data" / rel).unlink()
    assert "changed since the last scan" in cli("status", "-v").err
    assert cli("add", "data").code == 0
    assert UNCHANGED in cli("status", "-v").err
    assert f"data/{rel}" not in _status(cli)


def test_restarted_watchman_falls_back_to_a_scan(server, monkeypatch, repo_dir, cli, tmp_path):
    own = Server(tmp_path / "own-watchman")
    try:
        monkeypatch.setenv("WATCHMAN_SOCK", own.sock)
        monkeypatch.delenv("DATAVER_FSMONITOR")
        assert cli("config", "core.fsmonitor", "true").code == 0
        files = make_tree(repo_dir / "data", 8, max_size=128)
        age(repo_dir / "data")
        assert cli("add", "data").code == 0
        assert UNCHANGED in cli("status", "-v").err
        own.stop()
        own = Server(tmp_path / "own-watchman-again")  # a fresh instance: the recorded clock means nothing
        monkeypatch.setenv("WATCHMAN_SOCK", own.sock)
        rel = sorted(files)[0]
        (repo_dir / "data" / rel).unlink()
        r = cli("status", "-v")
        assert r.code == 0 and f"deleted:    data/{rel}" in r.out
        assert "watchman cannot tell what changed in data (fresh instance or recrawl); scanning data" in r.err
        age(write(repo_dir / "data" / rel, files[rel]))
        r = cli("status", "-v")
        assert "no watchman clock recorded for data" in r.err and "recorded a watchman clock for data" in r.err
        assert set(_status(cli).values()) == {"unchanged"}
        assert UNCHANGED in cli("status", "-v").err
    finally:
        own.stop()


def test_recrawl_falls_back_to_a_scan(monitored, cli, repo_dir, server):
    """After a recrawl (kernel events overflowed) a clock from before it is not trusted;
    one taken after it is, though watchman warns of the recrawl from then on."""
    rel = sorted(monitored)[0]
    (repo_dir / "data" / rel).unlink()
    subprocess.run(server.cli("debug-recrawl", str(repo_dir)), check=True, capture_output=True)
    r = cli("status", "-v")
    assert r.code == 0 and f"deleted:    data/{rel}" in r.out
    assert "watchman cannot tell what changed in data" in r.err
    age(write(repo_dir / "data" / rel, monitored[rel]))
    assert set(_status(cli).values()) == {"unchanged"}
    assert UNCHANGED in cli("status", "-v").err


def test_watchman_server_gone(monitored, cli, repo_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("WATCHMAN_SOCK", str(tmp_path / "no-such-sock"))
    rel = sorted(monitored)[0]
    (repo_dir / "data" / rel).unlink()
    r = cli("status", "-v")
    assert r.code == 0 and f"deleted:    data/{rel}" in r.out
    assert "fsmonitor: not used (watchman failed" in r.err


def test_config_false_scans(monitored, cli, repo_dir):
    assert cli("config", "core.fsmonitor", "false").code == 0
    r = cli("status", "-v")
    assert "not used (turned off by core.fsmonitor false); scanning data" in r.err
    assert cli("config", "core.fsmonitor", "sometimes").code != 0


def test_env_off_scans(monitored, cli, monkeypatch):
    monkeypatch.setenv("DATAVER_FSMONITOR", "0")
    assert "not used (turned off by DATAVER_FSMONITOR); scanning data" in cli("status", "-v").err


def test_watchman_absent_scans_and_says_why(monitored, cli, repo_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # holds no watchman
    rel = sorted(monitored)[0]
    (repo_dir / "data" / rel).unlink()
    r = cli("status", "-v")
    assert r.code == 0 and f"deleted:    data/{rel}" in r.out
    assert "fsmonitor: not used (watchman not installed); scanning data" in r.err
    assert cli("config", "core.fsmonitor", "true").code == 0
    assert "fsmonitor: not used (watchman not installed)" in cli("status").err  # said without -v when asked for


def test_symlink_inside_is_never_vouched(server, monkeypatch, repo_dir, cli):
    monkeypatch.setenv("WATCHMAN_SOCK", server.sock)
    monkeypatch.delenv("DATAVER_FSMONITOR")
    assert cli("config", "core.fsmonitor", "true").code == 0
    age(write(repo_dir / "outside.txt", "one"))
    make_tree(repo_dir / "data", 4, max_size=64)
    os.symlink("../outside.txt", repo_dir / "data" / "link.txt")
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    r = cli("status", "-v")
    assert "it holds symbolic links" in r.err and UNCHANGED not in r.err
    write(repo_dir / "outside.txt", "two")  # changes what the link leads to; no event inside data
    assert _changed(cli) == {"data/link.txt": "modified"}


def test_auto_uses_only_a_watch_that_exists(server, monkeypatch, repo_dir, cli):
    """core.fsmonitor auto (the default) never starts watchman or makes a watch (a crawl
    of the whole repository): it says how to opt in, and uses a watch once one exists."""
    monkeypatch.setenv("WATCHMAN_SOCK", server.sock)
    monkeypatch.delenv("DATAVER_FSMONITOR")
    make_tree(repo_dir / "data", 6, max_size=64)
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    r = cli("status", "-v")
    assert "fsmonitor: not used (watchman does not watch this repository" in r.err
    assert "dataver config core.fsmonitor true" in r.err
    listed = subprocess.run(server.cli("watch-list"), capture_output=True, text=True)
    assert str(os.path.realpath(repo_dir)) not in listed.stdout  # no watch was made
    assert subprocess.run(server.cli("watch-project", str(repo_dir)), capture_output=True).returncode == 0
    cli("status")  # this scan vouches and records a clock
    assert UNCHANGED in cli("status", "-v").err
