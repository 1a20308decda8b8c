"""The hash definition and the parallel hasher (dataver/hashing.py).

The reference digest below is recomputed from the normative text of the module
docstring with ``xxhash`` directly, so a change to the definition (which would orphan
every stored object) fails here even if the code stays self-consistent.
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataver import hashing
from dataver.digest import DEFAULT_ALGORITHM, Digest
from dataver.errors import FileChanged, PathError, SymlinkLoop, UnreadableFile
from dataver.hashing import CHUNK_SIZE, Hasher, digest_bytes, digest_manifest

# Spelled out from the docstring, not imported, so the test pins the values.
REF_CHUNK_SIZE = 8 * 1024 * 1024
REF_SEED_CHUNKED = int.from_bytes(b"dvchunk1", "big")
REF_SEED_MANIFEST = int.from_bytes(b"dvmanif1", "big")
REF_PREFIX = b"dataver-chunked-v1\x00"

SMALL_CHUNK = 4096


def _be16(data: bytes, seed: int = 0) -> bytes:
    """XXH3-128 as 16 big-endian bytes, from the integer value (no library convention)."""
    return xxhash.xxh3_128_intdigest(data, seed=seed).to_bytes(16, "big")


def chunk_list(data: bytes, chunk_size: int) -> bytes:
    return b"".join(_be16(data[o : o + chunk_size]) for o in range(0, len(data), chunk_size))


def reference_hex(data: bytes, chunk_size: int = REF_CHUNK_SIZE) -> str:
    if len(data) <= chunk_size:
        return f"{xxhash.xxh3_128_intdigest(data, seed=0):032x}"
    payload = REF_PREFIX + struct.pack(">QQ", len(data), chunk_size) + chunk_list(data, chunk_size)
    return f"{xxhash.xxh3_128_intdigest(payload, seed=REF_SEED_CHUNKED):032x}"


def pattern(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.fixture(scope="module")
def hashers():
    hs = {jobs: Hasher(jobs=jobs, chunk_size=SMALL_CHUNK) for jobs in (1, 2, 3, 5)}
    yield hs
    for h in hs.values():
        h.close()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("hash-scratch")


# -- the definition ------------------------------------------------------------


def test_constants_match_the_documented_definition():
    assert CHUNK_SIZE == REF_CHUNK_SIZE
    assert hashing.SEED_BLOB == 0
    assert hashing.SEED_CHUNKED == REF_SEED_CHUNKED
    assert hashing.SEED_MANIFEST == REF_SEED_MANIFEST
    assert len({hashing.SEED_BLOB, hashing.SEED_CHUNKED, hashing.SEED_MANIFEST}) == 3


def test_known_vectors():
    # Plain xxh3-128 (what `xxhsum -H2` prints) for small content.
    assert digest_bytes(b"").hex == "99aa06d3014798d86001c324468d497f"
    assert str(digest_bytes(b"")) == "xxh3-128:99aa06d3014798d86001c324468d497f"
    assert digest_bytes(b"abc").hex == f"{xxhash.xxh3_128_intdigest(b'abc'):032x}"


@pytest.mark.parametrize("size", [0, 1, 100, REF_CHUNK_SIZE - 1, REF_CHUNK_SIZE])
def test_file_up_to_chunk_size_is_plain_xxh3(tmp_path, size):
    data = pattern(size)
    path = write(tmp_path / "f", data)
    with Hasher(jobs=2) as h:
        got = h.hash_file(path)
    assert got.digest == Digest(DEFAULT_ALGORITHM, f"{xxhash.xxh3_128_intdigest(data, seed=0):032x}")
    assert got.size == size
    assert got.path == path


@pytest.mark.parametrize("size", [REF_CHUNK_SIZE + 1, 2 * REF_CHUNK_SIZE + 12345])
def test_large_file_uses_the_documented_chunked_construction(tmp_path, size):
    data = pattern(size, seed=size)
    path = write(tmp_path / "big", data)
    with Hasher(jobs=3) as h:
        got = h.hash_file(path)
    assert got.digest.hex == reference_hex(data)
    # ...which is not the plain hash of the whole content.
    assert got.digest.hex != f"{xxhash.xxh3_128_intdigest(data):032x}"
    assert got.size == size
    assert digest_bytes(data) == got.digest


def test_chunk_digests_are_big_endian():
    data = pattern(3 * SMALL_CHUNK + 5)
    parts = [xxhash.xxh3_128_intdigest(data[o : o + SMALL_CHUNK]) for o in range(0, len(data), SMALL_CHUNK)]
    le = b"".join(p.to_bytes(16, "little") for p in parts)
    payload_le = REF_PREFIX + struct.pack(">QQ", len(data), SMALL_CHUNK) + le
    wrong = f"{xxhash.xxh3_128_intdigest(payload_le, seed=REF_SEED_CHUNKED):032x}"
    assert digest_bytes(data, SMALL_CHUNK).hex == reference_hex(data, SMALL_CHUNK) != wrong


def test_chunked_digest_binds_size_and_chunk_size():
    data = pattern(3 * SMALL_CHUNK)
    a = digest_bytes(data, SMALL_CHUNK)
    b = digest_bytes(data, 2 * SMALL_CHUNK)
    assert a != b  # different chunk size: different digest, by definition
    assert b.hex == reference_hex(data, 2 * SMALL_CHUNK)


# -- domain separation -----------------------------------------------------------


def test_small_file_made_of_a_chunk_list_does_not_collide(tmp_path):
    big = pattern(2 * SMALL_CHUNK + 17)
    big_digest = digest_bytes(big, SMALL_CHUNK)
    bare = chunk_list(big, SMALL_CHUNK)
    full = REF_PREFIX + struct.pack(">QQ", len(big), SMALL_CHUNK) + bare
    with Hasher(jobs=2, chunk_size=SMALL_CHUNK) as h:
        assert h.hash_file(write(tmp_path / "big", big)).digest == big_digest
        for impostor in (bare, full):
            assert len(impostor) <= SMALL_CHUNK
            got = h.hash_file(write(tmp_path / "impostor", impostor)).digest
            assert got != big_digest
            assert got == digest_bytes(impostor, SMALL_CHUNK)


def test_manifest_digest_differs_from_blob_digest_of_same_bytes():
    data = b"dataver-manifest 1 xxh3-128\n"
    m = digest_manifest(data)
    assert m.hex == f"{xxhash.xxh3_128_intdigest(data, seed=REF_SEED_MANIFEST):032x}"
    assert m != digest_bytes(data)
    assert m.algorithm == DEFAULT_ALGORITHM


# -- independence from threads and scheduling ---------------------------------------

BOUNDARY_SIZES = [
    0,
    1,
    SMALL_CHUNK - 1,
    SMALL_CHUNK,
    SMALL_CHUNK + 1,
    2 * SMALL_CHUNK - 1,
    2 * SMALL_CHUNK,
    2 * SMALL_CHUNK + 1,
    7 * SMALL_CHUNK + 13,
    16 * SMALL_CHUNK,
]
sizes = st.one_of(st.sampled_from(BOUNDARY_SIZES), st.integers(0, 12 * SMALL_CHUNK))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=sizes, seed=st.integers(0, 2**32))
def test_digest_is_independent_of_thread_count(hashers, scratch, size, seed):
    data = pattern(size, seed)
    path = write(scratch / "threads.bin", data)
    expected = reference_hex(data, SMALL_CHUNK)
    for jobs, h in hashers.items():
        got = h.hash_file(path)
        assert got.digest.hex == expected, f"jobs={jobs}"
        assert got.size == size
    assert digest_bytes(data, SMALL_CHUNK).hex == expected


@settings(max_examples=25, deadline=None)
@given(
    nchunks=st.integers(2, 9),
    tail=st.integers(1, SMALL_CHUNK),
    delays=st.lists(st.sampled_from([0.0, 0.0005, 0.002]), min_size=9, max_size=9),
    jobs=st.sampled_from([2, 3, 5]),
    seed=st.integers(0, 2**32),
)
def test_digest_is_independent_of_chunk_completion_order(hashers, scratch, nchunks, tail, delays, jobs, seed):
    """Chunks finishing out of order (random per-chunk delays) still combine in file order,
    and the copy-while-hash sink sees every byte exactly once at the right offset."""
    size = (nchunks - 1) * SMALL_CHUNK + tail
    data = pattern(size, seed)
    path = write(scratch / "order.bin", data)
    out = bytearray(size)
    seen: list[int] = []
    lock = threading.Lock()

    def sink(offset: int, view: memoryview) -> None:
        time.sleep(delays[(offset // SMALL_CHUNK) % len(delays)])
        with lock:
            seen.append(offset)
            out[offset : offset + len(view)] = view

    got = hashers[jobs].hash_file(path, sink=sink)
    assert got.digest.hex == reference_hex(data, SMALL_CHUNK)
    assert sorted(seen) == list(range(0, size, SMALL_CHUNK))
    assert bytes(out) == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=5 * 1024), chunk=st.sampled_from([4096, 8192]))
def test_digest_bytes_agrees_with_reference(data, chunk):
    assert digest_bytes(data, chunk).hex == reference_hex(data, chunk)
    assert digest_bytes(memoryview(data), chunk) == digest_bytes(data, chunk)


@settings(max_examples=30, deadline=None)
@given(size=sizes, seed=st.integers(0, 2**32))
def test_digest_bytes_agrees_with_hash_file(hashers, scratch, size, seed):
    data = pattern(size, seed)
    path = write(scratch / "agree.bin", data)
    assert digest_bytes(data, SMALL_CHUNK) == hashers[3].hash_file(path).digest


def test_hasher_rejects_chunk_size_not_multiple_of_page():
    with pytest.raises(ValueError, match="page size"):
        Hasher(chunk_size=4097)


# -- many files ----------------------------------------------------------------------


def test_hash_many_agrees_with_one_by_one(tmp_path):
    rng = random.Random(7)
    expected = {}
    # > 256 small files (several batches) plus some chunked ones.
    for i in range(300):
        size = rng.choice([0, 1, 100, SMALL_CHUNK - 1, SMALL_CHUNK, SMALL_CHUNK + 1, 3 * SMALL_CHUNK + 9])
        data = rng.randbytes(size)
        p = write(tmp_path / f"f{i}", data)
        expected[p] = (reference_hex(data, SMALL_CHUNK), size)
    with Hasher(jobs=4, chunk_size=SMALL_CHUNK) as h:
        results = list(h.hash_many(sorted(expected)))
        singles = {p: h.hash_file(p).digest.hex for p in expected}
    assert sorted(r.path for r in results) == sorted(expected)
    for r in results:
        assert (r.digest.hex, r.size) == expected[r.path]
        assert singles[r.path] == r.digest.hex
        st_ = os.stat(r.path)
        assert (r.inode, r.mtime_ns) == (st_.st_ino, st_.st_mtime_ns)


def test_hashed_file_records_executable_bit(tmp_path):
    p = write(tmp_path / "run.sh", b"#!/bin/sh\n")
    with Hasher(jobs=1) as h:
        assert h.hash_file(p).executable is False
        os.chmod(p, 0o755)
        assert h.hash_file(p).executable is True


def test_map_sized_with_understated_size_does_not_deadlock(tmp_path):
    """A file that is bigger than its declared size (it grew since it was listed, or a
    pointer records the wrong size) is hashed chunked on a pool thread. That must not
    wait on the pool it is running on (deadlock with jobs=1, or when all workers do it).
    Run in a subprocess so a regression fails with a timeout instead of hanging pytest."""
    data = pattern(5 * SMALL_CHUNK + 3)
    p = write(tmp_path / "grown.bin", data)
    script = textwrap.dedent(
        f"""
        from dataver.hashing import Hasher
        for jobs, n in ((1, 1), (2, 600)):
            with Hasher(jobs=jobs, chunk_size={SMALL_CHUNK}) as h:
                out = list(h.map_sized([({p!r}, 10)] * n, lambda path, prog: h.hash_file(path)))
            assert len(out) == n
            print(jobs, sorted({{r.digest.hex for r in out}}))
        """
    )
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("Hasher.map_sized deadlocked hashing a chunked file on a pool thread")
    assert proc.returncode == 0, proc.stderr
    want = reference_hex(data, SMALL_CHUNK)
    assert proc.stdout.split("\n")[:2] == [f"1 ['{want}']", f"2 ['{want}']"]


# -- files that change while hashed -----------------------------------------------------


@pytest.mark.parametrize("size", [100, 4 * SMALL_CHUNK + 1])
def test_file_growing_during_hash_raises_file_changed(hashers, tmp_path, size):
    path = write(tmp_path / "grow", pattern(size))

    def sink(offset: int, view: memoryview) -> None:
        if offset == 0:
            with open(path, "ab") as f:
                f.write(b"more")

    with pytest.raises(FileChanged) as e:
        hashers[2].hash_file(path, sink=sink)
    assert path in e.value.message
    assert e.value.exit_code == 8


@pytest.mark.parametrize("size", [100, 4 * SMALL_CHUNK + 1])
def test_mtime_change_during_hash_raises_file_changed(hashers, tmp_path, size):
    path = write(tmp_path / "touch", pattern(size))
    mtime = os.stat(path).st_mtime_ns

    def sink(offset: int, view: memoryview) -> None:
        if offset == 0:
            os.utime(path, ns=(mtime, mtime + 5_000_000_000))

    with pytest.raises(FileChanged, match="changed while it was being hashed"):
        hashers[3].hash_file(path, sink=sink)


def test_file_shrinking_during_chunked_hash_raises_file_changed(hashers, tmp_path):
    path = write(tmp_path / "shrink", pattern(8 * SMALL_CHUNK))

    def sink(offset: int, view: memoryview) -> None:
        if offset == 0:
            os.truncate(path, 10)

    with pytest.raises(FileChanged):
        hashers[1].hash_file(path, sink=sink)


# -- unreadable inputs --------------------------------------------------------------------


def _assert_ours(exc: BaseException) -> None:
    assert isinstance(exc, PathError)
    assert not isinstance(exc, OSError)
    assert exc.exit_code == 4


def test_missing_file_is_a_path_error(tmp_path):
    missing = str(tmp_path / "nope")
    with Hasher(jobs=1) as h:
        with pytest.raises(PathError, match="does not exist") as e:
            h.hash_file(missing)
        _assert_ours(e.value)
        with pytest.raises(PathError, match="does not exist") as e:
            list(h.hash_many([missing]))
        _assert_ours(e.value)


def test_directory_is_a_path_error(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    with Hasher(jobs=1) as h:
        with pytest.raises(PathError, match="not a regular file") as e:
            h.hash_file(str(d))
        _assert_ours(e.value)
        with pytest.raises(PathError) as e:
            list(h.hash_many([str(d)]))
        _assert_ours(e.value)


def test_symlink_loop_and_dangling_link_are_path_errors(tmp_path):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "missing-target", dangling)
    with Hasher(jobs=1) as h:
        with pytest.raises(SymlinkLoop) as e:
            h.hash_file(str(loop))
        _assert_ours(e.value)
        with pytest.raises(PathError, match="does not exist") as e:
            h.hash_file(str(dangling))
        _assert_ours(e.value)


def test_permission_denied_is_unreadable_file(tmp_path):
    """Runs in a child process that obeys file modes, also as root (which otherwise
    reads a mode-000 file): see tests/test_permissions.py for how."""
    from test_permissions import modes_apply_or_skip, run_obeying_modes

    modes_apply_or_skip(tmp_path)
    p = write(tmp_path / "secret", b"data" * 1000)
    os.chmod(p, 0)
    script = textwrap.dedent(
        f"""
        from dataver.errors import PathError, UnreadableFile
        from dataver.hashing import Hasher

        for how in ("hash_file", "hash_many"):
            with Hasher(jobs=1) as h:
                try:
                    h.hash_file({str(p)!r}) if how == "hash_file" else list(h.hash_many([{str(p)!r}]))
                except UnreadableFile as e:
                    assert isinstance(e, PathError) and not isinstance(e, OSError), type(e).__mro__
                    print(how, e.exit_code, e.message)
                else:
                    print(how, "read the file")
        """
    )
    proc = run_obeying_modes([sys.executable, "-c", script], cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert UnreadableFile.exit_code == 4
    assert proc.stdout.splitlines() == [
        f"hash_file 4 cannot read {p}: permission denied",
        f"hash_many 4 cannot read {p}: permission denied",
    ]
