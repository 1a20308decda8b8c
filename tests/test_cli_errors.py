"""Every user error: its exit code (dataver.errors), one ``error:`` line, no traceback."""

from __future__ import annotations

import json
import os
import sys

import pygit2
import pytest
from conftest import cli_proc, git_commit, make_tree, write

from dataver.cli.main import main
from dataver.errors import (
    ObjectsMissing,
    PathError,
    PointerError,
    RepoError,
    SymlinkLoop,
)
from dataver.hashing import digest_manifest

USAGE = 2


def assert_user_error(r, code: int, *needles: str) -> str:
    """The run failed with ``code``, one leading ``error:`` line, no traceback."""
    assert r.code == code, (r.code, r.err)
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert lines, "nothing on stderr"
    assert lines[0].startswith("error: "), r.err
    assert sum(line.startswith("error:") for line in lines) == 1, r.err
    assert r.out == ""
    for needle in needles:
        assert needle in r.err, (needle, r.err)
    return lines[0]


def stage_in_git(repo_dir, *rels: str) -> None:
    repo = pygit2.Repository(str(repo_dir))
    for rel in rels:
        repo.index.add(rel)
    repo.index.write()


# -- repository -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("add", "x"),
        ("checkout",),
        ("ls",),
        ("gc", "-y"),
        ("verify",),
        ("config", "-l"),
        ("unprotect", "x"),
    ],
    ids=lambda a: a[0],
)
def test_not_in_a_dataver_repository(tmp_path, cli, args):
    pygit2.init_repository(str(tmp_path))
    write(tmp_path / "x", "data")
    r = cli(*args, cwd=tmp_path)
    assert_user_error(r, RepoError.exit_code, "not inside a dataver repository", "dataver init")
    assert not (tmp_path / "x.dv").exists()
    assert not (tmp_path / ".dataver").exists()


@pytest.mark.parametrize("args", [("status",), ("add", "f.txt"), ("checkout",), ("get", "/no/such/repo", "data")])
def test_a_file_where_the_cache_should_be(repo_dir, cli, args):
    """issue 14, defect 10: it said "cannot open the cache lock ... File exists" with a
    permissions hint, or a NotADirectoryError traceback; now one error names the cache."""
    write(repo_dir / "f.txt", "data\n")
    assert cli("add", "f.txt", "-q").code == 0
    import shutil

    shutil.rmtree(repo_dir / ".dataver/cache")
    write(repo_dir / ".dataver/cache", b"not a folder")
    r = cli(*args)
    assert_user_error(r, RepoError.exit_code, "the cache .dataver/cache is not a folder", "move it aside (mv ")
    assert "permission" not in r.err
    assert (repo_dir / ".dataver/cache").read_bytes() == b"not a folder"  # left as it was
    assert not (repo_dir / "data").exists()


def test_get_from_a_path_that_does_not_exist_names_no_pointer(tmp_path, cli):
    """issue 14, defect 10: get writes no pointer, so "fix source.repo in the pointer"
    was the wrong advice; import the same (no pointer exists yet)."""
    for args in (("get", "/no/such/repo", "data"),):
        r = cli(*args, cwd=tmp_path)
        assert_user_error(
            r, RepoError.exit_code, "source repository /no/such/repo does not exist", "check the path or URL"
        )
        assert "source.repo" not in r.err and "pointer" not in r.err
    assert list(tmp_path.iterdir()) == []


def test_init_outside_git_and_no_scm(tmp_path, cli):
    plain = tmp_path / "plain"
    plain.mkdir()
    r = cli("init", cwd=plain)
    assert_user_error(r, RepoError.exit_code, "not inside a git repository", "--no-scm")
    assert not (plain / ".dataver").exists()
    r = cli("init", "--no-scm", cwd=plain)
    assert r.code == 0, r.err
    assert (plain / ".dataver" / "config").is_file()
    # and the repository works without git
    write(plain / "w.bin", b"weights")
    assert cli("add", "w.bin", cwd=plain).code == 0
    os.unlink(plain / "w.bin")
    assert cli("checkout", cwd=plain).code == 0
    assert (plain / "w.bin").read_bytes() == b"weights"


