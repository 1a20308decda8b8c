"""gc never deletes the only copy of committed data.

An object some commit needs (any commit reachable from a branch or tag) that no
configured remote holds is kept by cache gc, whatever its scope, unless
``--not-pushed-too``. Objects no commit needs go as before, and so do committed
ones a remote holds. Every test runs the CLI on a real git repository and looks at
the cache's files, the remote's files and the bytes a checkout gives back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import git_commit, make_tree, write
from history_helpers import blob, git, object_files, pointer_digest

from dataver.cli.render import human_size

MAIN_MODEL = b"main model\n" * 50
SIDE_MODEL = b"side model, committed and never pushed\n" * 40
SIDE_MODEL_2 = b"side model, second commit\n" * 30
ORPHAN = b"added, never committed\n" * 20
NEW_KEYS = {
    "unpushed_kept",
    "unpushed_bytes",
    "unpushed_revisions",
    "unreachable_remotes",
    "unreadable_pointers",
    "unlisted_folders",
}


def gc_json(cli, *args: str) -> dict:
    r = cli("gc", *args, "--json")
    assert r.code == 0, r.err
    return json.loads(r.out)


def cache(root: Path) -> set[tuple[str, bool]]:
    return object_files(root / ".dataver/cache")


def manifest_ref(root: Path, pointer_rel: str, rev: str) -> tuple[str, bool]:
    return (pointer_digest(git("show", f"{rev}:{pointer_rel}", cwd=root).stdout.encode()), True)


def back_to(root: Path, cli, branch: str) -> None:
    git("checkout", "--quiet", branch, cwd=root)
    assert cli("checkout", "--force").code == 0


@pytest.fixture
def side(repo_dir, cli) -> dict[str, str]:
    """main has model.bin; branch ``side`` commits two other versions of it on top and
    is left behind, never pushed. Returns the branch names and commit ids."""
    root = repo_dir
    main = git("branch", "--show-current", cwd=root).stdout.strip()
    write(root / "model.bin", MAIN_MODEL)
    assert cli("add", "model.bin").code == 0
    revs = {"main": main, "m1": git_commit(root, "main model")}
    git("checkout", "--quiet", "-b", "side", cwd=root)
    write(root / "model.bin", SIDE_MODEL)
    assert cli("add", "model.bin").code == 0
    revs["s1"] = git_commit(root, "side model")
    write(root / "model.bin", SIDE_MODEL_2)
    assert cli("add", "model.bin").code == 0
    revs["s2"] = git_commit(root, "side model 2")
    back_to(root, cli, main)
    assert (root / "model.bin").read_bytes() == MAIN_MODEL
    return revs


def add_orphan(root: Path, cli) -> None:
    """A version added but never committed: its pointer is replaced before any commit."""
    write(root / "scratch.bin", ORPHAN)
    assert cli("add", "scratch.bin").code == 0
    os.unlink(root / "scratch.bin.dv")


# (1) a side branch, never pushed --------------------------------------------------------------
@pytest.mark.parametrize("scope", [[], ["--all-tags"], ["--all-branches"]], ids=["workspace", "tags", "branches"])
def test_unpushed_side_branch_is_kept_whatever_the_scope(repo_dir, cli, side, scope):
    root = repo_dir
    git("tag", "v1", side["m1"], cwd=root)
    add_orphan(root, cli)
    side_objs = {blob(SIDE_MODEL), blob(SIDE_MODEL_2)}
    assert cache(root) == {blob(MAIN_MODEL), blob(ORPHAN)} | side_objs
    r = cli("gc", *scope, "--yes")
    assert r.code == 0, r.err
    # -a keeps the side tip through its scope; the older side version only through this rule
    only_rule = [SIDE_MODEL] if scope == ["--all-branches"] else [SIDE_MODEL, SIDE_MODEL_2]
    assert "removed 1 object(s)" in r.err
    size = human_size(sum(map(len, only_rule)))
    assert f"kept {len(only_rule)} object(s) ({size}) that committed revisions need and no remote holds" in r.err
    assert "no remote holds" in r.err and "--not-pushed-too" in r.err
    assert side["s1"][:10] in r.err  # a revision to push --rev
    assert cache(root) == {blob(MAIN_MODEL)} | side_objs  # the orphan went, the side branch stayed
    for rev, data in ((side["s1"], SIDE_MODEL), (side["s2"], SIDE_MODEL_2)):
        assert cli("checkout", "--rev", rev).code == 0
        assert (root / "model.bin").read_bytes() == data
    assert cli("checkout").code == 0
    # the same gc again: nothing to remove, the same objects kept and reported
    out = gc_json(cli, *scope, "--yes")
    assert (out["removed"], out["kept"], out["unpushed_kept"]) == (0, 3, len(only_rule))
    assert out["unpushed_bytes"] == sum(map(len, only_rule))


def test_not_pushed_too_deletes_them(repo_dir, cli, side):
    root = repo_dir
    out = gc_json(cli, "--not-pushed-too", "--yes")
    assert (out["removed"], out["kept"], out["unpushed_kept"]) == (2, 1, 0)
    assert out["freed"] == len(SIDE_MODEL) + len(SIDE_MODEL_2)
    assert cache(root) == {blob(MAIN_MODEL)}
    r = cli("checkout", "--rev", "side")
    assert r.code == 7 and blob(SIDE_MODEL_2)[0] in r.err


def test_without_yes_it_asks_about_what_it_would_remove_only(repo_dir, cli, side):
    add_orphan(repo_dir, cli)
    r = cli("gc")  # stdin is not a terminal under pytest
    assert r.code == 6 and "would remove 1 object(s)" in r.err
    assert blob(ORPHAN) in cache(repo_dir)


# (2) pushed: the remote holds them, so the cache may let them go -----------------------------
def test_what_a_remote_holds_is_collected_as_before(repo_dir, cli, side, tmp_path):
    root = repo_dir
    store = tmp_path / "store"
    assert cli("remote", "add", "origin", str(store), "--default").code == 0
    assert cli("push", "--rev", side["s1"]).code == 0  # the first side version only
    out = gc_json(cli, "--yes")
    assert (out["removed"], out["unpushed_kept"], out["unreachable_remotes"]) == (1, 1, {})
    assert out["unpushed_revisions"] == [side["s2"]]
    assert cache(root) == {blob(MAIN_MODEL), blob(SIDE_MODEL_2)}
    assert blob(SIDE_MODEL) in object_files(store)
    assert cli("push", "--rev", "side").code == 0
    out = gc_json(cli, "--yes")
    assert (out["removed"], out["unpushed_kept"]) == (1, 0)
    assert cache(root) == {blob(MAIN_MODEL)}
    # and the remote gives them back, byte for byte
    assert cli("pull", "--rev", side["s1"]).code == 0
    assert (root / "model.bin").read_bytes() == SIDE_MODEL


def test_any_configured_remote_counts_and_each_is_asked_once(repo_dir, cli, side, tmp_path, monkeypatch):
    from dataver.remotes import RemoteStore

    root = repo_dir
    assert cli("remote", "add", "a", str(tmp_path / "a"), "--default").code == 0
    assert cli("remote", "add", "b", str(tmp_path / "b")).code == 0
    assert cli("push", "-r", "a", "--rev", side["s1"]).code == 0
    assert cli("push", "-r", "b", "--rev", side["s2"]).code == 0
    asked: list[tuple[str, int]] = []
    missing = RemoteStore.missing

    def spy(self, refs, jobs=8):
        asked.append((self.name, len(refs)))
        return missing(self, refs, jobs)

    monkeypatch.setattr(RemoteStore, "missing", spy)
    add_orphan(root, cli)
    out = gc_json(cli, "--yes")
    assert (out["removed"], out["unpushed_kept"]) == (3, 0)
    assert asked == [("a", 2), ("b", 1)]  # the candidates only (not the orphan), in one batch per remote
    assert cache(root) == {blob(MAIN_MODEL)}


# (3) a committed folder: the blobs its manifest lists are protected ----------------------------
def test_committed_folder_keeps_its_manifest_and_every_listed_blob(repo_dir, cli, side):
    root = repo_dir
    git("checkout", "--quiet", "side", cwd=root)
    files = make_tree(root / "data", 12, seed=7)
    assert cli("add", "data").code == 0
    sha = git_commit(root, "side data")
    shutil.rmtree(root / "data")  # ignored on side, so switching branches would leave it
    back_to(root, cli, side["main"])
    folder = {manifest_ref(root, "data.dv", sha)} | {blob(d) for d in files.values()}
    out = gc_json(cli, "--yes")
    assert out["removed"] == 0
    assert out["unpushed_kept"] == len(folder) + 2  # and the two side models
    assert folder <= cache(root)
    assert cli("checkout", "--rev", sha).code == 0
    assert {p.relative_to(root / "data").as_posix(): p.read_bytes() for p in (root / "data").rglob("*.bin")} == files


def test_committed_folder_without_its_manifest_protects_no_blobs(repo_dir, cli, side):
    """The chosen rule: a folder version whose manifest is not in the cache cannot be
    rebuilt from this cache anyway, and a remote holding the manifest holds its blobs
    (push sends them first). Its blobs are not known to be referenced; gc says how many
    folder versions it could not list."""
    root = repo_dir
    git("checkout", "--quiet", "side", cwd=root)
    files = make_tree(root / "data", 4, seed=8)
    assert cli("add", "data").code == 0
    sha = git_commit(root, "side data")
    shutil.rmtree(root / "data")
    back_to(root, cli, side["main"])
    mhex, _ = manifest_ref(root, "data.dv", sha)
    os.unlink(root / ".dataver/cache/xxh3-128" / mhex[:2] / (mhex[2:] + ".manifest"))
    out = gc_json(cli, "--yes")
    assert out["unlisted_folders"] == 1
    assert out["unpushed_kept"] == 2  # the side models, listed by their pointers
    assert not {blob(d) for d in files.values()} & cache(root)


# (4) never committed: garbage as before --------------------------------------------------------
def test_never_committed_data_is_still_removed(repo_dir, cli):
    root = repo_dir
    make_tree(root / "data", 5, seed=1)
    assert cli("add", "data").code == 0
    git_commit(root, "data")
    committed = cache(root)
    write(root / "data/extra.bin", ORPHAN)
    assert cli("add", "data").code == 0  # a new folder version, never committed ...
    staged = cache(root) - committed
    make_tree(root / "data", 5, seed=1)
    os.unlink(root / "data/extra.bin")
    assert cli("add", "data").code == 0  # ... and replaced by the committed one again
    assert len(staged) == 2  # its manifest and the extra blob
    out = gc_json(cli, "--yes")
    assert (out["removed"], out["unpushed_kept"]) == (2, 0)
    assert cache(root) == committed


def test_without_git_history_there_is_nothing_to_protect(repo_dir, cli):
    add_orphan(repo_dir, cli)
    out = gc_json(cli, "--yes")  # the git repository has no commits yet
    assert (out["removed"], out["unpushed_kept"]) == (1, 0)


# (5) a remote that cannot be reached holds nothing ---------------------------------------------
def test_unreachable_remote_keeps_them_and_says_so(repo_dir, cli, side, tmp_path):
    root = repo_dir
    gone = tmp_path / "no-such-folder"
    assert cli("remote", "add", "origin", str(gone), "--default").code == 0
    add_orphan(root, cli)
    r = cli("gc", "--yes")
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    assert "could not check remote 'origin'" in r.err and "does not exist" in r.err
    assert "kept 2 object(s)" in r.err
    assert cache(root) == {blob(MAIN_MODEL), blob(SIDE_MODEL), blob(SIDE_MODEL_2)}
    out = gc_json(cli, "--yes")
    assert list(out["unreachable_remotes"]) == ["origin"] and "does not exist" in out["unreachable_remotes"]["origin"]
    assert not gone.exists()


def test_gc_on_a_remote_is_unchanged(repo_dir, cli, side, tmp_path):
    """gc -r deletes from the remote what the scope does not keep, as before: the
    unpushed rule is about the cache, the only copy."""
    store = tmp_path / "store"
    assert cli("remote", "add", "origin", str(store), "--default").code == 0
    assert cli("push", "--rev", "side").code == 0
    assert cli("push").code == 0
    out = gc_json(cli, "-r", "origin", "--yes")
    assert (out["removed"], out["kept"], out["unpushed_kept"]) == (1, 1, 0)
    assert object_files(store) == {blob(MAIN_MODEL)}
    assert cache(repo_dir) == {blob(MAIN_MODEL), blob(SIDE_MODEL), blob(SIDE_MODEL_2)}


# (6) --dry-run and --json -----------------------------------------------------------------------
def test_dry_run_reports_the_same_numbers_and_removes_nothing(repo_dir, cli, side):
    root = repo_dir
    add_orphan(root, cli)
    before = cache(root)
    r = cli("gc", "--dry-run")
    assert r.code == 0, r.err
    assert "would remove 1 object(s)" in r.err
    assert f"kept 2 object(s) ({human_size(len(SIDE_MODEL) + len(SIDE_MODEL_2))})" in r.err
    preview = gc_json(cli, "--dry-run")
    assert cache(root) == before
    done = gc_json(cli, "--yes")
    assert set(preview) == set(done) and NEW_KEYS <= set(preview) and "removed_paths" not in preview
    assert preview.pop("dry_run") is True and done.pop("dry_run") is False
    assert preview == done
    assert done["unpushed_kept"] == 2 and done["unpushed_bytes"] == len(SIDE_MODEL) + len(SIDE_MODEL_2)
    assert done["unpushed_revisions"] == [side["s2"], side["s1"]]  # the branch tip first
    assert (done["unreachable_remotes"], done["unreadable_pointers"], done["unlisted_folders"]) == ({}, [], 0)


def test_all_commits_scope_needs_no_remote_check(repo_dir, cli, side):
    out = gc_json(cli, "--all-commits", "--yes")
    assert (out["removed"], out["kept"], out["unpushed_kept"], out["revisions"]) == (0, 3, 0, 3)


# hostile and broken pointers in history ------------------------------------------------------------
def test_hostile_and_malformed_committed_pointers_only_keep_more(repo_dir, cli, side):
    """Paths do not matter for this walk, only digests: a pointer committed as
    ``.git.dv`` still protects its object, and a pointer that does not parse keeps
    the digest its ``digest:`` line names; gc goes on and names the broken file.
    (A scoped gc that must read that revision stops with the usual exit 5.)"""
    root = repo_dir
    git("checkout", "--quiet", "side", cwd=root)
    hostile, broken = b"behind a hostile name\n" * 9, b"behind a broken pointer\n" * 11
    for name, data in (("h.bin", hostile), ("b.bin", broken)):
        write(root / name, data)
        assert cli("add", name).code == 0
    os.rename(root / "h.bin.dv", root / ".git.dv")
    text = (root / "b.bin.dv").read_text()
    (root / "b.bin.dv").write_text(text.replace("size:", "size: lots\nsize:"))  # a key twice
    os.unlink(root / "h.bin")
    os.unlink(root / "b.bin")
    sha = git_commit(root, "hostile")
    git("checkout", "--quiet", side["main"], cwd=root)
    assert not (root / ".git.dv").exists() and not (root / "b.bin.dv").exists()
    assert cli("checkout", "--force").code == 0
    r = cli("gc", "--yes")
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    assert f"1 committed pointer file(s) do not parse (b.bin.dv at {sha[:10]})" in r.err
    assert {blob(hostile), blob(broken)} <= cache(root)
    out = gc_json(cli, "--yes")
    assert out["unreadable_pointers"] == [f"b.bin.dv at {sha[:10]}"]
    assert out["unpushed_kept"] == 4
    before = cache(root)
    r = cli("gc", "--all-commits", "--yes")
    assert r.code == 5 and "b.bin.dv" in r.err and "Traceback" not in r.err
    assert cache(root) == before


def test_scoped_gc_reads_hostile_names_for_their_digests_only(repo_dir, cli, side):
    """``gc -A`` over history holding ``.git.dv``: the name is never written to, so it does
    not stop gc, and the object it names is kept like any other."""
    root = repo_dir
    git("checkout", "--quiet", "side", cwd=root)
    data = b"behind a hostile name\n" * 9
    write(root / "h.bin", data)
    assert cli("add", "h.bin").code == 0
    os.rename(root / "h.bin.dv", root / ".git.dv")
    os.unlink(root / "h.bin")
    git_commit(root, "hostile")
    git("checkout", "--quiet", side["main"], cwd=root)
    r = cli("gc", "--all-commits", "--yes")
    assert r.code == 0, r.err
    assert blob(data) in cache(root)
    assert cli("checkout", "--rev", "side", "--force").code == 5  # writing there is still refused
