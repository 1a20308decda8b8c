"""Hash algorithms: blake3 as a per-repository option beside the default xxh3-128.

Real repositories, real files, the CLI: what a blake3 digest is (the BLAKE3 team's
published vectors and the ``blake3`` package, i.e. what ``b3sum`` prints), a blake3
repository's whole life (add, status, checkout, push, pull, gc, verify) through a
folder remote, a repository that switches algorithm halfway through its history, a
stat cache that never hands one algorithm's digest to the other, and files from
strangers that name an algorithm dataver does not know.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import xxhash
from blake3 import blake3
from conftest import age, cli_proc, git_commit, make_tree, write
from remote_view import FolderView
from test_cli_add import read_pointer

from dataver.digest import CHUNK_SIZE, Digest
from dataver.hashing import Hasher, digest_bytes, digest_manifest
from dataver.odb import ObjectStore
from dataver.remotes import LocalRemoteStore, memory_store
from dataver.state import SCHEMA_VERSION
from dataver.store import ObjRef


def pattern(n: int) -> bytes:
    """The BLAKE3 test vectors' input (and docs/formats.md's): byte i is i mod 251."""
    return bytes(i % 251 for i in range(n))


# The first 32 bytes of the "hash" outputs in BLAKE3's test_vectors/test_vectors.json
# (github.com/BLAKE3-team/BLAKE3): independent of any library installed here.
OFFICIAL = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
}


def b3(data: bytes) -> str:
    return blake3(data).hexdigest()


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def ok(cli, *args: str, cwd: Path | None = None):
    r = cli(*args, cwd=cwd)
    assert r.code == 0, (args, r.err)
    return r


def status_of(cli) -> dict[str, str]:
    return {rec["path"]: rec["state"] for rec in json.loads(ok(cli, "status", "--json").out)}


def snapshot(root: Path, *tops: str) -> dict[str, bytes]:
    out = {}
    for top in tops:
        p = root / top
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
        out.update({str(f.relative_to(root)): f.read_bytes() for f in files})
    return out


def objects(store_root: Path, algorithm: str) -> set[str]:
    """``ab/cdef...[.manifest]`` of the store's objects of ``algorithm``, loose or packed."""
    prefix = f"{algorithm}/"
    return {k[len(prefix) :] for k in FolderView(store_root).keys() if k.startswith(prefix)}


@pytest.fixture
def b3_repo(tmp_path, monkeypatch, cli) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git("init", "--quiet", cwd=root)
    monkeypatch.chdir(root)
    r = cli("init", "--hash", "blake3")
    assert r.code == 0, r.err
    return root


# -- what a blake3 digest is -----------------------------------------------------------


def test_blake3_digest_is_whole_file_blake3_256(tmp_path, cli):
    """The published vectors, the blake3 package (what b3sum prints) and dataver agree,
    for content of one chunk and of several (hashed in chunks, with any thread count)."""
    for n, expected in OFFICIAL.items():
        assert b3(pattern(n)) == expected  # the package installed here is the reference one
        assert digest_bytes(pattern(n), algorithm="blake3") == Digest("blake3", expected)
    sizes = [CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 1000]
    for size in sizes:
        data = pattern(size)
        path = write(tmp_path / f"p{size}", data)
        r = ok(cli, "hash", "--hash", "blake3", "--json", str(path))
        assert json.loads(r.out)["digest"] == b3(data), size
        assert digest_bytes(data, algorithm="blake3").hex == b3(data)
    # Small chunks and several threads: the digest is still the whole file's.
    data = pattern(5 * 4096 + 17)
    path = str(write(tmp_path / "small-chunks", data))
    for jobs in (1, 3):
        with Hasher(jobs=jobs, chunk_size=4096, algorithm="blake3") as h:
            assert h.hash_file(path).digest == Digest("blake3", b3(data))
            assert h.hash_file(path, algorithm="xxh3-128").digest == digest_bytes(data, 4096)
    # A folder: BLAKE3 of its manifest, whose header names blake3.
    tree = make_tree(tmp_path / "folder", 6)
    lines = [f"{b3(data)} {len(data)} - {rel}" for rel, data in sorted(tree.items(), key=lambda kv: kv[0].encode())]
    manifest = ("dataver-manifest 1 blake3\n" + "".join(f"{line}\n" for line in lines)).encode()
    r = ok(cli, "hash", "--hash", "blake3", str(tmp_path / "folder"))
    assert r.out.split()[0] == b3(manifest) == digest_manifest(manifest, "blake3").hex


