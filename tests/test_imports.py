"""import / update / get across repositories: an import pins a commit of another
dataver repository, and a fresh clone of the consumer (with no remote of its own)
reproduces exactly that commit's data, served from the source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import git_commit, write
from history_helpers import (
    History,
    build_history,
    clone,
    dv,
    dv_ok,
    git,
    git_identity,
    manifest_of,
    object_files,
    pointer_fields,
    snapshot,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> History:
    """The scripted history (tags v1=c1, v2=c3, v3=c5; main=c6), pushed after each commit
    to a folder remote named by absolute path in its committed config."""
    with git_identity(tmp_path_factory):
        yield build_history(tmp_path_factory.mktemp("source"), push="each")


@pytest.fixture
def own_source(source, tmp_path) -> Path:
    """A private copy of the source repository (same remote), free to move on."""
    dest = tmp_path / "own-source"
    shutil.copytree(source.root, dest, symlinks=True)
    return dest


def as_data(files: dict[str, bytes], prefix: str = "imported") -> dict[str, bytes]:
    """A commit's data/ files as they appear under ``prefix`` in the consumer."""
    return {prefix + k[len("data") :]: v for k, v in files.items() if k.startswith("data/")}


def fields(root: Path, pointer: str = "imported.dv") -> dict[str, str]:
    return pointer_fields((root / pointer).read_bytes())


