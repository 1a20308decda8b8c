"""The fast paths of push and pull: which-objects-are-there by one whole listing or by
fan-out listings (both must give the same answer), small objects moved through
memory (bounded, verified), and the parallel map under them."""

from __future__ import annotations

import os
import threading
import time

import pytest
from conftest import git_commit, make_tree
from remote_view import FolderView

from dataver import remotes
from dataver.concurrency import run_parallel
from dataver.hashing import digest_bytes
from dataver.remotes import LocalRemoteStore, ObjRef, RemoteStore


def _refs(n: int, seed: int) -> list[ObjRef]:
    return [ObjRef(digest_bytes(f"object {seed} {i}".encode())) for i in range(n)]


def _s3_store(bucket) -> RemoteStore:
    return RemoteStore("store", f"s3://{bucket.name}/team", {"endpoint_url": bucket.endpoint})


def _count_calls(monkeypatch, store, name: str) -> list:
    calls: list = []
    real = getattr(store, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, name, counting)
    return calls


def test_s3_existence_by_whole_listing_and_by_fan_listings_agree(s3_each_bucket, monkeypatch):
    present, absent = _refs(300, 1), _refs(120, 2)
    for ref in present:
        s3_each_bucket.client.put_object(Bucket=s3_each_bucket.name, Key=f"team/{ref.relpath()}", Body=b"x")
    s3_each_bucket.client.put_object(Bucket=s3_each_bucket.name, Key="team/tmp/stray.tmp", Body=b"x")
    wanted = present[::2] + absent + [ObjRef(present[1].digest, manifest=True)]

    store = _s3_store(s3_each_bucket)
    listings = _count_calls(monkeypatch, store, "_list_names")
    by_whole = store.missing(wanted)
    assert len(listings) == 1  # the sample fan only; then one paginated listing of everything
    assert sorted(map(str, (r.digest for r in by_whole))) == sorted(
        [str(r.digest) for r in absent] + [str(present[1].digest)]
    )
    assert ObjRef(present[1].digest, manifest=True) in by_whole

    monkeypatch.setattr(remotes, "LIST_PAGE_KEYS", 1)  # a "huge" remote: list fan by fan
    store2 = _s3_store(s3_each_bucket)
    listings2 = _count_calls(monkeypatch, store2, "_list_names")
    assert store2.missing(wanted) == by_whole
    assert len(listings2) > 100


def test_s3_existence_on_an_empty_prefix(s3_each_bucket):
    refs = _refs(100, 3)
    assert _s3_store(s3_each_bucket).missing(refs) == refs


def _pushed_repo(repo_dir, cli, remote_url: str) -> dict[str, bytes]:
    files = make_tree(repo_dir / "data", 80, max_size=3000)
    assert cli("remote", "add", "store", remote_url, "--default").code == 0
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "data")
    r = cli("push")
    assert r.code == 0, r.err
    return files


def test_pull_refuses_a_remote_object_larger_than_its_manifest_says(repo_dir, cli, tmp_path):
    """A small object is read into memory with a bound: a planted huge object is
    neither read whole nor stored; the error names the object and the remote."""
    remote_dir = tmp_path / "remote"
    files = _pushed_repo(repo_dir, cli, str(remote_dir))
    rel = max(files, key=lambda k: len(files[k]))
    digest = digest_bytes(files[rel])
    FolderView(remote_dir).write(digest.relpath(), bytes(64 * 2**20))  # 64 MiB of zeros under a 3 KB object's name
    cache_obj = repo_dir / ".dataver" / "cache" / digest.relpath()
    os.chmod(cache_obj, 0o644)
    cache_obj.unlink()
    r = cli("pull")
    assert r.code != 0
    assert digest.short() in r.err and "store" in r.err and "corrupt" in r.err
    assert not cache_obj.exists()
    assert os.listdir(repo_dir / ".dataver" / "cache" / "tmp") == []


def test_push_reads_each_small_object_once_and_refuses_a_corrupt_one(repo_dir, cli, tmp_path):
    remote_dir = tmp_path / "remote"
    files = make_tree(repo_dir / "data", 40, max_size=3000)
    assert cli("remote", "add", "store", str(remote_dir), "--default").code == 0
    assert cli("add", "data").code == 0
    rel = max(files, key=lambda k: len(files[k]))
    digest = digest_bytes(files[rel])
    obj = repo_dir / ".dataver" / "cache" / digest.relpath()
    os.chmod(obj, 0o644)
    obj.write_bytes(b"Z" + files[rel][1:])
    r = cli("push")
    assert r.code != 0 and str(obj) in r.err and "corrupt" in r.err
    assert not (remote_dir / digest.relpath()).exists()
    tmp = remote_dir / "tmp"
    assert not tmp.exists() or os.listdir(tmp) == []
    for other, data in files.items():  # what was pushed is byte-exact
        p = remote_dir / digest_bytes(data).relpath()
        if other != rel and p.exists():
            assert p.read_bytes() == data


def test_local_upload_bytes_never_leaves_a_partial_object(tmp_path, monkeypatch):
    store = LocalRemoteStore("store", str(tmp_path / "remote"), {})
    store.prepare_write()
    ref = ObjRef(digest_bytes(b"hello"))

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(Exception, match="space"):
        store.upload_bytes(b"hello", ref)
    monkeypatch.undo()
    assert not os.path.exists(store.path(ref))
    assert os.listdir(tmp_path / "remote" / "tmp") == []
    store.upload_bytes(b"hello", ref)
    assert open(store.path(ref), "rb").read() == b"hello"
    assert store.read(ref) == b"hello"
    assert store.read(ref, 0, 4) == b"hell"


def test_s3_small_reads_are_bounded_and_empty_objects_work(s3_each_bucket):
    store = _s3_store(s3_each_bucket)
    empty, small = ObjRef(digest_bytes(b"")), ObjRef(digest_bytes(b"0123456789"))
    store.upload_bytes(b"", empty)
    store.upload_bytes(b"0123456789", small)
    assert store.read(empty, 0, 101) == b""  # S3 answers a range of an empty object with 416
    assert store.read(small, 0, 11) == b"0123456789"
    assert store.read(small, 0, 9) == b"012345678"
    assert store.read(small) == b"0123456789"


# -- the parallel map ----------------------------------------------------------------
def test_run_parallel_keeps_order():
    assert run_parallel(lambda x: x * x, range(500), 4) == [x * x for x in range(500)]
    assert run_parallel(lambda x: x, [], 4) == []
    assert run_parallel(lambda x: x + 1, [1], 4) == [2]


def test_run_parallel_stops_at_the_first_error():
    started: list[int] = []
    lock = threading.Lock()

    def fn(x: int) -> int:
        with lock:
            started.append(x)
        if x == 5:
            raise ValueError("item 5 failed")
        time.sleep(0.002)
        return x

    with pytest.raises(ValueError, match="item 5"):
        run_parallel(fn, range(1000), 4)
    assert len(started) < 50  # nothing new starts once an item has failed
