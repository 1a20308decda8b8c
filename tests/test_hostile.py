"""Hostile input and resource faults: nothing is written where it must not be, and
the previous state survives a failed write."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest
from conftest import git_commit, make_tree, write

from dataver import manifest, odb
from dataver.digest import DEFAULT_ALGORITHM
from dataver.errors import PathError, PointerError, StorageError
from dataver.hashing import digest_bytes, digest_manifest


def cache_files(repo_dir) -> set[str]:
    root = repo_dir / ".dataver" / "cache" / DEFAULT_ALGORITHM
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# -- symlinks inside tracked folders -----------------------------------------------------
def test_symlink_out_of_the_repository_is_refused(repo_dir, cli, tmp_path):
    outside = write(tmp_path / "elsewhere" / "secret.txt", "not part of this repo")
    make_tree(repo_dir / "data", 5)
    os.symlink(outside, repo_dir / "data" / "leak.txt")
    r = cli("add", "data")
    assert r.code == PathError.exit_code
    assert "data/leak.txt is a symbolic link to" in r.err and "outside the tracked folder and the repository" in r.err
    assert not (repo_dir / "data.dv").exists()
    assert cache_files(repo_dir) == set()


def test_symlink_within_the_repository_is_followed(repo_dir, cli):
    write(repo_dir / "shared" / "labels.csv", "a,b\n1,2\n")
    make_tree(repo_dir / "data", 3)
    os.symlink(repo_dir / "shared" / "labels.csv", repo_dir / "data" / "labels.csv")
    assert cli("add", "data").code == 0
    r = cli("ls", "data", "--json")
    assert '"data/labels.csv"' in r.out
    assert digest_bytes(b"a,b\n1,2\n").hex in r.out


def test_tracked_folder_that_is_itself_a_link_elsewhere(repo_dir, cli, tmp_path):
    real = tmp_path / "big-disk" / "dataset"
    make_tree(real, 4)
    os.symlink(real / "f0.bin", real / "alias.bin")  # a link inside the linked folder: fine
    os.symlink(real, repo_dir / "data")
    assert cli("add", "data").code == 0
    assert (repo_dir / "data.dv").exists()


# -- disk full (a file-size limit makes every write past 64 KiB fail) ----------------------
def _limited(cmd: list[str], cwd, limit: int = 64 * 1024) -> subprocess.CompletedProcess:
    def limit_writes() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "dataver", *cmd], cwd=cwd, capture_output=True, text=True, preexec_fn=limit_writes
    )


def test_add_that_cannot_write_the_cache_keeps_everything(repo_dir):
    data = os.urandom(1024 * 1024)
    write(repo_dir / "model.bin", data)
    p = _limited(["add", "model.bin"], repo_dir)
    assert p.returncode == StorageError.exit_code, p.stderr
    assert p.stderr.startswith("error: cannot write to the cache at ")
    assert "Traceback" not in p.stderr
    assert (repo_dir / "model.bin").read_bytes() == data  # the user's file is untouched
    assert not (repo_dir / "model.bin.dv").exists()  # no pointer to an object that is not there
    assert cache_files(repo_dir) == set()  # no object, complete or partial
    assert os.listdir(repo_dir / ".dataver" / "cache" / "tmp") == []  # no stray temporary


def test_checkout_that_cannot_write_the_workspace_leaves_no_partial_file(repo_dir, cli):
    old, new = os.urandom(200_000), os.urandom(300_000)
    write(repo_dir / "model.bin", old)
    assert cli("add", "model.bin").code == 0
    git_commit(repo_dir, "v1")
    write(repo_dir / "model.bin", new)
    assert cli("add", "model.bin").code == 0
    git_commit(repo_dir, "v2")
    p = _limited(["checkout", "--rev", "HEAD~1"], repo_dir)
    assert p.returncode == StorageError.exit_code, p.stderr
    assert "cannot write" in p.stderr and "model.bin" in p.stderr
    assert (repo_dir / "model.bin").read_bytes() == new  # the previous file, whole
    assert not [n for n in os.listdir(repo_dir) if ".dataver-tmp-" in n]
    assert cli("checkout", "--rev", "HEAD~1").code == 0  # with room again, it completes
    assert (repo_dir / "model.bin").read_bytes() == old


# -- a malicious remote ------------------------------------------------------------------------
def test_remote_manifest_that_escapes_the_folder_writes_nothing_outside(repo_dir, cli, tmp_path):
    """Someone with write access to the remote (and the repo) plants a manifest whose
    entry climbs out of the folder. Its digest is right, so it downloads; checkout
    must still refuse to write outside."""
    payload = b"planted"
    blob = digest_bytes(payload)
    bad_manifest = (f"{manifest.HEADER}\n{blob.hex} {len(payload)} - ../../escaped.txt\n").encode()
    mdigest = digest_manifest(bad_manifest)
    remote = tmp_path / "remote"
    for rel, data in ((blob.relpath(), payload), (mdigest.relpath() + ".manifest", bad_manifest)):
        write(remote / rel, data)
    assert cli("remote", "add", "origin", str(remote), "--default").code == 0
    write(repo_dir / "data.dv", f"version: 1\nkind: dir\nhash: xxh3-128\ndigest: {mdigest.hex}\nsize: 7\nfiles: 1\n")
    r = cli("pull")
    assert r.code == PointerError.exit_code
    assert "unsafe or invalid path" in r.err
    assert not (tmp_path / "escaped.txt").exists() and not (repo_dir.parent / "escaped.txt").exists()


def test_oversized_manifest_is_refused_not_read(repo_dir, cli, monkeypatch):
    make_tree(repo_dir / "data", 50)
    assert cli("add", "data").code == 0
    monkeypatch.setattr(odb, "MAX_MANIFEST_BYTES", 1000)
    r = cli("status")
    assert r.code == PointerError.exit_code
    assert "larger than" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("value", ["../../../etc/passwd", "A" * 32, "0" * 31, "0" * 33, "zz" * 16])
def test_hostile_digest_in_a_cloned_pointer_never_becomes_a_path(repo_dir, cli, value):
    write(repo_dir / "w.bin.dv", f"version: 1\nkind: file\nhash: xxh3-128\ndigest: {value}\nsize: 1\n")
    for cmd in (("status",), ("checkout",), ("pull",), ("verify",)):
        r = cli(*cmd)
        assert r.code == PointerError.exit_code, (cmd, r.err)
        assert "w.bin.dv" in r.err
    assert not (repo_dir / "w.bin").exists()


def test_committed_foreign_dv_file_is_not_taken_for_a_pointer_at_a_revision(repo_dir, cli):
    write(repo_dir / "videos" / "clip.dv", b"\x1f\x07\x00\x3f" + bytes(range(256)) * 2)  # raw DV video
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "w.bin").code == 0
    git_commit(repo_dir, "with a DV video committed")
    r = cli("ls", "--rev", "HEAD", "--json")
    assert r.code == 0, r.err
    assert '"w.bin"' in r.out and "clip" not in r.out
    assert cli("diff", "HEAD").code == 0


def test_fetch_from_a_remote_that_does_not_exist_says_so(repo_dir, cli, tmp_path):
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "w.bin").code == 0
    assert cli("remote", "add", "gone", str(tmp_path / "no-such-folder"), "--default").code == 0
    os.unlink(repo_dir / "w.bin")
    for obj in (repo_dir / ".dataver" / "cache" / DEFAULT_ALGORITHM).rglob("*"):
        if obj.is_file():
            obj.unlink()
    r = cli("fetch")
    assert r.code == 9, r.err
    assert "remote 'gone'" in r.err and "does not exist" in r.err


def test_gc_remote_removes_stale_upload_leftovers(repo_dir, cli, tmp_path):
    """A push killed mid-upload leaves a temporary in <remote>/tmp/; gc -r clears the
    stale ones (older than an hour) and leaves fresh ones (an upload may be running)."""
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "w.bin").code == 0
    remote = tmp_path / "store"
    assert cli("remote", "add", "origin", str(remote), "--default").code == 0
    assert cli("push").code == 0
    stale = write(remote / "tmp" / "123-0123456789abcdef.tmp", b"half an upload")  # the names uploads use
    fresh = write(remote / "tmp" / "456-fedcba9876543210.tmp", b"an upload in progress")
    foreign = write(remote / "tmp" / "notes.txt", b"not ours, however old")
    old = os.stat(stale).st_mtime - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(foreign, (old, old))
    r = cli("gc", "-r", "origin", "-y", "--json")
    assert r.code == 0, r.err
    assert '"temporaries": 1' in r.out
    assert not stale.exists() and fresh.exists() and foreign.exists()
    git_commit(repo_dir, "pointer")
    assert cli("verify", "--remote", "origin").code == 0  # the objects themselves are untouched


def test_cache_dir_inside_git_from_a_committed_config_is_refused(repo_dir, cli):
    """cache.dir can arrive in a stranger's committed .dataver/config."""
    write(repo_dir / "w.bin", b"weights")
    with open(repo_dir / ".dataver" / "config", "a") as f:
        f.write("[cache]\ndir = ../.GIT/objects/dv\n")
    r = cli("add", "w.bin")
    assert r.code == 3 and "inside a .git folder" in r.err and "Traceback" not in r.err
    assert not (repo_dir / ".git" / "objects" / "dv").exists()


def test_gc_removes_only_temporaries_dataver_names(repo_dir, cli, tmp_path):
    """A shared or stranger-configured cache folder: gc leaves old files it did not make."""
    shared = tmp_path / "elsewhere"
    assert cli("config", "cache.dir", str(shared)).code == 0
    ours = write(shared / "tmp" / "123-4-abcdef.tmp", b"a killed add's")
    theirs = write(shared / "tmp" / "report.pdf", b"someone's file")
    for p in (ours, theirs):
        os.utime(p, (1, 1))
    r = cli("gc", "-y", "--json")
    assert r.code == 0, r.err
    assert '"temporaries": 1' in r.out
    assert not ours.exists() and theirs.read_bytes() == b"someone's file"
