"""The Python API and the ``dataver://`` fsspec filesystem read every commit of a
scripted history byte for byte, from a fresh clone (empty cache: objects come from
the remote), without touching the workspace, git's HEAD or the index."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path

import fsspec
import pytest
from history_helpers import STEPS, History, build_history, clone, dv_ok, git_identity, git_state, rev_of, snapshot

import dataver.api
from dataver.errors import IntegrityError, ObjectsMissing, PathError, RepoError
from dataver.fs import DataverFileSystem
from dataver.hashing import digest_bytes

NAMES = [f"c{i}" for i in range(1, len(STEPS) + 1)]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    with git_identity(tmp_path_factory):
        yield build_history(tmp_path_factory.mktemp("history"), push="each")


@pytest.fixture
def fresh(history, tmp_path) -> Path:
    c = clone(history.root, tmp_path / "clone")
    assert snapshot(c) == {}
    return c


def rev_forms(history: History, name: str) -> list[str]:
    """Several spellings of the same commit: tag, full and short SHA, HEAD~N."""
    i = [c.name for c in history.commits].index(name)
    c = history.commits[i]
    back = len(history.commits) - 1 - i
    return [x for x in (c.tag, c.sha, c.sha[:8], f"HEAD~{back}" if back else "HEAD") if x]


@pytest.mark.parametrize("name", NAMES)
def test_api_reads_every_file_at_every_commit(history, fresh, name):
    commit = history.by_name(name)
    before = git_state(fresh)
    for rev in rev_forms(history, name):
        for rel, data in commit.files.items():
            assert dataver.api.read(rel, rev=rev, repo=str(fresh)) == data, (rev, rel)
    rev = rev_of(commit)
    for rel, data in commit.files.items():
        with dataver.api.open(rel, rev=rev, repo=str(fresh)) as f:
            assert f.read() == data
        local = dataver.api.get_path(rel, rev=rev, repo=str(fresh))
        assert Path(local).read_bytes() == data
        if rel.endswith(".txt"):
            with dataver.api.open(rel, rev=rev, repo=str(fresh), mode="r") as f:
                assert f.read() == data.decode()
            assert dataver.api.read(rel, rev=rev, repo=str(fresh), mode="r") == data.decode()
    # one view, many reads; paths spelled with a leading slash or ./ work too
    v = dataver.api.view(str(fresh), rev)
    for rel, data in commit.files.items():
        info = v.file("/" + rel)
        assert (info.size, info.digest) == (len(data), digest_bytes(data))
        assert Path(v.local_path(v.file("./" + rel))).read_bytes() == data
    assert snapshot(fresh) == {}  # reading at a revision never checks anything out
    assert git_state(fresh) == before


@pytest.mark.parametrize("name", NAMES)
def test_fsspec_lists_and_reads_every_commit(history, fresh, name):
    commit = history.by_name(name)
    before = git_state(fresh)
    rev = rev_of(commit)
    fs = fsspec.filesystem("dataver", rev=rev, repo=str(fresh))
    assert isinstance(fs, DataverFileSystem)
    assert sorted(fs.find("")) == sorted(commit.files)
    assert sorted(fs.find("data")) == sorted(commit.data)
    for rel, data in commit.files.items():
        assert fs.cat_file(rel) == data
        info = fs.info(rel)
        assert (info["type"], info["size"]) == ("file", len(data))
        assert fs.isfile(rel) and not fs.isdir(rel)
        with fsspec.open(f"dataver://{rel}", rev=rev, repo=str(fresh)) as f:
            assert f.read() == data
    # ls of every folder: exactly its direct children, files and subfolders
    folders = {posixpath.dirname(p) for p in commit.files} - {""}
    for rel in list(folders):
        while "/" in rel:
            rel = rel.rsplit("/", 1)[0]
            folders.add(rel)
    for folder in sorted(folders | {""}):
        want = {}
        prefix = folder + "/" if folder else ""
        for p in commit.files:
            if p.startswith(prefix):
                head, _, rest = p[len(prefix) :].partition("/")
                want[prefix + head] = "directory" if rest else "file"
        got = {e["name"]: e["type"] for e in fs.ls(folder, detail=True)}
        assert got == want, folder
        assert fs.isdir(folder)
    assert fs.exists("model.bin") == ("model.bin" in commit.files)
    assert fs.exists("data/b.bin") == ("data/b.bin" in commit.files)
    assert snapshot(fresh) == {}
    assert git_state(fresh) == before


def test_fsspec_url_chaining_and_workspace_default(history, fresh, monkeypatch):
    """Without rev: the workspace's pointers (HEAD in a fresh clone); repo defaults to the cwd."""
    head = history.commits[-1]
    monkeypatch.chdir(fresh)
    with fsspec.open("dataver://data/sub/c_renamed.txt") as f:
        assert f.read() == head.files["data/sub/c_renamed.txt"]
    assert dataver.api.read("model.bin") == head.files["model.bin"]
    with fsspec.open("dataver:///model.bin", rev="v2") as f:
        assert f.read() == history.by_name("c3").files["model.bin"]
    assert snapshot(fresh) == {}


