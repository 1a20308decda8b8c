"""``dataver install``: git hooks that keep data in step with git, driven by real
``git checkout`` / ``git merge`` / ``git push`` processes."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import write
from history_helpers import blob, dv, dv_ok, git, object_files, pointer_digest, snapshot

HOOKS = ("post-checkout", "post-merge", "pre-push")
MARKER = "# installed by `dataver install`"
V1 = {"data/a.txt": b"a, version 1\n", "data/gone.txt": b"deleted in v2\n", "data/sub/b.bin": bytes(range(256)) * 8}
V2 = {"data/a.txt": b"a, version 2\n", "data/sub/b.bin": bytes(range(256)) * 8, "data/sub/new.txt": b"new in v2\n"}


@dataclass
class Project:
    root: Path
    store: Path
    hooks: Path
    objects_v2: set


def _commit(root: Path, files: dict[str, bytes], message: str, tag: str) -> None:
    for p in (root / "data").rglob("*") if (root / "data").exists() else []:
        if p.is_file():
            p.unlink()
    for rel, data in files.items():
        write(root / rel, data)
    dv_ok("add", "data", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", message, cwd=root)
    git("tag", tag, cwd=root)


@pytest.fixture
def project(tmp_path) -> Project:
    """main at v2 (v1 one commit back), a default data remote (empty), hooks not yet installed."""
    root, store = tmp_path / "repo", tmp_path / "store"
    root.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=root)
    dv_ok("init", cwd=root)
    dv_ok("remote", "add", "storage", store, "--default", cwd=root)
    _commit(root, V1, "v1", "v1")
    _commit(root, V2, "v2", "v2")
    objects = {blob(v) for v in V2.values()} | {(pointer_digest((root / "data.dv").read_bytes()), True)}
    return Project(root, store, root / ".git" / "hooks", objects)


def snap(root: Path) -> dict[str, bytes]:
    """The work tree's files less the .gitattributes install writes (the merge driver)."""
    return {k: v for k, v in snapshot(root).items() if k != ".gitattributes"}


def installed(p: Project) -> dict[str, str]:
    return {name: (p.hooks / name).read_text() for name in HOOKS}


def test_install_writes_executable_hooks_and_is_idempotent(project):
    r = dv_ok("install", cwd=project.root)
    for name in HOOKS:
        path = project.hooks / name
        assert path.is_file() and os.stat(path).st_mode & stat.S_IXUSR, name
        assert MARKER in path.read_text()
        assert f"{name}: installed" in r.err
    first = installed(project)
    r = dv_ok("install", cwd=project.root)
    assert installed(project) == first
    assert all(f"{name}: already installed" in r.err for name in HOOKS), r.err
    assert not list(project.hooks.glob("*.pre-dataver"))  # our own hook is never chained to itself


def test_post_checkout_and_post_merge_restore_the_data(project):
    dv_ok("install", cwd=project.root)
    git("add", ".gitattributes", cwd=project.root)  # as install's hint says
    git("commit", "--quiet", "-m", "merge driver", cwd=project.root)
    git("checkout", "--quiet", "v1", cwd=project.root)
    assert snap(project.root) == V1
    git("checkout", "--quiet", "main", cwd=project.root)
    assert snap(project.root) == V2
    # a fast-forward merge runs post-merge
    git("checkout", "--quiet", "-b", "old", "v1", cwd=project.root)
    assert snap(project.root) == V1
    git("merge", "--quiet", "--ff-only", "main", cwd=project.root)
    assert snap(project.root) == V2
    assert git("status", "--porcelain", cwd=project.root).stdout == ""
    assert dv("status", cwd=project.root).out == ""


def test_a_failing_post_checkout_says_git_already_switched_and_what_to_run(project):
    """issue 14, defect 11: the data checkout refuses (an unsaved change to tracked data)
    after git has moved HEAD; the hook says so and names the command that finishes it."""
    dv_ok("install", cwd=project.root)
    write(project.root / "data/a.txt", b"an unsaved edit\n")
    r = git("checkout", "--quiet", "v1", cwd=project.root, check=False)
    assert git("rev-parse", "HEAD", cwd=project.root).stdout == git("rev-parse", "v1", cwd=project.root).stdout
    assert "dataver: git has already switched commits, but the data in the workspace was not updated" in r.stderr
    assert "then run: dataver checkout (--force discards unsaved changes" in r.stderr
    assert (project.root / "data/a.txt").read_bytes() == b"an unsaved edit\n"  # nothing lost
    dv_ok("checkout", "--force", cwd=project.root)  # what the message says finishes the switch
    assert snap(project.root) == V1


