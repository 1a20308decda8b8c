"""Small objects of the local cache, kept in packs (normative text: docs/formats.md,
"Cache packs").

One file per object costs a filesystem block (4 KiB here) and an inode each: a million
files of 300 bytes took 4.2 GB of cache for 325 MB of data, and most of ``add``'s system
time. So, while a command runs inside ``ObjectStore.packing()``, blobs of at most
``SMALL_BLOB`` bytes and manifests are appended to one pack instead (the pack format of
packed remotes, ``packfmt``). The pack is written under ``tmp/`` and renamed into
``packs/<id>.pack`` when it is full or the session ends. That rename is the moment its
objects appear: a writer killed before it leaves a temporary, never part of a pack.

A cache pack's entries are sorted by key. A reader finds an object by the first byte
of its digest: that byte's range of each pack's trailer (``_Pack.firsts``, one byte
per object, is all it keeps of a pack until asked), merged across packs into one
sorted table per byte and kind (``_Bucket``: 22 bytes per object), built on first use;
a bulk check of a whole folder builds one byte's key set at a time and drops it.

A reader keeps a file descriptor per pack: a pack that another process merges or
rewrites away (its live objects are in the new pack first) stays readable to it.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import shlex
import struct
import threading
import time
from array import array
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import xxhash

from . import packfmt
from .digest import Digest
from .errors import IntegrityError, StorageError
from .packfmt import CODEC_RAW, CODEC_ZSTD, ENTRY_SIZE, KIND_BLOB, KIND_MANIFEST, PACK_MAGIC, PACK_TAIL_SIZE, Entry
from .state import is_racy

SMALL_BLOB = 16 * 1024  # blobs of at most this many bytes are packed (larger ones waste < 1/8 of a block)
MAX_PACKED_MANIFEST = 4 * 1024 * 1024  # a larger manifest stays a file of its own
PACK_BYTES = 128 * 1024 * 1024  # a pack is closed when its body reaches this size...
PACK_OBJECTS = 32_768  # ...or this many objects (a writer holds ~300 bytes for each: ~10 MB)
PACK_MIN = 1024  # a session that stores fewer small objects leaves them loose (as git does)
EARLY_BYTES = 16 * 1024 * 1024  # ...held in memory until then, at most this much
MERGE_OVER = 16  # more small packs than this (each under a quarter of both bounds) are merged into one
_NAME = re.compile(r"[0-9a-f]{32}\.pack")
_KEY = struct.Struct(">QQ16xBxB13x")  # an entry's digest as two big-endian halves, kind, algorithm
_LOAD_TRIES = 5


def meta_of(kind: int, algorithm_id: int) -> int:
    return kind << 4 | algorithm_id


class _Pack:
    """One pack file, open: what a lookup needs of it is its trailer's first bytes."""

    __slots__ = ("path", "fd", "n", "trailer_at", "firsts")

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            size = os.fstat(self.fd).st_size
            if size < len(PACK_MAGIC) + PACK_TAIL_SIZE:
                raise IntegrityError(f"cache pack {path} is too short to be a pack")
            tlen = packfmt.trailer_length(_pread(self.fd, PACK_TAIL_SIZE, size - PACK_TAIL_SIZE, path), path)
            self.trailer_at = size - PACK_TAIL_SIZE - tlen
            if self.trailer_at < len(PACK_MAGIC):
                raise IntegrityError(f"cache pack {path} is shorter than its trailer says")
            raw = _pread(self.fd, tlen + 12, self.trailer_at, path)  # entries, n, check
            (check,) = struct.unpack("<Q", raw[-8:])
            if xxhash.xxh3_64_intdigest(raw[:-8]) != check:
                raise IntegrityError(f"cache pack {path} has a damaged trailer (its checksum does not match)")
            self.n = tlen // ENTRY_SIZE
            self.firsts = raw[0:tlen:ENTRY_SIZE]  # the first digest byte of each entry, in key order
        except BaseException:
            os.close(self.fd)
            raise

    def span(self, first: int) -> tuple[int, int]:
        """The entries whose digest starts with the byte ``first``: [lo, hi)."""
        return bisect.bisect_left(self.firsts, first), bisect.bisect_right(self.firsts, first)

    def raw_entries(self, lo: int, hi: int) -> bytes:
        return _pread(self.fd, (hi - lo) * ENTRY_SIZE, self.trailer_at + lo * ENTRY_SIZE, self.path)

    def entry(self, i: int) -> Entry:
        return self._checked(self.raw_entries(i, i + 1))

    def _checked(self, raw: bytes | memoryview) -> Entry:
        e = packfmt.unpack_entry(raw, f"cache pack {self.path}")
        if e.offset < len(PACK_MAGIC) or e.offset + e.stored > self.trailer_at:
            raise IntegrityError(f"cache pack {self.path} lists an object outside its body")
        return e

    def entries(self) -> list[Entry]:
        """Every entry, from one read of the trailer."""
        raw = memoryview(self.raw_entries(0, self.n))
        return [self._checked(raw[i : i + ENTRY_SIZE]) for i in range(0, len(raw), ENTRY_SIZE)]

    def read(self, e: Entry) -> bytes:
        return _pread(self.fd, e.stored, e.offset, self.path)

    def close(self) -> None:
        os.close(self.fd)