def test_add_in_a_blake3_repository_names_objects_by_blake3(b3_repo, cli):
    data = os.urandom(3000)
    write(b3_repo / "model.bin", data)
    tree = make_tree(b3_repo / "data", 8)
    (b3_repo / "empty").mkdir()
    ok(cli, "add", "model.bin", "data", "empty")
    ptr = read_pointer(b3_repo / "model.bin.dv")
    assert (ptr["hash"], ptr["digest"]) == ("blake3", b3(data))
    cache = b3_repo / ".dataver" / "cache"
    obj = cache / "blake3" / b3(data)[:2] / b3(data)[2:]
    assert b3(obj.read_bytes()) == ptr["digest"]  # `b3sum OBJECT` prints its name
    folder = read_pointer(b3_repo / "data.dv")
    mfile = cache / "blake3" / folder["digest"][:2] / (folder["digest"][2:] + ".manifest")
    text = mfile.read_bytes()
    assert b3(text) == folder["digest"]
    assert text.startswith(b"dataver-manifest 1 blake3\n")
    assert {line.split(" ", 1)[0] for line in text.decode().splitlines()[1:]} == {b3(d) for d in tree.values()}
    empty = read_pointer(b3_repo / "empty.dv")
    assert empty["digest"] == b3(b"dataver-manifest 1 blake3\n")  # an empty folder is blake3 too
    assert not (cache / "xxh3-128").exists()
    assert ok(cli, "hash", "model.bin").out.split()[0] == b3(data)  # hash follows the repository's core.hash


# -- a blake3 repository's life ---------------------------------------------------------


def test_blake3_round_trip_through_a_folder_remote(b3_repo, tmp_path, cli):
    root = b3_repo
    big = pattern(CHUNK_SIZE + 1)  # more than one chunk
    write(root / "big.bin", big)
    v1 = make_tree(root / "data", 10)
    ok(cli, "add", "big.bin", "data")
    ok(cli, "remote", "add", "storage", str(tmp_path / "remote"), "--default")
    git_commit(root, "v1")
    assert set(status_of(cli).values()) == {"unchanged"}

    write(root / "data/f0.bin", b"changed")
    write(root / "big.bin", big[:-1] + b"\xff")
    st = status_of(cli)
    assert st["data/f0.bin"] == st["big.bin"] == "modified"
    ok(cli, "checkout", "--force")
    assert snapshot(root, "data", "big.bin") == {"big.bin": big} | {f"data/{k}": v for k, v in v1.items()}

    ok(cli, "push")
    remote = tmp_path / "remote"
    cache = root / ".dataver/cache"
    assert objects(remote, "blake3") == objects(cache, "blake3")
    assert not objects(remote, "xxh3-128")
    assert all(r["remote"] for r in json.loads(ok(cli, "status", "-r", "storage", "--json").out))
    ok(cli, "verify")
    ok(cli, "verify", "-r", "storage")

    # v2 changes one file; its old version stays only in v1.
    write(root / "data/f2.bin", b"second version")
    ok(cli, "add", "data")
    git_commit(root, "v2")
    ok(cli, "push")

    # gc keeps what the workspace needs and drops v1's old f2.bin, from the cache and the remote.
    old, new = b3(v1["f2.bin"]), b3(b"second version")
    assert (cache / "blake3" / old[:2] / old[2:]).exists()
    ok(cli, "gc", "--yes")
    ok(cli, "gc", "--yes", "--remote", "storage")
    for store in (cache, remote):
        held = objects(store, "blake3")
        assert f"{old[:2]}/{old[2:]}" not in held and f"{new[:2]}/{new[2:]}" in held

    # Lose the cache and the workspace, then pull: everything comes back, verified.
    shutil.rmtree(cache)
    shutil.rmtree(root / "data")
    (root / "big.bin").unlink()
    ok(cli, "pull")
    expected = {f"data/{k}": v for k, v in v1.items()} | {"data/f2.bin": b"second version", "big.bin": big}
    assert snapshot(root, "data", "big.bin") == expected
    assert set(status_of(cli).values()) == {"unchanged"}
    ok(cli, "verify")


