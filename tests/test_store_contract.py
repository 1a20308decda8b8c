"""The store contract (dataver/store.py), one suite run against every store.

As dulwich's ``ObjectStoreTests`` mixin: ``StoreContract`` states each MUST of the
contract as a test, and each subclass only says how to make its store (and how a
stranger would drop a foreign file into it). Stores: the local cache, a remote in a
local folder, the in-memory store, and S3 (moto's server and SeaweedFS, on loopback).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from dataver.errors import IntegrityError, ObjectsMissing, RemoteError
from dataver.hashing import CHUNK_SIZE, Hasher, digest_bytes, digest_manifest
from dataver.manifest import HEADER
from dataver.odb import ObjectStore
from dataver.remotes import LocalRemoteStore, RemoteStore, memory_store
from dataver.store import ObjRef, Store


def blob(data: bytes) -> ObjRef:
    return ObjRef(digest_bytes(data))


def manifest(data: bytes) -> ObjRef:
    return ObjRef(digest_manifest(data), manifest=True)


def manifest_bytes(n: int) -> bytes:
    return f"{HEADER}\n{digest_bytes(str(n).encode()).hex} 1 - f{n}.txt\n".encode()


@pytest.fixture(scope="module")
def hasher():
    with Hasher(2) as h:
        yield h


class StoreContract:
    """What every store promises. Subclasses define the ``store`` fixture and ``plant``."""

    def plant(self, store: Store, relpath: str, data: bytes) -> None:
        """Put a file at ``relpath`` below the store's root, as a stranger would."""
        raise NotImplementedError

    def new(self, store: Store) -> Store:
        store.prepare_write()
        return store

    # -- holding nothing ---------------------------------------------------------------
    def test_a_new_store_holds_nothing(self, store):
        store = self.new(store)
        refs = [blob(b"a"), manifest(manifest_bytes(1))]
        assert store.missing(refs) == refs
        assert not store.has(refs[0])
        assert list(store.iter_objects()) == []

    def test_reading_an_absent_object_is_objects_missing(self, store, tmp_path):
        ref = blob(b"never stored")
        with pytest.raises(ObjectsMissing):
            store.read(ref)
        with pytest.raises(ObjectsMissing):
            store.get_file(ref, str(tmp_path / "dest"))

    # -- put: verified, atomic, idempotent ------------------------------------------------
    @pytest.mark.parametrize("data", [b"", b"x", os.urandom(70_000)])
    def test_put_bytes_then_has_read_and_get_file(self, store, tmp_path, data):
        store = self.new(store)
        ref = blob(data)
        store.put_bytes(ref, data)
        assert store.has(ref) and store.missing([ref]) == []
        assert store.read(ref) == data
        store.get_file(ref, str(tmp_path / "out"))
        assert (tmp_path / "out").read_bytes() == data
        assert list(store.iter_objects()) == [(ref, len(data))]

    def test_put_manifest(self, store):
        store = self.new(store)
        data = manifest_bytes(7)
        ref = manifest(data)
        store.put_bytes(ref, data)
        assert store.read(ref) == data
        assert store.missing([ref, ObjRef(ref.digest)]) == [ObjRef(ref.digest)]  # same hex, other kind

    def test_put_file_of_several_chunks(self, store, tmp_path, hasher):
        store = self.new(store)
        data = os.urandom(CHUNK_SIZE + 4321)
        src = tmp_path / "big.bin"
        src.write_bytes(data)
        ref = blob(data)
        store.put_file(ref, str(src), hasher)
        assert src.read_bytes() == data  # the source is not touched
        assert store.read(ref, CHUNK_SIZE - 5, CHUNK_SIZE + 5) == data[CHUNK_SIZE - 5 : CHUNK_SIZE + 5]
        store.get_file(ref, str(tmp_path / "back.bin"))
        assert (tmp_path / "back.bin").read_bytes() == data

    @pytest.mark.parametrize("kind", ["blob", "manifest"])
    def test_put_refuses_bytes_that_do_not_match(self, store, tmp_path, hasher, kind):
        store = self.new(store)
        good = manifest_bytes(3) if kind == "manifest" else b"the real content"
        ref = manifest(good) if kind == "manifest" else blob(good)
        with pytest.raises(IntegrityError):
            store.put_bytes(ref, good + b"tampered")
        src = tmp_path / "src"
        src.write_bytes(good[:-1])
        with pytest.raises(IntegrityError):
            store.put_file(ref, str(src), hasher)
        assert store.missing([ref]) == [ref]
        assert list(store.iter_objects()) == []
        assert store.stale_temporaries(float("inf")) == []  # nothing half-written left behind

    def test_putting_an_object_again_is_harmless(self, store, tmp_path, hasher):
        store = self.new(store)
        data = b"same bytes, same name"
        ref = blob(data)
        store.put_bytes(ref, data)
        store.put_bytes(ref, data)
        src = tmp_path / "again"
        src.write_bytes(data)
        store.put_file(ref, str(src), hasher)
        assert store.read(ref) == data
        assert list(store.iter_objects()) == [(ref, len(data))]

    # -- read ------------------------------------------------------------------------------
    def test_read_ranges_behave_like_slices(self, store):
        store = self.new(store)
        data = bytes(range(256)) * 40
        ref = blob(data)
        store.put_bytes(ref, data)
        for start, end in ((0, 1), (5, 300), (10_000, None), (10_230, 20_000), (20_000, 30_000), (7, 7)):
            assert store.read(ref, start, end) == data[start:end], (start, end)

    # -- missing, iter, delete ---------------------------------------------------------------
    def test_missing_is_exact_over_many_objects(self, store):
        store = self.new(store)
        present = [f"object {i}".encode() for i in range(70)]
        for data in present:
            store.put_bytes(blob(data), data)
        absent = [blob(f"absent {i}".encode()) for i in range(70)]
        asked = [x for pair in zip([blob(d) for d in present], absent, strict=True) for x in pair]
        assert store.missing(asked) == absent
        assert sorted(ref.digest.hex for ref, _ in store.iter_objects()) == sorted(blob(d).digest.hex for d in present)

    def test_iter_objects_skips_what_is_not_an_object(self, store):
        store = self.new(store)
        data = b"ours"
        ref = blob(data)
        store.put_bytes(ref, data)
        hex_ = ref.digest.hex
        for rel in ("README", "xxh3-128/zz/not-hex", f"xxh3-128/{hex_[:2]}/{hex_[2:]}.bak", "xxh3-128/ab/cd"):
            self.plant(store, rel, b"someone else's")
        assert list(store.iter_objects()) == [(ref, len(data))]

    def test_delete_removes_and_tolerates_absent_objects(self, store):
        store = self.new(store)
        keep, drop = b"keep me", b"drop me"
        for data in (keep, drop):
            store.put_bytes(blob(data), data)
        store.delete([blob(drop), blob(b"never there")])
        assert store.missing([blob(keep), blob(drop)]) == [blob(drop)]
        assert [r for r, _ in store.iter_objects()] == [blob(keep)]
        store.delete([blob(drop)])

    # -- batches: writer and read_many -------------------------------------------------------
    def test_a_batch_of_puts_reads_back_every_way(self, store, tmp_path, hasher):
        store = self.new(store)
        datas = [f"small object {i}".encode() * (i % 7 + 1) for i in range(150)] + [b""]
        refs = [blob(d) for d in datas]
        mdata = manifest_bytes(9)
        mref = manifest(mdata)
        src = tmp_path / "src.bin"
        src.write_bytes(os.urandom(50_000))
        fref = blob(src.read_bytes())
        with store.writer(4) as batch:
            for ref, data in zip(refs, datas, strict=True):
                batch.put_bytes(ref, data)
            batch.put_bytes(refs[3], datas[3])  # twice in one batch: harmless
            batch.put_bytes(mref, mdata)
            batch.put_file(fref, str(src), hasher)
        every = [*refs, mref, fref]
        assert store.missing(every) == []
        got: dict[ObjRef, bytes] = {}
        store.read_many(every, lambda ref, data: got.__setitem__(ref, data), 4)
        assert got == {**dict(zip(refs, datas, strict=True)), mref: mdata, fref: src.read_bytes()}
        assert store.read(refs[10], 3, 9) == datas[10][3:9]
        assert store.read(mref) == mdata
        store.get_file(fref, str(tmp_path / "back"))
        assert (tmp_path / "back").read_bytes() == src.read_bytes()
        sizes = dict(store.iter_objects())
        assert sizes == {**{r: len(d) for r, d in zip(refs, datas, strict=True)}, mref: len(mdata), fref: 50_000}

    def test_a_big_file_in_a_batch_reads_back_every_way(self, store, tmp_path, hasher):
        """A file of 1 MiB or more (a packed remote stores it as chunks and a map,
        dataver/chunked.py): the same bytes, ranges, size and deletion on every store."""
        store = self.new(store)
        rng = random.Random(3)
        block = rng.randbytes(300_000)
        data = block + rng.randbytes(1_500_000) + block
        src = tmp_path / "big.bin"
        src.write_bytes(data)
        ref, small = blob(data), b"a small one beside it"
        with store.writer(4) as batch:
            batch.put_file(ref, str(src), hasher)
            batch.put_bytes(blob(small), small)
        assert store.missing([ref, blob(small)]) == []
        assert store.read(ref) == data
        assert store.read(ref, 299_990, 300_010) == data[299_990:300_010]
        assert store.read(ref, len(data) - 7) == data[-7:]
        store.get_file(ref, str(tmp_path / "back"))
        assert (tmp_path / "back").read_bytes() == data
        got: dict[ObjRef, object] = {}
        store.read_many([ref, blob(small)], lambda r, d: got.__setitem__(r, d), 4)
        assert got == {ref: data, blob(small): small}
        assert dict(store.iter_objects()) == {ref: len(data), blob(small): len(small)}
        store.delete([ref])
        assert store.missing([ref, blob(small)]) == [ref]
        assert store.read(blob(small)) == small

    def test_a_checkpoint_keeps_what_was_put_before_it_when_the_batch_is_abandoned(self, store):
        """``Batch.checkpoint`` makes the puts so far visible and the batch goes on: a batch
        abandoned after it (a long push killed in a later part) keeps them."""
        store = self.new(store)
        a, b = b"put before the checkpoint", b"put after it"
        with pytest.raises(RuntimeError):
            with store.writer() as batch:
                batch.put_bytes(blob(a), a)
                batch.checkpoint()
                batch.put_bytes(blob(b), b)
                raise RuntimeError("abandoned here")
        assert store.missing([blob(a)]) == []
        assert store.read(blob(a)) == a

    def test_read_many_reports_an_absent_object_and_goes_on(self, store):
        store = self.new(store)
        with store.writer() as batch:
            batch.put_bytes(blob(b"here"), b"here")
        got: dict[ObjRef, object] = {}
        store.read_many([blob(b"gone"), blob(b"here")], lambda ref, data: got.__setitem__(ref, data))
        assert got[blob(b"here")] == b"here"
        assert isinstance(got[blob(b"gone")], ObjectsMissing)

    def test_a_batch_refuses_bad_bytes_and_an_abandoned_batch_shows_nothing_partly(self, store):
        store = self.new(store)
        datas = [f"abandoned {i}".encode() for i in range(20)]
        with pytest.raises(IntegrityError):
            with store.writer() as batch:
                for data in datas:
                    batch.put_bytes(blob(data), data)
                batch.put_bytes(blob(b"right"), b"wrong")
        for data in datas:  # each absent, or whole
            assert store.missing([blob(data)]) == [blob(data)] or store.read(blob(data)) == data
        assert store.missing([blob(b"right")]) == [blob(b"right")]

    def test_deleting_some_objects_of_a_batch_keeps_the_rest(self, store):
        store = self.new(store)
        datas = [f"batch member {i}".encode() * 50 for i in range(60)]
        with store.writer() as batch:
            for data in datas:
                batch.put_bytes(blob(data), data)
        doomed, kept = datas[:40], datas[40:]
        store.delete([blob(d) for d in doomed])
        assert store.missing([blob(d) for d in datas]) == [blob(d) for d in doomed]
        assert sorted(r.digest.hex for r, _ in store.iter_objects()) == sorted(blob(d).digest.hex for d in kept)
        for data in kept:
            assert store.read(blob(data)) == data
        store.delete([blob(d) for d in kept])
        assert list(store.iter_objects()) == []