def test_init_twice_and_init_in_a_git_subfolder(repo_dir, cli):
    assert_user_error(cli("init"), RepoError.exit_code, "already a dataver repository")
    assert cli("init", "--force").code == 0
    (repo_dir / "sub").mkdir()
    r = cli("init", cwd=repo_dir / "sub")
    assert_user_error(r, RepoError.exit_code, "git work tree root")
    assert not (repo_dir / "sub" / ".dataver").exists()


def test_bad_cache_link_value(repo_dir, cli):
    r = cli("config", "cache.link", "hardlink,teleport")
    assert_user_error(r, RepoError.exit_code, "cache.link", "teleport")
    assert "teleport" not in (repo_dir / ".dataver" / "config").read_text()
    assert_user_error(cli("config", "cache.link", ""), RepoError.exit_code, "cache.link")
    # a hand-edited config is caught when it is used
    with open(repo_dir / ".dataver" / "config", "a") as f:
        f.write("[cache]\nlink = warp\n")
    write(repo_dir / "w.bin", b"w")
    assert_user_error(cli("add", "w.bin"), RepoError.exit_code, "warp")


@pytest.mark.parametrize("key,value", [("core.jobs", "many"), ("core.jobs", "0"), ("core.lock_timeout", "soon")])
def test_bad_numeric_config_value(repo_dir, cli, key, value):
    write(repo_dir / "w.bin", b"w")
    config = repo_dir / ".dataver" / "config"
    before = config.read_text()
    # refused when set ...
    assert_user_error(cli("config", key, value), RepoError.exit_code, key)
    assert config.read_text() == before
    # ... and caught when used, if it was hand-edited in
    section, option = key.split(".")
    config.write_text(f"[{section}]\n{option} = {value}\n")
    assert_user_error(cli("add", "w.bin"), RepoError.exit_code, key)
    assert not (repo_dir / "w.bin.dv").exists()


def test_unreadable_config_file(repo_dir, cli):
    write(repo_dir / ".dataver" / "config", "this is [not an ini file\n")
    assert_user_error(cli("status"), RepoError.exit_code, "not a valid config file")


def test_bad_config_key_shape(repo_dir, cli):
    assert_user_error(cli("config", "nodot"), RepoError.exit_code, "section.option")


# -- paths ----------------------------------------------------------------------------
def test_path_outside_the_repository(repo_dir, cli):
    write(repo_dir.parent / "outside.bin", b"elsewhere")
    for path in ("../outside.bin", str(repo_dir.parent / "outside.bin")):
        assert_user_error(cli("add", path), PathError.exit_code, "outside the repository")
    assert not (repo_dir.parent / "outside.bin.dv").exists()
    assert_user_error(cli("status", "../outside.bin"), PathError.exit_code, "outside the repository")


def test_path_beyond_a_symbolic_link(repo_dir, cli):
    outside = repo_dir.parent / "elsewhere"
    write(outside / "file.bin", b"not ours")
    os.symlink(outside, repo_dir / "link")
    r = cli("add", "link/file.bin")
    assert_user_error(r, PathError.exit_code, "beyond a symbolic link", "dataver add link")
    # nothing was written where the link leads
    assert sorted(p.name for p in outside.iterdir()) == ["file.bin"]
    # the linked folder itself can be tracked: its pointer stays in the repository
    assert cli("add", "link").code == 0
    assert (repo_dir / "link.dv").is_file()
    assert sorted(p.name for p in outside.iterdir()) == ["file.bin"]


def test_repository_root_is_not_a_path(repo_dir, cli):
    assert_user_error(cli("add", "."), PathError.exit_code, "repository root")


