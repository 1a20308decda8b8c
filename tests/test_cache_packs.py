"""Small objects packed in the local cache (docs/formats.md, "Cache packs"): what an add
of many small files leaves on disk, that every command reads packed objects as it
reads files, and that a damaged or half-written pack never passes for data."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_crash
from conftest import age, cached, git_commit, uncache, write
from test_store import corrupt

from dataver import cachepacks, packfmt
from dataver.digest import Digest
from dataver.hashing import digest_bytes, digest_manifest
from dataver.odb import ObjectStore
from dataver.pointer import loads as load_pointer
from dataver.store import ObjRef

N = cachepacks.PACK_MIN + 76  # enough small files for an add to pack them


def make_small(root: Path, n: int = N, tag: str = "") -> dict[str, bytes]:
    files = {f"d{i % 7}/f{i:05d}.txt": f"{tag}file {i}\n".encode() * (1 + i % 13) for i in range(n)}
    for rel, data in files.items():
        write(root / rel, data)
    return files


def pointer_digest(repo: Path, name: str = "data") -> Digest:
    return load_pointer((repo / f"{name}.dv").read_bytes()).digest


def packs_of(repo: Path) -> list[Path]:
    d = repo / ".dataver/cache/packs"
    return sorted(d.glob("*.pack")) if d.exists() else []


def loose_of(repo: Path) -> list[Path]:
    base = repo / ".dataver/cache/xxh3-128"
    return [p for p in base.rglob("*") if p.is_file()] if base.exists() else []


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_an_add_of_many_small_files_packs_them_and_every_command_reads_them(repo_dir, cli):
    files = make_small(repo_dir / "data")
    assert cli("add", "data").code == 0
    packs = packs_of(repo_dir)
    assert len(packs) == 1
    assert loose_of(repo_dir) == []  # blobs and the manifest all in the pack
    data_bytes = sum(len(b) for b in set(files.values()))
    manifest_bytes = len(cached(repo_dir, pointer_digest(repo_dir), manifest=True))
    # the data, 48 bytes of entry per object, the manifest at most: not a 4 KiB block per object
    assert packs[0].stat().st_size <= data_bytes + 48 * (len(set(files.values())) + 1) + manifest_bytes + 28
    assert packs[0].stat().st_mode & 0o222 == 0
    assert os.listdir(repo_dir / ".dataver/cache/tmp") == []
    # the pack's name is the XXH3-128 of its bytes, its entries sorted by key
    raw = packs[0].read_bytes()
    assert packs[0].name == packfmt.object_id(raw) + ".pack"
    entries = packfmt.parse_trailer(raw, str(packs[0]), len(raw))
    keys = [e.key() for e in entries]
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == len(set(files.values())) + 1
    assert cli("status").out == ""
    assert cli("verify").code == 0
    shutil.rmtree(repo_dir / "data")
    r = cli("checkout")
    assert r.code == 0, r.err
    assert read_tree(repo_dir / "data") == files
    assert cli("status").out == ""


def test_a_few_small_files_stay_loose(repo_dir, cli):
    files = make_small(repo_dir / "data", 10)
    assert cli("add", "data").code == 0
    assert packs_of(repo_dir) == []
    assert len(loose_of(repo_dir)) == len(set(files.values())) + 1


def test_a_packed_object_is_read_like_a_loose_one_by_the_library(repo_dir, cli):
    files = make_small(repo_dir / "data")
    assert cli("add", "data").code == 0
    some = files["d3/f00010.txt"]
    assert cached(repo_dir, digest_bytes(some)) == some
    top = cached(repo_dir, pointer_digest(repo_dir), manifest=True)
    assert digest_manifest(top) == pointer_digest(repo_dir)
    store = ObjectStore(str(repo_dir / ".dataver/cache"))
    try:
        d = digest_bytes(some)
        assert store.has(ObjRef(d)) and not store.has(ObjRef(d, manifest=True))  # a blob is no manifest
        assert store.read(ObjRef(d), 2, 6) == some[2:6]
        hexes = [digest_bytes(b).hex for b in files.values()]
        assert store.count_held(hexes, "xxh3-128") == len(hexes)
        assert store.count_held([*hexes, "0" * 32], "xxh3-128") is None
        assert store.hexes_present([*hexes[:600], "1" * 32], "xxh3-128") == set(hexes[:600])
        listed = {(r.digest.hex, r.manifest) for r, _ in store.iter_objects()}
        assert listed == {(h, False) for h in hexes} | {(pointer_digest(repo_dir).hex, True)}
        assert ".pack (blob " in store.path(ObjRef(d))
        assert store.blob_file(d) == store.blob_path(d)  # unpacked for a caller that needs a path
        assert Path(store.blob_path(d)).read_bytes() == some
    finally:
        store.packs.close()


def test_gc_rewrites_a_pack_without_what_it_removes(repo_dir, cli):
    old = make_small(repo_dir / "data", tag="v1 ")
    assert cli("add", "data").code == 0
    shutil.rmtree(repo_dir / "data")
    new = make_small(repo_dir / "data", tag="v2 ")
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    assert len(packs_of(repo_dir)) == 2
    r = cli("gc", "--yes", "--not-pushed-too")
    assert r.code == 0, r.err
    packs = packs_of(repo_dir)
    assert len(packs) == 1
    store = ObjectStore(str(repo_dir / ".dataver/cache"))
    try:
        assert all(store.has_blob(digest_bytes(b)) for b in new.values())
        assert not any(store.has_blob(digest_bytes(b)) for b in old.values())
    finally:
        store.packs.close()
    shutil.rmtree(repo_dir / "data")
    assert cli("checkout").code == 0
    assert read_tree(repo_dir / "data") == new


def test_many_small_packs_are_merged(repo_dir, cli, monkeypatch):
    monkeypatch.setattr(cachepacks, "PACK_MIN", 2)
    for i in range(cachepacks.MERGE_OVER + 1):
        write(repo_dir / f"p{i}/a", f"a{i}")
        write(repo_dir / f"p{i}/b", f"b{i}")
        assert cli("add", f"p{i}").code == 0
    assert len(packs_of(repo_dir)) == 1  # the 17th small pack merged them all
    for i in range(cachepacks.MERGE_OVER + 1):
        shutil.rmtree(repo_dir / f"p{i}")
    assert cli("checkout").code == 0
    assert (repo_dir / "p5/b").read_bytes() == b"b5"


def test_push_and_pull_through_a_packed_cache(repo_dir, cli, tmp_path):
    files = make_small(repo_dir / "data")
    assert cli("add", "data").code == 0
    assert cli("remote", "add", "-d", "store", str(tmp_path / "remote")).code == 0
    git_commit(repo_dir, "v1")
    r = cli("push")
    assert r.code == 0, r.err
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(clone)], check=True)
    r = cli("pull", cwd=clone)
    assert r.code == 0, r.err
    assert read_tree(clone / "data") == files
    assert len(packs_of(clone)) == 1  # the pull stored what it fetched packed too
    assert len(loose_of(clone)) <= 1  # the top manifest, fetched before the walk, may be loose


def test_a_damaged_object_in_a_pack_is_refused_not_written(repo_dir, cli):
    files = make_small(repo_dir / "data")
    assert cli("add", "data").code == 0
    pack = packs_of(repo_dir)[0]
    raw = pack.read_bytes()
    entries = packfmt.parse_trailer(raw, str(pack), len(raw))
    victim = next(e for e in entries if e.kind == packfmt.KIND_BLOB)
    name = next(rel for rel, b in files.items() if digest_bytes(b) == victim.digest)
    corrupt(str(pack), victim.offset)
    (repo_dir / "data" / name).unlink()
    r = cli("checkout")
    assert r.code != 0
    assert "corrupt" in r.err and name in r.err
    assert not (repo_dir / "data" / name).exists()
    r = cli("verify")
    assert r.code != 0 and "corrupt" in r.out + r.err


def test_a_pack_with_a_damaged_trailer_holds_nothing(repo_dir, cli):
    make_small(repo_dir / "data")
    assert cli("add", "data").code == 0
    pack = packs_of(repo_dir)[0]
    corrupt(str(pack), pack.stat().st_size - 30)  # inside the entries: the check no longer matches
    shutil.rmtree(repo_dir / "data")
    r = cli("checkout")
    assert r.code != 0
    assert "not in the cache" in r.err or "missing" in r.err
    assert not (repo_dir / "data").exists() or read_tree(repo_dir / "data") == {}


def test_uncache_of_a_packed_object_shows_in_status(repo_dir, cli):
    files = make_small(repo_dir / "data")
    assert cli("add", "data").code == 0
    assert cli("status").out == ""
    uncache(repo_dir, digest_bytes(files["d1/f00008.txt"]))
    assert "(not in cache)" in cli("status").out


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL timing as on Linux")
def test_an_add_killed_while_packing_leaves_no_pack_and_the_rerun_completes(repo_dir, cli):
    """SIGKILL at several moments of an add that packs: no pack appears half-written
    (every pack present parses and holds good objects), no pointer names what the cache
    lacks, and a re-run completes."""
    files = make_small(repo_dir / "data", 6000)
    for delay in (0.3, 0.6, 1.0, 1.5):
        proc = subprocess.Popen([sys.executable, "-m", "dataver", "add", "data"], cwd=repo_dir)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for pack in packs_of(repo_dir):
            raw = pack.read_bytes()
            assert pack.name == packfmt.object_id(raw) + ".pack"
            for e in packfmt.parse_trailer(raw, str(pack), len(raw)):
                if e.kind == packfmt.KIND_BLOB:
                    assert digest_bytes(raw[e.offset : e.offset + e.stored]) == e.digest
        if (repo_dir / "data.dv").exists():
            assert cached(repo_dir, pointer_digest(repo_dir), manifest=True)
    r = cli("add", "data")
    assert r.code == 0, r.err
    shutil.rmtree(repo_dir / "data")
    assert cli("checkout").code == 0
    assert read_tree(repo_dir / "data") == files


@pytest.mark.skipif(test_crash.strace() is None, reason="needs strace to kill at a file-system call")
def test_gc_killed_while_rewriting_packs_keeps_what_it_keeps(repo_dir, cli, tmp_path):
    """SIGKILL a gc that rewrites packs at its first, middle and last pack write, rename
    and unlink (strace, as the crash harness does): every pack left is whole, every object
    the workspace needs is still there, and a re-run of gc finishes the job."""
    old = make_small(repo_dir / "data", tag="v1 ")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v1")
    shutil.rmtree(repo_dir / "data")
    new = make_small(repo_dir / "data", tag="v2 ")
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "v2")
    template = tmp_path / "template"
    shutil.copytree(repo_dir, template, symlinks=True)
    args = ("gc", "--yes", "--not-pushed-too")
    counts = test_crash.count_syscalls(repo_dir, args)
    kills = 0
    for call in ("pwrite64", "rename", "unlink"):
        n = counts.get(call, 0)
        for at in sorted({1, (n + 1) // 2, n} - {0}):
            shutil.rmtree(repo_dir)
            shutil.copytree(template, repo_dir, symlinks=True)
            os.chdir(repo_dir)  # the old one was removed under this process
            kills += test_crash.run_and_kill_at(repo_dir, args, call, at)
            test_crash.check_packs(repo_dir)
            store = ObjectStore(str(repo_dir / ".dataver/cache"))
            try:
                assert all(store.has_blob(digest_bytes(b)) for b in new.values()), (call, at)
                assert store.has_manifest(pointer_digest(repo_dir))
            finally:
                store.packs.close()
            r = subprocess.run([sys.executable, "-m", "dataver", *args], cwd=repo_dir, capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            test_crash.check_packs(repo_dir)
            store = ObjectStore(str(repo_dir / ".dataver/cache"))
            try:
                assert not any(store.has_blob(digest_bytes(b)) for b in old.values())
            finally:
                store.packs.close()
    assert kills >= 5  # most points were reached (a re-run needs no rewrite and ends sooner)
    shutil.rmtree(repo_dir / "data")
    assert cli("checkout").code == 0
    assert read_tree(repo_dir / "data") == new


def test_cache_pack_vector():
    """docs/formats.md "Cache pack test vector": two blobs and a manifest, packed by
    dataver's writer, give these bytes' name and this trailer order."""
    objects = [(b"hello\n", packfmt.KIND_BLOB), (b"", packfmt.KIND_BLOB)]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"vec-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    try:
        store = ObjectStore(str(tmp))
        import dataver.cachepacks as cp

        old = cp.PACK_MIN
        cp.PACK_MIN = 1
        try:
            with store.packing():
                for data, _ in objects:
                    store.put_bytes(ObjRef(digest_bytes(data)), data)
                manifest = b"dataver-manifest 1 xxh3-128\n"
                store.put_bytes(ObjRef(digest_manifest(manifest), manifest=True), manifest)
        finally:
            cp.PACK_MIN = old
            store.packs.close()
        (pack,) = sorted((tmp / "packs").glob("*.pack"))
        raw = pack.read_bytes()
        entries = packfmt.parse_trailer(raw, "vector", len(raw))
        assert [(e.digest.hex, e.kind, e.codec, e.offset, e.stored, e.size) for e in entries] == VECTOR_ENTRIES
        assert pack.name == VECTOR_NAME
        assert struct.unpack("<I", raw[-20:-16]) == (3,)
        assert raw.hex() == VECTOR_HEX
    finally:
        shutil.rmtree(tmp)


# The same values as docs/formats.md, "Cache pack test vector".
VECTOR_ENTRIES = [
    ("2ade4a3d75934bb6f675599c1ccf38e1", 1, 0, 14, 28, 28),
    ("6bba86c7e069f56d5a10b435f1c8e49c", 0, 0, 8, 6, 6),
    ("99aa06d3014798d86001c324468d497f", 0, 0, 14, 0, 0),
]
VECTOR_NAME = "2eff45f07ee1b6194fa0c92f25e280b3.pack"
VECTOR_HEX = (
    "44565041434b000168656c6c6f0a646174617665722d6d616e6966657374203120787868332d3132380a2ade4a3d75934b"
    "b6f675599c1ccf38e100000000000000000000000000000000010001000e0000001c0000001c0000006bba86c7e069f56d"
    "5a10b435f1c8e49c000000000000000000000000000000000000010008000000060000000600000099aa06d3014798d860"
    "01c324468d497f00000000000000000000000000000000000001000e000000000000000000000003000000"
    "2625ee02674e4eb94456504b454e4401"
)


def test_cache_pack_vector_is_in_the_spec():
    spec = (Path(__file__).parent.parent / "docs" / "formats.md").read_text()
    assert VECTOR_NAME[:-5] in spec
    assert VECTOR_HEX in "".join(spec.split())


def test_a_reader_sees_packs_written_and_merged_by_another_process(repo_dir, cli, monkeypatch):
    """Two stores over one cache, as two processes: what one packs, the other finds after
    it (one listing of packs/); a pack the other merges away stays readable to the first
    (its descriptor is kept), and the merged one is found at the next look."""
    monkeypatch.setattr(cachepacks, "PACK_MIN", 2)
    cache = str(repo_dir / ".dataver" / "cache")
    reader, writer = ObjectStore(cache), ObjectStore(cache)
    try:
        first = [f"first {i}".encode() for i in range(3)]
        with writer.packing():
            for b in first:
                writer.put_bytes(ObjRef(digest_bytes(b)), b)
        assert reader.hexes_present([digest_bytes(b).hex for b in first], "xxh3-128") == {
            digest_bytes(b).hex for b in first
        }
        assert reader.read(ObjRef(digest_bytes(first[0]))) == first[0]
        for n in range(cachepacks.MERGE_OVER):  # then many small packs: the 17th merges them all
            with writer.packing():
                for b in (f"more {n} a".encode(), f"more {n} b".encode()):
                    writer.put_bytes(ObjRef(digest_bytes(b)), b)
        assert len(packs_of(repo_dir)) == 1
        assert reader.read(ObjRef(digest_bytes(first[1]))) == first[1]  # its old pack, still open
        late = f"more {cachepacks.MERGE_OVER - 1} b".encode()
        assert reader.hexes_present([digest_bytes(late).hex], "xxh3-128") == {digest_bytes(late).hex}
        assert reader.read(ObjRef(digest_bytes(late))) == late
    finally:
        reader.packs.close()
        writer.packs.close()


def test_a_full_disk_while_packing_is_one_error_line(repo_dir, monkeypatch):
    """A pack that cannot be written (disk full) is a StorageError naming the cache, exit
    11, and leaves no pack and no temporary."""
    from dataver.cli.main import main

    make_small(repo_dir / "data")
    real = os.pwrite

    def full(fd, data, offset):
        if offset > 4096:
            raise OSError(28, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(cachepacks.os, "pwrite", full)
    assert main(["add", "data"]) == 11
    assert packs_of(repo_dir) == [] and not (repo_dir / "data.dv").exists()
    assert os.listdir(repo_dir / ".dataver/cache/tmp") == []


def test_manifests_held_before_a_pack_starts_are_compressed_when_it_does(repo_dir, monkeypatch):
    """A session's first objects wait in memory as they came (one copy each); when a pack
    starts they go into it, manifests compressed, and read back the same before and after."""
    monkeypatch.setattr(cachepacks, "PACK_MIN", 4)
    store = ObjectStore(str(repo_dir / ".dataver" / "cache"))
    manifests = [b"dataver-manifest 1 xxh3-128\n" + f"{i:032x} 12 file\n".encode() * 400 for i in range(6)]
    try:
        with store.packing():
            for n, m in enumerate(manifests):
                store.put_bytes(ObjRef(digest_manifest(m), manifest=True), m)
                for earlier in manifests[: n + 1]:
                    assert store.read_manifest_bytes(digest_manifest(earlier)) == earlier
        (pack,) = packs_of(repo_dir)
        entries = packfmt.parse_trailer(pack.read_bytes(), "p", None)
        assert len(entries) == 6
        assert all(e.codec == packfmt.CODEC_ZSTD and e.stored < e.size == len(manifests[0]) for e in entries)
        for m in manifests:
            assert store.read_manifest_bytes(digest_manifest(m)) == m
    finally:
        store.packs.close()


def test_what_a_session_stored_is_there_before_its_pack_is_written(repo_dir, monkeypatch):
    """The store contract inside ``packing()``: a blob or manifest just put is present
    (``has``, ``missing``, ``hexes_present``, ``count_held``) and readable at once, in the
    held phase and once a pack is being written; putting it again stores it once."""
    monkeypatch.setattr(cachepacks, "PACK_MIN", 4)
    store = ObjectStore(str(repo_dir / ".dataver" / "cache"))
    try:
        with store.packing():
            blobs = [f"blob {i}".encode() for i in range(10)]
            for n, b in enumerate(blobs):
                ref = ObjRef(digest_bytes(b))
                store.put_bytes(ref, b)
                store.put_bytes(ref, b)
                assert store.has(ref) and store.missing([ref]) == []
                assert store.read(ref) == b
                hexes = [digest_bytes(x).hex for x in blobs[: n + 1]]
                assert store.hexes_present(hexes, "xxh3-128") == set(hexes)
                assert store.count_held(hexes * 2, "xxh3-128") == 2 * len(hexes)
            m = b"dataver-manifest 1 xxh3-128\\n"
            store.put_bytes(ObjRef(digest_manifest(m), manifest=True), m)
            assert store.read_manifest_bytes(digest_manifest(m)) == m
        listed = [e.key() for pack in packs_of(repo_dir) for e in packfmt.parse_trailer(pack.read_bytes(), "p", None)]
        assert len(listed) == len(set(listed))  # each object once (a read of one being written writes it)
        hexes = [digest_bytes(b).hex for b in blobs]
        assert store.count_held(hexes, "xxh3-128") == 10 and store.has_manifest(digest_manifest(m))
    finally:
        store.packs.close()
