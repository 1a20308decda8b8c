"""Any revision, anywhere: a scripted history of six commits (files added, changed,
deleted and renamed inside a tracked folder, a tracked file that appears later, a
file that becomes a folder) reproduced byte for byte at every commit from a fresh
clone through ``pull --rev``, ``fetch`` + ``checkout --rev`` and ``get``; plus
``ls --rev``, ``diff`` and the errors for unknown revisions and untracked paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import git_commit, write
from history_helpers import (
    STEPS,
    History,
    build_history,
    clone,
    dv,
    dv_ok,
    executables,
    git,
    git_identity,
    git_state,
    manifest_of,
    object_files,
    rev_of,
    snapshot,
)

from dataver.hashing import digest_bytes

NAMES = [f"c{i}" for i in range(1, len(STEPS) + 1)]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    with git_identity(tmp_path_factory):
        yield build_history(tmp_path_factory.mktemp("history"), push="rev")


@pytest.fixture
def fresh(history, tmp_path) -> Path:
    """A fresh git clone of the history: pointers at HEAD, an empty cache."""
    c = clone(history.root, tmp_path / "clone")
    assert snapshot(c) == {}
    return c


def assert_exact(root: Path, commit, under: str | None = None) -> None:
    """The workspace holds exactly the commit's tracked files (none extra, none missing)."""
    want = commit.files if under is None else {k: v for k, v in commit.files.items() if k.startswith(under + "/")}
    got = snapshot(root, under)
    assert sorted(got) == sorted(want), f"file set differs at {commit.name}"
    for rel, data in want.items():
        assert got[rel] == data, f"{rel} differs at {commit.name}"
    assert executables(root, list(want)) == commit.executable & set(want)


def test_the_scripted_history_covers_add_change_delete_rename(history):
    c = {x.name: x.files for x in history.commits}
    assert len(history.commits) >= 5
    assert len({x.sha for x in history.commits}) == len(history.commits)
    assert set(c["c2"]) - set(c["c1"]) == {"data/e.txt", "model.bin"}  # added
    assert c["c2"]["data/a.txt"] != c["c1"]["data/a.txt"]  # changed
    assert "data/b.bin" in c["c2"] and "data/b.bin" not in c["c3"]  # deleted
    # renamed: same bytes, new name
    assert c["c3"]["data/sub/c_renamed.txt"] == c["c2"]["data/sub/c.txt"] and "data/sub/c.txt" not in c["c3"]
    assert c["c5"]["data/moved/a.txt"] == c["c4"]["data/a.txt"] and "data/a.txt" not in c["c5"]
    assert "data/x" in c["c5"] and "data/x/inner.txt" in c["c6"]  # a file becomes a folder
    assert history.by_name("c4").executable == {"data/run.sh"}
    # every commit's objects really are on the remote (pushed with push --rev)
    on_remote = object_files(history.store)
    for x in history.commits:
        assert x.objects() | {manifest_of(history, x)} <= on_remote, x.name


@pytest.mark.parametrize("name", NAMES)
def test_pull_rev_in_a_fresh_clone_gives_exactly_that_commit(history, fresh, name):
    commit = history.by_name(name)
    before = git_state(fresh)
    dv_ok("pull", "--rev", rev_of(commit), cwd=fresh)
    assert_exact(fresh, commit)
    assert git_state(fresh) == before  # HEAD, index, git status and .dv files untouched


@pytest.mark.parametrize("name", NAMES)
def test_fetch_then_checkout_rev_in_a_fresh_clone(history, fresh, name):
    commit = history.by_name(name)
    before = git_state(fresh)
    dv_ok("fetch", "--rev", commit.sha, cwd=fresh)
    assert snapshot(fresh) == {}  # fetch touches only the cache
    dv_ok("checkout", "--rev", commit.sha, cwd=fresh)
    assert_exact(fresh, commit)
    assert git_state(fresh) == before