@pytest.mark.parametrize("path", [".git", ".git/config", ".dataver", ".dataver/config", "sub/.git/x"])
def test_path_inside_git_or_dataver_dir(repo_dir, cli, path):
    write(repo_dir / "sub" / ".git" / "x", "nested git dir")
    first = path.split("/")[0] if not path.startswith("sub/") else ".git"
    assert_user_error(cli("add", path), PathError.exit_code, f"inside {first}/")
    assert not (repo_dir / f"{path}.dv").exists()


def test_path_that_does_not_exist(repo_dir, cli):
    assert_user_error(cli("add", "no/such/file"), PathError.exit_code, "no/such/file does not exist")
    assert_user_error(cli("checkout", "nothing"), PathError.exit_code, "nothing is not tracked", "dataver add")
    assert_user_error(cli("ls", "nothing"), PathError.exit_code, "not tracked")
    assert_user_error(cli("verify", "nothing"), PathError.exit_code, "not tracked")
    assert_user_error(cli("unprotect", "nothing"), PathError.exit_code, "not tracked")


def test_several_paths_one_bad_adds_nothing(repo_dir, cli):
    write(repo_dir / "good.bin", b"good")
    assert_user_error(cli("add", "good.bin", "missing.bin"), PathError.exit_code, "missing.bin")
    assert not (repo_dir / "good.bin.dv").exists()


def test_file_already_tracked_by_git(repo_dir, cli):
    write(repo_dir / "in_git.csv", "a,b\n")
    write(repo_dir / "folder" / "deep" / "committed.txt", "x")
    write(repo_dir / "folder" / "other.txt", "y")
    stage_in_git(repo_dir, "in_git.csv", "folder/deep/committed.txt")
    r = cli("add", "in_git.csv")
    assert_user_error(r, PathError.exit_code, "tracked by git", "git rm -r --cached in_git.csv")
    r = cli("add", "folder")
    assert_user_error(r, PathError.exit_code, "folder/deep/committed.txt", "git rm -r --cached folder")
    assert not (repo_dir / "folder.dv").exists()
    assert not (repo_dir / ".gitignore").exists()
    # following the hint makes it work
    repo = pygit2.Repository(str(repo_dir))
    repo.index.remove("in_git.csv")
    repo.index.write()
    assert cli("add", "in_git.csv").code == 0


def test_committed_file_is_tracked_by_git(repo_dir, cli):
    write(repo_dir / "table.parquet", b"PAR1")
    git_commit(repo_dir, "by mistake")
    assert_user_error(cli("add", "table.parquet"), PathError.exit_code, "git rm -r --cached table.parquet")


def test_path_inside_a_tracked_folder(repo_dir, cli):
    make_tree(repo_dir / "data", 4)
    assert cli("add", "data").code == 0
    r = cli("add", "data/sub1/f1.bin")
    assert_user_error(r, PathError.exit_code, "inside the tracked folder data", "dataver add data")
    assert not (repo_dir / "data" / "sub1" / "f1.bin.dv").exists()
    assert_user_error(cli("add", "data/sub1"), PathError.exit_code, "inside the tracked folder data")


def test_folder_and_a_path_inside_it_in_one_add(repo_dir, cli):
    make_tree(repo_dir / "data", 4)
    for args in (("data", "data/sub1/f1.bin"), ("data/f0.bin", "data")):
        r = cli("add", *args)
        assert_user_error(r, PathError.exit_code, "inside data, which is being added too", "dataver add data")
        assert not (repo_dir / "data.dv").exists()
        assert not list((repo_dir / "data").rglob("*.dv"))
        assert not (repo_dir / "data" / ".gitignore").exists()
    # siblings whose names share a prefix are fine
    make_tree(repo_dir / "data2", 2)
    assert cli("add", "data", "data2").code == 0


