"""Packed remotes: many small objects in a few pack files, found through index files.

Layout below a remote's root (formats: docs/formats.md, "Packed remotes")::

    dataver.json              the format marker: version, layout, pack size
    packs/<id>.pack           packs (packfmt), written once
    index/<id>.idx            index files (packfmt), written once; merged on read
    locks/<id>.json           who is writing (shared) or collecting (exclusive)
    xxh3-128/ab/cdef...       loose objects: large ones, single puts, older remotes

Write ordering (normative): a pack is complete under its final name before any index
names it; an index file is complete before the command that wrote it reports success;
nothing else refers to remote objects (pointers live in git). So an index never names
an incomplete pack, and a killed push leaves at most packs no index names; its re-run
makes the same packs (they are planned before a byte is read) and names them, and gc,
under the exclusive lock, removes any that remain.

Concurrency: a push holds a *shared* lock from the moment it decides what the remote
lacks until its index is written; ``delete`` (gc) holds an *exclusive* lock, so it never
removes an object a running push has counted on. Locks are files (restic's protocol):
stale after 30 minutes without refresh, or at once when their process on this host is
gone. Readers take no lock: a pack that vanished under a reader (a gc repacked it) makes
the reader reload the index once and read the object from where it is now.
"""

from __future__ import annotations

import heapq
import json
import os
import secrets
import socket
import struct
import tempfile
import threading
import time
from array import array
from bisect import bisect_left
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Callable, Iterable, Iterator, Protocol, Sequence

from . import malloc, packfmt
from .config import env_int
from .digest import Digest, get_algorithm
from .errors import DataverError, IntegrityError, LockTimeout, ObjectsMissing, RemoteError, StorageError
from .packfmt import (
    CODEC_RAW,
    CODEC_ZSTD,
    KIND_BLOB,
    KIND_CHUNK,
    KIND_MANIFEST,
    KIND_MAP,
    Entry,
    PackBuilder,
    Record,
    compress,
    decompress,
)
from .store import ObjRef, check_bytes

MARKER = "dataver.json"
FORMAT = "dataver-remote"
VERSION = 2
LAYOUT_PACKED = "packed"
PACK_SIZE = 16 * 1024 * 1024  # target; see docs/benchmarks.md for the measurement behind it
PACKED_MAX = 8 * 1024 * 1024  # larger objects stay loose (one file or multipart upload each)
UPLOADS_IN_FLIGHT = 3  # packs built and not yet written (uploading or waiting to): bounds a push's memory
GROUP_PACKS = 2  # a push reads the objects of this many planned packs at a time (PackWriter.plan)
COALESCE_GAP = 256 * 1024  # ranged reads closer than this are merged
RANGE_MAX = 8 * 1024 * 1024  # ...into reads of at most this
LOCK_STALE = 30 * 60
LOCK_REFRESH = 5 * 60
LOCK_WAIT = float(os.environ.get("DATAVER_LOCK_WAIT", "60"))
INDEX_MEMORY = 16 * 1024 * 1024  # a merged index's records held in memory; more go to a temporary file
INDEX_MEMORY_ENV = "DATAVER_INDEX_MEMORY"  # another limit, in bytes (tests: a spilled index from a few objects)
INDEX_PIECE = 4 * 1024 * 1024  # an index file larger than this is read in pieces of about this size
REPACK_GARBAGE = 0.2  # gc rewrites a pack once this share of its bytes is garbage


class Files(Protocol):
    """What the packed layer needs of the remote beneath it: whole files by path
    relative to the remote's root. ``RemoteStore`` and ``LocalRemoteStore`` provide it."""

    where: str

    def read_file(self, rel: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)``; ObjectsMissing when the file is absent."""
        ...

    def read_buffer(self, rel: str, start: int, end: int) -> bytes | bytearray:
        """``read_file``, where the answer may be a bytearray (a large ranged read that
        was streamed into one buffer is not copied again)."""
        ...

    def write_file(self, rel: str, data: bytes) -> None:
        """Write the whole file atomically (a reader sees all of it or none)."""
        ...

    def list_files(self, rel_dir: str) -> list[tuple[str, int, float]]:
        """(name, size, mtime) of the files in ``rel_dir``; [] when it does not exist."""
        ...

    def delete_files(self, rels: list[str]) -> None:
        """Remove these files; absent ones are fine."""
        ...


# -- the marker ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Marker:
    version: int = VERSION
    layout: str = LAYOUT_PACKED
    pack_size: int = PACK_SIZE

    def to_bytes(self) -> bytes:
        doc = {"format": FORMAT, "version": self.version, "layout": self.layout, "pack_size": self.pack_size}
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> Marker:
        """A marker read from a remote (anyone with write access could have written it)."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RemoteError(f"{where} has a {MARKER} that is not JSON", f"fix or remove {MARKER} there") from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != FORMAT
            or type(doc.get("version")) is not int
            or doc["version"] < VERSION
        ):
            raise RemoteError(f"{where} has a {MARKER} that is not dataver's", f"fix or remove {MARKER} there")
        if doc["version"] > VERSION:
            raise RemoteError(
                f"{where} was written by a newer dataver (remote format {doc['version']}; this one knows {VERSION})",
                "upgrade dataver: pip install -U dataver",
            )
        size = doc.get("pack_size", PACK_SIZE)
        if doc.get("layout") != LAYOUT_PACKED or not isinstance(size, int) or not 1 << 16 <= size <= 1 << 31:
            raise RemoteError(f"{where} has a {MARKER} with an unknown layout or pack size", "check it by hand")
        return cls(doc["version"], LAYOUT_PACKED, size)