def test_checkout_rev_walks_the_history_both_ways(history, fresh):
    """Moving between any two revisions deletes, renames and replaces exactly."""
    for c in history.commits:
        dv_ok("fetch", "--rev", rev_of(c), cwd=fresh)
    before = git_state(fresh)
    order = NAMES + NAMES[::-1] + ["c6", "c1", "c5", "c2", "c6", "c3", "c4"]
    for name in order:
        commit = history.by_name(name)
        dv_ok("checkout", "--rev", rev_of(commit), cwd=fresh)
        assert_exact(fresh, commit, "data")
        if "model.bin" in commit.files:
            assert (fresh / "model.bin").read_bytes() == commit.files["model.bin"]
        assert git_state(fresh) == before
        status = dv("status", cwd=fresh)
        # the workspace now differs from the committed (HEAD) pointers unless at HEAD
        assert ("modified:" in status.out or "added:" in status.out or "deleted:" in status.out) == (name != "c6")
    dv_ok("checkout", "--rev", "v1", cwd=fresh)
    dv_ok("checkout", cwd=fresh)  # back to the pointers in the workspace (HEAD)
    assert_exact(fresh, history.commits[-1])


def test_checkout_rev_refuses_to_overwrite_unsaved_changes(history, fresh):
    dv_ok("pull", cwd=fresh)
    dv_ok("fetch", "--rev", "v1", cwd=fresh)
    (fresh / "data/moved/a.txt").write_bytes(b"my unsaved edit\n")
    r = dv("checkout", "--rev", "v1", cwd=fresh)
    assert r.code == 6, r.err
    assert "data/moved/a.txt" in r.err
    assert (fresh / "data/moved/a.txt").read_bytes() == b"my unsaved edit\n"


def test_checkout_rev_without_the_objects_names_what_is_missing(history, fresh):
    r = dv("checkout", "--rev", "v2", cwd=fresh)
    assert r.code == 7, r.err
    manifest_hex, _ = manifest_of(history, history.by_name("c3"))
    assert manifest_hex in r.err and "data" in r.err
    assert snapshot(fresh) == {}
    # the hint names the commands that work (pull would fetch the workspace's pointers, not v2's)
    assert "hint: fetch them for that revision: dataver fetch --rev v2, then dataver checkout --rev v2" in r.err
    dv_ok("fetch", "--rev", "v2", cwd=fresh)
    dv_ok("checkout", "--rev", "v2", cwd=fresh)
    assert {f"data/{k}": v for k, v in snapshot(fresh / "data").items()} == history.by_name("c3").data


@pytest.mark.parametrize("name", NAMES)
def test_get_reproduces_every_commit(history, fresh, tmp_path, name):
    """get from a fresh clone (empty cache: objects come from the remote its committed
    config names) and from a file:// URL, run outside any dataver repository."""
    commit = history.by_name(name)
    out = tmp_path / "out"
    out.mkdir()
    r = dv_ok("get", fresh, "data", "--rev", rev_of(commit), "-o", out / "from_path", "--json", cwd=out)
    assert json.loads(r.out)["commit"] == commit.sha
    dv_ok("get", f"file://{history.root}", "data", "--rev", commit.sha, "-o", out / "from_url", cwd=out)
    data = commit.data
    for where in ("from_path", "from_url"):
        got = {f"data/{k}": v for k, v in snapshot(out / where).items()}
        assert got == data, where
        want_exec = {k.removeprefix("data/") for k in commit.executable}
        assert executables(out / where, [k.removeprefix("data/") for k in data]) == want_exec
    if "model.bin" in commit.files:
        dv_ok("get", fresh, "model.bin", "--rev", rev_of(commit), "-o", out / "model", cwd=out)
        assert (out / "model").read_bytes() == commit.files["model.bin"]
    assert snapshot(fresh) == {}  # get never touches the source


def test_unknown_revision_is_exit_3_with_a_clear_message(history, fresh, tmp_path):
    for args in (
        ("checkout", "--rev", "no-such-rev"),
        ("pull", "--rev", "no-such-rev"),
        ("fetch", "--rev", "no-such-rev"),
        ("push", "--rev", "no-such-rev"),
        ("ls", "--rev", "no-such-rev"),
        ("diff", "no-such-rev", "HEAD"),
        ("diff", "v1", "no-such-rev"),
        ("get", str(history.root), "data", "--rev", "no-such-rev", "-o", str(tmp_path / "o")),
    ):
        r = dv(*args, cwd=fresh)
        assert r.code == 3, (args, r.err)
        assert "unknown revision 'no-such-rev'" in r.err, (args, r.err)
        assert "Traceback" not in r.err
    assert not (tmp_path / "o").exists()
    assert snapshot(fresh) == {}


