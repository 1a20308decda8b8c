"""Folder trees end to end: add, re-add, status, push, pull, gc and checkout of a folder
big enough to be a tree (more than 4,096 files), and old flat pointers beside them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import age, cached, git_commit, uncache, write

from dataver import manifest, tree
from dataver.digest import DEFAULT_ALGORITHM
from dataver.hashing import digest_bytes, digest_manifest
from dataver.pointer import loads as load_pointer

N_SUB = 3
PER_SUB = 1500  # 4,500 files in 3 subfolders, plus a few at the top: a tree of flat subfolders


def make_big(root: Path) -> dict[str, bytes]:
    files = {f"s{d}/f{i:04d}.txt": f"{d}:{i}\n".encode() for d in range(N_SUB) for i in range(PER_SUB)}
    files.update({"top.txt": b"top\n", "a-b.txt": b"ab\n"})
    for rel, data in files.items():
        write(root / rel, data)
    age(root)
    return files


def pointer_digest(repo: Path, name: str = "data"):
    return load_pointer((repo / f"{name}.dv").read_bytes()).digest


def hashed(cli, path: Path) -> str:
    r = cli("hash", str(path))
    assert r.code == 0, r.err
    return r.out.split()[0]


@pytest.fixture(params=["whole", "by-parts"])
def by_parts(request, monkeypatch):
    """Both ways add builds a folder: whole (small folders), and one part at a time (a
    folder over ``BY_PARTS_MIN`` files: made small here so 4,502 files take that way)."""
    if request.param == "by-parts":
        monkeypatch.setattr("dataver.ops.add.BY_PARTS_MIN", 100)
    return request.param


@pytest.fixture(params=["kept", "streamed", "shared"])
def streamed(request, monkeypatch):
    """Both ways status and checkout scan a folder: keeping every file (folders up to
    ``STREAM_FILES``), and prints first, then only the files outside the subfolders
    that vouch (``scan_outside``; made small here so 4,502 files take that way). Yields
    the list of the parts the second way scanned. "shared": the second way with the
    prints scan shared out to other processes (``_scan_shares``), one subfolder each;
    the test checks that they answered."""
    import dataver.workspace as ws

    scanned: list[frozenset] = []
    if request.param == "shared":
        monkeypatch.setenv("DATAVER_SCAN_PROCESSES", "3")
        monkeypatch.setattr(ws, "SHARE_MIN_FILES", 0)
        monkeypatch.setattr(ws, "SHARE_DIRS_PER_PROCESS", 1)
        real_merge = ws.merge_share

        def merged(scan, answer):
            assert answer[0] == "ok"
            scanned.append("answered")
            return real_merge(scan, answer)

        monkeypatch.setattr(ws, "merge_share", merged)
    if request.param in ("streamed", "shared"):
        monkeypatch.setattr("dataver.workspace.STREAM_FILES", 100)
        monkeypatch.setattr("dataver.checkout.STREAM_FILES", 100)
        monkeypatch.setattr("dataver.checkout.STREAM_BATCH", 700)  # a fresh folder: created in batches
        real = ws.scan_folder

        def spy(*args, **kwargs):
            if kwargs.get("leave"):
                scanned.append(kwargs["leave"])
            return real(*args, **kwargs)

        monkeypatch.setattr(ws, "scan_folder", spy)
    return request.param, scanned


def test_re_add_after_changes_matches_a_fresh_hash(repo_dir, cli, by_parts):
    """Each re-add after a change (edit, new file, deletion, a new subfolder, chmod)
    gives the digest a fresh hash of the folder gives: unchanged subfolders reused from
    the stat cache make the same tree as hashing everything."""
    make_big(repo_dir / "data")
    assert cli("add", "data").code == 0
    assert cached(repo_dir, pointer_digest(repo_dir), manifest=True).startswith(b"dataver-tree 1 ")
    assert pointer_digest(repo_dir).hex == hashed(cli, repo_dir / "data")
    steps = [
        lambda d: write(d / "s1/f0007.txt", b"edited, longer\n"),
        lambda d: write(d / "s2/new.txt", b"new\n"),
        lambda d: os.unlink(d / "s0/f0000.txt"),
        lambda d: write(d / "s9/x/y.txt", b"deep\n"),
        lambda d: os.chmod(d / "s2/f0003.txt", 0o755),
        lambda d: [write(d / f"many/{i:05d}", b"m") for i in range(tree.FLAT_MAX + 10)],  # a node of pieces
        lambda d: write(d / "many/00007", b"mm"),
        lambda d: write(d / "s1/f0001.txt.dv", b"not a pointer, just a name\n"),
    ]
    for step in steps:
        step(repo_dir / "data")
        age(repo_dir / "data")
        r = cli("add", "data")
        assert r.code == 0, r.err
        assert pointer_digest(repo_dir).hex == hashed(cli, repo_dir / "data")
        assert cli("status").out == ""


def test_status_of_an_unchanged_big_folder_is_one_line_unless_asked(repo_dir, cli):
    files = make_big(repo_dir / "data")
    assert cli("add", "data").code == 0
    cli("status")  # vouches (records the fingerprint)
    r = cli("status", "--all")
    assert r.code == 0 and r.out.count("unchanged:") == len(files)
    r = cli("status", "--json")
    assert len(json.loads(r.out)) == len(files)
    from dataver.ops.core import status
    from dataver.repo import Repo

    repo = Repo.find(str(repo_dir))
    try:
        records = status(repo, per_file=False)
    finally:
        repo.close()
    assert [(r.path, r.state, r.in_cache) for r in records] == [("data", "unchanged", True)]
    # an object gone from the cache: named file by file again
    uncache(repo_dir, digest_bytes(files["s1/f0002.txt"]))
    r = cli("status")
    assert r.out.split() == ["unchanged:", "data/s1/f0002.txt", "(not", "in", "cache)"]


def test_push_clone_pull_and_a_one_file_change(repo_dir, cli, tmp_path, streamed):
    files = make_big(repo_dir / "data")
    remote = tmp_path / "remote"
    assert cli("add", "data").code == 0
    assert cli("remote", "add", "-d", "store", str(remote)).code == 0
    git_commit(repo_dir, "v1")
    r = cli("push", "--json")
    assert r.code == 0, r.err
    write(repo_dir / "data/s1/f0100.txt", b"changed\n")
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v2")
    r = cli("push", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["transferred"] == 3  # the blob, the manifest of s1 and the root node
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(clone)], check=True)
    r = cli("pull", cwd=clone)
    assert r.code == 0, r.err
    files["s1/f0100.txt"] = b"changed\n"
    got = {p.relative_to(clone / "data").as_posix(): p.read_bytes() for p in (clone / "data").rglob("*") if p.is_file()}
    assert got == files
    assert cli("status", cwd=clone).out == ""
    assert cli("ls", "data", cwd=clone).out.count("\n") == len(files)


def test_diff_of_two_trees_reads_only_the_subfolders_that_differ(repo_dir, cli, monkeypatch):
    files = make_big(repo_dir / "data")
    write(repo_dir / "data/s2/deep/x.txt", b"deep\n")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v1")
    write(repo_dir / "data/s1/f0100.txt", b"changed\n")  # modified
    os.unlink(repo_dir / "data/s1/f0200.txt")  # deleted
    write(repo_dir / "data/s1/new.txt", b"new\n")  # added
    os.unlink(repo_dir / "data/top.txt")  # deleted, at the top
    write(repo_dir / "data/s3/only.txt", b"a new subfolder\n")  # added with its folder
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v2")
    from dataver.odb import ObjectStore

    nodes: list[str] = []
    real = ObjectStore.read_manifest_bytes

    def counting(self, digest):
        nodes.append(digest.hex)
        return real(self, digest)

    monkeypatch.setattr(ObjectStore, "read_manifest_bytes", counting)
    r = cli("diff", "HEAD~1", "HEAD", "--json")
    assert r.code == 0, r.err
    got = [(c["path"], c["change"]) for c in json.loads(r.out)]
    assert got == [
        ("data/s1/f0100.txt", "modified"),
        ("data/s1/f0200.txt", "deleted"),
        ("data/s1/new.txt", "added"),
        ("data/s3/only.txt", "added"),
        ("data/top.txt", "deleted"),
    ]
    changed = json.loads(r.out)[0]
    assert (changed["old_size"], changed["new_size"]) == (len(files["s1/f0100.txt"]), 8)
    assert changed["new_digest"] == digest_bytes(b"changed\n").hex
    # s0 and s2 (with s2/deep) are the same on both sides: their manifests are never read
    same = {hashed(cli, repo_dir / "data" / sub) for sub in ("s0", "s2", "s2/deep")}
    assert not same & set(nodes), "a subfolder equal on both sides was read"
    # a part of the folder, and the same revisions the other way round
    r = cli("diff", "HEAD", "HEAD~1", "-p", "data/s1", "--json")
    assert r.code == 0, r.err
    assert [(c["path"], c["change"]) for c in json.loads(r.out)] == [
        ("data/s1/f0100.txt", "modified"),
        ("data/s1/f0200.txt", "added"),
        ("data/s1/new.txt", "deleted"),
    ]


def test_diff_of_a_folder_tracked_whole_then_in_parts_names_only_real_changes(repo_dir, cli):
    for sub in ("x", "y"):
        for i in range(5):
            write(repo_dir / f"data/{sub}/f{i}.txt", f"{sub} {i}\n")
    write(repo_dir / "data.csv", "beside it\n")
    assert cli("add", "data", "data.csv").code == 0
    git_commit(repo_dir, "whole")
    assert cli("remove", "data").code == 0
    write(repo_dir / "data/y/f3.txt", "changed\n")
    assert cli("add", "data/x", "data/y").code == 0
    git_commit(repo_dir, "parts")
    for a, b, kind in (("HEAD~1", "HEAD", "modified"), ("HEAD", "HEAD~1", "modified")):
        r = cli("diff", a, b, "--json")
        assert r.code == 0, r.err
        assert [(c["path"], c["change"]) for c in json.loads(r.out)] == [("data/y/f3.txt", kind)]


def test_a_pull_records_the_prints_that_let_the_next_status_skip_the_folder(repo_dir, cli, tmp_path, monkeypatch):
    monkeypatch.setattr("dataver.checkout.STREAM_FILES", 100)  # the folder is created in batches, then vouched for
    monkeypatch.setattr("dataver.state.RACY_WINDOW_NS", 0)  # files written just now count as settled
    files = make_big(repo_dir / "data")
    write(repo_dir / "data/s2/deep/x.txt", b"deep\n")
    assert cli("add", "data").code == 0
    assert cli("remote", "add", "-d", "store", str(tmp_path / "remote")).code == 0
    git_commit(repo_dir, "v1")
    assert cli("push").code == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(clone)], check=True)
    assert cli("pull", cwd=clone).code == 0
    import dataver.workspace as ws

    compared: list[int] = []
    real = ws._compare_folder

    def counting(repo, t, scan, entries, *rest):
        compared.append(len(entries))
        return real(repo, t, scan, entries, *rest)

    monkeypatch.setattr(ws, "_compare_folder", counting)
    r = cli("status", cwd=clone)
    assert (r.code, r.out) == (0, "")
    assert compared == [], "the first status after the pull compared files one by one"

    # A file changed after checkout wrote it is not vouched for: its subfolder is compared.
    from dataver.repo import Repo
    from dataver.vouch import vouch_folder
    from dataver.workspace import find_tracked

    write(clone / "data/s1/f0007.txt", b"edited after the checkout\n")
    import sqlite3

    db = sqlite3.connect(clone / ".dataver/state.db")  # s0's rows gone (as when written in the racy window)
    with db:
        db.execute("DELETE FROM files WHERE path LIKE 'data/s0/%'")
    with Repo(str(clone)) as repo:
        (t,) = find_tracked(repo)
        recorded = vouch_folder(repo, t)
    assert recorded == 2  # s0 and s2 (s2/deep is in s2's flat manifest): not s1, so not the whole folder
    rows = db.execute("SELECT count(*) FROM files WHERE path LIKE 'data/s0/%'").fetchone()[0]
    db.close()
    assert rows == PER_SUB  # s0's files were hashed, and recorded again
    r = cli("status", cwd=clone)
    assert "data/s1/f0007.txt" in r.out and r.out.count("\n") == 1
    assert compared and max(compared) <= len([f for f in files if f.startswith("s1/")]) + 2


def test_gc_keeps_every_node_of_committed_trees_and_checkout_restores(repo_dir, cli):
    make_big(repo_dir / "data")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v1")
    v1 = pointer_digest(repo_dir)
    write(repo_dir / "data/s2/f0001.txt", b"v2\n")
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v2")
    r = cli("gc", "--all-commits", "--yes")
    assert r.code == 0, r.err
    assert not (repo_dir / ".dataver/cache/generation").exists()  # nothing removed: the same generation
    shutil.rmtree(repo_dir / "data")
    assert cli("checkout", "--rev", "HEAD~1").code == 0
    assert (repo_dir / "data/s2/f0001.txt").read_bytes() == b"2:1\n"
    assert v1 != pointer_digest(repo_dir)  # the workspace pointer is still v2's: one file differs from it
    assert cli("status").out.split() == ["modified:", "data/s2/f0001.txt"]
    # v1's blob and nodes are garbage once only the workspace is kept (and nothing was pushed)
    assert cli("checkout").code == 0
    r = cli("gc", "--not-pushed-too", "--yes", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["removed"] >= 3
    assert len((repo_dir / ".dataver/cache/generation").read_text()) == 32  # a removal made a new generation
    r = cli("checkout", "--rev", "HEAD~1")
    assert r.code != 0  # v1 is gone from the cache
    assert cli("checkout", "--force").code == 0
    assert cli("status").out == ""


def test_an_old_flat_pointer_of_many_files_still_checks_out(repo_dir, cli, streamed):
    """A folder of more than 4,096 files added before trees is one flat manifest: it
    still reads, checks out and has a clean status (and its digest is not the tree's)."""
    files = {f"f{i:05d}": f"{i}\n".encode() for i in range(tree.FLAT_MAX + 50)}
    entries = [manifest.Entry(p, digest_bytes(b), len(b), False) for p, b in files.items()]
    data = manifest.dumps(entries, DEFAULT_ALGORITHM)
    digest = digest_manifest(data, DEFAULT_ALGORITHM)
    cache = repo_dir / ".dataver/cache"
    (cache / digest.relpath()).parent.mkdir(parents=True, exist_ok=True)
    (cache / (digest.relpath() + ".manifest")).write_bytes(data)
    for b in files.values():
        blob = cache / digest_bytes(b).relpath()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(b)
    size = sum(len(b) for b in files.values())
    write(
        repo_dir / "data.dv",
        f"version: 1\nkind: dir\nhash: {DEFAULT_ALGORITHM}\ndigest: {digest.hex}\nsize: {size}\nfiles: {len(files)}\n",
    )
    r = cli("checkout")
    assert r.code == 0, r.err
    assert (repo_dir / "data/f04100").read_bytes() == b"4100\n"
    assert cli("status").out == ""
    assert hashed(cli, repo_dir / "data") != digest.hex  # a fresh add would make a tree


@pytest.mark.parametrize("bad", ["duplicate", "both"])
def test_a_hostile_tree_in_the_cache_is_refused_and_nothing_written(repo_dir, cli, bad, streamed):
    """A tree whose root lists a child twice, or a name as both file and folder, is
    refused by checkout with exit 5, and no file is written."""
    objs = {}

    def put(data: bytes):
        d = digest_manifest(data, DEFAULT_ALGORITHM)
        objs[d] = data
        return d

    half = [manifest.Entry(f"f{i:04d}", digest_bytes(b"x"), 1, False) for i in range(3000)]
    a = put(manifest.dumps(half, DEFAULT_ALGORITHM))
    line = f"{a.hex} 3000 d a"
    extra = line if bad == "duplicate" else f"{digest_bytes(b'x').hex} 1 - a"
    lines = [line, extra] if bad == "duplicate" else [extra, line]
    root = put(("dataver-tree 1 xxh3-128\n" + "".join(x + "\n" for x in lines)).encode())
    cache = repo_dir / ".dataver/cache"
    for d, data in objs.items():
        (cache / d.relpath()).parent.mkdir(parents=True, exist_ok=True)
        (cache / (d.relpath() + ".manifest")).write_bytes(data)
    blob = cache / digest_bytes(b"x").relpath()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(b"x")
    write(repo_dir / "data.dv", f"version: 1\nkind: dir\nhash: xxh3-128\ndigest: {root.hex}\nsize: 6000\nfiles: 6000\n")
    r = cli("checkout")
    assert r.code == 5, (r.code, r.err)
    assert "Traceback" not in r.err
    assert not (repo_dir / "data").exists()


def test_checkout_of_one_changed_file_in_a_big_tree(repo_dir, cli, streamed):
    """Back to the previous pointer after a one-file change: that file is restored, the
    rest is counted unchanged and not rewritten (subfolders whose fingerprint vouches for
    the target's manifest are not looked at file by file)."""
    files = make_big(repo_dir / "data")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v1")
    write(repo_dir / "data/s0/f0009.txt", b"v2!\n")
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v2")
    before = {p: p.stat().st_ino for p in (repo_dir / "data/s1").iterdir()}
    subprocess.run(["git", "checkout", "-q", "HEAD~1", "--", "data.dv"], cwd=repo_dir, check=True)
    r = cli("checkout", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert (out["replaced"], out["created"], out["deleted"], out["unchanged"]) == (1, 0, 0, len(files) - 1)
    assert (repo_dir / "data/s0/f0009.txt").read_bytes() == files["s0/f0009.txt"]
    assert {p: p.stat().st_ino for p in (repo_dir / "data/s1").iterdir()} == before
    assert cli("status").out == ""
    if streamed[0] != "kept":  # the second scan left the subfolders that vouch alone
        assert frozenset({"s1/", "s2/"}) in streamed[1]
    if streamed[0] == "shared":
        assert "answered" in streamed[1]


def test_status_after_a_change_compares_only_the_changed_subfolder(repo_dir, cli, by_parts, streamed):
    """The tracked folder's fingerprint no longer vouches, but its subfolders' do: the
    change is found, the unchanged subfolders are reported unchanged (one line each
    in the library's summary, every file with --json), and the cache check still works."""
    files = make_big(repo_dir / "data")
    assert cli("add", "data").code == 0
    write(repo_dir / "data/s2/f0004.txt", b"edited!\n")
    (repo_dir / "data/s0/f0001.txt").unlink()
    r = cli("status")
    assert r.out.split() == ["modified:", "data/s2/f0004.txt", "deleted:", "data/s0/f0001.txt"] or sorted(
        r.out.split()
    ) == sorted(["modified:", "data/s2/f0004.txt", "deleted:", "data/s0/f0001.txt"])
    records = json.loads(cli("status", "--json").out)
    assert len(records) == len(files)
    states = {x["path"]: x["state"] for x in records}
    assert states["data/s2/f0004.txt"] == "modified" and states["data/s0/f0001.txt"] == "deleted"
    assert states["data/s1/f0004.txt"] == "unchanged" and [x["path"] for x in records] == sorted(states)
    from dataver.ops.core import status
    from dataver.repo import Repo

    repo = Repo.find(str(repo_dir))
    try:
        summary = {(r.path, r.state) for r in status(repo, per_file=False)}
    finally:
        repo.close()
    assert ("data/s1", "unchanged") in summary and ("data/s2/f0004.txt", "modified") in summary
    if streamed[0] != "kept":
        assert frozenset({"s1/"}) in streamed[1]  # s0 and s2 changed: scanned file by file
    if streamed[0] == "shared":
        assert "answered" in streamed[1]


def test_count_held_names_every_blob_or_none(repo_dir, cli):
    """The whole-folder cache check: every file's blob there (repeats counted), or None
    as soon as one is missing or a name is no digest."""
    from dataver.odb import ObjectStore

    files = make_big(repo_dir / "data")
    assert cli("add", "data").code == 0
    cache = ObjectStore(str(repo_dir / ".dataver/cache"))
    digest = pointer_digest(repo_dir)
    hexes = list(tree.file_hexes(cache.read_manifest_bytes, digest, "t"))
    assert cache.count_held(hexes, DEFAULT_ALGORITHM) == len(files)
    assert cache.count_held(hexes + hexes[:3], DEFAULT_ALGORITHM) == len(files) + 3
    assert cache.count_held([], DEFAULT_ALGORITHM) == 0
    assert cache.count_held(hexes + ["../" + hexes[0][3:]], DEFAULT_ALGORITHM) is None
    assert cache.count_held(hexes + [digest.hex], DEFAULT_ALGORITHM) is None  # a manifest is no blob
    uncache(repo_dir, digest_bytes(files["s1/f0002.txt"]))
    assert cache.count_held(hexes, DEFAULT_ALGORITHM) is None
