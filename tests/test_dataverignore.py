"""``.dataverignore`` (issue 14): gitignore patterns, at any level, keep files that are
not data out of tracked folders; the manifest's digest changes only with the files they
admit; ``dataver check-ignore`` explains a decision. Real repositories, real files."""

from __future__ import annotations

import json
import os

from conftest import age, write

from dataver.pointer import loads as load_pointer

DATA = {"train.csv": b"a,b\n1,2\n", "img/cat.png": b"cat" * 100, "img/keep.tmp": b"kept by a ! line\n"}
NOISE = {
    ".DS_Store": b"finder",
    "img/.DS_Store": b"finder",
    "__pycache__/x.cpython-311.pyc": b"bytecode",
    "img/scratch.tmp": b"scratch",
    ".ipynb_checkpoints/nb-checkpoint.ipynb": b"{}",
}
ROOT_RULES = "# not data\n.DS_Store\n__pycache__/\n*.tmp\n!keep.tmp\n.ipynb_checkpoints/\n"


def digest(repo, name="data") -> str:
    return str(load_pointer((repo / f"{name}.dv").read_bytes()).digest)


def make(root, files) -> None:
    for rel, data in files.items():
        write(root / rel, data)


def test_ignored_files_are_not_data(repo_dir, cli):
    write(repo_dir / ".dataverignore", ROOT_RULES)
    make(repo_dir / "data", {**DATA, **NOISE})
    make(repo_dir / "clean", DATA)
    age(repo_dir)
    assert cli("add", "data", "clean", "-q").code == 0
    assert digest(repo_dir) == digest(repo_dir, "clean")  # the noise changed nothing
    listed = sorted(x["path"] for x in json.loads(cli("ls", "data", "--json").out))
    assert listed == ["data/img/cat.png", "data/img/keep.tmp", "data/train.csv"], listed
    assert load_pointer((repo_dir / "data.dv").read_bytes()).files == 3
    # more noise: status sees nothing, a re-add changes nothing
    write(repo_dir / "data/img/more.tmp", b"more scratch")
    write(repo_dir / "data/__pycache__/y.pyc", b"more bytecode")
    assert cli("status").out == ""
    before = digest(repo_dir)
    assert cli("add", "data", "-q").code == 0 and digest(repo_dir) == before
    # checkout never deletes an ignored file (the manifest does not list it: not "extra")
    (repo_dir / "data/train.csv").unlink()
    r = cli("checkout", "--json")
    assert r.code == 0 and json.loads(r.out)["deleted"] == 0, r.out
    assert (repo_dir / "data/img/scratch.tmp").read_bytes() == b"scratch"
    assert (repo_dir / "data/train.csv").read_bytes() == DATA["train.csv"]


def test_an_ignore_file_inside_a_folder_applies_below_it_and_is_data(repo_dir, cli):
    make(repo_dir / "data", {**DATA, "img/raw.bin": b"raw", "raw.bin": b"top raw"})
    write(repo_dir / "data/img/.dataverignore", "*.bin\n")
    assert cli("add", "data", "-q").code == 0
    listed = sorted(x["path"] for x in json.loads(cli("ls", "data", "--json").out))
    assert "data/raw.bin" in listed and "data/img/raw.bin" not in listed
    assert "data/img/.dataverignore" in listed  # the rules travel with the data


def test_nothing_below_an_ignored_folder_is_looked_at(repo_dir, cli):
    write(repo_dir / ".dataverignore", "junk/\n")
    make(repo_dir / "data", DATA)
    (repo_dir / "data/junk").mkdir()
    os.symlink("..", repo_dir / "data/junk/loop")  # would be a symbolic link loop, were it scanned
    os.symlink("/etc", repo_dir / "data/junk/outside")  # and a link out of the repository
    r = cli("add", "data", "-q")
    assert r.code == 0, r.err
    assert load_pointer((repo_dir / "data.dv").read_bytes()).files == 3


def test_a_big_folder_scanned_in_shares_ignores_the_same(repo_dir, cli, monkeypatch):
    import dataver.workspace as ws

    monkeypatch.setenv("DATAVER_SCAN_PROCESSES", "3")
    monkeypatch.setattr(ws, "SHARE_MIN_FILES", 0)
    monkeypatch.setattr(ws, "SHARE_DIRS_PER_PROCESS", 1)
    write(repo_dir / ".dataverignore", ROOT_RULES)
    for d in range(6):
        make(repo_dir / "data" / f"d{d}", {**DATA, **NOISE})
        make(repo_dir / "clean" / f"d{d}", DATA)
    write(repo_dir / "data/d3/.dataverignore", "cat.png\n")
    write(repo_dir / "clean/d3/.dataverignore", "cat.png\n")
    (repo_dir / "clean/d3/img/cat.png").unlink()
    age(repo_dir)
    assert cli("add", "data", "clean", "-q").code == 0
    assert digest(repo_dir) == digest(repo_dir, "clean")


def test_check_ignore_explains(repo_dir, cli):
    write(repo_dir / ".dataverignore", ROOT_RULES)
    write(repo_dir / "data/img/.dataverignore", "*.png\n")
    r = cli("check-ignore", "data/img/scratch.tmp", "data/img/cat.png", "data/train.csv", "data/img/keep.tmp")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        ".dataverignore:4:*.tmp\tdata/img/scratch.tmp",
        "data/img/.dataverignore:1:*.png\tdata/img/cat.png",
        ".dataverignore:5:!keep.tmp\tdata/img/keep.tmp",
    ]
    r = cli("check-ignore", "data/__pycache__/a/b.pyc", "--json")
    (d,) = json.loads(r.out)
    assert d["ignored"] and d["via"] == "data/__pycache__" and d["line"] == "__pycache__/"
    r = cli("check-ignore", "data/train.csv", "-n")
    assert r.code == 1 and r.out == "::\tdata/train.csv\n" and r.err == ""


def test_checkout_never_overwrites_an_edited_file_the_rules_now_hide(repo_dir, cli):
    """The manifest lists notes.txt; a .dataverignore added later hides it; the user edits
    it. The scan does not see it, so the plan took it for missing and overwrote it."""
    make(repo_dir / "data", {"notes.txt": b"v1 notes\n", "a.bin": b"a"})
    assert cli("add", "data", "-q").code == 0
    write(repo_dir / ".dataverignore", "notes.txt\n")
    write(repo_dir / "data/notes.txt", b"my edit, not in the cache\n")
    r = cli("checkout")
    assert r.code == 6 and "data/notes.txt" in r.err, r.err
    assert (repo_dir / "data/notes.txt").read_bytes() == b"my edit, not in the cache\n"
    write(repo_dir / "data/notes.txt", b"v1 notes\n")  # the same bytes as the manifest's: nothing to do
    r = cli("checkout", "--json")
    assert r.code == 0 and json.loads(r.out)["replaced"] == 0, r.out