# -- switching algorithm ---------------------------------------------------------------


def test_switching_algorithm_mid_history(repo_dir, tmp_path, cli):
    """New adds use the new algorithm; old pointers keep working; revisions of either
    algorithm check out without --force, push, pull and survive gc."""
    root = repo_dir
    v1 = make_tree(root / "data", 8)
    write(root / "old.txt", b"tracked before the switch, never re-added")
    write(root / "model.bin", b"model v1")
    ok(cli, "add", "data", "old.txt", "model.bin")
    ok(cli, "remote", "add", "storage", str(tmp_path / "remote"), "--default")
    git_commit(root, "v1 (xxh3-128)")
    ok(cli, "push")
    rev1 = git("rev-parse", "HEAD", cwd=root)
    assert read_pointer(root / "data.dv")["hash"] == "xxh3-128"

    ok(cli, "config", "core.hash", "blake3")
    assert ok(cli, "config", "core.hash").out.strip() == "blake3"
    write(root / "data/f0.bin", b"changed after the switch")
    write(root / "model.bin", b"model v2")
    ok(cli, "add", "data", "model.bin")
    git_commit(root, "v2 (blake3)")
    rev2 = git("rev-parse", "HEAD", cwd=root)
    assert read_pointer(root / "data.dv")["hash"] == "blake3"
    model = read_pointer(root / "model.bin.dv")
    assert (model["hash"], model["digest"]) == ("blake3", b3(b"model v2"))
    old = read_pointer(root / "old.txt.dv")  # not re-added: keeps its algorithm
    assert (old["hash"], old["digest"]) == (
        "xxh3-128",
        xxhash.xxh3_128_hexdigest(v1_old := b"tracked before the switch, never re-added"),
    )
    assert set(status_of(cli).values()) == {"unchanged"}  # mixed pointers, one clean status
    ok(cli, "push")
    remote = tmp_path / "remote"
    assert objects(remote, "blake3") and objects(remote, "xxh3-128")

    v2_files = snapshot(root, "data", "old.txt", "model.bin")
    v1_files = {f"data/{k}": v for k, v in v1.items()} | {"old.txt": v1_old, "model.bin": b"model v1"}
    # Back and forth without --force: what is in the workspace is saved in the cache,
    # under the algorithm it was added with, not the one the target revision uses.
    git("checkout", "--quiet", rev1, cwd=root)
    ok(cli, "checkout")
    assert snapshot(root, "data", "old.txt", "model.bin") == v1_files
    assert set(status_of(cli).values()) == {"unchanged"}
    git("checkout", "--quiet", rev2, cwd=root)
    ok(cli, "checkout")
    assert snapshot(root, "data", "old.txt", "model.bin") == v2_files
    # An unsaved edit is still a conflict, whichever algorithm the pointer uses.
    write(root / "model.bin", b"edited, never added")
    git("checkout", "--quiet", rev1, cwd=root)
    r = cli("checkout")
    assert r.code == 6 and "model.bin" in r.err
    write(root / "model.bin", b"model v2")
    git("checkout", "--quiet", rev2, cwd=root)

    # gc keeps both revisions' objects (both algorithms); a new clone pulls either.
    ok(cli, "gc", "--all-commits", "--yes")
    ok(cli, "gc", "--all-commits", "--yes", "--remote", "storage")
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(root), str(clone), cwd=tmp_path)  # its committed config names the remote
    ok(cli, "pull", cwd=clone)
    assert snapshot(clone, "data", "old.txt", "model.bin") == v2_files
    git("checkout", "--quiet", rev1, cwd=clone)
    ok(cli, "pull", cwd=clone)
    assert snapshot(clone, "data", "old.txt", "model.bin") == v1_files
    ok(cli, "verify", cwd=clone)