def test_import_writes_a_pinned_pointer_with_the_right_data(source, repo_dir, cli):
    c1 = source.by_name("c1")
    r = cli("import", source.root, "data", "--rev", "v1", "-o", "imported", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["commit"] == c1.sha
    f = fields(repo_dir)
    assert f["source.repo"] == str(source.root)
    assert (f["source.rev"], f["source.commit"], f["source.path"]) == ("v1", c1.sha, "data")
    assert (f["kind"], f["digest"]) == ("dir", manifest_of(source, c1)[0])
    assert f["files"] == str(len(c1.data)) and f["size"] == str(sum(map(len, c1.data.values())))
    assert snapshot(repo_dir) == as_data(c1.files)
    assert "/imported" in (repo_dir / ".gitignore").read_text().splitlines()
    assert cli("remote", "list", "--json").out.strip() == "[]"  # the consumer has no remote
    assert cli("status").code == 0
    # a tracked single file imports too
    r = cli("import", source.root, "model.bin", "--rev", "v3", "-o", "weights.bin")
    assert r.code == 0, r.err
    assert (repo_dir / "weights.bin").read_bytes() == source.by_name("c5").files["model.bin"]
    wf = fields(repo_dir, "weights.bin.dv")
    assert (wf["kind"], wf["source.path"], wf["source.commit"]) == ("file", "model.bin", source.by_name("c5").sha)


@pytest.mark.parametrize("source_cache", ["kept", "wiped"])
def test_fresh_clone_without_a_remote_pulls_the_pinned_commit_from_the_source(
    source, own_source, repo_dir, cli, tmp_path, source_cache
):
    c3 = source.by_name("c3")
    assert cli("import", own_source, "data", "--rev", "v2", "-o", "imported").code == 0
    git_commit(repo_dir, "import data at v2")
    if source_cache == "wiped":  # then only the source's remote (named in its config) can serve
        shutil.rmtree(own_source / ".dataver/cache")
    consumer = clone(repo_dir, tmp_path / "consumer-clone")
    assert snapshot(consumer) == {}
    assert object_files(consumer / ".dataver/cache") == set()
    r = dv("pull", cwd=consumer)
    assert r.code == 0, r.err
    assert snapshot(consumer) == as_data(c3.files)
    assert git("status", "--porcelain", cwd=consumer).stdout == ""
    assert (consumer / "imported.dv").read_bytes() == (repo_dir / "imported.dv").read_bytes()
    # fetch + checkout reach the same place
    shutil.rmtree(consumer / "imported")
    shutil.rmtree(consumer / ".dataver/cache")
    dv_ok("fetch", cwd=consumer)
    assert snapshot(consumer) == {}
    dv_ok("checkout", cwd=consumer)
    assert snapshot(consumer) == as_data(c3.files)


def test_a_consumer_remote_without_the_objects_falls_back_to_the_source(source, repo_dir, cli, tmp_path):
    assert cli("import", source.root, "data", "--rev", "v3", "-o", "imported").code == 0
    assert cli("remote", "add", "mine", tmp_path / "consumer-store", "--default").code == 0
    git_commit(repo_dir, "import")
    consumer = clone(repo_dir, tmp_path / "consumer-clone")
    r = dv("pull", cwd=consumer)
    assert r.code == 0, r.err
    assert snapshot(consumer) == as_data(source.by_name("c5").files)
    # pushing stores the imported objects on our own remote, which then serves them
    dv_ok("push", cwd=consumer)
    assert object_files(tmp_path / "consumer-store") == object_files(consumer / ".dataver/cache")


def test_pinned_data_survives_the_source_moving_on_and_update_moves_the_pin(
    source, own_source, repo_dir, cli, tmp_path
):
    c6, c3 = source.by_name("c6"), source.by_name("c3")
    assert cli("import", own_source, "data", "--rev", "main", "-o", "imported").code == 0
    assert fields(repo_dir)["source.commit"] == c6.sha
    git_commit(repo_dir, "import main")
    # the source moves on: a new commit on main, pushed to its remote
    write(own_source / "data/a_new_file.txt", "added after the import\n")
    (own_source / "data/dup1.txt").unlink()
    dv_ok("add", "data", cwd=own_source)
    c7 = git_commit(own_source, "c7")
    dv_ok("push", cwd=own_source)
    c7_files = snapshot(own_source)
    consumer = clone(repo_dir, tmp_path / "consumer-clone")
    dv_ok("pull", cwd=consumer)
    assert snapshot(consumer) == as_data(c6.files)  # still the pinned commit
    # update re-resolves the branch
    pointer_before = (consumer / "imported.dv").read_bytes()
    r = dv("update", "imported.dv", "--json", cwd=consumer)
    assert r.code == 0, r.err
    assert json.loads(r.out)["changed"] is True
    f = fields(consumer)
    assert (f["source.rev"], f["source.commit"]) == ("main", c7)
    assert (consumer / "imported.dv").read_bytes() != pointer_before
    assert snapshot(consumer) == as_data(c7_files)
    # nothing new upstream: update changes nothing
    pinned = (consumer / "imported.dv").read_bytes()
    r = dv("update", "imported", "--json", cwd=consumer)
    assert r.code == 0 and json.loads(r.out)["changed"] is False, r.err
    assert (consumer / "imported.dv").read_bytes() == pinned
    # --rev moves the pin (back in time, files deleted and renamed back)
    dv_ok("update", "imported.dv", "--rev", "v2", cwd=consumer)
    f = fields(consumer)
    assert (f["source.rev"], f["source.commit"], f["source.path"]) == ("v2", c3.sha, "data")
    assert f["digest"] == manifest_of(source, c3)[0]
    assert snapshot(consumer) == as_data(c3.files)
    # git sees exactly the pointer change
    assert git("status", "--porcelain", cwd=consumer).stdout == " M imported.dv\n"


def test_re_adding_an_imported_path_is_refused(source, repo_dir, cli):
    assert cli("import", source.root, "data", "--rev", "v1", "-o", "imported").code == 0
    before = (repo_dir / "imported.dv").read_bytes()
    (repo_dir / "imported/extra.txt").write_text("my own change\n")
    r = cli("add", "imported")
    assert r.code == 4, r.err
    assert "imported from" in r.err and "dataver update imported.dv" in r.err
    assert (repo_dir / "imported.dv").read_bytes() == before
    # importing over an existing import is refused too, and points at update
    r = cli("import", source.root, "data", "--rev", "v2", "-o", "imported")
    assert r.code == 4 and "update" in r.err, r.err
    assert (repo_dir / "imported.dv").read_bytes() == before


def test_import_from_a_file_url_of_a_bare_clone(source, repo_dir, cli, tmp_path):
    bare = clone(source.root, tmp_path / "source.git", "--bare")
    url = f"file://{bare}"
    c3 = source.by_name("c3")
    r = cli("import", url, "data", "--rev", "v2", "-o", "imported")
    assert r.code == 0, r.err
    f = fields(repo_dir)
    assert (f["source.repo"], f["source.rev"], f["source.commit"]) == (url, "v2", c3.sha)
    assert snapshot(repo_dir) == as_data(c3.files)
    git_commit(repo_dir, "import from url")
    consumer = clone(repo_dir, tmp_path / "consumer-clone")
    dv_ok("pull", cwd=consumer)
    assert snapshot(consumer) == as_data(c3.files)
    dv_ok("update", "imported.dv", "--rev", "v3", cwd=consumer)
    assert snapshot(consumer) == as_data(source.by_name("c5").files)
    # get from the same URL, outside any dataver repository
    out = tmp_path / "outside"
    out.mkdir()
    dv_ok("get", url, "data", "--rev", "v1", "-o", out / "d", cwd=out)
    assert {f"data/{k}": v for k, v in snapshot(out / "d").items()} == source.by_name("c1").data
    dv_ok("get", bare, "data", "--rev", "v3", "-o", out / "plain-path", cwd=out)  # the bare clone's path
    assert {f"data/{k}": v for k, v in snapshot(out / "plain-path").items()} == source.by_name("c5").data


def test_import_and_update_errors(source, repo_dir, cli):
    r = cli("import", source.root, "data", "--rev", "no-such-rev", "-o", "imported")
    assert r.code == 3 and "unknown revision 'no-such-rev'" in r.err, r.err
    r = cli("import", source.root, "model.bin", "--rev", "v1")  # tracked from c2 on
    assert r.code == 4 and "model.bin" in r.err and "v1" in r.err, r.err
    r = cli("import", repo_dir.parent / "nowhere", "data")
    assert r.code == 3, r.err
    write(repo_dir / "taken/file.txt", "already here\n")
    r = cli("import", source.root, "data", "--rev", "v1", "-o", "taken")
    assert r.code == 4 and "already exists" in r.err, r.err
    assert snapshot(repo_dir) == {"taken/file.txt": b"already here\n"}
    assert not (repo_dir / "imported.dv").exists()
    write(repo_dir / "mine.txt", "mine\n")
    assert cli("add", "mine.txt").code == 0
    r = cli("update", "mine.txt.dv")
    assert r.code == 4 and "not an import" in r.err, r.err


def test_a_relative_source_remote_works_from_its_path_and_is_refused_through_a_url(repo_dir, cli, tmp_path):
    src = tmp_path / "rel-source"
    src.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=src)
    dv_ok("init", cwd=src)
    dv_ok("remote", "add", "storage", "../rel-store", "--default", cwd=src)  # relative to the repo root
    write(src / "data/only.txt", "only file\n")
    dv_ok("add", "data", cwd=src)
    git_commit(src, "one")
    dv_ok("push", cwd=src)
    shutil.rmtree(src / ".dataver/cache")  # only the remote can serve
    r = cli("import", src, "data", "-o", "by-path")
    assert r.code == 0, r.err
    assert snapshot(repo_dir) == {"by-path/only.txt": b"only file\n"}
    bare = clone(src, tmp_path / "rel-source.git", "--bare")
    r = cli("import", f"file://{bare}", "data", "-o", "by-url")
    assert r.code == 9, r.err
    assert "relative" in r.err and "../rel-store" in r.err
    assert not (repo_dir / "by-url").exists() and not (repo_dir / "by-url.dv").exists()