def test_adding_a_pointer_file(repo_dir, cli):
    write(repo_dir / "w.bin", b"w")
    assert cli("add", "w.bin").code == 0
    before = (repo_dir / "w.bin.dv").read_bytes()
    assert_user_error(cli("add", "w.bin.dv"), PathError.exit_code, "is a pointer file", "dataver add w.bin")
    assert not (repo_dir / "w.bin.dv.dv").exists()
    assert (repo_dir / "w.bin.dv").read_bytes() == before


def test_folder_containing_pointer_files(repo_dir, cli):
    write(repo_dir / "outer" / "inner.bin", b"inner")
    assert cli("add", "outer/inner.bin").code == 0
    assert_user_error(cli("add", "outer"), PathError.exit_code, "outer/inner.bin.dv")
    assert not (repo_dir / "outer.dv").exists()


def test_symlink_loop_inside_a_folder(repo_dir, cli):
    write(repo_dir / "data" / "ok.txt", "ok")
    os.symlink("..", repo_dir / "data" / "up")
    assert_user_error(cli("add", "data"), SymlinkLoop.exit_code, "symbolic link loop")
    assert not (repo_dir / "data.dv").exists()
    os.unlink(repo_dir / "data" / "up")
    os.symlink("me", repo_dir / "data" / "me")  # a link to itself: ELOOP
    assert_user_error(cli("add", "data"), SymlinkLoop.exit_code, "data/me", "loop")


def test_symlink_loop_appearing_in_a_tracked_folder(repo_dir, cli):
    make_tree(repo_dir / "data", 3)
    assert cli("add", "data").code == 0
    os.symlink(".", repo_dir / "data" / "self")
    assert_user_error(cli("status"), SymlinkLoop.exit_code, "data/self")
    assert_user_error(cli("checkout"), SymlinkLoop.exit_code, "data/self")


def test_broken_symlink(repo_dir, cli):
    write(repo_dir / "data" / "ok.txt", "ok")
    os.symlink("nowhere", repo_dir / "data" / "dangling")
    assert_user_error(cli("add", "data"), PathError.exit_code, "data/dangling", "broken symbolic link")
    assert not (repo_dir / "data.dv").exists()
    os.symlink("nowhere", repo_dir / "lonely")
    assert_user_error(cli("add", "lonely"), PathError.exit_code, "lonely does not exist")


def test_special_file_is_refused(repo_dir, cli):
    write(repo_dir / "data" / "ok.txt", "ok")
    os.mkfifo(repo_dir / "data" / "pipe")
    assert_user_error(cli("add", "data"), PathError.exit_code, "data/pipe", "not a regular file")
    assert_user_error(cli("add", "data/pipe"), PathError.exit_code, "not a regular file")


# -- malformed pointers ---------------------------------------------------------------
GOOD = (
    "# dataver pointer: commit this file; the data lives in the dataver cache\n"
    "version: 1\nkind: file\nhash: xxh3-128\ndigest: {digest}\nsize: {size}\n"
)
BAD_POINTERS = {
    "garbage": lambda good: "this is not a pointer\n\x7fELF",
    "binary": lambda good: "\udcff",
    "bad-digest": lambda good: good.replace("digest: ", "digest: 12").replace("\nsize", "zz\nsize"),
    "traversal-digest": lambda good: "\n".join(
        "digest: ../../../../etc/passwd" if line.startswith("digest:") else line for line in good.splitlines()
    ),
    "missing-key": lambda good: "\n".join(line for line in good.splitlines() if not line.startswith("size:")),
    "bad-size": lambda good: good.replace("size: ", "size: -"),
    "bad-kind": lambda good: good.replace("kind: file", "kind: symlink"),
    "duplicate-key": lambda good: good + "kind: file\n",
    "newer-version": lambda good: good.replace("version: 1", "version: 7"),
    "files-on-a-file": lambda good: good + "files: 3\n",
}


