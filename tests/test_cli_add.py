"""``dataver add`` through the CLI: pointers, .gitignore entries, the stat cache, modes."""

from __future__ import annotations

import json
import os
import stat

import pygit2
import pytest
import xxhash
from conftest import age, make_tree, write


def read_pointer(path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


def blob(repo_dir, hex_: str):
    return repo_dir / ".dataver" / "cache" / "xxh3-128" / hex_[:2] / hex_[2:]


def manifest_of(repo_dir, hex_: str) -> list[str]:
    path = repo_dir / ".dataver" / "cache" / "xxh3-128" / hex_[:2] / (hex_[2:] + ".manifest")
    return path.read_text().splitlines()


def add_json(cli, *paths):
    r = cli("add", "--json", *paths)
    assert r.code == 0, r.err
    return {item["path"]: item for item in json.loads(r.out)}


def test_add_single_file_writes_pointer_and_caches_bytes(repo_dir, cli):
    data = os.urandom(5000)
    write(repo_dir / "model.bin", data)
    r = cli("add", "model.bin")
    assert r.code == 0, r.err
    assert "added: model.bin" in r.err
    ptr = read_pointer(repo_dir / "model.bin.dv")
    assert ptr == {
        "version": "1",
        "kind": "file",
        "hash": "xxh3-128",
        "digest": xxhash.xxh3_128_hexdigest(data),
        "size": "5000",
    }
    assert (repo_dir / "model.bin.dv").read_text().startswith("# dataver pointer")
    assert blob(repo_dir, ptr["digest"]).read_bytes() == data
    assert (repo_dir / "model.bin").read_bytes() == data  # workspace untouched


def test_add_folder_with_subfolders(repo_dir, cli):
    files = make_tree(repo_dir / "data", 12)
    items = add_json(cli, "data")
    assert items["data"]["kind"] == "dir"
    assert items["data"]["files"] == 12
    assert items["data"]["hashed"] == 12
    ptr = read_pointer(repo_dir / "data.dv")
    assert ptr["kind"] == "dir"
    assert ptr["files"] == "12"
    assert ptr["size"] == str(sum(len(b) for b in files.values()))
    assert ptr["digest"] == items["data"]["digest"]
    lines = manifest_of(repo_dir, ptr["digest"])
    assert lines[0] == "dataver-manifest 1 xxh3-128"
    listed = {line.split(" ", 3)[3]: line.split(" ", 3) for line in lines[1:]}
    assert set(listed) == set(files)
    for rel, data in files.items():
        hex_, size, mode, _ = listed[rel]
        assert hex_ == xxhash.xxh3_128_hexdigest(data)
        assert int(size) == len(data)
        assert mode == "-"
        assert blob(repo_dir, hex_).read_bytes() == data


def test_add_several_paths_at_once(repo_dir, cli):
    write(repo_dir / "a.txt", "alpha")
    write(repo_dir / "b.txt", "beta")
    make_tree(repo_dir / "c", 4)
    items = add_json(cli, "a.txt", "b.txt", "c")
    assert set(items) == {"a.txt", "b.txt", "c"}
    assert all(item["changed"] for item in items.values())
    for name in ("a.txt", "b.txt", "c"):
        assert (repo_dir / f"{name}.dv").is_file()
    assert read_pointer(repo_dir / "a.txt.dv")["digest"] == xxhash.xxh3_128_hexdigest(b"alpha")
    assert read_pointer(repo_dir / "b.txt.dv")["digest"] == xxhash.xxh3_128_hexdigest(b"beta")
    gitignore = (repo_dir / ".gitignore").read_text().splitlines()
    assert gitignore == ["/a.txt", "/b.txt", "/c"]


def test_gitignore_entry_beside_target_without_duplicates(repo_dir, cli):
    write(repo_dir / "sub" / "deep" / "data.bin", b"x" * 10)
    write(repo_dir / "sub" / ".gitignore", "*.log\n")
    assert cli("add", "sub/deep/data.bin").code == 0
    assert (repo_dir / "sub" / "deep" / ".gitignore").read_text() == "/data.bin\n"
    assert (repo_dir / "sub" / ".gitignore").read_text() == "*.log\n"
    assert not (repo_dir / ".gitignore").exists()
    assert (repo_dir / "sub" / "deep" / "data.bin.dv").is_file()
    # re-add (changed and unchanged) never duplicates the entry
    write(repo_dir / "sub" / "deep" / "data.bin", b"y" * 11)
    assert cli("add", "sub/deep/data.bin").code == 0
    assert cli("add", "sub/deep/data.bin").code == 0
    assert (repo_dir / "sub" / "deep" / ".gitignore").read_text() == "/data.bin\n"


def test_gitignore_appends_to_existing_file_without_final_newline(repo_dir, cli):
    write(repo_dir / ".gitignore", "*.pyc")
    write(repo_dir / "big.bin", b"1")
    assert cli("add", "big.bin").code == 0
    assert (repo_dir / ".gitignore").read_text() == "*.pyc\n/big.bin\n"


def test_readd_unchanged_hashes_nothing_and_keeps_pointer(repo_dir, cli):
    make_tree(repo_dir / "data", 10)
    write(repo_dir / "one.bin", os.urandom(100))
    age(repo_dir / "data")
    age(repo_dir / "one.bin")
    first = add_json(cli, "data", "one.bin")
    assert first["data"]["hashed"] == 10 and first["one.bin"]["hashed"] == 1
    mtimes = {p: os.stat(repo_dir / p).st_mtime_ns for p in ("data.dv", "one.bin.dv", ".gitignore")}
    again = add_json(cli, "data", "one.bin")
    assert again["data"]["hashed"] == 0
    assert again["one.bin"]["hashed"] == 0
    assert not again["data"]["changed"] and not again["one.bin"]["changed"]
    assert again["data"]["digest"] == first["data"]["digest"]
    assert {p: os.stat(repo_dir / p).st_mtime_ns for p in mtimes} == mtimes
    r = cli("add", "data")
    assert r.code == 0
    assert "added" not in r.err and "data" in r.err and "0 hashed" in r.err


def test_changing_one_file_in_a_big_folder_rehashes_only_it(repo_dir, cli):
    folder = repo_dir / "many"
    for i in range(2000):
        write(folder / f"d{i % 20}" / f"f{i}.txt", f"file {i}\n")
    age(folder)
    first = add_json(cli, "many")["many"]
    assert first["files"] == 2000 and first["hashed"] == 2000
    write(folder / "d7" / "f7.txt", "changed content\n")
    second = add_json(cli, "many")["many"]
    assert second["hashed"] == 1
    assert second["changed"]
    assert second["digest"] != first["digest"]
    assert read_pointer(repo_dir / "many.dv")["digest"] == second["digest"]
    lines = manifest_of(repo_dir, second["digest"])
    entry = next(line for line in lines if line.endswith(" d7/f7.txt"))
    assert entry.split(" ")[0] == xxhash.xxh3_128_hexdigest(b"changed content\n")


def test_user_extra_key_survives_readd(repo_dir, cli):
    write(repo_dir / "ds.csv", "a,b\n1,2\n")
    assert cli("add", "ds.csv").code == 0
    pointer = repo_dir / "ds.csv.dv"
    pointer.write_text(pointer.read_text() + "desc: training set, v1\n")
    write(repo_dir / "ds.csv", "a,b\n1,2\n3,4\n")
    assert cli("add", "ds.csv").code == 0
    ptr = read_pointer(pointer)
    assert ptr["desc"] == "training set, v1"
    assert ptr["digest"] == xxhash.xxh3_128_hexdigest(b"a,b\n1,2\n3,4\n")
    assert pointer.read_text().count("desc:") == 1


def test_user_extra_key_survives_readd_of_folder(repo_dir, cli):
    make_tree(repo_dir / "imgs", 3)
    assert cli("add", "imgs").code == 0
    pointer = repo_dir / "imgs.dv"
    pointer.write_text(pointer.read_text() + "owner: vision-team\n")
    write(repo_dir / "imgs" / "new.bin", b"new")
    assert cli("add", "imgs").code == 0
    ptr = read_pointer(pointer)
    assert ptr["owner"] == "vision-team"
    assert ptr["files"] == "4"


def test_executable_bit_recorded_in_manifest_and_restored(repo_dir, cli):
    write(repo_dir / "tools" / "run.sh", "#!/bin/sh\necho hi\n")
    write(repo_dir / "tools" / "readme.txt", "docs\n")
    os.chmod(repo_dir / "tools" / "run.sh", 0o755)
    os.chmod(repo_dir / "tools" / "readme.txt", 0o644)
    digest = add_json(cli, "tools")["tools"]["digest"]
    lines = manifest_of(repo_dir, digest)
    assert any(line.endswith(" x run.sh") for line in lines)
    assert any(line.endswith(" - readme.txt") for line in lines)
    listed = {item["path"]: item for item in json.loads(cli("ls", "--json", "tools").out)}
    assert listed["tools/run.sh"]["executable"] is True
    assert listed["tools/readme.txt"]["executable"] is False

    import shutil

    shutil.rmtree(repo_dir / "tools")
    assert cli("checkout").code == 0
    assert os.stat(repo_dir / "tools" / "run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(repo_dir / "tools" / "readme.txt").st_mode & stat.S_IXUSR
    assert (repo_dir / "tools" / "run.sh").read_text() == "#!/bin/sh\necho hi\n"


def test_executable_bit_change_alone_is_a_change(repo_dir, cli):
    write(repo_dir / "bin" / "tool", "#!/bin/sh\n")
    os.chmod(repo_dir / "bin" / "tool", 0o644)
    first = add_json(cli, "bin")["bin"]
    os.chmod(repo_dir / "bin" / "tool", 0o755)
    second = add_json(cli, "bin")["bin"]
    assert second["changed"] and second["digest"] != first["digest"]
    assert manifest_of(repo_dir, second["digest"])[1].endswith(" x tool")
    # checkout back to the first pointer drops the bit again
    ptr = repo_dir / "bin.dv"
    ptr.write_text(ptr.read_text().replace(second["digest"], first["digest"]))
    assert cli("checkout").code == 0
    assert not os.stat(repo_dir / "bin" / "tool").st_mode & stat.S_IXUSR


def test_add_from_a_subfolder_uses_paths_relative_to_cwd(repo_dir, cli):
    write(repo_dir / "sub" / "x.bin", b"xx")
    r = cli("add", "--json", "x.bin", cwd=repo_dir / "sub")
    assert r.code == 0, r.err
    assert json.loads(r.out)[0]["path"] == "sub/x.bin"
    assert (repo_dir / "sub" / "x.bin.dv").is_file()
    assert (repo_dir / "sub" / ".gitignore").read_text() == "/x.bin\n"


def test_add_quiet_prints_nothing(repo_dir, cli):
    write(repo_dir / "q.bin", b"q")
    r = cli("add", "-q", "q.bin")
    assert r.code == 0
    assert r.out == "" and r.err == ""
    assert (repo_dir / "q.bin.dv").is_file()


def test_add_empty_file_and_empty_folder(repo_dir, cli):
    write(repo_dir / "empty.bin", b"")
    (repo_dir / "hollow").mkdir()
    items = add_json(cli, "empty.bin", "hollow")
    assert items["empty.bin"]["size"] == 0
    assert items["hollow"]["kind"] == "dir"
    assert items["hollow"]["files"] == 0
    assert read_pointer(repo_dir / "hollow.dv")["files"] == "0"
    os.unlink(repo_dir / "empty.bin")
    (repo_dir / "hollow").rmdir()
    assert cli("checkout").code == 0
    assert (repo_dir / "empty.bin").read_bytes() == b""
    assert (repo_dir / "hollow").is_dir()  # an empty folder is restored too
    assert cli("status").out == ""
    assert cli("verify", "-q").code == 0


@pytest.mark.parametrize("link", ["copy", "hardlink,copy", "symlink"])
def test_readd_in_every_link_mode_hashes_nothing(repo_dir, cli, link):
    assert cli("config", "cache.link", link).code == 0
    make_tree(repo_dir / "data", 6, seed=8)
    write(repo_dir / "w.bin", os.urandom(300))
    age(repo_dir / "data")
    age(repo_dir / "w.bin")
    first = add_json(cli, "data", "w.bin")
    assert first["data"]["hashed"] == 6 and first["w.bin"]["hashed"] == 1
    objects = {p: os.lstat(p).st_ino for p in (repo_dir / ".dataver" / "cache").rglob("*") if p.is_file()}
    workspace = {p: os.lstat(p).st_ino for p in [*(repo_dir / "data").rglob("*"), repo_dir / "w.bin"]}
    again = add_json(cli, "data", "w.bin")
    assert again["data"]["hashed"] == 0
    assert again["w.bin"]["hashed"] == 0
    assert not again["data"]["changed"] and not again["w.bin"]["changed"]
    # nothing was rewritten: neither cache objects nor (linked) workspace files
    assert {p: os.lstat(p).st_ino for p in objects} == objects
    assert {p: os.lstat(p).st_ino for p in workspace} == workspace


def test_gitignore_entries_make_git_ignore_exactly_the_data(repo_dir, cli):
    names = ["a b.bin", "x[1].bin", "#hash.bin", "!bang.bin", "trail ", "star*.bin", "q?.bin", "back\\slash", "ünï.bin"]
    for name in names:
        write(repo_dir / name, name)
    make_tree(repo_dir / "folder", 3)
    assert cli("add", *names, "folder/").code == 0
    assert (repo_dir / "folder.dv").is_file()
    git = pygit2.Repository(str(repo_dir))
    for name in [*names, "folder"]:
        assert git.path_is_ignored(name), name
        assert not git.path_is_ignored(f"{name}.dv"), name
    assert git.path_is_ignored("folder/f0.bin")
    # the escaped patterns match nothing else
    for other in ["x1.bin", "starX.bin", "qq.bin", "a", "trail", "bang.bin", "folder2"]:
        assert not git.path_is_ignored(other), other


def test_the_next_hint_quotes_every_path_for_the_shell(repo_dir, cli):
    """The "next: git add ..." line can be pasted into a shell as is, whatever the names."""
    import shlex

    names = ["my data", "données", "weird#name[1].bin", "it's"]
    for name in names:
        write(repo_dir / name, name.encode())
    r = cli("add", *names)
    assert r.code == 0, r.err
    line = next(x for x in r.err.splitlines() if x.startswith("next: git add "))
    words = shlex.split(line[len("next: ") :])
    assert words[:2] == ["git", "add"]
    assert sorted(words[2:]) == sorted([f"{n}.dv" for n in names] + [".gitignore"])