class _Bucket:
    """The packed objects of one kind and algorithm (``meta``) whose digest starts with
    one byte, sorted: the digest's first two 8-byte halves, and where each is (pack
    number, entry). One kind at a time: reading the few manifests of a tree does not
    build a table of the million blobs beside them."""

    __slots__ = ("his", "los", "packs", "index")

    def __init__(self, packs: list[_Pack], first: int, meta: int):
        rows = []
        for p, pack in enumerate(packs):
            lo, hi = pack.span(first)
            if lo < hi:
                raw = pack.raw_entries(lo, hi)
                rows += [
                    (h, low, p, i)
                    for i, (h, low, k, a) in enumerate(_KEY.iter_unpack(raw), lo)
                    if meta_of(k, a) == meta
                ]
        rows.sort()
        self.his = array("Q", (r[0] for r in rows))
        self.los = array("Q", (r[1] for r in rows))
        self.packs = array("H", (r[2] for r in rows))
        self.index = array("I", (r[3] for r in rows))

    def find(self, hi: int, lo: int) -> Iterator[tuple[int, int]]:
        """(pack number, entry) of each row with these halves."""
        i = bisect.bisect_left(self.his, hi)
        while i < len(self.his) and self.his[i] == hi:
            if self.los[i] == lo:
                yield self.packs[i], self.index[i]
            i += 1

    def keys(self) -> set[tuple[int, int]]:
        return set(zip(self.his, self.los, strict=True))