def test_mixed_refs_on_every_store(tmp_path):
    """A store holding objects of both algorithms lists them all and answers ``missing``
    exactly, by stat and by listing (many refs across many fan-out folders)."""
    blobs = [(f"blob {i}".encode(), algo) for i in range(150) for algo in ("xxh3-128", "blake3")]
    refs = [ObjRef(digest_bytes(data, algorithm=algo)) for data, algo in blobs]
    manifest = b"dataver-manifest 1 blake3\n"
    mref = ObjRef(digest_manifest(manifest, "blake3"), manifest=True)
    absent = [
        ObjRef(digest_bytes(f"never {i}".encode(), algorithm=a)) for i in range(40) for a in ("xxh3-128", "blake3")
    ]
    stores = [ObjectStore(str(tmp_path / "cache")), LocalRemoteStore("r", str(tmp_path / "remote"), {}), memory_store()]
    for store in stores:
        store.prepare_write()
        for (data, _), ref in zip(blobs, refs, strict=True):
            store.put_bytes(ref, data)
        store.put_bytes(mref, manifest)
        listed = {ref for ref, _ in store.iter_objects()}
        assert listed == set(refs) | {mref}, store.where
        for asked in (refs[:20] + absent[:10] + [mref], refs + absent + [mref]):
            assert store.missing(asked) == [r for r in asked if r in absent], store.where


# -- the stat cache ----------------------------------------------------------------------


def test_stat_cache_never_confuses_algorithms(repo_dir, cli):
    root = repo_dir
    data = b"same bytes under two algorithms"
    write(root / "f.txt", data)
    make_tree(root / "data", 6)
    age(root / "f.txt")
    age(root / "data")
    first = json.loads(ok(cli, "add", "--json", "f.txt", "data").out)
    xxh_folder = read_pointer(root / "data.dv")["digest"]
    assert {i["path"]: i["hashed"] for i in first} == {"f.txt": 1, "data": 6}

    ok(cli, "config", "core.hash", "blake3")
    # Unchanged files, all vouched for by the stat cache under xxh3-128: still hashed
    # again (and stored again) under blake3, never given an xxh3 digest.
    again = json.loads(ok(cli, "add", "--json", "f.txt", "data").out)
    assert {i["path"]: i["hashed"] for i in again} == {"f.txt": 1, "data": 6}
    assert read_pointer(root / "f.txt.dv")["digest"] == b3(data)
    manifest = read_pointer(root / "data.dv")
    assert manifest["hash"] == "blake3"
    # Now both are recorded: the next add of either algorithm reads nothing.
    assert {i["path"]: i["hashed"] for i in json.loads(ok(cli, "add", "--json", "f.txt", "data").out)} == {
        "f.txt": 0,
        "data": 0,
    }
    ok(cli, "config", "core.hash", "xxh3-128")
    back = json.loads(ok(cli, "add", "--json", "f.txt", "data").out)
    assert {i["path"]: i["hashed"] for i in back} == {"f.txt": 0, "data": 0}
    assert read_pointer(root / "f.txt.dv")["digest"] == xxhash.xxh3_128_hexdigest(data)
    assert read_pointer(root / "data.dv")["digest"] == xxh_folder
    db = sqlite3.connect(root / ".dataver/state.db")
    rows = dict(db.execute("SELECT algorithm, digest FROM files WHERE path = 'f.txt'").fetchall())
    folders = dict(db.execute("SELECT algorithm, manifest FROM folders WHERE path = 'data'").fetchall())
    db.close()
    assert rows == {"xxh3-128": xxhash.xxh3_128_hexdigest(data), "blake3": b3(data)}
    assert folders == {"xxh3-128": xxh_folder, "blake3": manifest["digest"]}


def test_stat_cache_of_the_old_schema_is_not_trusted(repo_dir, cli):
    """A state.db written before rows carried their algorithm is dropped and rebuilt,
    not read: its rows could be of any algorithm."""
    root = repo_dir
    write(root / "f.txt", b"version one")
    age(root / "f.txt")
    ok(cli, "add", "f.txt")
    digest = read_pointer(root / "f.txt.dv")["digest"]
    (root / ".dataver/state.db").unlink()
    write(root / "f.txt", b"version two")  # same size, not added
    age(root / "f.txt", 5)
    st = os.stat(root / "f.txt")
    db = sqlite3.connect(root / ".dataver/state.db")  # version 1's schema, a row vouching wrongly
    db.execute("CREATE TABLE files (path TEXT PRIMARY KEY, inode INTEGER, size INTEGER, mtime_ns INTEGER, digest TEXT)")
    db.execute("CREATE TABLE folders (path TEXT PRIMARY KEY, fingerprint TEXT, manifest TEXT)")
    db.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?)", ("f.txt", st.st_ino, st.st_size, st.st_mtime_ns, digest))
    db.commit()
    db.close()
    assert status_of(cli) == {"f.txt": "modified"}
    db = sqlite3.connect(root / ".dataver/state.db")
    assert (
        db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    )  # dropped and made again (3: rows carry the ctime)
    db.close()