def test_a_url_is_cloned_once_and_fetched_again_before_each_use(own_source, tmp_path, monkeypatch):
    """issue 14: repositories by URL are kept in a per-user cache of clones
    (DATAVER_CLONES here), reused and updated, instead of a fresh clone per command."""
    clones = tmp_path / "clones"
    monkeypatch.setenv("DATAVER_CLONES", str(clones))
    bare = clone(own_source, tmp_path / "shared.git", "--bare")
    url = f"file://localhost{bare}"  # a URL (not a local path, which is opened in place)
    out = tmp_path / "out"
    out.mkdir()
    dv_ok("get", url, "model.bin", "-o", out / "one", cwd=out)
    (kept,) = [p for p in clones.iterdir() if p.is_dir()]
    assert (kept / "url").read_text() == url + "\n" and (kept / "repo.git" / "HEAD").is_file()
    objects = (kept / "repo.git" / "objects").stat().st_ino
    # the source moves on: a new commit pushed to the bare repository
    write(own_source / "model.bin", b"a model, moved on\n")
    dv_ok("add", "model.bin", cwd=own_source)
    dv_ok("push", cwd=own_source)
    git("add", "-A", cwd=own_source)
    git("commit", "--quiet", "-m", "moved on", cwd=own_source)
    git("push", "--quiet", str(bare), "HEAD:main", cwd=own_source)
    r = dv_ok("get", url, "model.bin", "-o", out / "two", cwd=out)
    assert (out / "two").read_bytes() == b"a model, moved on\n"  # fetched again: the new commit
    assert [p for p in clones.iterdir() if p.is_dir()] == [kept]
    assert (kept / "repo.git" / "objects").stat().st_ino == objects  # the same clone, updated
    assert "warning" not in r.err
    # the URL unreachable: the clone as it was serves, with a warning
    shutil.move(bare, tmp_path / "gone.git")
    r = dv_ok("get", url, "model.bin", "-o", out / "three", cwd=out)
    assert (out / "three").read_bytes() == b"a model, moved on\n"
    assert f"warning: could not fetch {url} again" in r.err