class _Writer:
    """The pack being written: its body goes to a temporary file as objects come, its
    entries stay in memory as their 48 trailer bytes, and the keys of what it holds in a
    set (~90 bytes per object; a dict of entry objects cost ~330 and left the heap
    fragmented), so a look-up sees them and an object put twice is stored once. Only
    manifests keep a readable entry (``entries``), for a fetch that reads a node it has
    just stored; reading a blob from here first writes the pack."""

    def __init__(self, fd: int, tmp: str):
        self.fd, self.tmp = fd, tmp
        self.hash = xxhash.xxh3_128()
        self.at = 0
        self._write(PACK_MAGIC)
        self.records = bytearray()
        self.count = 0
        self.keys: set[bytes] = set()  # entry_key of every object written here
        self.entries: dict[bytes, Entry] = {}  # manifests only

    def _write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.at)
            self.hash.update(view[:n])
            self.at += n
            view = view[n:]

    def add(self, digest: Digest, kind: int, stored: bytes, size: int, codec: int) -> None:
        key = packfmt.entry_key(digest, kind)
        if key in self.keys:
            return
        self.keys.add(key)
        e = Entry(digest, kind, codec, self.at, len(stored), size)
        if kind != KIND_BLOB:
            self.entries[key] = e
        self.records += packfmt.entry_bytes(e)
        self.count += 1
        self._write(stored)

    @property
    def unindexed(self) -> int:
        """How many objects written here have no readable entry (blobs)."""
        return self.count - len(self.entries)

    def full(self) -> bool:
        return self.at >= PACK_BYTES or self.count >= PACK_OBJECTS

    def read(self, e: Entry) -> bytes:
        return _pread(self.fd, e.stored, e.offset, self.tmp)

    def finish(self) -> str:
        """Write the trailer (entries in key order, each key once); the pack's id."""
        raw = self.records
        self.records = bytearray()
        ordered = sorted((bytes(raw[i : i + ENTRY_SIZE]) for i in range(0, len(raw), ENTRY_SIZE)), key=_record_key)
        del raw
        unique = [r for i, r in enumerate(ordered) if i == 0 or _record_key(r) != _record_key(ordered[i - 1])]
        self._write(packfmt.trailer_of(unique))
        os.fchmod(self.fd, 0o444)
        os.close(self.fd)
        self.fd = -1
        return self.hash.hexdigest()

    def abandon(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


class _Held:
    """Objects of a session not yet in a pack (fewer than ``PACK_MIN`` so far), as they
    came: a manifest is compressed only when it goes into a pack (holding both forms
    doubled what a fetch's first 1,000 tree nodes kept in memory)."""

    tmp = "memory"

    def __init__(self) -> None:
        self.entries: dict[bytes, Entry] = {}  # codec raw: what ``read`` gives is the object
        self.data: dict[bytes, bytes] = {}
        self.size = 0

    def add(self, digest: Digest, kind: int, data: bytes) -> None:
        key = packfmt.entry_key(digest, kind)
        if key not in self.entries:
            self.entries[key] = Entry(digest, kind, CODEC_RAW, 0, len(data), len(data))
            self.data[key] = data
            self.size += len(data)

    def read(self, e: Entry) -> bytes:
        return self.data[packfmt.entry_key(e.digest, e.kind)]


def _encoded(kind: int, data: bytes) -> tuple[bytes, int]:
    """The bytes a pack stores for an object, and their codec: a manifest compressed
    when that makes it smaller, a blob as it is."""
    if kind == KIND_MANIFEST:
        packed = packfmt.compress(data)
        if len(packed) < len(data):
            return packed, CODEC_ZSTD
    return data, CODEC_RAW


class CachePacks:
    """The packs of one cache: finding, reading, writing, rewriting packed objects.
    ``loose(digest, kind, data)`` stores one object as a file of its own (what a
    session of fewer than ``PACK_MIN`` small objects does with them)."""

    def __init__(self, root: str, mkstemp: Callable[[], tuple[int, str]], loose: Callable[[Digest, int, bytes], None]):
        self.dir = os.path.join(root, "packs")
        self._mkstemp = mkstemp
        self._loose = loose
        self._held = _Held()
        self._lock = threading.RLock()
        self._packs: list[_Pack] | None = None
        self._listed: int | None = None  # the packs folder's mtime when listed
        self._buckets: dict[tuple[int, int], _Bucket] = {}  # (first byte, meta) -> table
        self._writer: _Writer | None = None
        self._depth = 0
        self._retired: list[_Pack] = []  # gone from the listing; kept open for a reader mid-read
        self._ours: set[str] = set()  # packs this process wrote from bytes it had hashed (see ``fresh``)

    # -- sessions ---------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[None]:
        """Small objects put inside go into packs; every pack is written when the
        outermost session ends (an error inside too: what was stored is good)."""
        with self._lock:
            self._depth += 1
        ok = False
        try:
            yield
            ok = True
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    if ok:
                        self.flush()
                        self._merge_small()
                    else:
                        try:
                            self.flush()
                        except Exception:  # the error under way is the one to report
                            self._drop_writer()

    @property
    def active(self) -> bool:
        return self._depth > 0

    def put(self, digest: Digest, kind: int, data: bytes) -> None:
        """Store checked bytes in the pack being written (inside a session)."""
        encoded = _encoded(kind, data) if self._writer is not None else None  # outside the lock
        with self._lock:
            if self._writer is None:
                self._held.add(digest, kind, data)
                if len(self._held.entries) < PACK_MIN and self._held.size < EARLY_BYTES:
                    return
                held, self._held = self._held, _Held()
                self._writer = _Writer(*self._mkstemp())
                try:
                    for key, e in held.entries.items():
                        stored, codec = _encoded(e.kind, held.data[key])
                        self._writer.add(e.digest, e.kind, stored, e.size, codec)
                except BaseException:
                    self._drop_writer()
                    raise
                return
            try:
                stored, codec = encoded or _encoded(kind, data)
                self._writer.add(digest, kind, stored, len(data), codec)
                if self._writer.full():
                    self.flush()
            except BaseException:
                self._drop_writer()
                raise

    def flush(self) -> None:
        """Write the pack being built, if any, and make its objects visible."""
        try:
            self._flush()
        except OSError as e:
            raise StorageError(
                f"cannot write to the cache at {os.path.dirname(self.dir)}: {e.strerror or e}",
                "free some space or fix permissions, then re-run (nothing was half-written)",
            ) from None

    def _flush(self) -> None:
        with self._lock:
            if self._held.entries:  # too few to pack: files of their own
                held, self._held = self._held, _Held()
                for key, e in held.entries.items():
                    self._loose(e.digest, e.kind, held.data[key])
            writer, self._writer = self._writer, None
            if writer is None or not writer.count:
                if writer is not None:
                    writer.abandon()
                return
            try:
                pack_id = writer.finish()
                os.makedirs(self.dir, exist_ok=True)
                final = os.path.join(self.dir, f"{pack_id}.pack")
                if os.path.exists(final):  # the same bytes: the same objects
                    os.unlink(writer.tmp)
                else:
                    os.replace(writer.tmp, final)
            except BaseException:
                writer.abandon()
                raise
            self._add_pack(final)
            self._ours.add(final)

    def _drop_writer(self) -> None:
        self._held = _Held()
        if self._writer is not None:
            self._writer.abandon()
            self._writer = None

    def _add_pack(self, path: str) -> None:
        if self._packs is not None:
            self._packs.append(_Pack(path))
            self._buckets.clear()
            self._listed = _mtime(self.dir)  # our own change: no need to list again

    # -- finding ----------------------------------------------------------------------
    def _loaded(self) -> list[_Pack]:
        with self._lock:
            if self._packs is None:
                self._load()
            assert self._packs is not None
            return self._packs

    def _load(self) -> None:
        """List and open every pack. A pack removed between the listing and its open
        (another process merged it: its objects are in a newer pack) starts over."""
        for _ in range(_LOAD_TRIES):
            try:
                listed = os.stat(self.dir).st_mtime_ns
                names = sorted(n for n in os.listdir(self.dir) if _NAME.fullmatch(n))
            except FileNotFoundError:
                self._packs, self._listed = [], None
                return
            except NotADirectoryError:
                raise StorageError(
                    f"{self.dir} is not a folder, so the cache's packs cannot be read",
                    f"move it aside (mv {shlex.quote(self.dir)} {shlex.quote(self.dir + '.bad')}), then dataver "
                    "fetch --repair (or re-add the data) to bring back what it held",
                ) from None
            packs: list[_Pack] = []
            try:
                for name in names:
                    try:
                        packs.append(_Pack(os.path.join(self.dir, name)))
                    except IntegrityError:
                        continue  # a damaged trailer: its objects count as missing (status, verify say so)
            except FileNotFoundError:
                for p in packs:
                    p.close()
                continue
            self._packs, self._listed = packs, listed
            self._buckets.clear()
            return
        self._packs, self._listed = [], None

    def refresh(self) -> None:
        """See what other processes did to the packs since the listing (one stat when
        they did nothing): new packs are opened, gone ones retired (kept open: a reader
        may be reading one), the others kept as they are."""
        with self._lock:
            if self._packs is None:
                return
            now = _mtime(self.dir)
            if now == self._listed:
                return
            try:
                names = {n for n in os.listdir(self.dir) if _NAME.fullmatch(n)}
            except FileNotFoundError:
                names = set()
            kept = [p for p in self._packs if os.path.basename(p.path) in names]
            self._retired += [p for p in self._packs if os.path.basename(p.path) not in names]
            known = {os.path.basename(p.path) for p in kept}
            for name in sorted(names - known):
                try:
                    kept.append(_Pack(os.path.join(self.dir, name)))
                except (FileNotFoundError, IntegrityError):
                    continue  # merged away meanwhile (its objects are in a newer pack), or damaged
            self._packs, self._listed = kept, now
            self._buckets.clear()

    def _bucket(self, first: int, meta: int) -> tuple[list[_Pack], _Bucket]:
        """The packs and the table of one first byte and kind, taken together (the
        table's pack numbers index that list)."""
        with self._lock:
            packs = self._loaded()
            b = self._buckets.get((first, meta))
            if b is None:
                b = self._buckets[first, meta] = _Bucket(packs, first, meta)
            return packs, b

    def _find(self, digest: Digest, kind: int) -> tuple[_Pack | _Writer | _Held, Entry] | None:
        key = packfmt.entry_key(digest, kind)
        with self._lock:
            for w in (self._held, self._writer):
                if w is not None and key in w.entries:
                    return w, w.entries[key]
        raw = key[:32]
        hi, lo = struct.unpack(">QQ", raw[:16])
        packs, bucket = self._bucket(raw[0], meta_of(kind, key[33]))
        for p, i in bucket.find(hi, lo):
            e = packs[p].entry(i)
            if packfmt.entry_key(e.digest, e.kind) == key:
                return packs[p], e
        return None

    def pack_of(self, digest: Digest, kind: int) -> str | None:
        """The path of a pack holding the object (for messages), or None."""
        found = self._find(digest, kind)
        return found[0].path if found is not None and isinstance(found[0], _Pack) else None

    def holds(self, digest: Digest, kind: int) -> bool:
        key = packfmt.entry_key(digest, kind)
        with self._lock:
            if key in self._held.entries or self._writer is not None and key in self._writer.keys:
                return True
        if len(digest.hex) != 32:  # only 16 bytes are in the table: the entry says the rest
            return self._find(digest, kind) is not None
        if not self._loaded():
            return False
        hi, lo = struct.unpack(">QQ", key[:16])
        return next(self._bucket(key[0], meta_of(kind, key[33]))[1].find(hi, lo), None) is not None

    def fresh(self, digest: Digest, kind: int) -> bool:
        """Whether the object is packed by this process, from bytes it hashed: held, in
        the pack being written, or in a pack it wrote (not one it merged). A pull's
        checkout copies those without hashing them again, as it does the loose objects
        the cache's ``verified`` names, without a set that grows with the objects."""
        found = self._find(digest, kind)
        if found is None:
            return False
        where = found[0]
        return not isinstance(where, _Pack) or where.path in self._ours

    def read(self, digest: Digest, kind: int) -> bytes | None:
        """The object's bytes (not checked against its digest), or None if no pack
        holds it. IntegrityError if its stored bytes cannot be turned back."""
        found = self._find(digest, kind)
        if found is None:
            with self._lock:
                if self._writer is not None and self._writer.unindexed:
                    self.flush()  # a blob stored moments ago is listed only once its pack is written
            # Look again even when there was nothing to flush: another thread's flush may
            # have listed it between our look and the lock.
            found = self._find(digest, kind)
            if found is None:
                return None
        where, e = found
        if not isinstance(where, _Writer):  # a pack, or held in memory (a flush keeps it readable)
            stored = where.read(e)
        else:  # in the pack being written: another thread's flush may close that pack
            with self._lock:  # meanwhile, so look again and read with no flush running
                found = self._find(digest, kind)
                if found is None:
                    return None
                where, e = found
                stored = where.read(e)
        what = f"{'manifest' if kind == KIND_MANIFEST else 'blob'} {digest.short()} in cache pack {_name(where)}"
        if len(stored) != e.stored:
            raise IntegrityError(f"{what} is cut short")
        if e.codec == CODEC_ZSTD:
            return packfmt.decompress(stored, e.size, what)
        return stored

    def present(self, raws: Iterable[bytes], algorithm_id: int, kind: int = KIND_BLOB) -> Iterator[bytes]:
        """Which of ``raws`` (whole digests as bytes, of one algorithm, all starting with
        one byte) are packed: that byte's digests as a set of bytes, made for this query
        and dropped after it (a whole folder's check holds one byte's objects at a time),
        then one set look-up each."""
        raws = list(raws)
        with self._lock:
            writing = self._writer.keys if self._writer is not None else set()
            pending = [p for p in (writing, self._held.entries) if p]  # this session's, not yet written
        if not raws or not self._loaded() and not pending:
            return
        tag = bytes((kind, algorithm_id))
        width = len(raws[0])
        keys: set[bytes] = set()
        for pack in self._loaded():
            lo, hi = pack.span(raws[0][0])
            if lo < hi:
                rec = pack.raw_entries(lo, hi)
                n = hi - lo
                if rec[32::ENTRY_SIZE].count(kind) == n and rec[34::ENTRY_SIZE].count(algorithm_id) == n:
                    keys.update(_digests(width, n).unpack(rec))  # all of this kind: one C call
                else:
                    keys.update(
                        rec[i : i + width]
                        for i in range(0, len(rec), ENTRY_SIZE)
                        if rec[i + 32] == kind and rec[i + 34] == algorithm_id
                    )
        for raw in raws:
            if raw in keys or pending and any(raw.ljust(32, b"\0") + tag in p for p in pending):
                yield raw

    # -- listing, removing ------------------------------------------------------------
    def iter_objects(self) -> Iterator[tuple[Digest, int, int]]:
        """(digest, kind, size) of every packed object (a damaged pack is skipped);
        what this session stored is written first, so it is listed too."""
        self.flush()
        for pack in list(self._loaded()):
            try:
                entries = pack.entries()
            except IntegrityError:
                continue
            for e in entries:
                if e.kind in (KIND_BLOB, KIND_MANIFEST):
                    yield e.digest, e.kind, e.size

    def drop(self, keys: set[bytes]) -> int:
        """Remove the objects with these ``entry_key``s: each pack holding one is
        rewritten without them (the new pack first, then the old one removed).
        Returns how many packs were rewritten. The caller holds the cache exclusively.
        What this session stored is written first (it may be among them)."""
        self.flush()
        self.refresh()
        rewritten = 0
        for pack in list(self._loaded()):
            raw = pack.raw_entries(0, pack.n)
            if any(raw[i : i + 33] + raw[i + 34 : i + 35] in keys for i in range(0, len(raw), ENTRY_SIZE)):
                self._rewrite([pack], keys)
                rewritten += 1
        return rewritten

    def _rewrite(self, old: list[_Pack], drop: set[bytes]) -> None:
        """One new pack holding the objects of ``old`` except ``drop``'s, then ``old``
        removed. A pack that ends up empty is only removed."""
        with self._lock:
            self.flush()
            writer: _Writer | None = None
            try:
                for pack in old:
                    for e in pack.entries():
                        if packfmt.entry_key(e.digest, e.kind) in drop:
                            continue
                        if writer is None:
                            writer = _Writer(*self._mkstemp())
                        stored = pack.read(e)
                        if len(stored) != e.stored:
                            raise IntegrityError(f"cache pack {pack.path} is cut short")
                        writer.add(e.digest, e.kind, stored, e.size, e.codec)
                if writer is not None:
                    self._writer, writer = writer, None
                    self.flush()
            finally:
                if writer is not None:
                    writer.abandon()
            for pack in old:
                try:
                    os.unlink(pack.path)
                except FileNotFoundError:
                    pass
                if self._packs is not None and pack in self._packs:
                    self._packs.remove(pack)
                self._retired.append(pack)
            self._buckets.clear()
            self._listed = _mtime(self.dir)

    def _merge_small(self) -> None:
        """Keep look-ups to a few packs: when more than ``MERGE_OVER`` packs are small
        (under a quarter of both bounds: many short adds), write them as one."""
        try:
            self.refresh()
            small = [p for p in self._loaded() if p.trailer_at < PACK_BYTES // 4 and p.n < PACK_OBJECTS // 4]
            if len(small) > MERGE_OVER:
                self._rewrite(small, set())
        except (OSError, IntegrityError, StorageError):
            pass  # merging is an optimisation: the packs stay as they are

    def stamp(self) -> str | None:
        """Changes when a pack is added or removed (the packs folder's mtime); None
        while that is too recent to tell (the stat cache's racy rule)."""
        try:
            st = os.stat(self.dir)
        except FileNotFoundError:
            return "-"
        return None if is_racy(st.st_mtime_ns, time.time_ns()) else str(st.st_mtime_ns)

    def close(self) -> None:
        with self._lock:
            self._drop_writer()
            for p in (self._packs or []) + self._retired:
                p.close()
            self._packs, self._retired = None, []
            self._buckets.clear()


@functools.lru_cache(maxsize=512)
def _digests(width: int, n: int) -> struct.Struct:
    """Unpacks the digests (their first ``width`` bytes) of ``n`` entries in a row."""
    return struct.Struct(f"{width}s{ENTRY_SIZE - width}x" * n)


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def _record_key(raw: bytes) -> bytes:
    return packfmt.record_key(raw)


def _name(where: _Pack | _Writer | _Held) -> str:
    return where.path if isinstance(where, _Pack) else where.tmp


def _pread(fd: int, n: int, offset: int, path: str) -> bytes:
    data = os.pread(fd, n, offset)
    while len(data) < n:
        more = os.pread(fd, n - len(data), offset + len(data))
        if not more:
            raise IntegrityError(f"cache pack {path} is cut short")
        data += more
    return data
