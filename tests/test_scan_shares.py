"""A big folder's prints-only scan shared out to other processes (``workspace._scan_shares``,
``python -m dataver.scanshare``) gives exactly the scan one process gives: the same
prints, totals, fingerprint, temporaries, reserved names and pointer-like files; the
same user errors; and a share whose process cannot run is listed by this one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import age, write

import dataver.workspace as ws
from dataver.errors import SymlinkLoop


def make_tree(root: Path) -> None:
    for d in range(12):
        for i in range(5):
            write(root / f"d{d:02d}" / f"f{i}.bin", f"{d}/{i}\n" * (i + 1))
        write(root / f"d{d:02d}" / "deeper" / "x" / "leaf.bin", f"leaf {d}\n")
    write(root / "top.bin", b"top\n")
    write(root / "d04" / "données été.bin", b"non-ASCII names cross the pipe\n")
    write(root / "d03" / ".f1.bin.dataver-tmp-0123abcd", b"a leftover")  # a temporary: never data
    write(root / "d07" / ".git" / "config", b"[core]\n")  # a nested repository's: never data
    write(root / "d09" / "stray.dv", b"not a pointer\n")  # named like one
    os.symlink("f0.bin", root / "d05" / "link.bin")  # a link inside the folder: followed
    age(root)


def scan_of(root: Path, monkeypatch, processes: str):
    monkeypatch.setenv("DATAVER_SCAN_PROCESSES", processes)
    return ws.scan_folder(str(root), "data", keep=False)


def summary(scan) -> dict:
    prints = scan.prints()
    return {
        "fingerprint": scan.fingerprint(),
        "dirs": {k: (d.own, sorted(d.subdirs), d.racy, d.files, d.size, d.combined) for k, d in prints.items()},
        "temporaries": sorted(scan.temporaries),
        "reserved": sorted(scan.reserved),
        "pointer_like": sorted(scan.pointer_like),
    }


@pytest.fixture
def shared(monkeypatch):
    """Share even a small folder: every folder once two are waiting per process."""
    monkeypatch.setattr(ws, "SHARE_MIN_FILES", 0)
    monkeypatch.setattr(ws, "SHARE_DIRS_PER_PROCESS", 2)
    answers: list[tuple] = []
    real = ws.merge_share

    def merged(scan, answer):
        answers.append(answer)
        return real(scan, answer)

    monkeypatch.setattr(ws, "merge_share", merged)
    return answers


@pytest.mark.parametrize("processes", ["2", "3", "5"])
def test_a_shared_scan_equals_one_process(tmp_path, monkeypatch, shared, processes):
    make_tree(tmp_path / "data")
    one = summary(scan_of(tmp_path / "data", monkeypatch, "1"))
    assert not shared
    many = summary(scan_of(tmp_path / "data", monkeypatch, processes))
    assert len(shared) == int(processes) - 1 and all(a[0] == "ok" for a in shared)
    assert many == one
    # files: 5 and a leaf per folder; top, données, the link, stray.dv
    assert one["fingerprint"] is not None and one["dirs"][""][3] == 12 * 6 + 4
    assert one["temporaries"] == ["d03/.f1.bin.dataver-tmp-0123abcd"]
    assert one["reserved"] == ["d07/.git"] and one["pointer_like"] == ["d09/stray.dv"]


def test_a_change_in_a_shared_part_changes_the_fingerprint(tmp_path, monkeypatch, shared):
    make_tree(tmp_path / "data")
    before = summary(scan_of(tmp_path / "data", monkeypatch, "3"))
    leaf = tmp_path / "data" / "d11" / "deeper" / "x" / "leaf.bin"
    old = leaf.stat().st_mtime_ns
    write(leaf, b"leaf 11\n")  # same size, new bytes
    os.utime(leaf, ns=(old - 10**9, old - 10**9))  # the other files' times stay as they were
    after = summary(scan_of(tmp_path / "data", monkeypatch, "3"))
    assert after["fingerprint"] != before["fingerprint"]
    changed = {k for k in before["dirs"] if before["dirs"][k][0] != after["dirs"][k][0]}
    assert changed == {"d11/deeper/x/"}


def test_a_symlink_loop_met_by_another_process_is_the_same_error(tmp_path, monkeypatch, shared):
    make_tree(tmp_path / "data")
    for d in range(12):  # in every share, so another process meets one
        os.symlink("../..", tmp_path / "data" / f"d{d:02d}" / "deeper" / "up")
    with pytest.raises(SymlinkLoop) as one:
        scan_of(tmp_path / "data", monkeypatch, "1")
    with pytest.raises(SymlinkLoop) as many:
        scan_of(tmp_path / "data", monkeypatch, "4")
    assert "is a symbolic link loop" in str(many.value) and str(many.value).startswith("data/d")
    assert type(one.value) is type(many.value)


def test_the_share_process_answers_an_error_by_name(tmp_path):
    """What ``python -m dataver.scanshare`` itself writes for a share that meets a loop."""
    import marshal

    make_tree(tmp_path / "data")
    os.symlink("..", tmp_path / "data" / "d01" / "up")
    top = os.stat(tmp_path / "data")
    sub = os.stat(tmp_path / "data" / "d01")
    ancestors = frozenset({(top.st_dev, top.st_ino), (sub.st_dev, sub.st_ino)})
    share = [(str(tmp_path / "data" / "d01"), "d01/", ancestors, ())]
    job = marshal.dumps((ws.share_job(share), "data", None, [], 0))
    out = subprocess.run([sys.executable, "-m", "dataver.scanshare"], input=job, capture_output=True, check=True)
    answer = marshal.loads(out.stdout)
    assert answer[0] == "error" and answer[1] == "SymlinkLoop" and "data/d01/up" in answer[2], answer
    with pytest.raises(SymlinkLoop):
        ws.merge_share(ws.FolderScan(), answer)


@pytest.mark.parametrize("python", ["/nonexistent/python", "/bin/false"])
def test_a_share_whose_process_cannot_run_is_listed_here(tmp_path, monkeypatch, shared, python):
    make_tree(tmp_path / "data")
    one = summary(scan_of(tmp_path / "data", monkeypatch, "1"))
    monkeypatch.setattr(sys, "executable", python)
    assert summary(scan_of(tmp_path / "data", monkeypatch, "3")) == one
    assert not shared  # no process answered: this one listed every share


def test_status_of_a_big_folder_through_shares(repo_dir, cli, monkeypatch, shared):
    """Through the CLI: status finds a change that another process's share holds, and
    says nothing more."""
    monkeypatch.setenv("DATAVER_SCAN_PROCESSES", "3")
    monkeypatch.setattr(ws, "STREAM_FILES", 10)
    make_tree(repo_dir / "data")
    assert cli("add", "data", "-q").code == 0
    assert cli("status").out == ""
    for d in range(12):
        write(repo_dir / "data" / f"d{d:02d}" / "deeper" / "x" / "leaf.bin", f"LEAF {d}\n")
    age(repo_dir / "data")
    shared.clear()
    r = cli("status")
    assert r.code == 0
    assert r.out.split() == [w for d in range(12) for w in ("modified:", f"data/d{d:02d}/deeper/x/leaf.bin")]
    assert shared and all(a[0] == "ok" for a in shared)
