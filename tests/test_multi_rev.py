"""Several revisions at once (issue 14): push, fetch, pull, ``status --remote`` and
``verify --remote`` take ``--rev`` more than once and ``-a``/``-T``/``-A`` with gc's
meaning. ``push --rev v1 --rev v2`` once pushed v2 only, silently."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import git_commit, write


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def revs(repo_dir: Path, cli, tmp_path: Path) -> dict:
    """v1 (tag) -> v2 (tag, on branch side only) ; master: v1 -> m3 (not tagged);
    the workspace: f.txt changed and re-added but not committed.
    Returns each version's bytes of f.txt and of d/x.bin."""
    remote = tmp_path / "remote"
    assert cli("remote", "add", "-d", "origin", str(remote)).code == 0
    versions = {}

    def version(name: str) -> None:
        f, x = f"f {name}\n".encode(), f"x {name}\n".encode() * 100
        write(repo_dir / "f.txt", f)
        write(repo_dir / "d" / "x.bin", x)
        write(repo_dir / "d" / "same.bin", b"same in every version\n")
        assert cli("add", "f.txt", "d", "-q").code == 0
        versions[name] = (f, x)

    version("v1")
    git_commit(repo_dir, "v1")
    _git(repo_dir, "tag", "v1")
    _git(repo_dir, "checkout", "-q", "-b", "side")
    version("v2")
    git_commit(repo_dir, "v2")
    _git(repo_dir, "tag", "v2")
    _git(repo_dir, "checkout", "-q", "master")
    assert cli("checkout", "-q").code == 0
    version("m3")
    git_commit(repo_dir, "m3")
    version("m4")
    git_commit(repo_dir, "m4")  # m3 is now neither a branch tip nor a tag
    version("ws")  # the workspace only
    return versions


def _remote_holds(cli, *flags: str) -> dict[str, bool]:
    r = cli("status", "--remote", "origin", "--json", *flags)
    assert r.code == 0, r.err
    return {rec["path"]: rec["remote"] for rec in json.loads(r.out)}


def _fresh_clone(repo_dir: Path, tmp_path: Path, cli) -> Path:
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo_dir), str(clone))
    for branch in ("side",):
        _git(clone, "branch", "-q", branch, f"origin/{branch}")
    return clone


def _read(repo: Path) -> tuple[bytes, bytes]:
    return (repo / "f.txt").read_bytes(), (repo / "d" / "x.bin").read_bytes()


def test_push_several_revs_pushes_each_of_them(revs, repo_dir, cli, tmp_path):
    r = cli("push", "--rev", "v1", "--rev", "v2", "--json")
    assert r.code == 0, r.err
    # v1's and v2's file and folder objects (and their manifests), nothing of m4's or the workspace's
    assert json.loads(r.out)["transferred"] == 2 * 3 + 1  # f, x, manifest per rev; same.bin once
    held = _remote_holds(cli, "--rev", "v1", "--rev", "v2")
    assert held and all(held.values()), held
    assert not _remote_holds(cli)["f.txt"]  # the workspace's version was not pushed

    clone = _fresh_clone(repo_dir, tmp_path, cli)
    for rev in ("v1", "v2"):
        assert cli("checkout", "--rev", rev, "-q", cwd=clone).code == 7  # nothing in this clone's cache
    r = cli("fetch", "--rev", "v1", "--rev", "v2", cwd=clone)
    assert r.code == 0, r.err
    shutil.rmtree(tmp_path / "remote")  # both come from the cache now
    for rev in ("v1", "v2"):
        assert cli("checkout", "--rev", rev, "-q", "--force", cwd=clone).code == 0
        assert _read(clone) == revs[rev]