def test_get_a_file_or_a_subfolder_inside_a_tracked_folder(source, tmp_path):
    """issue 14's granular targets across repositories: get of data/sub (a part of a
    tracked folder there) writes that part; from a path (the source's cache) and from a
    URL (the manifest from the source's remote)."""
    c1 = source.by_name("c1")
    bare = clone(source.root, tmp_path / "source.git", "--bare")
    out = tmp_path / "out"
    out.mkdir()
    for where, src in (("path", str(source.root)), ("url", f"file://localhost{bare}")):
        r = dv_ok("get", src, "data/sub", "--rev", "v1", "-o", out / f"sub-{where}", cwd=out)
        assert snapshot(out / f"sub-{where}") == {
            "c.txt": c1.files["data/sub/c.txt"],
            "deep/d.bin": c1.files["data/sub/deep/d.bin"],
        }, r.err
        dv_ok("get", src, "data/sub/deep/d.bin", "--rev", "v1", "-o", out / f"d-{where}.bin", cwd=out)
        assert (out / f"d-{where}.bin").read_bytes() == c1.files["data/sub/deep/d.bin"]
    r = dv("get", str(source.root), "data/nothere.txt", "-o", out / "x", cwd=out)
    assert r.code == 4 and "data/nothere.txt is not in data" in r.err, r.err
    assert not (out / "x").exists()


def test_import_one_file_of_a_tracked_folder_and_update_it(source, repo_dir, cli, tmp_path):
    r = cli("import", str(source.root), "data/sub/deep/d.bin", "--rev", "v1", "-o", "d.bin")
    assert r.code == 0, r.err
    f = fields(repo_dir, "d.bin.dv")
    assert (f["kind"], f["source.path"], f["source.rev"]) == ("file", "data/sub/deep/d.bin", "v1")
    assert (repo_dir / "d.bin").read_bytes() == source.by_name("c1").files["data/sub/deep/d.bin"]
    git_commit(repo_dir, "import one file")
    consumer = clone(repo_dir, tmp_path / "consumer")
    dv_ok("pull", cwd=consumer)  # served from the source, at the pinned commit
    assert (consumer / "d.bin").read_bytes() == source.by_name("c1").files["data/sub/deep/d.bin"]
    d1 = source.by_name("c1").files["data/sub/deep/d.bin"]
    later = next(c for c in source.commits if c.files.get("data/sub/deep/d.bin", d1) != d1)
    dv_ok("update", "d.bin.dv", "--rev", later.sha, cwd=consumer)  # a commit that changed it
    assert (consumer / "d.bin").read_bytes() == later.files["data/sub/deep/d.bin"]


def test_import_a_folder_inside_a_tracked_folder(source, repo_dir, cli, tmp_path):
    """DVC imports a part of a tracked folder too: the files come from the source; the
    folder's manifest is made here (the source never had it), and again in a fresh
    clone of the consumer, whose pull must give the same digest."""
    c1 = source.by_name("c1")
    r = cli("import", str(source.root), "data/sub", "--rev", "v1", "-o", "sub")
    assert r.code == 0, r.err
    f = fields(repo_dir, "sub.dv")
    assert (f["kind"], f["source.path"], f["files"]) == ("dir", "data/sub", "2")
    assert snapshot(repo_dir / "sub") == {
        "c.txt": c1.files["data/sub/c.txt"],
        "deep/d.bin": c1.files["data/sub/deep/d.bin"],
    }
    git_commit(repo_dir, "import a part")
    consumer = clone(repo_dir, tmp_path / "consumer")  # no remote of its own: everything from the source
    dv_ok("pull", cwd=consumer)
    assert snapshot(consumer / "sub") == snapshot(repo_dir / "sub")
    assert dv("status", cwd=consumer).out == ""


