"""``dataver move`` and ``dataver remove`` (issue 14): the data, the pointer and the
.gitignore line move or go together; a hand-made ``mv`` left a stale ``/data`` line.
Real git repositories; the bytes, the pointer files and .gitignore are checked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import age, git_commit, make_tree, write

from dataver.errors import PathError, WouldLoseData


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def git_status(root: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def tracked(repo_dir, cli) -> dict:
    files = make_tree(repo_dir / "data", n_files=12)
    write(repo_dir / "model.bin", b"weights\n" * 100)
    write(repo_dir / ".gitignore", "*.log\n")  # the user's own line, kept
    age(repo_dir / "data")
    assert cli("add", "data", "model.bin", "-q").code == 0
    git_commit(repo_dir, "track")
    return files


def test_move_a_folder_moves_data_pointer_and_gitignore(repo_dir, cli, tracked):
    pointer = (repo_dir / "data.dv").read_bytes()
    r = cli("move", "data", "sets/train")
    assert r.code == 0, r.err
    assert not (repo_dir / "data").exists() and not (repo_dir / "data.dv").exists()
    assert {
        str(p.relative_to(repo_dir / "sets/train")) for p in (repo_dir / "sets/train").rglob("*") if p.is_file()
    } == set(tracked)
    for rel, data in tracked.items():
        assert (repo_dir / "sets/train" / rel).read_bytes() == data
    assert (repo_dir / "sets/train.dv").read_bytes() == pointer  # the content did not change
    assert lines(repo_dir / ".gitignore") == ["*.log", "/model.bin"]
    assert lines(repo_dir / "sets/.gitignore") == ["/train"]
    assert "next: git add data.dv sets/train.dv .gitignore sets/.gitignore" in r.err
    # the stat cache moved with the data: a re-add at the new place reads no file
    r = cli("add", "sets/train", "--json")
    assert r.code == 0 and json.loads(r.out)[0]["hashed"] == 0 and not json.loads(r.out)[0]["changed"], r.out
    assert cli("status").out == ""
    subprocess.run(["git", "add", "-A"], cwd=repo_dir, check=True)
    assert "sets/train/" not in git_status(repo_dir)


def test_move_into_an_existing_folder_and_a_file(repo_dir, cli, tracked):
    (repo_dir / "models").mkdir()
    assert cli("move", "model.bin.dv", "models", "-q").code == 0  # the .dv names it too
    assert (repo_dir / "models/model.bin").read_bytes() == b"weights\n" * 100
    assert (repo_dir / "models/model.bin.dv").is_file() and not (repo_dir / "model.bin.dv").exists()
    assert lines(repo_dir / "models/.gitignore") == ["/model.bin"]
    assert lines(repo_dir / ".gitignore") == ["*.log", "/data"]
    assert cli("status").out == ""
    assert cli("checkout").code == 0


def test_move_of_a_pointer_whose_data_is_not_here(repo_dir, cli, tracked):
    """A fresh clone before pull: only the pointer moves, and checkout brings the data."""
    (repo_dir / "model.bin").unlink()
    r = cli("move", "model.bin", "weights.bin", "--json")
    assert r.code == 0 and json.loads(r.out) == {"source": "model.bin", "dest": "weights.bin", "moved_data": False}
    assert cli("checkout", "weights.bin").code == 0
    assert (repo_dir / "weights.bin").read_bytes() == b"weights\n" * 100


@pytest.mark.parametrize(
    "dest, why",
    [
        ("model.bin", "where model.bin already is"),
        ("data/inside.bin", "inside the tracked folder data"),
        (".git/x", ".git"),
        ("../outside.bin", "outside"),
        ("taken.txt", "already exists"),
    ],
)
def test_move_refuses_and_changes_nothing(repo_dir, cli, tracked, dest, why):
    write(repo_dir / "taken.txt", b"someone's file\n")
    before = {p: p.read_bytes() for p in repo_dir.rglob("*") if p.is_file() and ".git" not in p.parts}
    r = cli("move", "model.bin", dest)
    assert r.code == PathError.exit_code and why in r.err and "Traceback" not in r.err, r.err
    after = {p: p.read_bytes() for p in repo_dir.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert after == before


def test_move_refuses_a_folder_into_itself(repo_dir, cli, tracked):
    r = cli("move", "data", "data/sub/deeper")
    assert r.code == PathError.exit_code and "into itself" in r.err


def test_a_move_killed_after_the_new_pointer_finishes_when_run_again(repo_dir, cli, tracked):
    """The state a kill between the steps leaves: the new pointer written (and its
    .gitignore line), the data and the old pointer still at the old place."""
    write(repo_dir / "sets/train.dv", (repo_dir / "data.dv").read_bytes())
    write(repo_dir / "sets/.gitignore", "/train\n")
    assert cli("move", "data", "sets/train", "-q").code == 0
    assert not (repo_dir / "data").exists() and not (repo_dir / "data.dv").exists()
    assert (repo_dir / "sets/train").is_dir() and cli("status").out == ""
    # killed after the rename: the data is at the new place, the old pointer still there
    os.rename(repo_dir / "sets/train", repo_dir / "sets/again")
    write(repo_dir / "sets/again.dv", (repo_dir / "sets/train.dv").read_bytes())
    assert cli("move", "sets/train", "sets/again", "-q").code == 0
    assert not (repo_dir / "sets/train.dv").exists() and cli("status").out == ""


def test_remove_keeps_the_data_and_cleans_gitignore(repo_dir, cli, tracked):
    r = cli("remove", "data.dv", "model.bin")
    assert r.code == 0, r.err
    assert not (repo_dir / "data.dv").exists() and not (repo_dir / "model.bin.dv").exists()
    assert (repo_dir / "model.bin").read_bytes() == b"weights\n" * 100
    assert all((repo_dir / "data" / rel).read_bytes() == data for rel, data in tracked.items())
    assert lines(repo_dir / ".gitignore") == ["*.log"]  # the user's line stays
    assert "data kept, untracked" in r.err and "next: git add data.dv model.bin.dv .gitignore" in r.err
    assert "?? model.bin" in git_status(repo_dir)  # git sees the data now: nothing hides it


def test_remove_deletes_a_gitignore_left_empty(repo_dir, cli):
    write(repo_dir / "sub/x.bin", b"x\n")
    assert cli("add", "sub/x.bin", "-q").code == 0
    assert lines(repo_dir / "sub/.gitignore") == ["/x.bin"]
    assert cli("remove", "sub/x.bin", "-q").code == 0
    assert not (repo_dir / "sub/.gitignore").exists()


def test_remove_purge_deletes_data_whose_bytes_are_cached(repo_dir, cli, tracked):
    r = cli("remove", "data", "--purge")
    assert r.code == 0, r.err
    assert not (repo_dir / "data").exists() and "deleted data" in r.err
    # the objects stay in the cache: the committed pointer still checks out
    subprocess.run(["git", "checkout", "--", "data.dv"], cwd=repo_dir, check=True)
    assert cli("checkout", "data", "-q").code == 0
    assert all((repo_dir / "data" / rel).read_bytes() == data for rel, data in tracked.items())


def test_remove_purge_refuses_unsaved_changes(repo_dir, cli, tracked):
    edited = next(iter(tracked))
    write(repo_dir / "data" / edited, b"an edit never added\n")
    r = cli("remove", "data", "model.bin", "--purge")
    assert r.code == WouldLoseData.exit_code and f"data/{edited}" in r.err, r.err
    assert (repo_dir / "data" / edited).read_bytes() == b"an edit never added\n"
    assert (repo_dir / "data.dv").exists() and (repo_dir / "model.bin.dv").exists()  # nothing was removed
    assert (repo_dir / "model.bin").exists()
    r = cli("remove", "data", "--purge", "--force")
    assert r.code == 0 and not (repo_dir / "data").exists()


def test_remove_of_an_untracked_path_is_exit_4(repo_dir, cli, tracked):
    r = cli("remove", "nothere.bin")
    assert r.code == PathError.exit_code and "not tracked" in r.err


def test_remove_purge_keeps_what_the_pointer_never_tracked(repo_dir, cli):
    """A file .dataverignore hides, and a nested repository, are not the pointer's to delete."""
    write(repo_dir / "data/a.bin", b"a\n")
    write(repo_dir / "data/.dataverignore", "notes.txt\n")
    assert cli("add", "data", "-q").code == 0
    write(repo_dir / "data/notes.txt", b"my notes, never tracked\n")
    write(repo_dir / "data/sub/.git/HEAD", b"ref: refs/heads/main\n")
    r = cli("remove", "data", "--purge", "--json")
    assert r.code == 0, r.err
    (out,) = json.loads(r.out)
    assert out["purged"] and "data/notes.txt" in out["kept"]
    assert (repo_dir / "data/notes.txt").read_bytes() == b"my notes, never tracked\n"
    assert (repo_dir / "data/sub/.git/HEAD").exists()
    assert not (repo_dir / "data/a.bin").exists() and not (repo_dir / "data/.dataverignore").exists()