@dataclass(frozen=True, slots=True)
class Part:
    """A chunk (kind 2: named by its bytes' digest) or a chunk map (kind 3: named by the
    digest of the file it rebuilds): stored in packs like objects, but not objects of
    the store contract (``ObjRef``); see ``dataver.chunked``."""

    digest: Digest
    kind: int

    @property
    def manifest(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"chunk {self.digest.short()}" if self.kind == KIND_CHUNK else f"chunk map of {self.digest.short()}"


def kind_of(ref: ObjRef | Part) -> int:
    if isinstance(ref, Part):
        return ref.kind
    return KIND_MANIFEST if ref.manifest else KIND_BLOB


def key_of(ref: ObjRef | Part) -> bytes:
    return packfmt.entry_key(ref.digest, kind_of(ref))


def map_key(ref: ObjRef) -> bytes:
    """The key of the map that stores ``ref`` chunked."""
    return packfmt.entry_key(ref.digest, KIND_MAP)


def ref_of(entry: Entry) -> ObjRef | None:
    if entry.kind not in (KIND_BLOB, KIND_MANIFEST):
        return None  # chunks and maps are not objects of their own
    return ObjRef(entry.digest, entry.kind == KIND_MANIFEST)


def item_of(entry: Entry) -> ObjRef | Part:
    """What an entry stores: an object, or a part of a chunked one."""
    return ref_of(entry) or Part(entry.digest, entry.kind)


def pack_rel(pack: str) -> str:
    return f"packs/{pack}.pack"


def index_rel(index: str) -> str:
    return f"index/{index}.idx"


def _id_of(name: str, suffix: str) -> str | None:
    """The id of ``packs/<id>.pack`` or ``index/<id>.idx``; None for a stranger's file."""
    if not name.endswith(suffix):
        return None
    stem = name[: -len(suffix)]
    return stem if len(stem) == 32 and all(c in "0123456789abcdef" for c in stem) else None


# -- the merged index ------------------------------------------------------------------------
_KEY_HEAD = struct.Struct(f">Q{packfmt.RECORD_SIZE - 8}x")  # a record's first 8 key bytes, as an integer


class _Run:
    """Records sorted by key: the first 8 bytes of each key, as integers, to bisect, and
    where each record is in the merged index's records: at ``base`` one after the other
    (an index file just read), or the record numbers in ``nums`` (runs merged)."""

    __slots__ = ("his", "base", "nums")

    def __init__(self, his: array, base: int = 0, nums: array | None = None):
        self.his, self.base, self.nums = his, base, nums

    def at(self, i: int) -> int:
        """The offset in the records of the ``i``-th record of the run."""
        if self.nums is None:
            return self.base + i * packfmt.RECORD_SIZE
        return self.nums[i] * packfmt.RECORD_SIZE

    def entries(self) -> Iterator[tuple[int, int]]:
        """``(first 8 key bytes, offset)`` of each record, in key order."""
        return ((h, self.at(i)) for i, h in enumerate(self.his))


class _Records:
    """A merged index's records, 64 bytes each, in the order their runs came: in memory
    up to ``INDEX_MEMORY`` bytes, then all of them in an unnamed temporary file (created
    unlinked, so a killed command leaves nothing behind), a record read with one
    ``pread`` when a look-up needs it. A million objects' records are 64 MB; what
    stays in memory then is the runs' 12 bytes an object. Never closed by hand: a
    thread still looking up in a copy that a reload replaced keeps it open."""

    __slots__ = ("_mem", "_file", "_size", "_limit", "_where")

    def __init__(self, where: str):
        self._mem = bytearray()
        self._file: IO[bytes] | None = None
        self._size = 0
        self._limit = env_int(INDEX_MEMORY_ENV, INDEX_MEMORY)
        self._where = where

    def __len__(self) -> int:
        return self._size

    def append(self, body: bytes | memoryview) -> int:
        """Add records at the end; where the first of them is."""
        base = self._size
        try:
            if self._file is None and base + len(body) > self._limit:
                self._file = tempfile.TemporaryFile(prefix="dataver-index-")
                self._write(self._mem, 0)
                self._mem = bytearray()
            if self._file is None:
                self._mem += body
            else:
                self._write(body, base)
        except OSError as e:
            raise StorageError(
                f"cannot write a temporary copy of the index of {self._where} in {tempfile.gettempdir()}: "
                f"{e.strerror or e}",
                "free some space there (or point TMPDIR at a larger disk) and re-run; nothing was changed",
            ) from None
        self._size += len(body)
        return base

    def _write(self, data: bytes | bytearray | memoryview, at: int) -> None:
        assert self._file is not None
        view = memoryview(data)
        while view:
            n = os.pwrite(self._file.fileno(), view, at)
            view, at = view[n:], at + n

    def get(self, at: int) -> bytes | bytearray:
        """The record at offset ``at`` (a copy)."""
        if self._file is None:
            return self._mem[at : at + packfmt.RECORD_SIZE]
        return os.pread(self._file.fileno(), packfmt.RECORD_SIZE, at)


class PackIndex:
    """Every index file of a remote, merged: key -> record.

    Held compactly: the records' 64 bytes each (``_Records``: in a temporary file past
    16 MiB), and the first 8 bytes of each key in sorted order with where its record is
    (``_Run``: 12 bytes an object once the index files' runs are merged), searched by
    bisection; each record is parsed when it is used. Loaded whole on first use,
    except when a command asks about a few objects only (a one-file pull): then each is
    looked up with one ranged read of each index file (the window
    ``packfmt.lookup_window`` gives), so a large index is not downloaded for it."""

    FEW = 8  # lookups answered by ranged reads before the whole index is loaded
    WHOLE_MAX = 256 * 1024  # index files smaller than this in total are simply loaded

    def __init__(self, files: Files):
        self.files = files
        self.index_ids: list[str] = []
        self.loaded = False
        self._records = _Records(files.where)  # runs of records, each run sorted by key
        self._runs: list[_Run] = []  # one per index file read (or records added), in that order
        self._lock = threading.Lock()
        self._listing: list[tuple[str, int]] | None = None
        self._looked_up: dict[bytes, Record | None] = {}

    def __len__(self) -> int:
        self.load()
        return sum(1 for _ in self._first_positions())

    def _list(self) -> list[tuple[str, int]]:
        listed = [(i, size) for name, size, _ in self.files.list_files("index") if (i := _id_of(name, ".idx"))]
        return sorted(listed)

    def listing(self) -> list[tuple[str, int]]:
        """(id, size) of the index files, listed once (``load(force=True)`` lists again)."""
        with self._lock:
            if self._listing is None:
                self._listing = self._list()
            return self._listing

    def load(self, force: bool = False) -> None:
        """Read the index files (``force``: list them again, and read only the new ones
        unless one was removed, when everything is read again)."""
        with self._lock:
            if self.loaded and not force:
                return
            if self._listing is not None and not self.loaded and not force:
                sizes = dict(self._listing)
            else:
                sizes = dict(self._list())
            listed = sorted(sizes)
            if self.loaded and set(self.index_ids) <= set(listed):
                new = [i for i in listed if i not in set(self.index_ids)]
            else:
                new, self._records, self._runs = listed, _Records(self.files.where), []
            for index_id in new:
                if sizes[index_id] > INDEX_PIECE:
                    self._add_streamed(index_id, sizes[index_id])
                else:
                    self._add_run(self._read(index_id))
            if len(self._runs) > 1:
                self._merge_runs()  # one bisection a look-up, however many index files
            self.index_ids, self.loaded = listed, True
            self._looked_up = {}

    def _merge_runs(self) -> None:
        """The runs as one (a k-way merge: 12 bytes an object, nothing per object held
        beside it). A key found in several runs keeps the first run's record."""
        size = packfmt.RECORD_SIZE
        records = self._records
        his, nums = array("Q"), array("I")
        group: list[int] = []  # offsets kept under the current 8-byte head (rarely more than one)
        last = None
        for h, at in heapq.merge(*(run.entries() for run in self._runs)):  # ties: the earlier run first
            if h == last:
                key = packfmt.record_key(records.get(at))
                if any(packfmt.record_key(records.get(g)) == key for g in group):
                    continue  # the same key in a later run: the first one's record stands
                group.append(at)
            else:
                last, group = h, [at]
            his.append(h)
            nums.append(at // size)
        self._runs = [_Run(his, nums=nums)]

    def _add_run(self, body: bytes | memoryview) -> None:
        """Records sorted by key (an index file's body) as the newest run."""
        base = self._records.append(body)
        his = array("Q", (h for (h,) in _KEY_HEAD.iter_unpack(body)))
        self._runs.append(_Run(his, base))

    def _add_streamed(self, index_id: str, size: int) -> None:
        """A large index file as the newest run, read and checked in pieces of about
        ``INDEX_PIECE`` bytes (gc writes one index file for everything it keeps: a
        million objects' is 64 MB), so that it is never in memory whole."""
        rel = index_rel(index_id)
        where = f"index file {rel} on {self.files.where}"
        check = packfmt.IndexCheck(size, where)
        step = INDEX_PIECE // packfmt.RECORD_SIZE * packfmt.RECORD_SIZE
        his, base = array("Q"), len(self._records)
        at, end = 0, packfmt.INDEX_HEADER + step
        while at < size:
            if size - end < packfmt.RECORD_SIZE:  # the last piece takes the tail
                end = size
            try:
                piece = self.files.read_file(rel, at, end)
            except ObjectsMissing:
                return  # removed by a gc meanwhile: its records are in the one replacing it
            body = check.feed(piece)
            self._records.append(body)
            his.extend(h for (h,) in _KEY_HEAD.iter_unpack(body))
            at, end = end, end + step
        if check.finish() != index_id:
            raise _misnamed(where)
        self._runs.append(_Run(his, base))

    def _position(self, key: bytes, runs: list[_Run] | None = None) -> int | None:
        """Where in the records the record of ``key`` is: the first run that has it wins."""
        hi = int.from_bytes(key[:8], "big")
        records = self._records
        for run in self._runs if runs is None else runs:
            his = run.his
            i = bisect_left(his, hi)
            while i < len(his) and his[i] == hi:
                at = run.at(i)
                rec = records.get(at)
                if rec[:33] == key[:33] and rec[34] == key[33]:  # packfmt.record_key, without a copy
                    return at
                i += 1
        return None

    def _first_positions(self) -> Iterator[int]:
        """The position of each key's record once (the first run's, as look-ups find)."""
        for r, run in enumerate(self._runs):
            earlier = self._runs[:r]
            for i in range(len(run.his)):
                at = run.at(i)
                if not earlier or self._position(packfmt.record_key(self._records.get(at)), earlier) is None:
                    yield at

    def unload(self) -> None:
        """Forget what was read (a push that wrote many objects: they are not kept here,
        and a later look-up reads the index files again)."""
        with self._lock:
            self.loaded, self._records, self._runs = False, _Records(self.files.where), []
            self.index_ids, self._listing, self._looked_up = [], None, {}

    def add(self, records: Iterable[Record]) -> None:
        """Records just written (a push's index file), into a loaded index."""
        by_key: dict[bytes, bytes] = {}
        for r in records:
            raw = packfmt.pack_record(r)
            by_key.setdefault(packfmt.record_key(raw), raw)
        if by_key:
            self._add_run(b"".join(by_key[k] for k in sorted(by_key)))

    def add_file(self, data: bytes) -> None:
        """The records of an index file just written (``packfmt.encode_index``'s bytes)."""
        n = packfmt.index_count(len(data))
        assert n is not None
        self._add_run(memoryview(data)[packfmt.INDEX_HEADER : packfmt.INDEX_HEADER + n * packfmt.RECORD_SIZE])

    def reset(self, records: Iterable[Record], index_ids: list[str]) -> None:
        self._records, self._runs = _Records(self.files.where), []
        self.add(records)
        self.index_ids = index_ids

    def _record(self, key: bytes) -> Record | None:
        at = self._position(key)
        if at is None:
            return None
        where = f"the index of {self.files.where}"
        return packfmt.parse_records(self._records.get(at), where)[0]

    def keys(self) -> set[bytes]:
        self.load()
        return {packfmt.record_key(self._records.get(at)) for at in self._first_positions()}

    def all_records(self) -> Iterator[Record]:
        self.load()
        where = f"the index of {self.files.where}"
        for at in list(self._first_positions()):
            yield packfmt.parse_records(self._records.get(at), where)[0]

    def _read(self, index_id: str) -> memoryview:
        where = f"index file {index_rel(index_id)} on {self.files.where}"
        try:
            data = self.files.read_file(index_rel(index_id))
        except ObjectsMissing:
            return memoryview(b"")  # removed by a gc since the listing: its records are in the one replacing it
        if packfmt.object_id(data) != index_id:
            raise _misnamed(where)
        return packfmt.check_index(data, where)

    def has_key(self, key: bytes) -> bool:
        """Whether a loaded index names ``key`` (``packstore.key_of``)."""
        return self._position(key) is not None

    def find_key(self, key: bytes) -> Record | None:
        """The record of ``key``, by the same route as ``find``."""
        if not self.loaded:
            if key in self._looked_up:
                return self._looked_up[key]
            if len(self._looked_up) < self.FEW:
                return self._look_up(key)
            self.load()
        return self._record(key)

    def holds(self, ref: ObjRef) -> bool:
        """Whether the index names ``ref``, whole or chunked (no record parsed: for many
        refs at once)."""
        if not self.loaded and len(self._looked_up) < self.FEW:
            return self.find_stored(ref) is not None
        self.load()
        return self._position(key_of(ref)) is not None or (
            not ref.manifest and self._position(map_key(ref)) is not None
        )

    def find(self, ref: ObjRef | Part) -> Record | None:
        return self.find_key(key_of(ref))

    def find_stored(self, ref: ObjRef) -> Record | None:
        """How ``ref`` is packed: its own record, or its chunk map's (kind 3), or None."""
        return self.find(ref) or (None if ref.manifest else self.find_key(map_key(ref)))

    def _look_up(self, key: bytes) -> Record | None:
        """One object, by a ranged read of each index file."""
        listing = self.listing()
        if sum(size for _, size in listing) <= self.WHOLE_MAX:
            self.load()
            return self._record(key)
        found = None
        for index_id, size in listing:
            n = packfmt.index_count(size)
            if n is None:
                self.load()  # not an index file's size: the whole read says what is wrong
                return self._record(key)
            start, end = packfmt.lookup_window(n, key)
            try:
                raw = self.files.read_file(index_rel(index_id), start, end)
            except ObjectsMissing:
                continue
            where = f"index file {index_rel(index_id)} on {self.files.where}"
            records = packfmt.parse_records(raw, where)
            hit = packfmt.find_in(records, key)
            inside = records and records[0].entry.key() <= key <= records[-1].entry.key()
            if hit is None and not inside and end - start < n * packfmt.RECORD_SIZE:
                body = self._read(index_id)  # outside the window: read it all, parse only the hit
                his = array("Q", (h for (h,) in _KEY_HEAD.iter_unpack(body)))
                i = bisect_left(his, int.from_bytes(key[:8], "big"))
                while hit is None and i < len(his) and his[i] == int.from_bytes(key[:8], "big"):
                    at = i * packfmt.RECORD_SIZE
                    if packfmt.record_key(body[at : at + packfmt.RECORD_SIZE]) == key:
                        hit = packfmt.parse_records(body[at : at + packfmt.RECORD_SIZE], where)[0]
                    i += 1
            if hit is not None:
                found = hit
                break
        self._looked_up[key] = found
        return found

    def packs(self) -> dict[str, list[Record]]:
        out: dict[str, list[Record]] = defaultdict(list)
        for r in self.all_records():
            out[r.pack].append(r)
        return out


def _misnamed(where: str) -> IntegrityError:
    """An index file whose bytes do not hash to its name."""
    return IntegrityError(
        f"{where} does not match its name (damaged)",
        "check the remote: dataver verify --remote NAME (a damaged index file can be removed; "
        "the objects it named are then pushed again as needed)",
    )


# -- locks ------------------------------------------------------------------------------------
class RemoteLock:
    """A lock file in ``locks/``; see the module docstring for the protocol."""

    def __init__(self, files: Files, exclusive: bool, command: str):
        self.files = files
        self.exclusive = exclusive
        self.command = command
        self.rel = f"locks/{secrets.token_hex(8)}.json"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _doc(self) -> bytes:
        doc = {
            "exclusive": self.exclusive,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "time": time.time(),
            "command": self.command,
        }
        return json.dumps(doc).encode()

    def acquire(self, wait: float = LOCK_WAIT) -> RemoteLock:
        deadline = time.monotonic() + wait
        delay = 0.2
        while True:
            self.files.write_file(self.rel, self._doc())
            holder = self._conflict()
            if holder is None:
                break
            self.files.delete_files([self.rel])
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"{self.files.where} is locked by {holder}",
                    "wait for it to finish and re-run; a lock left by a killed process expires after "
                    f"{LOCK_STALE // 60} minutes (or remove that file under locks/ if you are sure)",
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        self._thread = threading.Thread(target=self._refresh, daemon=True)
        self._thread.start()
        return self

    def _conflict(self) -> str | None:
        """Who holds a lock that conflicts with ours, or None. Stale locks (their holder
        is gone: see ``_stale``) are removed on the way, so a killed command's lock does
        not stay behind after the next one."""
        stale: list[str] = []
        try:
            return self._first_conflict(stale)
        finally:
            if stale:
                try:
                    self.files.delete_files(stale)
                except DataverError:
                    pass  # ignored while stale anyway

    def _first_conflict(self, stale: list[str]) -> str | None:
        for name, _, _ in self.files.list_files("locks"):
            rel = f"locks/{name}"
            if rel == self.rel or not name.endswith(".json"):
                continue
            try:
                doc = json.loads(self.files.read_file(rel))
            except (ObjectsMissing, ValueError, UnicodeDecodeError):
                continue  # released meanwhile, or not a lock
            if not isinstance(doc, dict):
                continue
            if _stale(doc):
                stale.append(rel)
                continue
            if self.exclusive or doc.get("exclusive"):
                what = "gc" if doc.get("exclusive") else str(doc.get("command", "a push"))[:40]
                return f"{what} (process {doc.get('pid')} on {str(doc.get('host'))[:64]}, {rel})"
        return None

    def check_held(self) -> None:
        """Raise unless our lock file is still there. A gc removes a lock it finds stale
        (a process suspended for more than 30 minutes, or one it saw die); the holder
        then MUST NOT publish what it wrote, whose packs that gc may have removed."""
        try:
            self.files.read_file(self.rel)
        except ObjectsMissing:
            raise RemoteError(
                f"the lock on {self.files.where} expired while this command was suspended "
                "(another command removed it as stale); nothing was published",
                "re-run the command",
            ) from None

    def _refresh(self) -> None:
        while not self._stop.wait(LOCK_REFRESH):
            try:
                self.files.write_file(self.rel, self._doc())
            except DataverError:
                pass  # the next refresh tries again; the lock goes stale only after 30 minutes

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # a refresh in flight would write the file again
        try:
            self.files.delete_files([self.rel])
        except DataverError:
            pass  # it goes stale by itself

    def __enter__(self) -> RemoteLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _stale(doc: dict) -> bool:
    stamp = doc.get("time")
    if not isinstance(stamp, (int, float)) or time.time() - stamp > LOCK_STALE:
        return True
    if doc.get("host") == socket.gethostname() and isinstance(doc.get("pid"), int):
        try:
            os.kill(doc["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return False


# -- writing ---------------------------------------------------------------------------------
PROBE = 4096  # a chunk is compressed only if its first bytes compress (random data does not)


def encode_chunk(data: bytes) -> tuple[bytes, int]:
    """(stored bytes, codec) of a chunk: zstd level 1 where that saves a tenth, else raw.
    A first ``PROBE`` bytes that do not shrink spare compressing the rest (random or
    already compressed data: ~4x cheaper). Level 1: on CSV chunks it compresses as well
    as level 3 (0.37 vs 0.39 of the size here) at twice the speed. Releases the GIL."""
    if len(data) > 2 * PROBE and len(compress(data[:PROBE], 1)) > PROBE * 0.9:
        return data, CODEC_RAW
    packed = compress(data, 1)
    if len(packed) <= len(data) * 0.9:
        return packed, CODEC_ZSTD
    return data, CODEC_RAW


class PackWriter:
    """A push's batch of objects: packed, each pack uploaded once complete (by a few
    upload threads of its own, so readers go on reading), one index file for all of
    them at ``commit``. Thread-safe ``add``; ``close`` when done, however it ends.

    With a ``plan`` (the objects in order, with their sizes) the packs are decided
    before any byte is read: each object has its pack and place, so the same push
    makes the same packs with the same names, whichever thread reads what first. A push
    killed after some packs were uploaded and re-run finds them there (one listing) and
    does not upload them again, and leaves no pack behind that no index names.

    Memory: at most ``UPLOADS_IN_FLIGHT`` packs are built and not yet written; a thread
    that completes one more waits for a write to end. A caller that reads the planned
    objects group by group (``plan``'s answer) has at most ``GROUP_PACKS`` packs
    partly filled, so a push holds a few packs whatever the number of objects."""

    def __init__(
        self, files: Files, index: PackIndex, pack_size: int, existing: set[str] | None = None, remember: bool = True
    ):
        malloc.steady()
        self.files = files
        self.index = index
        self.remember = remember  # add what it writes to the loaded index (False: the caller unloads it)
        self.pack_size = pack_size
        self.records: list[Record] = []
        self.packs_written = 0
        self.packs_found = 0  # complete packs a killed run had uploaded
        self._existing = existing
        self.compress_chunks = True
        self._builder = PackBuilder()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(UPLOADS_IN_FLIGHT)
        self._writers = ThreadPoolExecutor(UPLOADS_IN_FLIGHT, thread_name_prefix="dataver-pack")
        self._writes: list[Future] = []
        self._failure: BaseException | None = None
        self._seen: set[bytes] = set()
        self._slot: dict[bytes, int] = {}  # planned: key -> pack number
        self._order: list[list[bytes]] = []  # planned: pack number -> keys in order
        self._parts: dict[int, dict[bytes, tuple[ObjRef, bytes, int, int]]] = defaultdict(dict)

    def plan(self, items: Iterable[tuple[ObjRef, int]]) -> list[list[ObjRef]]:
        """Assign objects to packs in this order, a pack closed once it reaches the
        target size (sizes are the objects' own; compression only makes packs smaller).
        Returns the newly planned objects in order, in groups of ``GROUP_PACKS`` packs:
        read one group after the other to bound memory."""
        size = self.pack_size
        groups: list[list[ObjRef]] = []
        started = 0  # packs this call opened
        for ref, n in items:
            key = key_of(ref)
            if key in self._slot:
                continue
            if not self._order or size + n > self.pack_size and self._order[-1]:
                self._order.append([])
                size = 0
                if started % GROUP_PACKS == 0:
                    groups.append([])
                started += 1
            elif not groups:
                groups.append([])
            self._slot[key] = len(self._order) - 1
            self._order[-1].append(key)
            groups[-1].append(ref)
            size += n
        return groups

    def add(self, ref: ObjRef | Part, data: bytes) -> None:
        """Pack ``data`` (already verified as ``ref``) for upload."""
        key = key_of(ref)
        stored, codec = self._encode(ref, data)
        full = None
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            slot = self._slot.get(key)
            if slot is not None:
                parts = self._parts[slot]
                parts[key] = (ref, stored, len(data), codec)
                if len(parts) == len(self._order[slot]):
                    full = self._build(slot)
            else:
                self._builder.add(ref.digest, kind_of(ref), stored, len(data), codec)
                if len(self._builder) >= self.pack_size:
                    full, self._builder = self._builder, PackBuilder()
        if full is not None:
            self._submit(full)

    def _encode(self, ref: ObjRef | Part, data: bytes) -> tuple[bytes, int]:
        """(stored bytes, codec): manifests and maps compressed; a chunk compressed
        where that saves a tenth (``compress_chunks``); other objects as they are."""
        kind = kind_of(ref)
        if kind in (KIND_MANIFEST, KIND_MAP):
            return compress(data), CODEC_ZSTD
        if kind == KIND_CHUNK and self.compress_chunks:
            return encode_chunk(data)
        return data, CODEC_RAW

    def sequence(self) -> PartRun:
        """A run of parts (one file's new chunks, then its map) in packs of their own,
        in the order given: the same file makes the same packs on a re-run."""
        return PartRun(self)

    def _build(self, slot: int) -> PackBuilder:
        """The planned pack ``slot`` from the objects it received, in the planned order
        (the builder refers to their bytes; ``finish`` joins them)."""
        parts = self._parts.pop(slot)
        builder = PackBuilder()
        for key in self._order[slot]:
            if key in parts:
                ref, stored, size, codec = parts.pop(key)
                builder.add(ref.digest, kind_of(ref), stored, size, codec)
        return builder

    def _submit(self, builder: PackBuilder) -> None:
        """Hand a complete pack to the upload threads (waiting while
        ``UPLOADS_IN_FLIGHT`` others are not written yet)."""
        self._slots.acquire()
        try:
            if self._failure is not None:
                raise self._failure
            pack_id, data, entries = builder.finish()  # the builder hands over its buffer
            write = self._writers.submit(self._write, pack_id, data, entries)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._writes.append(write)

    def _write(self, pack_id: str, data: bytes, entries: list[Entry]) -> None:
        try:
            if self._existing is not None and pack_id in self._existing:
                found = True  # the same bytes under the same name: already complete
            else:
                self.files.write_file(pack_rel(pack_id), data)
                found = False
            with self._lock:
                self.records += [Record(e, pack_id) for e in entries]
                self.packs_written += 1
                self.packs_found += found
        except BaseException as e:
            self._failure = self._failure or e  # stops the readers at their next pack
            raise
        finally:
            self._slots.release()

    def flush(self) -> None:
        """Upload every pack not uploaded yet (planned ones missing an object too), and
        wait until all are written; raises the first upload's error."""
        with self._lock:
            pending = [self._build(slot) for slot in sorted(self._parts)]
            if self._builder.entries:
                pending.append(self._builder)
                self._builder = PackBuilder()
        for builder in pending:
            if builder.entries:
                self._submit(builder)
        with self._lock:
            writes, self._writes = self._writes, []
        for write in writes:
            write.result()

    def commit(self) -> None:
        """Upload the last packs, then the index file naming every pack of this batch."""
        self.flush()
        if not self.records:
            return
        index_id, data = packfmt.encode_index(self.records)
        self.files.write_file(index_rel(index_id), data)
        if self.index.loaded and self.remember:
            self.index.add_file(data)  # its records, sorted and each key once, as the file holds them
            self.index.index_ids.append(index_id)
            self._seen.clear()  # the index names them now
        else:  # the objects (each given once) need no look-up again; parts repeat across files
            self._seen = {k for k in self._seen if k[32] in (KIND_CHUNK, KIND_MAP)}
        self.records = []
        self._slot, self._order = {}, []  # every planned pack is written (flush)

    def close(self) -> None:
        """Wait for the upload threads (an abandoned batch's packs are named by no index)."""
        self._writers.shutdown(wait=True)


class PartRun:
    """``PackWriter.sequence``: parts added in order fill packs of their own."""

    def __init__(self, writer: PackWriter):
        self.writer = writer
        self._builder = PackBuilder()

    def wants(self, part: Part) -> bool:
        """Whether ``part`` is neither on the remote (its index, loaded) nor in this batch."""
        key = key_of(part)
        w = self.writer
        with w._lock:
            return key not in w._seen and not w.index.has_key(key)

    def add(self, part: Part, data: bytes, encoded: tuple[bytes, int] | None = None) -> None:
        """Add ``part`` unless the remote or this batch has it already (``encoded``: its
        stored bytes and codec, when the caller compressed it already)."""
        key = key_of(part)
        stored, codec = encoded if encoded is not None else self.writer._encode(part, data)
        w = self.writer
        with w._lock:
            if key in w._seen or w.index.has_key(key):
                return
            w._seen.add(key)
        self._builder.add(part.digest, part.kind, stored, len(data), codec)
        if len(self._builder) >= w.pack_size:
            full, self._builder = self._builder, PackBuilder()
            w._submit(full)

    def close(self) -> None:
        """Submit the last, partly filled pack of the run."""
        if self._builder.entries:
            full, self._builder = self._builder, PackBuilder()
            self.writer._submit(full)


# -- reading ---------------------------------------------------------------------------------
def read_entry(files: Files, record: Record, start: int = 0, end: int | None = None) -> bytes:
    """The object's bytes ``[start, end)`` from its pack (a slice, as Store.read)."""
    e = record.entry
    where = f"{e.digest} in pack {record.pack} on {files.where}"
    if e.codec == CODEC_ZSTD:
        whole = decompress(files.read_file(pack_rel(record.pack), e.offset, e.offset + e.stored), e.size, where)
        return whole[start:end]
    lo = min(max(start, 0), e.size)
    hi = e.size if end is None else min(max(end, lo), e.size)
    if hi <= lo:
        return b""
    data = files.read_file(pack_rel(record.pack), e.offset + lo, e.offset + hi)
    if len(data) != hi - lo:
        raise IntegrityError(f"{where} is cut short (the pack is damaged)")
    return data


@dataclass
class _Range:
    pack: str
    start: int
    end: int
    records: list[tuple[ObjRef, Record]] = field(default_factory=list)


def coalesce(wanted: Iterable[tuple[ObjRef, Record]]) -> list[_Range]:
    """Group objects into ranged reads: same pack, sorted by offset, gaps under
    ``COALESCE_GAP`` merged, each read at most ``RANGE_MAX`` (or one object)."""
    by_pack: dict[str, list[tuple[ObjRef, Record]]] = defaultdict(list)
    for ref, rec in wanted:
        by_pack[rec.pack].append((ref, rec))
    out: list[_Range] = []
    for pack, items in by_pack.items():
        items.sort(key=lambda x: x[1].entry.offset)
        cur: _Range | None = None
        for ref, rec in items:
            e = rec.entry
            if cur is not None and e.offset - cur.end <= COALESCE_GAP and e.offset + e.stored - cur.start <= RANGE_MAX:
                cur.end = max(cur.end, e.offset + e.stored)
                cur.records.append((ref, rec))
                continue
            cur = _Range(pack, e.offset, e.offset + e.stored, [(ref, rec)])
            out.append(cur)
    return out


Sink = Callable[[ObjRef, "bytes | DataverError"], None]


def read_many(
    files: Files,
    wanted: Sequence[tuple[ObjRef, Record]],
    sink: Sink,
    jobs: int,
    limit: int = PACKED_MAX,
    views: bool = False,
) -> list[ObjRef]:
    """Read packed objects with coalesced ranged reads; ``sink(ref, bytes)`` for each
    (from worker threads), ``sink(ref, IntegrityError)`` for one that does not unpack.
    An entry claiming more than ``limit`` bytes is refused unread (chunk maps may be
    larger than objects). Returns the refs whose pack was gone (a gc repacked it:
    reload and ask again). ``views``: an uncompressed object comes as a memoryview into
    the ranged read, valid during the sink call only (no copy: chunk-sized copies are
    what fragmented the heap of a big pull)."""
    malloc.steady()
    gone: list[ObjRef] = []
    gone_lock = threading.Lock()

    def one(rng: _Range) -> None:
        if rng.end - rng.start > RANGE_MAX and any(rec.entry.size > limit for _, rec in rng.records):
            # dataver packs nothing larger: an index entry that says so is a stranger's
            for ref, _ in rng.records:
                sink(ref, IntegrityError(f"{ref} in pack {rng.pack} on {files.where} is larger than any packed object"))
            return
        try:
            blob = files.read_buffer(pack_rel(rng.pack), rng.start, rng.end)
        except ObjectsMissing:
            with gone_lock:
                gone.extend(ref for ref, _ in rng.records)
            return
        whole = memoryview(blob)
        for ref, rec in rng.records:
            e = rec.entry
            piece = whole[e.offset - rng.start : e.offset - rng.start + e.stored]
            stored = piece if views else piece.tobytes()
            where = f"{ref} in pack {rng.pack} on {files.where}"
            if len(stored) != e.stored:
                sink(ref, IntegrityError(f"{where} is cut short (the pack is damaged)"))
                continue
            try:
                data = decompress(stored, e.size, where) if e.codec == CODEC_ZSTD else stored
            except IntegrityError as err:
                sink(ref, err)
                continue
            sink(ref, data)

    ranges = coalesce(wanted)
    if jobs <= 1 or len(ranges) <= 1:
        for r in ranges:
            one(r)
    else:
        with ThreadPoolExecutor(min(jobs, len(ranges))) as pool:
            for f in [pool.submit(one, r) for r in ranges]:
                f.result()
    return gone


# -- deleting and repacking --------------------------------------------------------------------
@dataclass
class PackPlan:
    """What deleting some objects does to the packs (gc's dry run shows it)."""

    packs_deleted: list[str] = field(default_factory=list)
    packs_rewritten: list[str] = field(default_factory=list)
    bytes_rewritten: int = 0  # live bytes copied into new packs
    bytes_freed: int = 0  # pack bytes no longer stored
    orphans: list[str] = field(default_factory=list)  # packs no index names, older than the grace


def plan(index: PackIndex, files: Files, doomed: set[bytes], sizes: dict[str, int], now: float) -> PackPlan:
    """Which packs go whole, which are rewritten (garbage over REPACK_GARBAGE)."""
    out = PackPlan()
    for pack, records in index.packs().items():
        live = [r for r in records if r.entry.key() not in doomed]
        total = sum(r.entry.stored for r in records)  # the objects' bytes, not the trailer's
        live_bytes = sum(r.entry.stored for r in live)
        if not live:
            out.packs_deleted.append(pack)
            out.bytes_freed += sizes.get(pack, total)
        elif total and (total - live_bytes) / total > REPACK_GARBAGE:
            out.packs_rewritten.append(pack)
            out.bytes_rewritten += live_bytes
            out.bytes_freed += total - live_bytes
    return out


def pack_sizes(files: Files) -> tuple[dict[str, int], dict[str, float]]:
    sizes, mtimes = {}, {}
    for name, size, mtime in files.list_files("packs"):
        pack = _id_of(name, ".pack")
        if pack is not None:
            sizes[pack], mtimes[pack] = size, mtime
    return sizes, mtimes


Expand = Callable[[PackIndex, set[bytes]], set[bytes]]


def doomed_keys(refs: Iterable[ObjRef]) -> set[bytes]:
    """The index keys that deleting ``refs`` removes: each one's own, and its chunk map's."""
    keys: set[bytes] = set()
    for r in refs:
        keys.add(key_of(r))
        if not r.manifest:
            keys.add(map_key(r))
    return keys


def collect(
    files: Files, index: PackIndex, refs: Iterable[ObjRef], pack_size: int, jobs: int, expand: Expand | None = None
) -> PackPlan:
    """Forget ``refs``: under the exclusive lock, rewrite packs above the garbage
    threshold, write one index of everything kept, then remove the old index files,
    then the packs nothing names any more (write ordering: new before old goes).
    ``expand(index, doomed keys)`` adds what goes with them (chunks no kept map names)."""
    with RemoteLock(files, exclusive=True, command="gc"):
        index.load(force=True)
        doomed = doomed_keys(refs)
        if expand is not None:
            doomed = expand(index, doomed)
        sizes, mtimes = pack_sizes(files)
        now = time.time()
        p = plan(index, files, doomed, sizes, now)
        named = set(index.packs())
        # packs no index names: under the exclusive lock no push is writing one, so they
        # are a killed (or expired: see RemoteLock.check_held) command's
        p.orphans = [pk for pk in sizes if pk not in named]
        if not doomed & index.keys() and not p.packs_rewritten and not p.orphans:
            return p
        rewrite = set(p.packs_rewritten)
        kept = [r for r in index.all_records() if r.entry.key() not in doomed and r.pack not in rewrite]
        # planned in a fixed order, as a push's: a gc killed after writing some new packs
        # and run again makes the same ones, finds them, and leaves none behind
        writer = PackWriter(files, PackIndex(files), pack_size, existing=set(sizes))
        try:
            kept += _rewrite(files, writer, index, p, doomed, jobs)
        finally:
            writer.close()
        old_indexes = list(index.index_ids)
        index_id, data = packfmt.encode_index(kept)
        files.write_file(index_rel(index_id), data)
        files.delete_files([index_rel(i) for i in old_indexes if i != index_id])
        # a pack rewritten to the same bytes has the same name: it stays
        gone_packs = (set(p.packs_deleted) | rewrite | set(p.orphans)) - {r.pack for r in kept}
        files.delete_files([pack_rel(pk) for pk in sorted(gone_packs)])
        index.reset(kept, [index_id])
        return p


def _rewrite(
    files: Files, writer: PackWriter, index: PackIndex, p: PackPlan, doomed: set[bytes], jobs: int
) -> list[Record]:
    """Copy the live objects of the packs ``p`` rewrites into new packs (uploaded, named by
    no index yet); their records."""
    by_pack = index.packs()
    moving = sorted(
        ((item_of(r.entry), r) for pk in p.packs_rewritten for r in by_pack[pk] if r.entry.key() not in doomed),
        key=lambda x: (x[1].pack, x[1].entry.offset),
    )
    writer.plan((ref, r.entry.size) for ref, r in moving)

    def sink(ref: ObjRef | Part, data: bytes | DataverError) -> None:
        if isinstance(data, DataverError):
            raise data  # a damaged pack: stop before anything is deleted
        check_part(ref, data, files.where)
        writer.add(ref, data)

    gone = read_many(files, moving, sink, jobs, limit=MAP_LIMIT)  # type: ignore[arg-type]
    if gone:
        raise RemoteError(f"{files.where} changed during gc (a pack vanished)", "re-run gc")
    writer.flush()  # the packs, not an index: the caller writes one for everything kept
    out, writer.records = writer.records, []
    return out


MAP_LIMIT = 64 << 20  # chunk maps may be larger than objects (chunked.MAP_MAX)


def check_part(item: ObjRef | Part, data: bytes, where: str) -> None:
    """IntegrityError unless ``data`` is what ``item`` names: an object's or a chunk's
    bytes hash to its digest; a chunk map parses (its file's digest is checked when the
    file is rebuilt)."""
    if not isinstance(item, Part):
        check_bytes(item, data, where)
    elif item.kind == KIND_CHUNK:
        algo = get_algorithm(item.digest.algorithm)
        if len(data) > packfmt.MAP_CHUNK_MAX or algo.hash_small(data) != item.digest.hex:
            raise IntegrityError(f"{item} does not match its bytes on {where}")
    else:
        packfmt.parse_map(data, f"{item} on {where}")


def iter_packed(files: Files, index: PackIndex, jobs: int = 8) -> list[tuple[ObjRef, int]]:
    """Every object the index names with its size, whole or chunked (a chunked file's
    size is in its map: the maps are read, with coalesced ranged reads)."""
    index.load()
    out: list[tuple[ObjRef, int]] = []
    maps: list[tuple[Part, Record]] = []
    for r in index.all_records():
        ref = ref_of(r.entry)
        if ref is not None:
            out.append((ref, r.entry.size))
        elif r.entry.kind == KIND_MAP:
            maps.append((Part(r.entry.digest, KIND_MAP), r))
    lock = threading.Lock()

    def sink(part: Part, data: bytes | DataverError) -> None:
        if isinstance(data, DataverError):
            raise data
        size, _, _ = packfmt.check_map(data, f"{part} on {files.where}")
        with lock:
            out.append((ObjRef(part.digest), size))

    if maps and read_many(files, maps, sink, jobs, limit=MAP_LIMIT):  # type: ignore[arg-type]
        raise RemoteError(f"{files.where} changed while it was listed (a pack vanished)", "run the command again")
    return out


# -- checking -----------------------------------------------------------------------------------
TAIL_READ = 256 * 1024  # one ranged read of a pack's end holds the trailer of ~5,000 objects


def check_packs(files: Files, index: PackIndex, deep: bool, jobs: int) -> list[tuple[str, str]]:
    """(what, problem) for every way the index and the packs disagree: a pack the index
    names is missing, or its trailer does not list an object as the index does. With
    ``deep``, every pack is read whole: its bytes must hash to its name and every object
    in it to its own (the chunks' and manifests' hashes included)."""
    index.load(force=True)
    sizes, _ = pack_sizes(files)
    problems: list[tuple[str, str]] = []

    def one(item: tuple[str, list[Record]]) -> list[tuple[str, str]]:
        pack, records = item
        rel = pack_rel(pack)
        out: list[tuple[str, str]] = []
        if pack not in sizes:
            return [(rel, f"missing on {files.where}; the index lists {len(records)} object(s) in it")]
        size = sizes[pack]
        try:
            if deep:
                data = files.read_file(rel)
                if packfmt.object_id(data) != pack:
                    out.append((rel, "its bytes do not hash to its name (damaged)"))
            else:
                data = files.read_file(rel, max(0, size - TAIL_READ))
                need = packfmt.trailer_length(data[-packfmt.PACK_TAIL_SIZE :], rel) + packfmt.PACK_TAIL_SIZE
                if need > len(data):
                    data = files.read_file(rel, max(0, size - need))
            entries = {e.key(): e for e in packfmt.parse_trailer(data, rel, size)}
        except IntegrityError as e:
            return out + [(rel, e.message)]
        for r in records:
            listed = entries.get(r.entry.key())
            item = item_of(r.entry)
            what = f"{item} in {rel}"
            if listed != r.entry:
                out.append((what, "the pack's trailer does not list it as the index does"))
                continue
            if deep:
                e = r.entry
                stored = data[e.offset : e.offset + e.stored]
                try:
                    body = decompress(stored, e.size, what) if e.codec == CODEC_ZSTD else stored
                    check_part(item, body, files.where)
                except IntegrityError:
                    out.append((what, "its bytes do not hash to its name (corrupt)"))
                    continue
                if e.kind == KIND_MAP:  # every chunk it names must be there
                    _, chunks = packfmt.parse_map(body, what)
                    lost = sum(1 for d, _ in chunks if not index.has_key(packfmt.entry_key(d, KIND_CHUNK)))
                    if lost:
                        out.append((what, f"names {lost} chunk(s) the index does not list"))
        return out

    from .concurrency import run_parallel

    for found in run_parallel(one, sorted(index.packs().items()), max(1, jobs if not deep else 2)):
        problems += found
    return problems
