"""A path inside a tracked folder wherever a path is taken (issue 14; DVC's granular
targets): checkout, pull, fetch, push and status of ``data/train.csv`` or
``data/images`` touch that part only. Real repositories, a real folder remote; the
bytes, the cache's and the remote's objects are checked."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import age, git_commit, write

from dataver.errors import PathError

FILES = {
    "train.csv": b"a,b\n1,2\n",
    "test.csv": b"a,b\n3,4\n",
    "images/cat.png": b"\x89PNG cat" * 50,
    "images/dog.png": b"\x89PNG dog" * 50,
    "images/deep/bird.png": b"\x89PNG bird" * 50,
    "run.sh": b"#!/bin/sh\necho hi\n",
}


def objects_under(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and ("xxh3-128" in p.parts or p.suffix == ".pack"))


@pytest.fixture
def project(repo_dir, cli, tmp_path) -> Path:
    for rel, data in FILES.items():
        write(repo_dir / "data" / rel, data)
    os.chmod(repo_dir / "data/run.sh", 0o755)
    age(repo_dir / "data")
    assert cli("remote", "add", "-d", "store", str(tmp_path / "store")).code == 0
    assert cli("add", "data", "-q").code == 0
    git_commit(repo_dir, "v1")
    subprocess.run(["git", "tag", "v1"], cwd=repo_dir, check=True)
    return repo_dir


def test_checkout_one_file_of_a_folder(project, cli):
    for rel in ("train.csv", "test.csv", "run.sh"):
        (project / "data" / rel).unlink()
    r = cli("checkout", "data/train.csv", "data/run.sh", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["created"] == 2
    assert (project / "data/train.csv").read_bytes() == FILES["train.csv"]
    assert os.stat(project / "data/run.sh").st_mode & stat.S_IXUSR  # the manifest's executable bit
    assert not (project / "data/test.csv").exists()  # not named: left alone
    assert [ln.split() for ln in cli("status").out.splitlines()] == [["deleted:", "data/test.csv"]]


def test_checkout_a_subfolder_leaves_the_rest_and_extra_files(project, cli):
    shutil.rmtree(project / "data/images")
    (project / "data/test.csv").unlink()
    write(project / "data/images/mine.png", b"a file the manifest lacks\n")
    assert cli("checkout", "data/images", "-q").code == 0
    for rel in ("images/cat.png", "images/dog.png", "images/deep/bird.png"):
        assert (project / "data" / rel).read_bytes() == FILES[rel]
    assert (project / "data/images/mine.png").exists()  # a part's checkout deletes nothing
    assert not (project / "data/test.csv").exists()


def test_checkout_rev_of_one_file(project, cli):
    write(project / "data/train.csv", b"a,b\n9,9\n")
    write(project / "data/test.csv", b"a,b\n8,8\n")
    assert cli("add", "data", "-q").code == 0
    assert cli("checkout", "--rev", "v1", "data/train.csv", "-q").code == 0
    assert (project / "data/train.csv").read_bytes() == FILES["train.csv"]
    assert (project / "data/test.csv").read_bytes() == b"a,b\n8,8\n"


def test_status_of_a_part(project, cli):
    write(project / "data/images/cat.png", b"changed")
    write(project / "data/train.csv", b"changed too")
    r = cli("status", "data/images", "--json")
    assert r.code == 0, r.err
    assert {x["path"]: x["state"] for x in json.loads(r.out)} == {
        "data/images/cat.png": "modified",
        "data/images/deep/bird.png": "unchanged",
        "data/images/dog.png": "unchanged",
    }
    assert cli("status", "data/test.csv").out == ""


def test_pull_one_file_in_a_fresh_clone_fetches_that_file_only(project, cli, tmp_path):
    assert cli("push", "-q").code == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    r = cli("pull", "data/images/deep/bird.png", "--json", cwd=clone)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["transferred"] == 1 and out["created"] == 1, out  # the blob (the manifest came first)
    assert (clone / "data/images/deep/bird.png").read_bytes() == FILES["images/deep/bird.png"]
    assert sorted(p.name for p in (clone / "data").rglob("*") if p.is_file()) == ["bird.png"]
    assert objects_under(clone / ".dataver/cache") == 2  # the manifest and one blob
    assert "data/images/deep/bird.png" not in cli("status", cwd=clone).out


def test_fetch_a_part_brings_its_blobs_only(project, cli, tmp_path):
    assert cli("push", "-q").code == 0
    shutil.rmtree(project / ".dataver/cache")
    r = cli("fetch", "data/images", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["transferred"] == 3
    assert objects_under(project / ".dataver/cache") == 4  # manifest + 3 images


def test_push_a_part_sends_its_blobs_and_the_folders_manifest(project, cli, tmp_path):
    r = cli("push", "data/train.csv", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["transferred"] == 2  # the file, and the manifest another clone reads first
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    r = cli("pull", "data/train.csv", "-q", cwd=clone)  # works from what that push sent
    assert r.code == 0, r.err
    assert (clone / "data/train.csv").read_bytes() == FILES["train.csv"]


def test_a_path_the_manifest_does_not_list(project, cli):
    r = cli("checkout", "data/nothere.csv")
    assert r.code == PathError.exit_code and "data/nothere.csv is not in data" in r.err, r.err


def test_a_part_of_a_folder_named_with_it_is_the_folder(project, cli):
    (project / "data/test.csv").unlink()
    r = cli("checkout", "data", "data/train.csv", "--json")
    assert r.code == 0, r.err
    assert (project / "data/test.csv").read_bytes() == FILES["test.csv"]


def test_diff_of_a_part(project, cli):
    write(project / "data/images/cat.png", b"a new cat")
    write(project / "data/train.csv", b"a,b\n5,6\n")
    write(project / "data/images/new.png", b"new")
    age(project / "data")
    assert cli("add", "data", "-q").code == 0
    r = cli("diff", "v1", "-p", "data/images", "--json")
    assert r.code == 0, r.err
    assert {c["path"]: c["change"] for c in json.loads(r.out)} == {
        "data/images/cat.png": "modified",
        "data/images/new.png": "added",
    }
    r = cli("diff", "v1", "HEAD", "-p", "data/train.csv", "--json")  # v1 is HEAD: nothing changed between them
    assert r.code == 0 and json.loads(r.out) == []
    assert [c["path"] for c in json.loads(cli("diff", "v1", "-p", "data/train.csv", "--json").out)] == [
        "data/train.csv"
    ]