def test_path_not_tracked_at_a_revision_is_exit_4(history, fresh, tmp_path):
    # model.bin is tracked from c2 on; v1 is c1
    for args in (
        ("checkout", "model.bin", "--rev", "v1"),
        ("pull", "model.bin", "--rev", "v1"),
        ("fetch", "model.bin", "--rev", "v1"),
        ("ls", "model.bin", "--rev", "v1"),
        ("get", str(history.root), "model.bin", "--rev", "v1", "-o", str(tmp_path / "o")),
    ):
        r = dv(*args, cwd=fresh)
        assert r.code == 4, (args, r.err)
        assert "model.bin" in r.err and "v1" in r.err, (args, r.err)
    # a file inside a tracked folder is a part of it (issue 14): without the folder's
    # manifest in the cache, checkout names the fetch that brings it
    r = dv("checkout", "data/a.txt", "--rev", "v1", cwd=fresh)
    assert r.code == 7 and "inside data, whose manifest at v1 is not in the cache" in r.err, r.err
    assert "dataver fetch --rev v1 data/a.txt" in r.err
    dv_ok("fetch", "--rev", "v1", "data/a.txt", cwd=fresh)
    dv_ok("checkout", "data/a.txt", "--rev", "v1", cwd=fresh)
    assert snapshot(fresh) == {"data/a.txt": history.by_name("c1").files["data/a.txt"]}
    (fresh / "data/a.txt").unlink()
    # tracked at another revision is fine
    dv_ok("pull", "model.bin", "--rev", history.by_name("c2").sha, cwd=fresh)
    assert snapshot(fresh) == {"model.bin": history.by_name("c2").files["model.bin"]}


@pytest.mark.parametrize("name", ["c1", "c4", "c6"])
def test_ls_rev(history, fresh, name):
    commit = history.by_name(name)
    top = json.loads(dv_ok("ls", "--rev", rev_of(commit), "--json", cwd=fresh).out)
    assert sorted(x["path"] for x in top) == sorted(commit.tracked())
    by_path = {x["path"]: x for x in top}
    assert by_path["data"]["kind"] == "dir"
    assert by_path["data"]["files"] == len(commit.data)
    assert by_path["data"]["size"] == sum(len(v) for v in commit.data.values())
    if "model.bin" in commit.files:
        assert by_path["model.bin"]["size"] == len(commit.files["model.bin"])
        assert by_path["model.bin"]["digest"] == digest_bytes(commit.files["model.bin"]).hex
    inside = json.loads(dv_ok("ls", "data", "--rev", rev_of(commit), "--json", cwd=fresh).out)
    assert {x["path"]: (x["size"], x["digest"]) for x in inside} == {
        k: (len(v), digest_bytes(v).hex) for k, v in commit.data.items()
    }
    assert {x["path"] for x in inside if x["executable"]} == commit.executable
    text = dv_ok("ls", "data", "--rev", rev_of(commit), cwd=fresh).out
    assert sorted(line.split()[-1] for line in text.splitlines()) == sorted(commit.data)
    assert snapshot(fresh) == {}  # ls reads, never checks out


def expected_diff(old: dict[str, bytes], new: dict[str, bytes]) -> list[dict]:
    out = []
    for path in sorted(old.keys() | new.keys()):
        o, n = old.get(path), new.get(path)
        if o == n:
            continue
        out.append(
            {
                "path": path,
                "change": "added" if o is None else "deleted" if n is None else "modified",
                "old_size": None if o is None else len(o),
                "new_size": None if n is None else len(n),
                "old_digest": None if o is None else digest_bytes(o).hex,
                "new_digest": None if n is None else digest_bytes(n).hex,
            }
        )
    return out


@pytest.mark.parametrize("pair", [("c1", "c2"), ("c2", "c3"), ("c3", "c4"), ("c4", "c5"), ("c5", "c6"), ("c6", "c1")])
def test_diff_between_revisions(history, fresh, pair):
    a, b = (history.by_name(n) for n in pair)
    got = json.loads(dv_ok("diff", rev_of(a), rev_of(b), "--json", cwd=fresh).out)
    want = expected_diff(a.files, b.files)
    assert want, "every step of the script changes something"
    assert got == want


def test_diff_reports_a_rename_as_deleted_plus_added(history, fresh):
    got = json.loads(dv_ok("diff", history.by_name("c2").sha, "v2", "--json", cwd=fresh).out)
    changes = {c["path"]: c["change"] for c in got}
    assert changes == {"data/b.bin": "deleted", "data/sub/c.txt": "deleted", "data/sub/c_renamed.txt": "added"}
    renamed = next(c for c in got if c["path"] == "data/sub/c_renamed.txt")
    gone = next(c for c in got if c["path"] == "data/sub/c.txt")
    assert renamed["new_digest"] == gone["old_digest"] and renamed["new_size"] == gone["old_size"] == 400


