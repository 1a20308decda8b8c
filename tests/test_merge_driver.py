"""Merging pointer files (issue 14): ``dataver install`` sets a git merge driver for
``*.dv``; two branches that changed different files of one tracked folder merge
cleanly with real ``git merge``; a real conflict names the files, leaves a valid
pointer (every command still works) and ``status`` explains it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write
from history_helpers import dv, dv_ok, git, snapshot

BASE = {"data/a.txt": b"a base\n", "data/b.txt": b"b base\n", "data/c.txt": b"c base\n"}


@pytest.fixture
def repo(tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=root)
    dv_ok("init", cwd=root)
    dv_ok("install", cwd=root)
    for rel, data in BASE.items():
        write(root / rel, data)
    dv_ok("add", "data", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", "base", cwd=root)
    return root


def data_of(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(root).items() if k.startswith("data/")}


def change(root: Path, branch: str, files: dict[str, bytes | None], new: bool = True) -> None:
    git("checkout", "--quiet", *(["-b"] if new else []), branch, cwd=root)
    for rel, data in files.items():
        if data is None:
            (root / rel).unlink()
        else:
            write(root / rel, data)
    dv_ok("add", "data", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", branch, cwd=root)


def test_install_sets_the_driver_and_gitattributes(repo):
    assert (repo / ".gitattributes").read_text() == "*.dv merge=dataver\n"
    assert "merge-driver %O %A %B %P" in git("config", "merge.dataver.driver", cwd=repo).stdout
    r = dv_ok("install", cwd=repo)
    assert "merge driver for *.dv: already installed" in r.err
    assert (repo / ".gitattributes").read_text() == "*.dv merge=dataver\n"


def test_changes_to_different_files_merge_cleanly(repo):
    change(repo, "left", {"data/a.txt": b"a left\n", "data/new-left.txt": b"added on the left\n"})
    git("checkout", "--quiet", "main", cwd=repo)
    change(repo, "right", {"data/b.txt": b"b right\n", "data/c.txt": None})
    r = git("merge", "--quiet", "--no-edit", "left", cwd=repo, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert data_of(repo) == {  # post-merge checked the merged data out
        "data/a.txt": b"a left\n",
        "data/b.txt": b"b right\n",
        "data/new-left.txt": b"added on the left\n",
    }
    assert git("status", "--porcelain", cwd=repo).stdout == ""
    assert dv("status", cwd=repo).out == ""
    assert dv("verify", cwd=repo).code == 0
    listed = json.loads(dv("ls", "data", "--json", cwd=repo).out)
    assert sorted(x["path"] for x in listed) == ["data/a.txt", "data/b.txt", "data/new-left.txt"]


def test_the_same_change_on_both_sides_merges(repo):
    change(repo, "left", {"data/a.txt": b"same edit\n"})
    git("checkout", "--quiet", "main", cwd=repo)
    change(repo, "right", {"data/a.txt": b"same edit\n", "data/b.txt": b"b right\n"})
    assert git("merge", "--quiet", "--no-edit", "left", cwd=repo, check=False).returncode == 0
    assert data_of(repo)["data/a.txt"] == b"same edit\n" and data_of(repo)["data/b.txt"] == b"b right\n"


def test_a_real_conflict_names_the_files_and_status_explains(repo):
    change(repo, "left", {"data/a.txt": b"a left\n", "data/b.txt": b"b left\n"})
    git("checkout", "--quiet", "main", cwd=repo)
    change(repo, "right", {"data/a.txt": b"a right\n", "data/b.txt": None, "data/c.txt": b"c right\n"})
    ours = (repo / "data.dv").read_bytes()
    r = git("merge", "--no-edit", "left", cwd=repo, check=False)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "dataver: cannot merge data.dv: 2 file(s) changed differently on each side" in out, out
    assert "data/a.txt (changed on both sides)" in out
    assert "data/b.txt (deleted on one side, changed on the other)" in out
    assert (repo / "data.dv").read_bytes() == ours  # our valid pointer, not conflict markers
    s = dv("status", cwd=repo)
    assert s.code == 0 and "unmerged:   data.dv" in s.out, (s.out, s.err)
    assert "data/a.txt (changed on both sides)" in s.err and "git checkout --ours/--theirs data.dv" in s.err
    records = json.loads(dv("status", "--json", cwd=repo).out)
    (u,) = [x for x in records if x["state"] == "unmerged"]
    assert u["path"] == "data.dv" and len(u["conflicts"]) == 2
    # resolving as the hint says: take theirs, stage it, check the data out
    git("checkout", "--theirs", "data.dv", cwd=repo)
    git("add", "data.dv", cwd=repo)
    dv_ok("checkout", "--force", cwd=repo)
    assert data_of(repo)["data/a.txt"] == b"a left\n"
    git("commit", "--quiet", "--no-edit", cwd=repo)
    assert "unmerged" not in dv("status", cwd=repo).out


def test_a_single_file_changed_on_both_sides_is_a_conflict(repo):
    write(repo / "model.bin", b"model base\n")
    dv_ok("add", "model.bin", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", "model", cwd=repo)
    for branch, data in (("left", b"model left\n"), ("right", b"model right\n")):
        git("checkout", "--quiet", "-b", branch, "main", cwd=repo)
        write(repo / "model.bin", data)
        dv_ok("add", "model.bin", cwd=repo)
        git("add", "-A", cwd=repo)
        git("commit", "--quiet", "-m", branch, cwd=repo)
    r = git("merge", "--no-edit", "left", cwd=repo, check=False)
    assert r.returncode != 0
    assert "model.bin changed on both sides, and a file cannot be merged" in r.stdout + r.stderr


def test_the_driver_never_imports_a_repositorys_own_dataver_package(repo):
    """git runs the driver in the repository: 'python -m dataver' would import a committed
    dataver/ (or typer/) package from there first, running a stranger's code on merge."""
    marker = repo.parent / "owned"
    for pkg in ("dataver", "typer"):
        write(repo / pkg / "__init__.py", f"open({str(marker)!r}, 'w').write('{pkg}')\n")
    git("add", "-A", cwd=repo)
    git("commit", "--quiet", "-m", "a hostile package", cwd=repo)
    change(repo, "left", {"data/a.txt": b"a left\n"})
    git("checkout", "--quiet", "main", cwd=repo)
    change(repo, "right", {"data/b.txt": b"b right\n"})
    r = git("merge", "--quiet", "--no-edit", "left", cwd=repo, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not marker.exists(), marker.read_text()
    assert data_of(repo)["data/a.txt"] == b"a left\n" and data_of(repo)["data/b.txt"] == b"b right\n"