def test_ls_of_another_repository_by_path_or_url(source, tmp_path):
    """issue 14: ls --repo URL lists another repository's tracked paths, a folder's
    files or a part of one (dvc list URL), from outside any repository too."""
    bare = clone(source.root, tmp_path / "source.git", "--bare")
    out = tmp_path / "out"
    out.mkdir()
    c6 = source.by_name("c6")
    for src in (str(source.root), f"file://localhost{bare}"):
        top = json.loads(dv_ok("ls", "--repo", src, "--json", cwd=out).out)
        assert [(x["path"], x["kind"]) for x in top] == [("data", "dir"), ("model.bin", "file")]
        files = json.loads(dv_ok("ls", "data", "--repo", src, "--json", cwd=out).out)
        assert {x["path"]: x["size"] for x in files} == {k: len(v) for k, v in c6.data.items()}
        sub = json.loads(dv_ok("ls", "data/sub", "--repo", src, "--rev", "v1", "--json", cwd=out).out)
        assert sorted(x["path"] for x in sub) == ["data/sub/c.txt", "data/sub/deep/d.bin"]
    assert list(out.iterdir()) == []


def test_ls_of_a_part_in_this_repository(source, tmp_path):
    consumer = clone(source.root, tmp_path / "consumer")  # an empty cache: the manifest from the remote
    r = dv_ok("ls", "data/sub", "--rev", "v1", "--json", cwd=consumer)
    assert sorted(x["path"] for x in json.loads(r.out)) == ["data/sub/c.txt", "data/sub/deep/d.bin"]


def test_api_and_dataver_fs_read_another_repository_by_url(source, tmp_path, monkeypatch):
    """issue 14: dataver.api (repo=) and dataver:// accept git URLs (repo="file:///x"
    used to become <cwd>/file:/x), as dvc.api.open(repo=URL) does: bytes at a revision,
    from the source's remote, verified; from outside any repository."""
    import fsspec

    import dataver.api

    monkeypatch.setenv("DATAVER_CLONES", str(tmp_path / "clones"))
    bare = clone(source.root, tmp_path / "source.git", "--bare")
    url = f"file://localhost{bare}"
    monkeypatch.chdir(tmp_path)
    c1, c6 = source.by_name("c1"), source.by_name("c6")
    assert dataver.api.read("data/sub/deep/d.bin", rev="v1", repo=url) == c1.files["data/sub/deep/d.bin"]
    assert dataver.api.read("model.bin", repo=url) == c6.files["model.bin"]  # HEAD by default
    with dataver.api.open("data/sub/c.txt", rev="v1", repo=str(bare), mode="r") as f:  # a bare clone's path
        assert f.read() == c1.files["data/sub/c.txt"].decode()
    fs = fsspec.filesystem("dataver", repo=url, rev="v1")
    assert sorted(fs.ls("data/sub", detail=False)) == ["data/sub/c.txt", "data/sub/deep"]
    with fs.open("data/a.txt") as f:
        assert f.read() == c1.files["data/a.txt"]
    with pytest.raises(FileNotFoundError):
        fs.info("data/nothere.txt")
    # the objects came from the source's remote into the clone cache, not into any repository
    assert list((tmp_path / "clones").rglob("*.manifest")) or list((tmp_path / "clones").rglob("*.pack"))


def test_the_first_use_of_a_url_sees_every_branch(own_source, tmp_path, monkeypatch):
    """A bare clone names other branches refs/remotes/origin/*: --rev BRANCH must work
    from the first use on, not only after the next fetch."""
    monkeypatch.setenv("DATAVER_CLONES", str(tmp_path / "clones"))
    git("checkout", "--quiet", "-b", "side", cwd=own_source)
    write(own_source / "model.bin", b"the side branch's model\n")
    dv_ok("add", "model.bin", cwd=own_source)
    dv_ok("push", cwd=own_source)
    git("add", "-A", cwd=own_source)
    git("commit", "--quiet", "-m", "side", cwd=own_source)
    git("checkout", "--quiet", "main", cwd=own_source)
    bare = clone(own_source, tmp_path / "b.git", "--bare")
    out = tmp_path / "out"
    out.mkdir()
    dv_ok("get", f"file://localhost{bare}", "model.bin", "--rev", "side", "-o", out / "m", cwd=out)
    assert (out / "m").read_bytes() == b"the side branch's model\n"