class TestCache(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return ObjectStore(str(tmp_path / "cache"))

    def plant(self, store, relpath, data):
        path = Path(store.root, relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class TestPackingCache(TestCache):
    """The cache inside ``ObjectStore.packing()`` (what add and fetch use): small objects
    go into a pack (from the first, here), still under every promise of the contract."""

    @pytest.fixture
    def store(self, tmp_path, monkeypatch):
        from dataver import cachepacks

        monkeypatch.setattr(cachepacks, "PACK_MIN", 1)
        store = ObjectStore(str(tmp_path / "cache"))
        with store.packing():
            yield store
        store.packs.close()


class RemoteContract(StoreContract):
    """What remotes add: a store that is not there is an error, not an empty store."""

    def plant(self, store, relpath, data):
        store.fs.pipe_file(f"{store.root}/{relpath}", data)

    def test_a_store_that_is_not_there_is_a_remote_error(self, absent):
        with pytest.raises(RemoteError, match="does not exist"):
            absent.missing([blob(b"a")])


class TestLocalFolder(RemoteContract, TestCache):
    @pytest.fixture
    def store(self, tmp_path):
        return LocalRemoteStore("folder", str(tmp_path / "remote"), {})

    @pytest.fixture
    def absent(self, tmp_path):
        return LocalRemoteStore("folder", str(tmp_path / "no-such-folder"), {})

    plant = TestCache.plant


class TestLocalFolderIndexOnDisk(TestLocalFolder):
    """A packed remote whose index is read as a big one is: every index file in pieces
    (of two records here), the records kept in a temporary file (none in memory)."""

    @pytest.fixture
    def store(self, tmp_path, monkeypatch):
        from dataver import packfmt, packstore

        monkeypatch.setenv(packstore.INDEX_MEMORY_ENV, "0")
        monkeypatch.setattr(packstore, "INDEX_PIECE", 2 * packfmt.RECORD_SIZE)
        return LocalRemoteStore("folder", str(tmp_path / "remote"), {})


class TestLooseLocalFolder(TestLocalFolder):
    """A remote written by dataver before packs (format 1: loose objects, no marker)."""

    @pytest.fixture
    def store(self, tmp_path):
        store = LocalRemoteStore("folder", str(tmp_path / "remote"), {})
        store.start_packed = lambda: False  # as a remote that already held loose objects
        return store


class TestMemory(RemoteContract):
    @pytest.fixture
    def store(self):
        return memory_store()

    @pytest.fixture
    def absent(self):
        return memory_store()  # nothing was ever written: its root does not exist

    def test_each_memory_store_is_its_own(self):
        a, b = self.new(memory_store()), self.new(memory_store())
        a.put_bytes(blob(b"only in a"), b"only in a")
        assert b.missing([blob(b"only in a")]) == [blob(b"only in a")]


class TestS3(RemoteContract):
    @pytest.fixture
    def store(self, s3_any_bucket):
        return RemoteStore("s3", f"s3://{s3_any_bucket.name}/prefix", {"endpoint_url": s3_any_bucket.endpoint})

    @pytest.fixture
    def absent(self, s3_any_bucket):
        return RemoteStore("s3", f"s3://{s3_any_bucket.name}-gone/prefix", {"endpoint_url": s3_any_bucket.endpoint})