MALFORMED_CASES = [("status", kind) for kind in BAD_POINTERS] + [
    (command, kind)
    for command in ("checkout", "add", "verify", "ls")
    for kind in ("garbage", "bad-digest", "missing-key", "traversal-digest")
]


@pytest.mark.parametrize("command,kind", MALFORMED_CASES, ids=[f"{c}-{k}" for c, k in MALFORMED_CASES])
def test_malformed_pointer(repo_dir, cli, command, kind):
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "w.bin").code == 0
    good = (repo_dir / "w.bin.dv").read_text()
    bad = BAD_POINTERS[kind](good)
    (repo_dir / "w.bin.dv").write_bytes(bad.encode("utf-8", "surrogateescape"))
    write(repo_dir / "w.bin", b"weights, edited")
    # named explicitly, a pointer is always parsed (repo-wide scans skip files that do
    # not look like pointers at all: see test_foreign_dv_files_are_ignored_by_scans)
    args = (command,) if command == "ls" else (command, "w.bin")
    if command == "ls":
        (repo_dir / "w.bin.dv").write_bytes(b"# dataver pointer\n" + bad.encode("utf-8", "surrogateescape"))
        bad = (repo_dir / "w.bin.dv").read_bytes().decode("utf-8", "surrogateescape")
    line = assert_user_error(cli(*args), PointerError.exit_code, "w.bin.dv")
    assert line.startswith("error: w.bin.dv: ")
    # nothing was changed: the broken pointer and the edited data are as they were
    assert (repo_dir / "w.bin.dv").read_bytes() == bad.encode("utf-8", "surrogateescape")
    assert (repo_dir / "w.bin").read_bytes() == b"weights, edited"


@pytest.mark.parametrize("command", ["status", "checkout", "verify", "ls"])
def test_malformed_pointer_found_by_a_repo_wide_scan(repo_dir, cli, command):
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "w.bin").code == 0
    good = (repo_dir / "w.bin.dv").read_text()
    for bad in (good.replace("size: 7", "size: seven"), good.replace("digest: ", "digest: x")):
        (repo_dir / "w.bin.dv").write_text(bad)
        assert_user_error(cli(command), PointerError.exit_code, "w.bin.dv")


def test_pointer_with_merge_conflict_markers(repo_dir, cli):
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "w.bin").code == 0
    good = (repo_dir / "w.bin.dv").read_text()
    theirs = good.replace("size: 7", "size: 8")
    (repo_dir / "w.bin.dv").write_text(f"<<<<<<< HEAD\n{good}=======\n{theirs}>>>>>>> branch\n")
    for args in (("status",), ("checkout",), ("add", "w.bin")):
        assert_user_error(cli(*args), PointerError.exit_code, "w.bin.dv")
    assert (repo_dir / "w.bin").read_bytes() == b"weights"


def test_foreign_dv_files_are_ignored_by_scans(repo_dir, cli):
    # design choice: a *.dv file that does not start like a pointer belongs to some
    # other tool; repo-wide commands skip it, naming it explicitly is an error
    write(repo_dir / "video.dv", b"\x1f\x07\x00DV camcorder footage")
    write(repo_dir / "w.bin", b"w")
    assert cli("add", "w.bin").code == 0
    r = cli("status", "--json")
    assert r.code == 0 and [rec["path"] for rec in json.loads(r.out)] == ["w.bin"]
    assert cli("checkout").code == 0
    assert cli("verify", "-q").code == 0
    assert_user_error(cli("status", "video"), PointerError.exit_code, "video.dv")