def test_push_all_branches_covers_the_tips_and_the_workspace_not_tags_or_old_commits(revs, cli):
    assert cli("push", "-a", "-q").code == 0
    assert all(_remote_holds(cli, "--all-branches").values())  # workspace + master + side
    v1 = _remote_holds(cli, "--rev", "v1")
    assert v1["f.txt"] is False and v1["d (manifest)"] is False, v1
    assert cli("verify", "--remote", "origin", "--rev", "v1").code == 1
    assert cli("push", "-T", "-q").code == 0
    assert cli("verify", "--remote", "origin", "-T").code == 0
    r = cli("verify", "--remote", "origin", "-A")  # m3: on no tip, no tag
    assert r.code == 1 and "is not on remote 'origin'" in r.out, (r.out, r.err)
    assert cli("push", "-A", "-q").code == 0
    assert cli("verify", "--remote", "origin", "-A").code == 0


def test_fetch_all_branches_then_checkout_offline(revs, repo_dir, cli, tmp_path):
    assert cli("push", "--all-commits", "-q").code == 0
    clone = _fresh_clone(repo_dir, tmp_path, cli)
    r = cli("fetch", "-a", "--json", cwd=clone)
    assert r.code == 0, r.err
    assert json.loads(r.out)["transferred"] == 2 * 3 + 1  # master's m4 and side's v2
    shutil.rmtree(tmp_path / "remote")
    assert cli("checkout", "--rev", "side", "-q", cwd=clone).code == 0
    assert _read(clone) == revs["v2"]
    assert cli("checkout", "-q", "--force", cwd=clone).code == 0
    assert _read(clone) == revs["m4"]
    assert cli("checkout", "--rev", "v1", "-q", "--force", cwd=clone).code == 7  # no tag was fetched


def test_pull_fetches_every_revision_and_checks_out_one(revs, repo_dir, cli, tmp_path):
    assert cli("push", "-A", "-q").code == 0
    clone = _fresh_clone(repo_dir, tmp_path, cli)
    r = cli("pull", "-T", "-q", cwd=clone)
    assert r.code == 0, r.err
    assert _read(clone) == revs["m4"]  # the workspace's pointers, checked out
    shutil.rmtree(tmp_path / "remote")
    assert cli("checkout", "--rev", "v1", "-q", "--force", cwd=clone).code == 0  # fetched by -T
    assert _read(clone) == revs["v1"]


def test_pull_refuses_two_revisions_and_changes_nothing(revs, repo_dir, cli):
    before = _read(repo_dir)
    r = cli("pull", "--rev", "v1", "--rev", "v2")
    assert r.code == 2
    assert "pull checks out one revision, and 2 were given (v1, v2)" in r.err
    assert "dataver checkout --rev REV" in r.err
    assert _read(repo_dir) == before


@pytest.mark.parametrize("command", [["status"], ["verify"]])
def test_revisions_without_remote_are_a_usage_error(revs, cli, command):
    r = cli(*command, "--rev", "v1")
    assert r.code == 2 and "go with --remote" in r.err, r.err


def test_paths_with_several_revisions(revs, cli):
    r = cli("push", "--rev", "v1", "--rev", "v2", "d", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["transferred"] == 2 * 2 + 1  # x.bin and the manifest per rev; same.bin once
    held = _remote_holds(cli, "--rev", "v1", "--rev", "v2")
    assert not any(v for k, v in held.items() if k.startswith("f.txt")), held
    assert all(v for k, v in held.items() if k.startswith("d")), held

    r = cli("push", "-A", "nothere.bin")
    assert r.code == 4
    assert "nothere.bin is not tracked in any revision covered (the workspace, every commit)" in r.err


def test_gc_names_every_unpushed_revision_in_one_push_command(revs, cli):
    assert cli("push", "-q").code == 0  # the workspace's objects only
    r = cli("gc", "--yes")
    assert r.code == 0, r.err
    hint = r.err.split("push them (", 1)[1].split(")", 1)[0]
    assert hint == "dataver push --all-commits: 4 commits need them", hint  # v1, v2, m3, m4
    assert cli("push", "--rev", "v1", "--rev", "v2", "-q").code == 0
    r = cli("gc", "--yes")
    hint = r.err.split("push them (", 1)[1].split(")", 1)[0]
    assert hint.startswith("dataver push --rev ") and hint.count("--rev") == 2, hint  # m3 and m4
    assert cli(*hint.split()[1:], "-q").code == 0  # the hint works as written
    r = cli("gc", "--yes")
    assert "no remote holds" not in r.err
