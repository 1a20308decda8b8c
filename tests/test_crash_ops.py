"""The SIGKILL harness over this stop's new write paths (issue 14): ``move``, ``remove
--purge``, ``import-url``, ``update`` of an import-url and ``checkout --previous``.

Each command is killed as it enters each of its file-system calls that publish, delete
or write (strace's fault injection, ``test_crash.TRAP_SYSCALLS``), one kill per run, in
a fresh repository each time. After every kill: no byte of user data is lost (it is at
the old place, the new place, or in the cache under the pointer that names it), every
pointer file parses; then the same command run again finishes the job, the end state is
exactly the one an uninterrupted run leaves, and no dataver temporary is left behind.
The default suite kills at the first and the last call of each kind; ``-m slow`` at
every one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import git_commit, write
from test_crash import count_syscalls, dv, dv_ok, is_temp, run_and_kill_at, strace

from dataver.pointer import loads as load_pointer

pytestmark = pytest.mark.skipif(strace() is None, reason="needs strace to kill at file-system calls (CI installs it)")

KILL_AT = ("rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "write", "mkdir", "mkdirat")
SAMPLE_AT = ("rename", "unlink", "write")  # what publishes, deletes and fills: the default suite's kills
FILES = {"data/a.bin": os.urandom(3000), "data/sub/b.bin": os.urandom(5000), "data/c.txt": b"c\n" * 100}


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file outside .git and .dataver, less dataver's temporaries (checked apart)."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if rel.parts[0] in (".git", ".dataver") or not p.is_file() or is_temp(p.name):
            continue
        out[rel.as_posix()] = p.read_bytes()
    return out


def temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if is_temp(p.name) and ".git" not in p.parts]


def pointers_parse(root: Path) -> None:
    for p in root.rglob("*.dv"):
        if ".git" not in p.parts:
            load_pointer(p.read_bytes(), str(p))  # raises on a torn or half-written pointer


def data_somewhere(root: Path, names: dict[str, bytes], places: list[str]) -> None:
    """Each file's bytes are at one of ``places`` (folders or files), or checkout brings them back."""
    for rel, data in names.items():
        found = [(root / place / rel).read_bytes() for place in places if (root / place / rel).is_file()]
        if data in found:
            continue
        r = dv(root, "checkout", "--force")  # the pointer that names it must still bring it back
        found = [(root / place / rel).read_bytes() for place in places if (root / place / rel).is_file()]
        assert data in found, f"{rel} lost after a kill ({r.stderr})"


def sweep(make, args: tuple[str, ...], check_killed, rerun=None, full: bool = False) -> int:
    """Kill ``args`` at each of its trap calls in turn (a fresh repository each time),
    check, re-run, compare with an uninterrupted run's end state. Returns the kills.
    Not ``full`` (the default suite): the first and the last rename, unlink and write."""
    root = make()
    counts = count_syscalls(root, args)  # an uninterrupted run: its end state is the goal
    end = tree(root)
    assert temporaries(root) == []
    shutil.rmtree(root.parent)
    kills = 0
    for syscall in KILL_AT if full else SAMPLE_AT:
        count = counts.get(syscall, 0)
        for n in range(1, count + 1) if full else sorted({1, count} - {0}):
            root = make()
            if run_and_kill_at(root, args, syscall, n):
                kills += 1
                pointers_parse(root)
                check_killed(root)
                if tree(root) != end:  # killed before its work was done: a re-run finishes it
                    again = rerun(root) if rerun is not None else args
                    r = dv(root, *again)
                    assert r.returncode == 0, f"re-run after a kill at {syscall} #{n}: {r.stderr}"
            assert tree(root) == end, f"after a kill at {syscall} #{n}"
            assert temporaries(root) == [], f"after a kill at {syscall} #{n}"
            shutil.rmtree(root.parent)
    return kills


@pytest.fixture
def base(tmp_path):
    counter = iter(range(10_000))

    def make(extra=None) -> Path:
        root = tmp_path / f"r{next(counter)}" / "repo"
        root.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        dv_ok(root, "init")
        for rel, data in FILES.items():
            write(root / rel, data)
        write(root / "model.bin", b"model\n" * 500)
        dv_ok(root, "add", "data", "model.bin")
        git_commit(root, "tracked")
        if extra is not None:
            extra(root)
        return root

    return make


FULL = pytest.mark.parametrize("full", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["sample", "every"])


@FULL
def test_move_survives_sigkill(base, full):
    args = ("move", "data", "sets/train")

    def killed(root: Path) -> None:
        data_somewhere(root, {k[len("data/") :]: v for k, v in FILES.items()}, ["data", "sets/train"])

    kills = sweep(base, args, killed, full=full)
    assert kills >= 4


@FULL
def test_remove_purge_survives_sigkill(base, full):
    args = ("remove", "data", "model.bin", "--purge")

    def killed(root: Path) -> None:
        # the pointer goes last: while the data is (partly) gone, its pointer still names it
        if (root / "data.dv").exists():
            data_somewhere(root, {k[len("data/") :]: v for k, v in FILES.items()}, ["data"])

    def rerun(root: Path) -> tuple[str, ...]:  # the paths still tracked (a pointer of two may be gone)
        return ("remove", *[p for p in ("data", "model.bin") if (root / f"{p}.dv").exists()], "--purge")

    kills = sweep(base, args, killed, rerun, full=full)
    assert kills >= 4


@FULL
def test_import_url_and_its_update_survive_sigkill(base, tmp_path, full):
    upstream = tmp_path / "upstream"
    write(upstream / "x/one.bin", os.urandom(4000))
    write(upstream / "x/two.bin", os.urandom(6000))

    args = ("import-url", str(upstream / "x"), "-o", "imported")
    sweep(base, args, lambda root: None, full=full)  # killed: nothing of the user's to lose

    def imported(root: Path) -> None:  # each repository imports the same two files, then upstream gains a third
        (upstream / "x/three.bin").unlink(missing_ok=True)
        dv_ok(root, "import-url", str(upstream / "x"), "-o", "imported")
        write(upstream / "x/three.bin", b"three\n")
        os.utime(upstream / "x/three.bin", (1_700_000_000, 1_700_000_000))  # the same evidence every time

    args = ("update", "imported.dv")
    try:
        kills = sweep(lambda: base(imported), args, lambda root: pointers_parse(root), full=full)
    finally:
        (upstream / "x/three.bin").unlink(missing_ok=True)
    assert kills >= 2


@FULL
def test_checkout_previous_survives_sigkill(base, full):
    def gone(root: Path) -> None:  # a commit without model.bin.dv; the data still here
        (root / "model.bin.dv").unlink()
        git_commit(root, "model untracked")

    args = ("checkout", "--previous", "HEAD~1")

    kills = sweep(lambda: base(gone), args, lambda root: None, full=full)
    assert kills >= 1
