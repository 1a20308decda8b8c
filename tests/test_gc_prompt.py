"""gc's prompt on a real terminal (a pseudo-terminal): "n" is an answer (exit 0,
"nothing removed"), Ctrl-C is an interruption (exit 130, the documented code), "y"
removes; the first two leave every object where it was (issue 14, defect 2)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write

from dataver.errors import EXIT_CODES


def objects(repo: Path) -> set[str]:
    root = repo / ".dataver" / "cache"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "xxh3-128" in p.parts}


@pytest.fixture
def garbage(repo_dir, cli) -> Path:
    """One object no pointer references any more (the old version of a re-added file)."""
    write(repo_dir / "f.txt", b"old version\n")
    assert cli("add", "f.txt", "-q").code == 0
    write(repo_dir / "f.txt", b"new version\n")
    assert cli("add", "f.txt", "-q").code == 0
    return repo_dir


def run_at_prompt(repo: Path, answer: bytes | None) -> tuple[int, str]:
    """``dataver gc`` on a pseudo-terminal: wait for its question, then type ``answer``
    (None: press Ctrl-C, which the terminal turns into SIGINT for the process)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataver", "gc"],
        cwd=repo,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,  # its own session: the terminal is its controlling one
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"[y/N]" not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([leader], [], [], 1)
            if ready:
                seen += os.read(leader, 4096)
        # A person answers after reading the question; a signal in the microseconds before
        # GNU readline (input() on a terminal) waits for the key can be lost by readline.
        time.sleep(0.5)
        if answer is None:
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal's Ctrl-C sends to its foreground group
        else:
            os.write(leader, answer + b"\n")
        code = proc.wait(timeout=20)
        while True:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other side is closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    return code, seen.decode(errors="replace")


def test_answering_no_removes_nothing_and_exits_0(garbage):
    before = objects(garbage)
    code, out = run_at_prompt(garbage, b"n")
    assert code == 0, out
    assert "nothing removed" in out and "interrupted" not in out and "Traceback" not in out
    assert objects(garbage) == before


def test_ctrl_c_at_the_prompt_exits_130_and_removes_nothing(garbage):
    before = objects(garbage)
    code, out = run_at_prompt(garbage, None)
    assert code == 130 and EXIT_CODES[130][0] == "interrupted", out
    assert "interrupted" in out and "Traceback" not in out
    assert objects(garbage) == before


def test_answering_yes_removes_the_garbage(garbage):
    before = objects(garbage)
    code, out = run_at_prompt(garbage, b"y")
    assert code == 0, out
    after = objects(garbage)
    assert len(after) == len(before) - 1 and after < before
    assert (garbage / "f.txt").read_bytes() == b"new version\n"