# -- strangers' files --------------------------------------------------------------------


def test_unknown_algorithm_in_a_pointer_is_a_clear_error(repo_dir, tmp_path, cli):
    root = repo_dir
    write(root / "a.txt", b"a")
    ok(cli, "add", "a.txt")
    ok(cli, "remote", "add", "storage", str(tmp_path / "remote"), "--default")
    text = (root / "a.txt.dv").read_text()
    digest = read_pointer(root / "a.txt.dv")["digest"]
    cases = {
        "sha1": text.replace("hash: xxh3-128", "hash: sha1"),
        "short blake3": text.replace("hash: xxh3-128", "hash: blake3"),  # 32 hex digits, not 64
        "path": text.replace("hash: xxh3-128", "hash: ../../x").replace(digest, "00" * 32),
    }
    expected = {
        "sha1": "unknown hash algorithm 'sha1'",
        "short blake3": "expected 64 lowercase hex digits",
        "path": "unknown hash algorithm",
    }
    for name, body in cases.items():
        write(root / "a.txt.dv", body)
        for args in (["status"], ["checkout"], ["push"], ["verify"]):
            p = cli_proc(*args, cwd=root)
            assert p.returncode == 5, (name, args, p.stderr)
            assert "a.txt.dv" in p.stderr and expected[name] in p.stderr, (name, args, p.stderr)
            assert "Traceback" not in p.stderr
    assert not (tmp_path / "remote").exists()


def test_unknown_algorithm_in_a_manifest_is_a_clear_error(repo_dir, cli):
    """A manifest whose header names an unknown algorithm, or another algorithm than
    the digest it is found by, is refused naming the folder."""
    root = repo_dir
    write(root / "data/x.txt", b"x")
    ok(cli, "add", "data")
    cache = root / ".dataver/cache"
    line = f"{'ab' * 32} 1 - x.txt\n"
    for header, why in (
        ("dataver-manifest 1 sha256", "unknown hash algorithm 'sha256'"),
        ("dataver-manifest 1 blake3", "its header names blake3, but it is named by a xxh3-128 digest"),
    ):
        text = f"{header}\n{line}".encode()
        d = digest_manifest(text)  # a valid xxh3-128 name for hostile bytes
        path = cache / d.relpath()
        path = path.with_name(path.name + ".manifest")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)
        ptr = (root / "data.dv").read_text().replace(read_pointer(root / "data.dv")["digest"], d.hex)
        write(root / "data.dv", ptr)
        for args in (["checkout", "--force"], ["status"]):
            p = cli_proc(*args, cwd=root)
            assert p.returncode == 5, (header, args, p.stderr)
            assert "manifest of data" in p.stderr and why in p.stderr, (header, args, p.stderr)
            assert "Traceback" not in p.stderr
        ok(cli, "add", "data")  # back to the real one
    assert (root / "data/x.txt").read_bytes() == b"x"


def test_unknown_algorithm_in_config_is_refused(tmp_path, repo_dir, cli):
    r = cli("config", "core.hash", "md5")
    assert r.code == 3 and "core.hash must be one of xxh3-128, blake3" in r.err
    # A committed config from someone else: a clear error, nothing hashed or written.
    (repo_dir / ".dataver/config").write_text("[core]\nhash = sha3-512\n")
    write(repo_dir / "a.txt", b"a")
    p = cli_proc("add", "a.txt", cwd=repo_dir)
    assert p.returncode == 3 and "core.hash 'sha3-512'" in p.stderr and "Traceback" not in p.stderr
    assert not (repo_dir / "a.txt.dv").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git("init", "--quiet", cwd=fresh)
    r = cli("init", "--hash", "md5", cwd=fresh)
    assert r.code == 3 and "md5" in r.err
    assert not (fresh / ".dataver").exists()