def test_malformed_folder_pointer_and_hostile_manifest(repo_dir, cli):
    make_tree(repo_dir / "data", 3)
    assert cli("add", "data").code == 0
    ptr = repo_dir / "data.dv"
    good = ptr.read_text()
    ptr.write_text(good.replace("files: 3\n", ""))
    assert_user_error(cli("checkout"), PointerError.exit_code, "data.dv", "files")
    # a manifest (digest-correct, so it passes the store's check) that tries to escape
    manifest = b"dataver-manifest 1 xxh3-128\n" + b"0" * 32 + b" 5 - ../escaped.txt\n"
    digest = digest_manifest(manifest).hex
    path = repo_dir / ".dataver" / "cache" / "xxh3-128" / digest[:2] / (digest[2:] + ".manifest")
    write(path, manifest)
    ptr.write_text("\n".join(f"digest: {digest}" if ln.startswith("digest:") else ln for ln in good.splitlines()))
    assert_user_error(cli("checkout", "--force"), PointerError.exit_code, "unsafe or invalid path")
    assert not (repo_dir / "escaped.txt").exists()
    assert_user_error(cli("status"), PointerError.exit_code, "manifest of data")


def test_pointer_to_a_manifest_not_in_the_cache(repo_dir, cli):
    make_tree(repo_dir / "data", 3)
    assert cli("add", "data").code == 0
    for m in (repo_dir / ".dataver" / "cache").rglob("*.manifest"):
        os.unlink(m)
    assert_user_error(cli("gc", "-y"), ObjectsMissing.exit_code, "manifest of data")
    assert_user_error(cli("ls", "data"), ObjectsMissing.exit_code, "not in the cache")


# -- usage errors ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [("frobnicate",), ("status", "--bogus"), ("add",), ("checkout", "--force=yes"), ("hash", "-j", "0", "x")],
    ids=["unknown-command", "unknown-option", "missing-argument", "bad-flag-value", "out-of-range"],
)
def test_usage_errors(repo_dir, cli, args):
    r = cli(*args)
    assert r.code == USAGE, r.err
    assert "Traceback" not in r.err
    assert any(line.startswith("Error: ") for line in r.err.splitlines()), r.err
    assert r.out == ""


def test_no_arguments_shows_help(tmp_path, cli):
    r = cli(cwd=tmp_path)
    assert r.code == USAGE
    assert "Commands:" in r.out + r.err


# -- as real processes: exit status and no traceback on stderr ------------------------
@pytest.mark.parametrize(
    "args,code,needle",
    [
        (("frobnicate",), USAGE, "No such command"),
        (("status", "--bogus"), USAGE, "No such option"),
        (("add", "nope"), PathError.exit_code, "error: nope does not exist"),
        (("status", "bad"), PointerError.exit_code, "error: bad.dv: "),
    ],
)
def test_errors_as_a_process(repo_dir, args, code, needle):
    write(repo_dir / "bad", "the data bad.dv would track")
    write(repo_dir / "bad.dv", "not: a pointer\n")
    p = cli_proc(*args, cwd=repo_dir)
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    assert needle in p.stderr
    assert p.stdout == ""


def test_foreign_dv_file_is_not_taken_for_a_pointer(repo_dir, cli):
    # A raw DV video file (binary, no 'clip' beside it) is not ours to parse...
    write(repo_dir / "videos" / "clip.dv", b"\x1f\x07\x00\x3f" + bytes(range(256)) * 4)
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "w.bin").code == 0
    r = cli("status")
    assert r.code == 0 and r.err.startswith("everything matches")
    # ...but named explicitly, it is parsed and rejected with a clear error.
    line = assert_user_error(cli("status", "videos/clip.dv"), PointerError.exit_code, "clip.dv")
    assert "not UTF-8" in line


def test_not_a_repository_as_a_process(tmp_path):
    p = cli_proc("status", cwd=tmp_path)
    assert p.returncode == RepoError.exit_code
    assert p.stderr.startswith("error: not inside a dataver repository")
    assert "Traceback" not in p.stderr


def test_main_returns_codes_not_exceptions(repo_dir, monkeypatch, capsys):
    # the in-process entry point never lets a usage error escape as an exception
    assert main(["frobnicate"]) == USAGE
    assert main(["--version"]) == 0
    assert sys.exc_info() == (None, None, None)


