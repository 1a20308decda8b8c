"""Large files enter the cache by a kernel copy (copy_file_range) that is hashed
chunk by chunk while it is written. Faults are injected at the copy call: whatever
happens, the cache holds either a correct object under its name or nothing."""

from __future__ import annotations

import errno
import os

import pytest

from dataver import odb
from dataver.errors import FileChanged, IntegrityError, StorageError, UnreadableFile
from dataver.hashing import Hasher
from dataver.odb import ObjectStore, copy_verified

CHUNK = 64 * 1024


@pytest.fixture
def hasher():
    with Hasher(jobs=2, chunk_size=CHUNK) as h:
        yield h


@pytest.fixture
def big(tmp_path) -> tuple[str, bytes]:
    data = os.urandom(11 * CHUNK + 123)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    return str(path), data


def _objects(store: ObjectStore) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(store.root) for f in files if "tmp" not in d.split(os.sep)]


def _temporaries(store: ObjectStore) -> list[str]:
    return os.listdir(store.tmp_dir) if os.path.isdir(store.tmp_dir) else []


def _count_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = os.copy_file_range

    def counting(src, dst, count, offset_src=None, offset_dst=None):
        calls.append(count)
        return real(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(os, "copy_file_range", counting)
    return calls


def test_large_file_is_copied_by_the_kernel_and_named_by_its_bytes(tmp_path, hasher, big, monkeypatch):
    path, data = big
    calls = _count_calls(monkeypatch)
    store = ObjectStore(str(tmp_path / "cache"))
    added = store.add_file(path, hasher)
    assert len(calls) >= 2  # stepwise, so hashing overlaps copying
    assert added.digest == hasher.hash_file(path).digest
    with open(store.blob_path(added.digest), "rb") as f:
        assert f.read() == data
    assert added.size == len(data) and added.inode == os.stat(path).st_ino
    assert _temporaries(store) == []


def test_checkout_copy_of_a_large_object_is_verified(tmp_path, hasher, big, monkeypatch):
    path, data = big
    store = ObjectStore(str(tmp_path / "cache"))
    digest = store.add_file(path, hasher).digest
    calls = _count_calls(monkeypatch)
    copy_verified(store.blob_path(digest), digest, str(tmp_path / "out"), hasher)
    assert calls and (tmp_path / "out").read_bytes() == data
    other = hasher.hash_file(str(tmp_path / "out")).digest
    wrong = other.__class__(other.algorithm, "0" * 32)
    with pytest.raises(IntegrityError, match="corrupt"):
        copy_verified(store.blob_path(digest), wrong, str(tmp_path / "out2"), hasher)


def test_without_kernel_copy_the_file_is_copied_while_hashed(tmp_path, hasher, big, monkeypatch):
    path, data = big

    def unsupported(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    store = ObjectStore(str(tmp_path / "cache"))
    added = store.add_file(path, hasher)
    with open(store.blob_path(added.digest), "rb") as f:
        assert f.read() == data
    monkeypatch.delattr(os, "copy_file_range")
    store2 = ObjectStore(str(tmp_path / "cache2"))
    assert store2.add_file(path, hasher).digest == added.digest


def _failing_on_call(monkeypatch, n: int, err: int) -> None:
    real = os.copy_file_range
    calls = []

    def failing(src, dst, count, offset_src=None, offset_dst=None):
        calls.append(count)
        if len(calls) == n:
            raise OSError(err, os.strerror(err))
        return real(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(os, "copy_file_range", failing)


def test_disk_full_in_mid_copy_leaves_no_object(tmp_path, hasher, big, monkeypatch):
    path, data = big
    _failing_on_call(monkeypatch, 4, errno.ENOSPC)
    store = ObjectStore(str(tmp_path / "cache"))
    with pytest.raises(StorageError, match="cache"):
        store.add_file(path, hasher)
    assert _objects(store) == [] and _temporaries(store) == []
    with open(path, "rb") as f:
        assert f.read() == data  # the source is untouched


def test_read_error_in_mid_copy_names_the_source(tmp_path, hasher, big, monkeypatch):
    path, _ = big
    _failing_on_call(monkeypatch, 3, errno.EIO)
    store = ObjectStore(str(tmp_path / "cache"))
    with pytest.raises(UnreadableFile, match="big.bin"):
        store.add_file(path, hasher)
    assert _objects(store) == [] and _temporaries(store) == []


@pytest.mark.parametrize("change", ["shrink", "grow", "rewrite"])
def test_source_changing_during_the_copy_is_refused(tmp_path, hasher, big, monkeypatch, change):
    path, data = big
    real = os.copy_file_range
    calls = []

    def changing(src, dst, count, offset_src=None, offset_dst=None):
        calls.append(count)
        if len(calls) == 2:
            with open(path, "r+b") as f:
                if change == "shrink":
                    f.truncate(3 * CHUNK)
                elif change == "grow":
                    f.seek(0, 2)
                    f.write(b"more")
                else:
                    f.seek(5 * CHUNK)
                    f.write(b"X" * 10)
                    st = os.stat(path)
                    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        return real(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(os, "copy_file_range", changing)
    store = ObjectStore(str(tmp_path / "cache"))
    with pytest.raises(FileChanged, match="big.bin"):
        store.add_file(path, hasher)
    assert _objects(store) == [] and _temporaries(store) == []


def test_hashing_failure_stops_the_copy(tmp_path, hasher, big, monkeypatch):
    """If hashing fails, the copy thread is stopped and joined before the files close."""
    path, _ = big
    boom = RuntimeError("hash failed")

    def failing_growing(*args, **kwargs):
        raise boom

    monkeypatch.setattr(hasher, "hash_growing", failing_growing)
    store = ObjectStore(str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="hash failed"):
        store.add_file(path, hasher)
    assert _objects(store) == [] and _temporaries(store) == []
    assert not [t for t in __import__("threading").enumerate() if t.name == "dataver-copy"]


def test_copier_copies_the_whole_file(tmp_path, big):
    path, _ = big
    fd = os.open(str(tmp_path / "dst"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        copier = odb._KernelCopy.start(path, fd, os.path.getsize(path), CHUNK)
        assert copier is not None
        copier.wait_for(os.path.getsize(path))
        copier.stop()
        assert os.path.getsize(tmp_path / "dst") == os.path.getsize(path)
    finally:
        os.close(fd)