def _untrack_data_in_a_commit(p: Project) -> None:
    """A commit on a new branch where data.dv is gone (dataver remove, then committed)."""
    git("checkout", "--quiet", "-b", "no-data", cwd=p.root)
    dv_ok("remove", "data", "--purge", cwd=p.root)  # the files go too (git add -A would commit them)
    git("add", "-A", cwd=p.root)
    git("commit", "--quiet", "-m", "no data", cwd=p.root)


def test_leaving_a_commit_removes_data_no_pointer_tracks(project):
    """issue 14: git checkout to a commit without data.dv left data/ as untracked files
    (a git add -A would commit them into git); the hook now removes them, as their
    bytes are in the cache, and checking out the old commit brings them back."""
    dv_ok("install", cwd=project.root)
    _untrack_data_in_a_commit(project)
    git("checkout", "--quiet", "main", cwd=project.root)
    assert snap(project.root) == V2
    r = git("checkout", "--quiet", "no-data", cwd=project.root)
    assert not (project.root / "data").exists(), r.stderr
    assert git("status", "--porcelain", "--untracked-files=all", cwd=project.root).stdout == ""
    git("checkout", "--quiet", "main", cwd=project.root)
    assert snap(project.root) == V2
    # a merge that deletes the pointer does the same (post-merge, from ORIG_HEAD)
    git("merge", "--quiet", "--ff-only", "no-data", cwd=project.root)
    assert not (project.root / "data").exists()


def test_leaving_a_commit_keeps_data_with_unsaved_changes(project):
    dv_ok("install", cwd=project.root)
    _untrack_data_in_a_commit(project)
    git("checkout", "--quiet", "main", cwd=project.root)
    write(project.root / "data/a.txt", b"edited, never added\n")
    write(project.root / "data/mine.txt", b"a file the pointer never had\n")
    r = git("checkout", "--quiet", "no-data", cwd=project.root, check=False)
    assert r.returncode == 0, r.stderr
    assert "kept data, no longer tracked at this commit: data/a.txt and 1 more differ from the cache" in r.stderr
    assert (project.root / "data/a.txt").read_bytes() == b"edited, never added\n"
    assert (project.root / "data/mine.txt").exists()


def test_checkout_previous_by_hand(project, tmp_path):
    """Without hooks: dataver checkout --previous COMMIT does what the hook does."""
    _untrack_data_in_a_commit(project)
    git("checkout", "--quiet", "main", cwd=project.root)
    dv_ok("checkout", cwd=project.root)  # no hooks: the data back by hand
    git("checkout", "--quiet", "no-data", cwd=project.root)
    assert (project.root / "data").is_dir()  # what git leaves behind without the hook
    r = dv("checkout", "--previous", "main", "--json", cwd=project.root)
    assert r.code == 0, r.err
    assert json.loads(r.out)["left"] == {"removed": ["data"], "kept": {}}
    assert not (project.root / "data").exists()
    # unknown or null commits: nothing to compare with, nothing removed
    for previous in ("0" * 40, "no-such-rev"):
        assert dv("checkout", "--previous", previous, cwd=project.root).code == 0


def test_an_existing_hook_is_kept_and_still_runs(project):
    original = '#!/bin/sh\necho "post-checkout $*" >> "$(git rev-parse --git-dir)/marker"\n'
    (project.hooks / "post-checkout").write_text(original)
    os.chmod(project.hooks / "post-checkout", 0o755)
    r = dv_ok("install", cwd=project.root)
    assert "post-checkout.pre-dataver" in r.err
    assert (project.hooks / "post-checkout.pre-dataver").read_text() == original
    assert MARKER in (project.hooks / "post-checkout").read_text()
    git("checkout", "--quiet", "v1", cwd=project.root)
    marker = project.root / ".git" / "marker"
    assert marker.read_text().startswith("post-checkout ")  # the old hook ran, with git's arguments
    assert len(marker.read_text().split()) == 4
    assert snap(project.root) == V1  # and so did dataver
    # re-installing keeps the chain as it is
    dv_ok("install", cwd=project.root)
    assert (project.hooks / "post-checkout.pre-dataver").read_text() == original
    git("checkout", "--quiet", "main", cwd=project.root)
    assert len(marker.read_text().splitlines()) == 2
    assert snap(project.root) == V2


def test_a_failing_chained_hook_stops_the_chain(project):
    """A pre-push hook that was there before still gets its veto."""
    bare = project.root.parent / "origin.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", bare, cwd=project.root.parent)
    git("remote", "add", "origin", bare, cwd=project.root)
    (project.hooks / "pre-push").write_text('#!/bin/sh\ncat > "$(git rev-parse --git-dir)/pushed-refs"\nexit 1\n')
    os.chmod(project.hooks / "pre-push", 0o755)
    dv_ok("install", cwd=project.root)
    p = git("push", "--quiet", "origin", "main", cwd=project.root, check=False)
    assert p.returncode != 0
    assert "refs/heads/main" in (project.root / ".git" / "pushed-refs").read_text()  # stdin was passed on
    assert git("ls-remote", "--heads", bare, cwd=project.root).stdout == ""
    assert object_files(project.store) == set()  # dataver push did not run after the veto