def test_a_mistyped_command_gets_one_suggestion(tmp_path):
    r = cli_proc("chekout", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("Did you mean") == 1 and "'checkout'" in r.stderr, r.stderr
    r = cli_proc("zzzz", cwd=tmp_path)
    assert r.returncode == 2 and "No such command 'zzzz'." in r.stderr and "Did you mean" not in r.stderr


@pytest.mark.parametrize(
    "url, says",
    [
        ("ftp://", "names no host or bucket"),
        ("s3://", "names no host or bucket"),
        ("https:///x", "names no host or bucket"),
        ("nosuch://bucket/p", "unknown protocol 'nosuch'"),
        ("zip://a.zip", "cannot hold a remote's objects"),
        ("file://", "names no folder"),
        ("", "cannot be empty"),
    ],
)
def test_remote_add_refuses_a_url_that_cannot_work(repo_dir, cli, url, says):
    """issue 14, defect 3: checked at remote add and remote modify, not at the first push."""
    r = cli("remote", "add", "bad", url)
    assert r.code == 3 and says in r.err, r.err
    assert "bad" not in cli("remote", "list").out
    assert cli("remote", "add", "ok", "s3://bucket/prefix").code == 0
    r = cli("remote", "modify", "ok", "url", url)
    assert r.code == 3 and says in r.err
    assert "s3://bucket/prefix" in cli("remote", "list").out


def test_a_bad_url_in_a_committed_config_is_one_error_line(repo_dir):
    """A stranger's config can hold what remote add refuses: push names the remote and
    the fix, exit 3, and no library teardown traceback reaches the terminal."""
    with open(repo_dir / ".dataver" / "config", "a") as f:
        f.write('[remote "evil"]\nurl = ftp://\n')
    write(repo_dir / "a.txt", "a")
    assert cli_proc("add", "a.txt", cwd=repo_dir).returncode == 0
    r = cli_proc("push", "-r", "evil", cwd=repo_dir)
    assert r.returncode == 3
    assert r.stderr.splitlines()[0] == "error: remote 'evil': remote URL 'ftp://' names no host or bucket"
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    assert "dataver remote modify evil url" in r.stderr


def test_remote_add_of_a_protocol_whose_package_is_missing_says_so(repo_dir, cli):
    import importlib.util

    if importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here: nothing is missing to report")
    r = cli("remote", "add", "g", "gs://bucket/p")
    assert r.code == 0 and "gcsfs" in r.err


def test_transfer_byte_counts_include_manifests(repo_dir, cli, tmp_path):
    """issue 14, defect 8: push, a resumed push and fetch count a manifest's bytes; on a
    loose remote the counts equal the remote's files."""
    make_tree(repo_dir / "data", n_files=12)
    assert cli("add", "data").code == 0
    remote = tmp_path / "remote"
    assert cli("remote", "add", "-d", "store", str(remote)).code == 0
    assert cli("remote", "modify", "store", "layout", "loose").code == 0
    git_commit(repo_dir, "v1")
    r = cli("push", "--json")
    assert r.code == 0, r.err
    on_remote = {p: p.stat().st_size for p in remote.rglob("*") if p.is_file()}
    assert json.loads(r.out)["bytes"] == sum(on_remote.values())
    (manifest,) = [p for p in on_remote if p.name.endswith(".manifest")]
    os.chmod(manifest, 0o644)
    manifest.unlink()  # a push killed before its manifest: the re-run sends it alone
    r = cli("push")
    assert r.code == 0
    assert r.err.startswith(f"pushed 1 object(s) ({on_remote[manifest]} B)"), r.err
    clone = tmp_path / "clone"
    pygit2.clone_repository(str(repo_dir), str(clone))
    r = cli("fetch", "--json", cwd=clone)
    assert r.code == 0, r.err
    assert json.loads(r.out)["bytes"] == sum(on_remote.values())
