"""The object store (odb.py), the stat cache (state.py) and workspace placement (linking.py)."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import random
import stat
import sys
import threading
import time

import pytest

from dataver import linking
from dataver.digest import DEFAULT_ALGORITHM
from dataver.errors import (
    ConfigError,
    DataverError,
    FileChanged,
    IntegrityError,
    ObjectsMissing,
    PathError,
)
from dataver.hashing import HashedFile, Hasher, digest_bytes, digest_manifest
from dataver.odb import ObjectStore, copy_verified
from dataver.progress import Progress
from dataver.state import NullState, State

CHUNK = 4096
A = DEFAULT_ALGORITHM  # stat-cache rows are per algorithm


@pytest.fixture(scope="module")
def hasher():
    with Hasher(jobs=3, chunk_size=CHUNK) as h:
        yield h


@pytest.fixture
def store(tmp_path) -> ObjectStore:
    return ObjectStore(str(tmp_path / "cache"))


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def corrupt(path: str, offset: int = 0) -> None:
    """Flip one byte of a (read-only) cache file in place."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def tmp_files(store: ObjectStore) -> list[str]:
    return store.stale_temporaries()


def data_of(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


# =====================================================================================
# ObjectStore
# =====================================================================================


@pytest.mark.parametrize("size", [0, 10, CHUNK, 3 * CHUNK + 5])
def test_add_file_stores_object_under_its_digest(store, hasher, tmp_path, size):
    data = data_of(size, size)
    src = write(tmp_path / "src.bin", data)
    src_st = os.stat(src)
    hashed = store.add_file(src, hasher)
    expected = digest_bytes(data, CHUNK)
    assert hashed.digest == expected
    assert (hashed.path, hashed.size, hashed.inode, hashed.mtime_ns) == (src, size, src_st.st_ino, src_st.st_mtime_ns)
    obj = store.blob_path(expected)
    assert obj == os.path.join(store.root, DEFAULT_ALGORITHM, expected.hex[:2], expected.hex[2:])
    assert read(obj) == data
    assert stat.S_IMODE(os.stat(obj).st_mode) == 0o444
    assert store.has_blob(expected) and not store.has_manifest(expected)
    assert os.stat(obj).st_ino != src_st.st_ino
    assert read(src) == data  # source untouched
    assert tmp_files(store) == []


def test_re_adding_is_harmless(store, hasher, tmp_path):
    data = b"same bytes" * 100
    a = write(tmp_path / "a", data)
    b = write(tmp_path / "b", data)
    d1 = store.add_file(a, hasher).digest
    d2 = store.add_file(a, hasher).digest
    d3 = store.add_file(b, hasher).digest
    assert d1 == d2 == d3
    assert [(d, m) for d, m, _ in store.iter_paths()] == [(d1, False)]
    assert read(store.blob_path(d1)) == data
    assert stat.S_IMODE(os.stat(store.blob_path(d1)).st_mode) == 0o444
    assert tmp_files(store) == []


def test_add_file_missing_source_leaves_nothing(store, hasher, tmp_path):
    with pytest.raises(PathError, match="does not exist"):
        store.add_file(str(tmp_path / "missing"), hasher)
    assert list(store.iter_objects()) == []
    assert tmp_files(store) == []


class AppendOnProgress(Progress):
    """Writes to the file being added as soon as the hasher reports progress."""

    def __init__(self, path: str):
        self.path = path
        self.done = False

    def advance(self, nbytes: int = 0, nfiles: int = 0) -> None:
        if not self.done:
            self.done = True
            with open(self.path, "ab") as f:
                f.write(b"late write")


@pytest.mark.parametrize("size", [100, 5 * CHUNK])
def test_add_file_that_changes_while_added_is_refused(store, hasher, tmp_path, size):
    src = write(tmp_path / "busy", data_of(size))
    with pytest.raises(FileChanged):
        store.add_file(src, hasher, AppendOnProgress(src))
    assert list(store.iter_objects()) == []
    assert tmp_files(store) == []


def test_add_verified_copy_accepts_matching_digest(store, hasher, tmp_path):
    data = data_of(2 * CHUNK + 1, 5)
    src = write(tmp_path / "download", data)
    d = digest_bytes(data, CHUNK)
    store.add_verified_copy(src, d, hasher)
    assert read(store.blob_path(d)) == data
    assert stat.S_IMODE(os.stat(store.blob_path(d)).st_mode) == 0o444
    assert tmp_files(store) == []


@pytest.mark.parametrize("size", [50, 3 * CHUNK])
def test_add_verified_copy_refuses_wrong_digest(store, hasher, tmp_path, size):
    data = data_of(size, 9)
    src = write(tmp_path / "download", data)
    actual = digest_bytes(data, CHUNK)
    claimed = digest_bytes(data + b"x", CHUNK)
    with pytest.raises(IntegrityError, match="not stored") as e:
        store.add_verified_copy(src, claimed, hasher)
    assert str(claimed) in e.value.message and str(actual) in e.value.message
    assert not os.path.exists(store.blob_path(claimed))
    assert not os.path.exists(store.blob_path(actual))
    assert list(store.iter_objects()) == []
    assert tmp_files(store) == []


def test_add_verified_copy_missing_source(store, hasher, tmp_path):
    d = digest_bytes(b"x")
    with pytest.raises(PathError):
        store.add_verified_copy(str(tmp_path / "nope"), d, hasher)
    assert not store.has_blob(d)
    assert tmp_files(store) == []


def test_manifest_round_trip(store):
    data = b"dataver-manifest 1 xxh3-128\n" + b"0" * 32 + b" 1 - a\n"
    d = store.add_manifest(data)
    assert d == digest_manifest(data)
    assert d != digest_bytes(data)
    path = store.manifest_path(d)
    assert path == store.blob_path(d) + ".manifest"
    assert store.has_manifest(d) and not store.has_blob(d)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert store.read_manifest_bytes(d) == data
    assert store.add_manifest(data) == d  # idempotent
    assert tmp_files(store) == []


def test_read_missing_manifest(store):
    with pytest.raises(ObjectsMissing, match="not in the cache"):
        store.read_manifest_bytes(digest_manifest(b"never stored"))


@pytest.mark.parametrize("damage", ["flip-first", "flip-last", "truncate", "append"])
def test_corrupt_manifest_is_detected(store, damage):
    data = b"dataver-manifest 1 xxh3-128\n" + b"a" * 32 + b" 12 x some/file\n"
    d = store.add_manifest(data)
    path = store.manifest_path(d)
    if damage == "flip-first":
        corrupt(path, 0)
    elif damage == "flip-last":
        corrupt(path, len(data) - 2)
    else:
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            if damage == "truncate":
                f.truncate(len(data) - 1)
            else:
                f.seek(0, 2)
                f.write(b"\n")
    with pytest.raises(IntegrityError, match="corrupt"):
        store.read_manifest_bytes(d)


def test_iter_objects_lists_blobs_and_manifests_only(store, hasher, tmp_path):
    assert list(store.iter_objects()) == []  # store root does not exist yet
    b1 = store.add_file(write(tmp_path / "1", b"one"), hasher).digest
    b2 = store.add_file(write(tmp_path / "2", data_of(3 * CHUNK)), hasher).digest
    m = store.add_manifest(b"dataver-manifest 1 xxh3-128\n")
    base = os.path.join(store.root, DEFAULT_ALGORITHM)
    # Things that are not objects must not be listed (and so never deleted by gc).
    os.makedirs(os.path.join(base, "zz"))
    write(os.path.join(base, "zz", "not-hex"), b"")
    os.makedirs(os.path.join(base, "abc"))
    write(os.path.join(base, "abc", "0" * 30), b"")
    write(os.path.join(base, b1.hex[:2], "short"), b"")
    write(os.path.join(base, "README"), b"")
    write(os.path.join(store.tmp_dir, "x.tmp"), b"")  # not a name dataver gives: never removed
    write(os.path.join(store.tmp_dir, "123-0-abcdef.tmp"), b"")
    got = sorted(store.iter_paths(), key=lambda t: (t[0].hex, t[1]))
    want = sorted(
        [(b1, False, store.blob_path(b1)), (b2, False, store.blob_path(b2)), (m, True, store.manifest_path(m))],
        key=lambda t: (t[0].hex, t[1]),
    )
    assert got == want
    assert store.stale_temporaries() == [os.path.join(store.tmp_dir, "123-0-abcdef.tmp")]


@pytest.mark.parametrize("size", [77, 4 * CHUNK + 1])
def test_copy_verified_and_check_blob(store, hasher, tmp_path, size):
    data = data_of(size, 11)
    d = store.add_file(write(tmp_path / "src", data), hasher).digest
    out = str(tmp_path / "out")
    copy_verified(store.blob_path(d), d, out, hasher)
    assert read(out) == data
    assert store.check_blob(d, hasher) is True

    corrupt(store.blob_path(d), size // 2)
    assert store.check_blob(d, hasher) is False
    with pytest.raises(IntegrityError, match="corrupt"):
        copy_verified(store.blob_path(d), d, str(tmp_path / "out2"), hasher)


# =====================================================================================
# State (stat cache)
# =====================================================================================


def aged(path: str, seconds: float = 10.0) -> str:
    t = time.time_ns() - int(seconds * 1e9) + 123  # not a whole millisecond
    os.utime(path, ns=(t, t))
    return path


def make_files(root, names: list[str], age: bool = True) -> list[str]:
    out = []
    for i, n in enumerate(names):
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        write(p, f"content {i} {n}".encode())
        out.append(aged(str(p)) if age else str(p))
    return out


def test_state_round_trip(tmp_path, hasher):
    root = tmp_path / "repo"
    names = ["data/a", "data/sub/b", "data2/c", "data.txt", "dat/x", "data-x/y", "other/é"]
    paths = make_files(root, names)
    hashed = {h.path: h for h in hasher.hash_many(paths)}
    db = str(tmp_path / "state.db")
    s = State(db)
    s.put_many(str(root), hashed.values())
    for n, p in zip(names, paths, strict=True):
        assert s.get(n, os.stat(p), A) == hashed[p].digest
    under = _recorded(s, "data")
    assert sorted(under) == ["data/a", "data/sub/b"]
    st_a, st_b = os.stat(paths[0]), os.stat(paths[1])
    assert under["data/a"] == (
        (st_a.st_ino, st_a.st_size, st_a.st_mtime_ns, st_a.st_ctime_ns),
        hashed[paths[0]].digest.hex,
    )
    assert s.known_under("data", {"a": st_a, "sub/b": st_b, "c": st_b}, A) == {
        "a": hashed[paths[0]].digest,
        "sub/b": hashed[paths[1]].digest,
    }
    assert s.known_under("data", {"a": st_b}, A) == {}  # another file's stat does not vouch
    assert list(_recorded(s, "dat")) == ["dat/x"]
    assert _recorded(s, "missing") == {}
    s.close()
    # Persistent across reopen.
    s = State(db)
    assert s.get("data/sub/b", os.stat(paths[1]), A) == hashed[paths[1]].digest
    s.close()


def test_state_entry_is_trusted_only_while_stat_matches(tmp_path, hasher):
    root = tmp_path / "repo"
    (p,) = make_files(root, ["f"])
    s = State(str(tmp_path / "state.db"))
    s.put_many(str(root), hasher.hash_many([p]))
    assert s.get("f", os.stat(p), A) is not None
    write(p, b"other content, other size")
    aged(p, 20)
    assert s.get("f", os.stat(p), A) is None
    assert s.get("g", os.stat(p), A) is None  # wrong path
    s.close()


def test_state_does_not_record_racy_files(tmp_path, hasher):
    root = tmp_path / "repo"
    fresh, old = make_files(root, ["fresh", "old"], age=False)
    aged(old)
    # Just written; a whole-millisecond mtime keeps it racy for 2 s even on a slow machine.
    now = time.time_ns() // 1_000_000 * 1_000_000
    os.utime(fresh, ns=(now, now))
    s = State(str(tmp_path / "state.db"))
    s.put_many(str(root), hasher.hash_many([fresh, old]))
    assert s.get("old", os.stat(old), A) == hasher.hash_file(old).digest
    assert s.get("fresh", os.stat(fresh), A) is None
    s.close()


def test_state_racy_window_by_mtime_resolution(tmp_path, hasher):
    """Whether an entry is stored depends only on its mtime's age and resolution:
    nanosecond mtimes are racy for 100 ms, whole-millisecond ones (coarse
    filesystems) for 2 s, future ones (clock skew) always. The mtimes are set just
    before put_many, so a slow machine only ages them by milliseconds."""
    root = tmp_path / "repo"
    names = ["fine-now", "fine-half-s", "coarse-now", "coarse-half-s", "coarse-5s", "future"]
    paths = make_files(root, [f"d/{n}" for n in names], age=False)
    base = {h.path: h for h in hasher.hash_many(paths)}
    now = time.time_ns()
    ms = 1_000_000
    mtimes = {
        "fine-now": now | 1,
        "fine-half-s": (now - 500 * ms) | 1,
        "coarse-now": now // ms * ms,
        "coarse-half-s": (now - 500 * ms) // ms * ms,
        "coarse-5s": (now - 5000 * ms) // ms * ms,
        "future": now + 60_000 * ms + 1,
    }
    s = State(str(tmp_path / "state.db"))
    s.put_many(str(root), [dataclasses.replace(base[p], mtime_ns=mtimes[n]) for n, p in zip(names, paths, strict=True)])
    recorded = _recorded(s, "d")
    assert sorted(recorded) == ["d/coarse-5s", "d/fine-half-s"]
    for n in ("coarse-5s", "fine-half-s"):
        h = base[str(root / "d" / n)]
        assert recorded[f"d/{n}"] == ((h.inode, h.size, mtimes[n], h.ctime_ns), h.digest.hex)
    s.close()


def _recorded(s: State, prefix: str) -> dict:
    return {path: (key, hex_) for path, key, hex_ in s.rows_under(prefix, A)}


def _fill(tmp_path, hasher, n: int = 300) -> tuple[str, list[str], list[HashedFile]]:
    root = tmp_path / "repo"
    paths = make_files(root, [f"d/f{i}" for i in range(n)])
    hashed = list(hasher.hash_many(paths))
    return str(root), paths, hashed


def _known(s, paths: list[str]) -> dict:
    """What the stat cache vouches for among ``paths`` (the files ``_fill`` made)."""
    return s.known_under("d", {os.path.basename(p): os.stat(p) for p in paths}, A)


@pytest.mark.parametrize(
    "junk",
    [b"this is not a database", b"\0" * 4096, random.Random(1).randbytes(10000), b"SQLite format 3\0junk"],
    ids=["text", "zeros", "random", "fake-header"],
)
def test_state_garbage_db_is_rebuilt(tmp_path, hasher, junk):
    db = str(tmp_path / "state.db")
    write(db, junk)
    root, paths, hashed = _fill(tmp_path, hasher, 3)
    s = State(db)
    assert s.get("d/f0", os.stat(paths[0]), A) is None
    assert _known(s, paths) == {}
    s.put_many(root, hashed)
    assert len(_known(s, paths)) == 3
    s.close()
    assert read(db)[:16] == b"SQLite format 3\0"


def test_state_truncated_db_is_rebuilt(tmp_path, hasher):
    db = str(tmp_path / "state.db")
    root, paths, hashed = _fill(tmp_path, hasher)
    s = State(db)
    s.put_many(root, hashed)
    assert len(_known(s, paths)) == 300
    s.close()
    size = os.path.getsize(db)
    assert size > 8192 and not os.path.exists(db + "-wal")
    os.truncate(db, size // 2)
    s = State(db)
    # Not trusted: nothing is returned from the damaged file...
    assert _known(s, paths) == {}
    assert all(s.get(f"d/f{i}", os.stat(p), A) is None for i, p in enumerate(paths))
    # ...and it works again afterwards.
    s.put_many(root, hashed[:5])
    assert len(_known(s, paths)) == 5
    s.close()


def test_state_with_damaged_pages_is_rebuilt(tmp_path, hasher):
    """A valid header over garbage pages (a torn write, say) is not trusted either."""
    db = str(tmp_path / "state.db")
    root, paths, hashed = _fill(tmp_path, hasher, 200)
    s = State(db)
    s.put_many(root, hashed)
    s.close()
    with open(db, "r+b") as f:  # overwrite every page header after the first
        for off in range(4096, os.path.getsize(db), 4096):
            f.seek(off)
            f.write(b"\xff" * 16)
    s = State(db)
    assert _known(s, paths) == {}
    assert s.get("d/f0", os.stat(paths[0]), A) is None
    s.put_many(root, hashed[:2])
    assert len(_known(s, paths)) == 2
    s.close()


def test_null_state_remembers_nothing(tmp_path, hasher):
    root = tmp_path / "repo"
    (p,) = make_files(root, ["f"])
    ns = NullState()
    ns.put_many(str(root), hasher.hash_many([p]))
    assert ns.get("f", os.stat(p), A) is None
    assert ns.known_under("", {"f": os.stat(p)}, A) == {}
    assert list(ns.rows_under("", A)) == []
    ns.close()


# =====================================================================================
# linking
# =====================================================================================


def reflink_supported(directory) -> bool:
    a = os.path.join(directory, ".probe-a")
    b = os.path.join(directory, ".probe-b")
    write(a, b"probe")
    fa = os.open(a, os.O_RDONLY)
    fb = os.open(b, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.ioctl(fb, 0x40049409, fa)  # FICLONE
        return True
    except OSError as e:
        assert e.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS), e
        return False
    finally:
        os.close(fa)
        os.close(fb)
        os.unlink(a)
        os.unlink(b)


@pytest.fixture
def obj(store, hasher, tmp_path) -> tuple[str, bytes]:
    data = data_of(3 * CHUNK + 17, 21)
    d = store.add_file(write(tmp_path / "orig", data), hasher).digest
    return store.blob_path(d), data


@pytest.fixture
def ws(tmp_path):
    p = tmp_path / "ws"
    p.mkdir()
    return p


def no_temps(directory) -> bool:
    return not [n for n in os.listdir(directory) if linking.is_temp_name(n)]


def test_place_reflink_or_fallback(obj, ws, umask022):
    obj_path, data = obj
    dest = str(ws / "f")
    supported = reflink_supported(str(ws))
    kind = linking.place(obj_path, dest, ("reflink",), executable=False)
    assert kind == ("reflink" if supported else "copy")
    assert read(dest) == data
    assert os.stat(dest).st_ino != os.stat(obj_path).st_ino
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o644
    assert not os.path.islink(dest)
    assert no_temps(ws)
    # With a fallback in the list, the type actually used is reported.
    kind2 = linking.place(obj_path, str(ws / "g"), ("reflink", "hardlink"), executable=False)
    assert kind2 == ("reflink" if supported else "hardlink")
    assert read(ws / "g") == data


def test_place_copy(obj, ws, umask022):
    obj_path, data = obj
    dest = str(ws / "sub-copy")
    assert linking.place(obj_path, dest, ("copy",), executable=False) == "copy"
    assert read(dest) == data
    assert os.stat(dest).st_ino != os.stat(obj_path).st_ino
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o644
    assert not linking.is_protected_link(dest, os.path.dirname(os.path.dirname(os.path.dirname(obj_path))))


def test_place_hardlink_shares_inode(obj, ws, store):
    obj_path, data = obj
    dest = str(ws / "h")
    assert linking.place(obj_path, dest, ("hardlink", "copy"), executable=False) == "hardlink"
    assert os.stat(dest).st_ino == os.stat(obj_path).st_ino
    assert os.stat(obj_path).st_nlink == 2
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o444  # still protected
    assert read(dest) == data
    assert linking.is_protected_link(dest, store.root)
    # unprotect swaps it for a private writable copy; the object is untouched.
    assert linking.unprotect(dest)
    assert os.stat(dest).st_ino != os.stat(obj_path).st_ino
    assert os.stat(obj_path).st_nlink == 1
    assert os.stat(dest).st_mode & 0o200
    assert read(dest) == data and not linking.is_protected_link(dest, store.root)


def test_place_symlink(obj, ws, store):
    obj_path, data = obj
    dest = str(ws / "s")
    assert linking.place(obj_path, dest, ("symlink",), executable=False) == "symlink"
    assert os.path.islink(dest) and os.readlink(dest) == obj_path
    assert read(dest) == data
    assert linking.is_protected_link(dest, store.root)


@pytest.mark.parametrize("types", [("hardlink",), ("symlink",), ("hardlink", "symlink"), ("symlink", "copy")])
def test_executables_are_never_linked(obj, ws, umask022, types):
    obj_path, data = obj
    dest = str(ws / "run")
    assert linking.place(obj_path, dest, types, executable=True) == "copy"
    st_ = os.lstat(dest)
    assert stat.S_ISREG(st_.st_mode)
    assert st_.st_ino != os.stat(obj_path).st_ino
    assert stat.S_IMODE(st_.st_mode) == 0o755
    assert stat.S_IMODE(os.stat(obj_path).st_mode) == 0o444  # the shared object keeps its mode
    assert read(dest) == data


@pytest.mark.parametrize("types", [("copy",), ("hardlink",), ("symlink",), ("reflink", "copy")])
def test_place_replaces_dest_atomically(obj, ws, types):
    obj_path, data = obj
    dest = str(ws / "existing")
    old = b"old content that someone still reads"
    write(dest, old)
    os.link(dest, str(ws / "other-name"))  # a second name for the old inode
    fd = os.open(dest, os.O_RDONLY)
    try:
        linking.place(obj_path, dest, types, executable=False)
        assert read(dest) == data
        # The old inode was replaced by rename, not written through.
        assert os.pread(fd, 1000, 0) == old
        assert read(ws / "other-name") == old
    finally:
        os.close(fd)
    assert no_temps(ws)
    assert sorted(os.listdir(ws)) == ["existing", "other-name"]


def test_place_replaces_a_hardlinked_cache_object_without_touching_it(obj, ws, store, hasher, tmp_path):
    obj_path, data = obj
    dest = str(ws / "f")
    linking.place(obj_path, dest, ("hardlink",), executable=False)
    other = data_of(100, 99)
    d2 = store.add_file(write(tmp_path / "o2", other), hasher).digest
    assert linking.place(store.blob_path(d2), dest, ("copy",), executable=False) == "copy"
    assert read(dest) == other
    assert read(obj_path) == data
    assert store.check_blob(digest_bytes(data, CHUNK), hasher)


def test_place_failure_leaves_dest_and_no_temporaries(ws, tmp_path):
    dest = str(ws / "keep")
    write(dest, b"precious")
    for types in (("copy",), ("reflink",), ("hardlink", "copy")):
        with pytest.raises(DataverError):
            linking.place(str(tmp_path / "no-such-object"), dest, types, executable=False)
        assert read(dest) == b"precious"
        assert no_temps(ws)


def test_place_with_verifying_copy_refuses_corrupt_object(obj, ws, hasher):
    obj_path, data = obj
    d = digest_bytes(data, CHUNK)
    corrupt(obj_path, 5)
    dest = str(ws / "f")

    def copy(src: str, tmp: str, mode: int) -> None:
        copy_verified(src, d, tmp, hasher, mode=mode)

    with pytest.raises(IntegrityError):
        linking.place(obj_path, dest, ("copy",), executable=False, copy=copy)
    assert not os.path.exists(dest)
    assert os.listdir(ws) == []


def test_temp_names():
    t = linking.temp_sibling("/a/b/file.txt")
    assert os.path.dirname(t) == "/a/b"
    assert linking.is_temp_name(os.path.basename(t))
    assert linking.temp_sibling("/a/b/file.txt") != t
    assert not linking.is_temp_name("file.txt")
    assert len(os.path.basename(linking.temp_sibling("/x/" + "n" * 255))) < 255


@pytest.mark.parametrize(
    "text,want",
    [
        ("copy", ("copy",)),
        ("reflink,copy", ("reflink", "copy")),
        (" hardlink , symlink ,copy ", ("hardlink", "symlink", "copy")),
        ("reflink,hardlink,symlink,copy", linking.LINK_TYPES),
        ("copy,", ("copy",)),
    ],
)
def test_parse_link_types(text, want):
    assert linking.parse_link_types(text) == want


@pytest.mark.parametrize("text", ["", " ", ",", "cp", "copy,cp", "Copy", "hard link", "reflink;copy"])
def test_parse_link_types_errors(text):
    with pytest.raises(ConfigError, match="cache.link must list link types") as e:
        linking.parse_link_types(text)
    assert repr(text) in e.value.message
    assert e.value.exit_code == 3


def test_placing_files_on_many_threads_keeps_the_umask_and_every_mode(umask022, obj, ws):
    """Placement runs on the hasher's threads. Each file gets 0o666 or 0o777 less the
    umask, applied by the kernel as it is created; nothing reads the umask by setting it
    (os.umask(0) and back, in two threads at once, could leave the process umask at 0
    and hand out world-writable modes)."""
    obj_path, data = obj
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    bad: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    try:

        def work(t: int) -> None:
            try:
                for i in range(150):
                    ex = bool(i % 2)
                    dest = ws / f"t{t}-{i}"
                    if i % 3:
                        linking.place_bytes(b"small %d" % i, str(dest), ex)
                    else:
                        linking.place(obj_path, str(dest), ("copy",), ex)
                    mode = stat.S_IMODE(os.stat(dest).st_mode)
                    if mode != (0o755 if ex else 0o644):
                        bad.append((dest.name, mode))
            except BaseException as e:  # reported by the test, not as a thread warning
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
        current = os.umask(0o022)
    assert errors == [] and bad == []
    assert current == 0o022
    assert len(os.listdir(ws)) == 600 and (ws / "t0-0").read_bytes() == data


@pytest.mark.parametrize("count", [10, 700])  # below and above the listing threshold
def test_blobs_present_by_stat_and_by_listing(tmp_path, count):
    store = ObjectStore(str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    digests = []
    with Hasher(jobs=2) as hasher:
        for i in range(count):
            p = src / f"f{i}"
            p.write_bytes(f"content {i}".encode())
            digests.append(store.add_file(str(p), hasher).digest)
    gone = digests[::7]
    for d in gone:
        os.unlink(store.blob_path(d))
    never = [digest_bytes(f"never stored {i}".encode()) for i in range(5)]
    present = store.blobs_present(digests + never)
    assert present == set(digests) - set(gone)