def test_diff_head_against_the_workspace(history, fresh):
    head = history.commits[-1]
    dv_ok("pull", cwd=fresh)
    assert json.loads(dv_ok("diff", "--json", cwd=fresh).out) == []
    data = fresh / "data"
    for p in data.rglob("*"):  # checkout may link files read-only into the cache
        if p.is_file():
            os.chmod(p, 0o644 | (p.stat().st_mode & 0o111))
    (data / "dup1.txt").write_bytes(b"changed in the workspace\n")  # modified
    (data / "e.txt").unlink()  # deleted
    (data / "new.bin").write_bytes(b"\0" * 77)  # added
    os.rename(data / "moved/a.txt", data / "moved/a_renamed.txt")  # renamed
    now = snapshot(fresh)
    got = json.loads(dv_ok("diff", "--json", cwd=fresh).out)
    assert got == expected_diff(head.files, now)
    assert {c["path"]: c["change"] for c in got} == {
        "data/dup1.txt": "modified",
        "data/e.txt": "deleted",
        "data/new.bin": "added",
        "data/moved/a.txt": "deleted",
        "data/moved/a_renamed.txt": "added",
    }
    text = dv_ok("diff", cwd=fresh)
    lines = text.out.splitlines()
    assert "added:     data/new.bin  (77 B)" in lines
    assert f"deleted:   data/e.txt  ({len(head.files['data/e.txt'])} B)" in lines
    assert "2 added, 1 modified, 2 deleted" in text.err
    # v1 against the workspace, and a path filter
    v1 = history.by_name("c1")
    assert json.loads(dv_ok("diff", "v1", "--json", cwd=fresh).out) == expected_diff(v1.files, now)
    only_model = json.loads(dv_ok("diff", "v1", "-p", "model.bin", "--json", cwd=fresh).out)
    assert only_model == expected_diff({}, {"model.bin": head.files["model.bin"]})
    assert git("status", "--porcelain", cwd=fresh).stdout == ""


def test_a_tracked_path_that_turns_from_file_into_folder_and_back(repo_dir, cli, tmp_path):
    """checkout --rev and pull --rev cross a change of kind in both directions; a folder
    whose files are all in the cache is not 'unsaved work' standing in a file's way."""
    assert cli("remote", "add", "storage", tmp_path / "store", "--default").code == 0
    write(repo_dir / "model", b"a single file\n")
    assert cli("add", "model").code == 0
    git("tag", "as-file", git_commit(repo_dir, "file"), cwd=repo_dir)
    (repo_dir / "model").unlink()
    folder = {"model/x": b"x\n" * 9, "model/deep/y": b"y\n" * 7}
    for rel, data in folder.items():
        write(repo_dir / rel, data)
    assert cli("add", "model").code == 0
    git("tag", "as-folder", git_commit(repo_dir, "folder"), cwd=repo_dir)
    assert cli("push", "--rev", "as-file").code == 0 and cli("push").code == 0
    before = git_state(repo_dir)
    for rev, want in [("as-file", {"model": b"a single file\n"}), ("as-folder", folder)] * 2:
        r = cli("checkout", "--rev", rev)
        assert r.code == 0, (rev, r.err)
        assert snapshot(repo_dir) == want, rev
        assert git_state(repo_dir) == before
    # a folder holding a change not in the cache still blocks the way back to the file
    (repo_dir / "model/x").write_bytes(b"unsaved\n")
    r = cli("checkout", "--rev", "as-file")
    assert r.code == 6 and "model" in r.err, r.err
    assert (repo_dir / "model/x").read_bytes() == b"unsaved\n"
    got = json.loads(cli("diff", "as-file", "as-folder", "--json").out)
    assert [(c["path"], c["change"]) for c in got] == [
        ("model", "deleted"),
        ("model/deep/y", "added"),
        ("model/x", "added"),
    ]
    fresh = clone(repo_dir, tmp_path / "clone")
    as_file = {"model": b"a single file\n"}
    for rev, want in [("as-file", as_file), ("as-folder", folder), ("as-file", as_file)]:
        dv_ok("pull", "--rev", rev, cwd=fresh)
        assert snapshot(fresh) == want, rev
