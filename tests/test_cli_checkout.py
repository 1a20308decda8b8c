"""``dataver checkout``, ``unprotect`` and the link types, through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pygit2
from conftest import age, git_commit, make_tree, write


def digest_of(pointer_path) -> str:
    for line in pointer_path.read_text().splitlines():
        if line.startswith("digest:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no digest in {pointer_path}")


def blob(repo_dir, hex_: str):
    return repo_dir / ".dataver" / "cache" / "xxh3-128" / hex_[:2] / hex_[2:]


def blob_of_entry(cli, repo_dir, folder: str, rel: str):
    r = cli("ls", "--json", folder)
    assert r.code == 0, r.err
    listed = {item["path"]: item for item in json.loads(r.out)}
    return blob(repo_dir, listed[f"{folder}/{rel}"]["digest"])


def snapshot(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def first_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    return lines[0]


# -- restoring ------------------------------------------------------------------------
def test_rm_rf_then_checkout_restores_exact_bytes(repo_dir, cli):
    files = make_tree(repo_dir / "data", 25, seed=3)
    write(repo_dir / "model.bin", os.urandom(3000))
    model = (repo_dir / "model.bin").read_bytes()
    assert cli("add", "data", "model.bin").code == 0
    shutil.rmtree(repo_dir / "data")
    os.unlink(repo_dir / "model.bin")
    r = cli("checkout", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["created"] == 26 and out["replaced"] == 0 and out["deleted"] == 0
    assert out["missing"] == []
    assert snapshot(repo_dir / "data") == files
    assert (repo_dir / "model.bin").read_bytes() == model
    # files are ordinary writable copies by default
    assert os.stat(repo_dir / "model.bin").st_mode & stat.S_IWUSR
    assert cli("status").out == ""


def test_checkout_of_one_path_leaves_others_alone(repo_dir, cli):
    write(repo_dir / "a.bin", b"aaa")
    write(repo_dir / "b.bin", b"bbb")
    assert cli("add", "a.bin", "b.bin").code == 0
    os.unlink(repo_dir / "a.bin")
    os.unlink(repo_dir / "b.bin")
    assert cli("checkout", "a.bin").code == 0
    assert (repo_dir / "a.bin").read_bytes() == b"aaa"
    assert not (repo_dir / "b.bin").exists()
    assert cli("checkout", "b.bin.dv").code == 0  # naming the pointer works too
    assert (repo_dir / "b.bin").read_bytes() == b"bbb"


def test_checkout_touches_only_differing_files(repo_dir, cli):
    files = make_tree(repo_dir / "data", 30, seed=5)
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    before = {rel: os.stat(repo_dir / "data" / rel) for rel in files}
    victim_deleted, victim_changed = "f0.bin", "sub1/f1.bin"
    os.unlink(repo_dir / "data" / victim_deleted)
    # new content that is itself in the cache (another file's bytes): no --force needed
    assert files["f2.bin"] != files[victim_changed]
    write(repo_dir / "data" / victim_changed, files["f2.bin"])
    r = cli("checkout", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert (out["created"], out["replaced"], out["deleted"]) == (1, 1, 0)
    assert out["unchanged"] == 28
    assert snapshot(repo_dir / "data") == files
    for rel, st in before.items():
        if rel in (victim_deleted, victim_changed):
            continue
        now = os.stat(repo_dir / "data" / rel)
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), rel
    # a second checkout has nothing to do
    out = json.loads(cli("checkout", "--json").out)
    assert (out["created"], out["replaced"], out["deleted"], out["unchanged"]) == (0, 0, 0, 30)


def test_checkout_refuses_to_overwrite_unsaved_change_then_force(repo_dir, cli):
    make_tree(repo_dir / "data", 6)
    write(repo_dir / "w.bin", b"original")
    assert cli("add", "data", "w.bin").code == 0
    write(repo_dir / "data" / "f2.bin", b"precious edit")
    write(repo_dir / "w.bin", b"also precious")
    r = cli("checkout")
    assert r.code == 6
    line = first_error_line(r.err)
    assert line.startswith("error:") and "data/f2.bin" in line and "w.bin" in line
    assert "--force" in r.err
    # nothing was touched
    assert (repo_dir / "data" / "f2.bin").read_bytes() == b"precious edit"
    assert (repo_dir / "w.bin").read_bytes() == b"also precious"
    r = cli("checkout", "--force")
    assert r.code == 0, r.err
    assert (repo_dir / "w.bin").read_bytes() == b"original"
    assert (repo_dir / "data" / "f2.bin").read_bytes() != b"precious edit"
    assert cli("status").out == ""


def test_checkout_refuses_to_delete_untracked_file_in_folder_then_force(repo_dir, cli):
    make_tree(repo_dir / "data", 4)
    assert cli("add", "data").code == 0
    write(repo_dir / "data" / "notes" / "mine.txt", "not in the cache")
    r = cli("checkout")
    assert r.code == 6
    assert first_error_line(r.err).startswith("error:")
    assert "data/notes/mine.txt" in r.err
    assert (repo_dir / "data" / "notes" / "mine.txt").read_text() == "not in the cache"
    r = cli("checkout", "-f", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["deleted"] == 1
    assert not (repo_dir / "data" / "notes").exists()  # emptied folder pruned


def test_checkout_deletes_extra_file_whose_content_is_cached_without_force(repo_dir, cli):
    files = make_tree(repo_dir / "data", 4)
    assert cli("add", "data").code == 0
    write(repo_dir / "data" / "copy.bin", files["f0.bin"])  # same bytes as a cached object
    r = cli("checkout")
    assert r.code == 0, r.err
    assert not (repo_dir / "data" / "copy.bin").exists()


def test_missing_object_exit_7_names_path_rest_checked_out(repo_dir, cli):
    files = make_tree(repo_dir / "data", 9, seed=11)
    assert cli("add", "data").code == 0
    victim = "sub0/f3.bin"
    obj = blob_of_entry(cli, repo_dir, "data", victim)
    shutil.rmtree(repo_dir / "data")
    os.unlink(obj)
    r = cli("checkout")
    assert r.code == 7
    assert "8 created" in r.err  # the summary of what was done comes first
    assert [line for line in r.err.splitlines() if line.startswith("error:")] == [
        "error: 1 object(s) missing from the cache:"
    ]
    assert f"data/{victim}" in r.err
    assert "Traceback" not in r.err
    for rel, data in files.items():
        path = repo_dir / "data" / rel
        if rel == victim:
            assert not path.exists()
        else:
            assert path.read_bytes() == data, rel
    r = cli("checkout", "--json")
    assert r.code == 7
    missing = json.loads(r.out)["missing"]
    assert [m["path"] for m in missing] == [f"data/{victim}"]
    assert missing[0]["digest"] == "xxh3-128:" + obj.parent.name + obj.name


def test_missing_file_object_exit_7(repo_dir, cli):
    write(repo_dir / "lone.bin", b"lonely")
    write(repo_dir / "other.bin", b"other")
    assert cli("add", "lone.bin", "other.bin").code == 0
    os.unlink(blob(repo_dir, digest_of(repo_dir / "lone.bin.dv")))
    os.unlink(repo_dir / "lone.bin")
    os.unlink(repo_dir / "other.bin")
    r = cli("checkout")
    assert r.code == 7
    assert "lone.bin" in r.err and "other.bin" not in r.err
    assert (repo_dir / "other.bin").read_bytes() == b"other"
    assert not (repo_dir / "lone.bin").exists()


def test_checkout_older_pointer_version_from_git(repo_dir, cli):
    write(repo_dir / "data" / "a.txt", "version one\n")
    write(repo_dir / "solo.bin", b"solo v1")
    assert cli("add", "data", "solo.bin").code == 0
    v1 = git_commit(repo_dir, "v1")
    write(repo_dir / "data" / "a.txt", "version two, longer\n")
    write(repo_dir / "data" / "b.txt", "added in two\n")
    write(repo_dir / "solo.bin", b"solo v2!")
    assert cli("add", "data", "solo.bin").code == 0
    git_commit(repo_dir, "v2")
    # git restores the old pointers; dataver restores the old bytes
    repo = pygit2.Repository(str(repo_dir))
    force = pygit2.enums.CheckoutStrategy.FORCE
    repo.checkout_tree(repo.get(v1), paths=["data.dv", "solo.bin.dv"], strategy=force)
    assert "version one" not in (repo_dir / "data" / "a.txt").read_text()  # git restored only the pointers
    r = cli("status")
    assert "modified:" in r.out and "added:" in r.out
    r = cli("checkout")
    assert r.code == 0, r.err
    assert snapshot(repo_dir / "data") == {"a.txt": b"version one\n"}
    assert (repo_dir / "solo.bin").read_bytes() == b"solo v1"
    # and forward again
    repo.checkout_head(strategy=force)
    assert cli("checkout").code == 0
    assert snapshot(repo_dir / "data") == {"a.txt": b"version two, longer\n", "b.txt": b"added in two\n"}
    assert (repo_dir / "solo.bin").read_bytes() == b"solo v2!"


def test_folder_where_a_file_belongs_is_replaced_only_with_force(repo_dir, cli):
    write(repo_dir / "thing", b"a file")
    assert cli("add", "thing").code == 0
    os.unlink(repo_dir / "thing")
    write(repo_dir / "thing" / "inner.txt", "surprise")
    r = cli("checkout")
    assert r.code == 6 and "thing" in r.err
    assert (repo_dir / "thing" / "inner.txt").read_text() == "surprise"
    r = cli("checkout", "--force", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert (out["deleted"], out["replaced"]) == (1, 1)
    assert (repo_dir / "thing").read_bytes() == b"a file"
    assert cli("status").out == ""


def test_force_keeps_the_folder_in_the_way_when_the_object_is_missing(repo_dir, cli):
    write(repo_dir / "thing", b"a file")
    assert cli("add", "thing").code == 0
    os.unlink(blob(repo_dir, digest_of(repo_dir / "thing.dv")))
    os.unlink(repo_dir / "thing")
    write(repo_dir / "thing" / "inner.txt", "surprise")
    r = cli("checkout", "--force")
    assert r.code == 7 and "thing" in r.err
    assert (repo_dir / "thing" / "inner.txt").read_text() == "surprise"


# -- link types -----------------------------------------------------------------------
def _set_link(cli, value: str) -> None:
    r = cli("config", "cache.link", value)
    assert r.code == 0, r.err


def test_hardlink_mode_shares_inode_read_only_and_unprotect(repo_dir, cli):
    _set_link(cli, "hardlink,copy")
    files = make_tree(repo_dir / "data", 5, seed=2, max_size=500)
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "data", "w.bin").code == 0
    obj = blob(repo_dir, digest_of(repo_dir / "w.bin.dv"))
    for path, o in [(repo_dir / "w.bin", obj)] + [
        (repo_dir / "data" / rel, blob_of_entry(cli, repo_dir, "data", rel)) for rel in files
    ]:
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode)
        assert st.st_ino == os.stat(o).st_ino, path
        assert not st.st_mode & 0o222, f"{path} should be read-only"
    # after rm + checkout they are hardlinks again
    shutil.rmtree(repo_dir / "data")
    r = cli("checkout", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["link_types"] == {"hardlink": 5}
    rel0 = next(iter(files))
    assert os.stat(repo_dir / "data" / rel0).st_ino == os.stat(blob_of_entry(cli, repo_dir, "data", rel0)).st_ino
    assert snapshot(repo_dir / "data") == files
    # unprotect gives a private writable copy; editing it leaves the cache object alone
    r = cli("unprotect", "w.bin")
    assert r.code == 0, r.err
    st = os.stat(repo_dir / "w.bin")
    assert st.st_ino != os.stat(obj).st_ino
    assert st.st_mode & stat.S_IWUSR
    assert (repo_dir / "w.bin").read_bytes() == b"weights"
    with open(repo_dir / "w.bin", "ab") as f:
        f.write(b" edited")
    assert obj.read_bytes() == b"weights"
    assert cli("status").out.split() == ["modified:", "w.bin"]
    assert cli("verify", "-q").code == 1  # workspace differs; cache is fine
    assert cli("verify", "-q", "data").code == 0


def test_unprotect_folder_in_hardlink_mode(repo_dir, cli):
    _set_link(cli, "hardlink")
    files = make_tree(repo_dir / "data", 4, seed=9, max_size=300)
    assert cli("add", "data").code == 0
    r = cli("unprotect", "data")
    assert r.code == 0 and "unprotected 4 file(s)" in r.err
    for rel in files:
        path = repo_dir / "data" / rel
        assert os.stat(path).st_nlink == 1 and os.stat(path).st_mode & stat.S_IWUSR
        obj = blob_of_entry(cli, repo_dir, "data", rel)
        path.write_bytes(b"scribble")
        assert obj.read_bytes() == files[rel]
    # nothing left to unprotect
    assert "unprotected 0 file(s)" in cli("unprotect", "data").err


def test_hardlink_mode_never_links_executables(repo_dir, cli):
    _set_link(cli, "hardlink,copy")
    write(repo_dir / "tools" / "run.sh", "#!/bin/sh\n")
    os.chmod(repo_dir / "tools" / "run.sh", 0o755)
    assert cli("add", "tools").code == 0
    st = os.stat(repo_dir / "tools" / "run.sh")
    assert st.st_nlink == 1 and st.st_mode & stat.S_IXUSR
    shutil.rmtree(repo_dir / "tools")
    r = cli("checkout", "--json")
    assert json.loads(r.out)["link_types"] == {"copy": 1}
    assert os.stat(repo_dir / "tools" / "run.sh").st_mode & stat.S_IXUSR


def test_symlink_mode_and_unprotect(repo_dir, cli):
    _set_link(cli, "symlink")
    files = make_tree(repo_dir / "data", 4, seed=4, max_size=300)
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "data", "w.bin").code == 0
    obj = blob(repo_dir, digest_of(repo_dir / "w.bin.dv"))
    assert os.path.islink(repo_dir / "w.bin")
    assert os.path.realpath(repo_dir / "w.bin") == str(obj)
    for rel in files:
        path = repo_dir / "data" / rel
        assert os.path.islink(path)
        assert os.path.realpath(path) == str(blob_of_entry(cli, repo_dir, "data", rel))
    assert cli("status").out == ""
    assert cli("verify", "-q").code == 0
    shutil.rmtree(repo_dir / "data")
    r = cli("checkout", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["link_types"] == {"symlink": 4}
    assert snapshot(repo_dir / "data") == files
    # links into the cache count as unchanged, for file and folder pointers alike
    r = cli("checkout", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert (out["created"], out["replaced"], out["deleted"], out["unchanged"]) == (0, 0, 0, 5)
    assert cli("unprotect", "w.bin").code == 0
    assert not os.path.islink(repo_dir / "w.bin")
    assert os.stat(repo_dir / "w.bin").st_mode & stat.S_IWUSR
    write(repo_dir / "w.bin", b"edited weights")
    assert obj.read_bytes() == b"weights"
    assert cli("status").out.split() == ["modified:", "w.bin"]


def test_copy_mode_gives_independent_files(repo_dir, cli):
    _set_link(cli, "copy")
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "w.bin").code == 0
    obj = blob(repo_dir, digest_of(repo_dir / "w.bin.dv"))
    os.unlink(repo_dir / "w.bin")
    r = cli("checkout", "--json")
    assert json.loads(r.out)["link_types"] == {"copy": 1}
    st = os.lstat(repo_dir / "w.bin")
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert st.st_ino != os.stat(obj).st_ino
    assert st.st_mode & stat.S_IWUSR
    write(repo_dir / "w.bin", b"changed")
    assert obj.read_bytes() == b"weights"
    assert "unprotected 0 file(s)" in cli("unprotect", "w.bin").err


def test_every_way_checkout_writes_a_file_takes_the_umask_and_never_sets_it(repo_dir, tmp_path, cli, monkeypatch):
    """A file checkout writes gets the mode git would give it: 0o666 or 0o777 less the
    umask, applied by the kernel as the file is created. Packed or loose objects,
    checked while copied (a checkout) or fetched moments ago (a pull), and unprotect all
    do. The process umask is never set: reading it means setting it to 0 and back, and
    a file another thread made meanwhile would get no umask at all."""
    from dataver import cachepacks, linking

    small = {f"data/s{i:04d}.txt": f"small {i}\n".encode() for i in range(cachepacks.PACK_MIN + 10)}
    large = {"data/big.bin": os.urandom(100_000), "data/tool.bin": os.urandom(100_000)}
    for rel, data in {**small, **large, "data/run.sh": b"#!/bin/sh\n"}.items():
        write(repo_dir / rel, data)
    os.chmod(repo_dir / "data/run.sh", 0o755)
    os.chmod(repo_dir / "data/tool.bin", 0o755)
    assert cli("add", "data").code == 0
    assert cli("remote", "add", "origin", str(tmp_path / "remote"), "--default").code == 0
    assert cli("push").code == 0
    git_commit(repo_dir, "data")
    executables = {"run.sh", "tool.bin"}

    def modes(root) -> dict[str, int]:
        return {p.name: stat.S_IMODE(p.stat().st_mode) for p in (root / "data").iterdir()}

    def expected(names) -> dict[str, int]:
        return {n: 0o750 if n in executables else 0o640 for n in names}

    real, calls = os.umask, []
    old = real(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda m: calls.append(m) or real(m))
        shutil.rmtree(repo_dir / "data")
        assert cli("checkout").code == 0  # every object checked as it is copied out
        assert modes(repo_dir) == expected(modes(repo_dir)) and len(modes(repo_dir)) == len(small) + 3
        clone = tmp_path / "clone"
        pygit2.clone_repository(str(repo_dir), str(clone))
        assert cli("pull", cwd=clone).code == 0  # objects this process just fetched: copied plainly
        assert modes(clone) == expected(modes(repo_dir))
        assert snapshot(clone / "data") == snapshot(repo_dir / "data")
        locked = clone / "data" / "big.bin"
        locked.chmod(0o444)
        assert linking.unprotect(str(locked))
        assert stat.S_IMODE(locked.stat().st_mode) == 0o640
    finally:
        real(old)
    assert calls == []