def test_api_and_fsspec_errors(history, fresh):
    repo = str(fresh)
    with pytest.raises(PathError) as e:  # model.bin is tracked from c2 on
        dataver.api.read("model.bin", rev="v1", repo=repo)
    assert e.value.exit_code == 4 and "model.bin" in e.value.message and "v1" in e.value.message
    with pytest.raises(PathError):
        dataver.api.read("data/b.bin", rev="v3", repo=repo)  # deleted in c3
    with pytest.raises(PathError):
        dataver.api.read("data", rev="v3", repo=repo)  # a folder is not a file
    with pytest.raises(RepoError) as e:
        dataver.api.read("data/dup1.txt", rev="no-such-rev", repo=repo)
    assert e.value.exit_code == 3 and "no-such-rev" in e.value.message
    with pytest.raises(ValueError):
        dataver.api.open("data/dup1.txt", rev="v1", repo=repo, mode="wb")
    fs = fsspec.filesystem("dataver", rev="v1", repo=repo)
    with pytest.raises(FileNotFoundError):
        fs.info("model.bin")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("model.bin")
    with pytest.raises(FileNotFoundError):
        fs.open("data/nope.txt", "rb")
    with pytest.raises(FileNotFoundError):
        fs.ls("data/nope")
    with pytest.raises(PermissionError):
        fs.open("data/dup1.txt", "wb")
    with pytest.raises(RepoError):
        fsspec.filesystem("dataver", rev="no-such-rev", repo=repo)
    assert snapshot(fresh) == {}


def test_api_verifies_bytes_and_needs_a_remote_for_missing_objects(history, fresh):
    repo = str(fresh)
    rel, data = "data/a.txt", history.by_name("c1").files["data/a.txt"]
    local = dataver.api.get_path(rel, rev="v1", repo=repo)  # fetched from the remote
    os.chmod(local, 0o644)
    Path(local).write_bytes(b"corrupted!" + data[10:])
    with pytest.raises(IntegrityError) as e:
        dataver.api.read(rel, rev="v1", repo=repo)
    assert e.value.exit_code == 8 and rel in e.value.message
    with pytest.raises(IntegrityError):
        fsspec.filesystem("dataver", rev="v1", repo=repo, skip_instance_cache=True).cat_file(rel)
    os.unlink(local)
    # without any remote, an object absent from the cache is reported, not invented
    dv_ok("remote", "remove", "storage", cwd=fresh)
    with pytest.raises(ObjectsMissing):
        dataver.api.read(rel, rev="v1", repo=repo)


def test_listing_a_big_tracked_folder_reads_its_manifest_once(repo_dir, cli, monkeypatch):
    """issue 14, defect 7: ``ls``, ``isdir``, ``info``, ``du`` and ``find`` over a tracked
    folder answer from one index of its manifest (fsspec calls them once per folder; each
    used to go through every file), and give what the workspace holds."""
    from conftest import write

    from dataver import view as view_mod

    files = {f"data/s{i % 9}/t{i % 4}/f{i:04d}.txt": f"{i}\n" * (i % 5 + 1) for i in range(900)}
    files["data/top.txt"] = "top\n"
    for rel, text in files.items():
        write(repo_dir / rel, text)
    assert cli("add", "data").code == 0
    passes = []

    class Counted(dict):
        def items(self):
            passes.append(1)
            return super().items()

        def values(self):
            passes.append(1)
            return super().values()

        def __iter__(self):
            passes.append(1)
            return super().__iter__()

    folder = view_mod.RevisionView._folder
    monkeypatch.setattr(view_mod.RevisionView, "_folder", lambda self, t: Counted(folder(self, t)))
    fs = DataverFileSystem(repo=str(repo_dir))
    assert sorted(fs.find("data")) == sorted(files)
    assert fs.du("data") == sum(len(t) for t in files.values())
    for i in range(9):
        assert fs.isdir(f"data/s{i}") and fs.isdir(f"data/s{i}/t{i % 4}")
        assert sorted(fs.ls(f"data/s{i}", detail=False)) == [f"data/s{i}/t{j}" for j in range(4)]
    assert not fs.isdir("data/s1/t0/f0000.txt") and not fs.exists("data/nope")
    assert fs.info("data/top.txt")["size"] == 4
    assert sorted(fs.ls("data", detail=False)) == sorted([f"data/s{i}" for i in range(9)] + ["data/top.txt"])
    assert len(passes) <= 2, f"the manifest's files were gone through {len(passes)} times"