def test_pre_push_pushes_the_data(project):
    bare = project.root.parent / "origin.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", bare, cwd=project.root.parent)
    git("remote", "add", "origin", bare, cwd=project.root)
    dv_ok("install", cwd=project.root)
    assert object_files(project.store) == set()
    git("push", "--quiet", "origin", "main", "--tags", cwd=project.root)
    assert project.objects_v2 <= object_files(project.store)
    head = git("rev-parse", "HEAD", cwd=project.root).stdout.split()[0]
    assert head in git("ls-remote", "--heads", bare, cwd=project.root).stdout
    # a clone of what was pushed gets its data from the data remote
    dest = project.root.parent / "elsewhere"
    git("clone", "--quiet", bare, dest, cwd=project.root.parent)
    dv_ok("pull", cwd=dest)
    assert snapshot(dest) == V2


def test_pre_push_pushes_the_commits_going_out_not_the_workspace(project):
    """The data a pushed commit needs reaches the data remote even when the workspace
    has moved on (re-added, uncommitted) since that commit."""
    bare = project.root.parent / "origin.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", bare, cwd=project.root.parent)
    git("remote", "add", "origin", bare, cwd=project.root)
    dv_ok("install", cwd=project.root)
    write(project.root / "data/a.txt", b"an uncommitted edit\n")
    dv_ok("add", "data", cwd=project.root)
    git("push", "--quiet", "origin", "main", cwd=project.root)
    assert project.objects_v2 <= object_files(project.store)
    assert blob(b"an uncommitted edit\n") not in object_files(project.store)
    dest = project.root.parent / "elsewhere"
    git("clone", "--quiet", bare, dest, cwd=project.root.parent)
    dv_ok("pull", cwd=dest)
    assert snapshot(dest) == V2


def test_a_failing_data_push_blocks_the_git_push(project):
    bare = project.root.parent / "origin.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", bare, cwd=project.root.parent)
    git("remote", "add", "origin", bare, cwd=project.root)
    dv_ok("install", cwd=project.root)
    # the data remote cannot be written: a plain file stands where its folder should be
    blocker = project.root.parent / "not-a-folder"
    blocker.write_text("in the way\n")
    dv_ok("remote", "modify", "storage", "url", blocker / "store", cwd=project.root)
    p = git("push", "origin", "main", cwd=project.root, check=False)
    assert p.returncode != 0, p.stderr
    assert "error:" in p.stderr and "remote 'storage'" in p.stderr  # dataver's error, shown by git
    assert git("ls-remote", "--heads", bare, cwd=project.root).stdout == ""  # git pushed nothing
    # data missing everywhere blocks too: an object the pointers need is in neither place
    dv_ok("remote", "modify", "storage", "url", project.store, cwd=project.root)
    lost = cache_object(project.root, V2["data/sub/new.txt"])
    lost.unlink()
    p = git("push", "origin", "main", cwd=project.root, check=False)
    assert p.returncode != 0
    assert "missing" in p.stderr and "data/sub/new.txt" in p.stderr
    assert git("ls-remote", "--heads", bare, cwd=project.root).stdout == ""
    # once the data can be pushed, so can the commits
    write(lost, V2["data/sub/new.txt"])
    p = git("push", "--quiet", "origin", "main", cwd=project.root, check=False)
    assert p.returncode == 0, p.stderr
    assert project.objects_v2 <= object_files(project.store)


def cache_object(root: Path, data: bytes) -> Path:
    hex_ = blob(data)[0]
    return root / ".dataver/cache/xxh3-128" / hex_[:2] / hex_[2:]


def test_install_follows_core_hooks_path(project):
    git("config", "core.hooksPath", ".githooks", cwd=project.root)
    dv_ok("install", cwd=project.root)
    assert all((project.root / ".githooks" / name).is_file() for name in HOOKS)
    assert not (project.hooks / "post-checkout").exists()
    git("checkout", "--quiet", "v1", cwd=project.root)
    assert snapshot(project.root, "data") == V1


def test_a_pointer_removed_by_hand_keeps_its_data_across_a_branch_switch(project):
    """dataver remove (not committed) keeps the data; a git checkout -b must not delete
    it: the pointer is still at HEAD, so git did not leave it behind."""
    dv_ok("install", cwd=project.root)
    git("add", ".gitattributes", cwd=project.root)
    git("commit", "--quiet", "-m", "merge driver", cwd=project.root)
    dv_ok("remove", "data", cwd=project.root)
    git("checkout", "--quiet", "-b", "feature", cwd=project.root)
    assert snap(project.root) == V2  # the files are all still there
