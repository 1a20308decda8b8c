"""The pack, index and marker formats of a packed remote (normative text and test
vectors: docs/formats.md, "Packed remotes"). Pure functions over bytes: no I/O.

A **pack** holds many objects: a header, the objects' stored bytes one after another,
then a trailer that lists them, so an index can be rebuilt from packs alone::

    "DVPACK\\x00\\x01"  ‖  stored bytes ...  ‖  entry × n  ‖  u32 n  ‖  u64 check  ‖  "DVPKEND\\x01"

An **index** file lists objects in several packs, sorted by key, with a fixed record
size, so a reader that knows the file's size can find one object with one ranged read
(the digests are uniform: interpolation) instead of loading the whole file::

    "DVINDEX\\x01"  ‖  record × n  ‖  u32 n  ‖  u32 0  ‖  u64 check

``check`` is XXH3-64 (seed 0) of everything before it (pack: of the trailer entries
and ``n``; index: of the header and records). Integers are little-endian. A pack or
index is named by the XXH3-128 (seed 0) of its whole bytes: ``packs/<hex>.pack``,
``index/<hex>.idx``; both are written once and never modified.

Entries are made for chunks too: an entry is a kind, a codec, a hash algorithm and a
digest, so a pack can hold any mix. A big file can be stored as **chunks** (kind 2, each
named by the digest of its bytes) and a **map** (kind 3, named by the *file's* digest):
the file's size and its chunks in order::

    "DVCHUNKS"  ‖  u64 file size  ‖  u32 n  ‖  u8 algorithm  ‖  3 × u8 0  ‖  (digest(32) ‖ u32 length) × n
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import xxhash

from .digest import ALGORITHMS, Digest
from .errors import DataverError, IntegrityError

PACK_MAGIC = b"DVPACK\x00\x01"
PACK_END = b"DVPKEND\x01"
INDEX_MAGIC = b"DVINDEX\x01"

KIND_BLOB, KIND_MANIFEST, KIND_CHUNK, KIND_MAP = 0, 1, 2, 3
KINDS = (KIND_BLOB, KIND_MANIFEST, KIND_CHUNK, KIND_MAP)
CODEC_RAW, CODEC_ZSTD = 0, 1
# Hash algorithms by number (the registry's names; a digest is stored in 32 bytes,
# zero-padded on the right when shorter).
ALGORITHM_IDS = {"xxh3-128": 1, "blake3": 2}
ALGORITHM_NAMES = {v: k for k, v in ALGORITHM_IDS.items()}
DIGEST_FIELD = 32

# pack trailer entry: digest(32) kind(1) codec(1) algorithm(1) reserved(1) offset(4) stored(4) size(4)
_ENTRY = struct.Struct("<32sBBBxIII")
# index record: the same, then the pack's id (16 bytes)
_RECORD = struct.Struct("<32sBBBxIII16s")
ENTRY_SIZE = _ENTRY.size  # 48
RECORD_SIZE = _RECORD.size  # 64
INDEX_HEADER = len(INDEX_MAGIC)
_INDEX_TAIL = struct.Struct("<IIQ")  # n, 0, check
INDEX_OVERHEAD = INDEX_HEADER + _INDEX_TAIL.size
MAX_PACK_BYTES = 2**32 - 1  # offsets and lengths are u32


@dataclass(frozen=True, slots=True)
class Entry:
    """One object in a pack: where its stored bytes are, and how to turn them back."""

    digest: Digest
    kind: int
    codec: int
    offset: int  # of the stored bytes, from the start of the pack
    stored: int  # stored (maybe compressed) length
    size: int  # the object's own length

    def key(self) -> bytes:
        return entry_key(self.digest, self.kind)


@dataclass(frozen=True, slots=True)
class Record:
    """An index record: an entry and the pack that holds it."""

    entry: Entry
    pack: str  # the pack's id, 32 hex digits


def entry_key(digest: Digest, kind: int) -> bytes:
    """The sort and lookup key: the digest field, then kind, then algorithm."""
    return _digest_field(digest) + bytes((kind, ALGORITHM_IDS[digest.algorithm]))


def object_id(data: bytes | bytearray | memoryview) -> str:
    """The name of a pack or index file: XXH3-128 (seed 0) of its bytes, hex."""
    return xxhash.xxh3_128_hexdigest(data)


def _digest_field(digest: Digest) -> bytes:
    return bytes.fromhex(digest.hex).ljust(DIGEST_FIELD, b"\0")


def _digest_from(field: bytes, algorithm_id: int, where: str) -> Digest:
    name = ALGORITHM_NAMES.get(algorithm_id)
    if name is None:
        raise IntegrityError(f"{where} names an unknown hash algorithm (number {algorithm_id})")
    length = _hex_length(name) // 2
    if any(field[length:]):
        raise IntegrityError(f"{where} has a malformed {name} digest")
    try:
        return Digest(name, field[:length].hex())
    except DataverError as e:  # an algorithm this build does not hash with
        raise IntegrityError(f"{where}: {e.message}") from None


def _hex_length(algorithm: str) -> int:
    return ALGORITHMS[algorithm].hex_length


def _pack_entry(e: Entry) -> bytes:
    return _ENTRY.pack(
        _digest_field(e.digest), e.kind, e.codec, ALGORITHM_IDS[e.digest.algorithm], e.offset, e.stored, e.size
    )


def _unpack_entry(raw: bytes | memoryview, where: str) -> Entry:
    field, kind, codec, algo, offset, stored, size = _ENTRY.unpack(raw)
    if kind not in KINDS or codec not in (CODEC_RAW, CODEC_ZSTD):
        raise IntegrityError(f"{where} has an entry of unknown kind {kind} or codec {codec}")
    if codec == CODEC_RAW and stored != size:
        raise IntegrityError(f"{where} has a raw entry whose stored length is not its size")
    return Entry(_digest_from(field, algo, where), kind, codec, offset, stored, size)


class PackBuilder:
    """Build one pack in memory: ``add`` objects, then ``finish`` for (id, bytes, entries).

    The objects' bytes are appended to one buffer as they are added (a large buffer is
    its own mapping, so growing it moves pages rather than copying them), and
    ``finish`` hands that buffer over as the pack: the pack is never in memory twice."""

    def __init__(self) -> None:
        self.buf = bytearray(PACK_MAGIC)
        self.entries: list[Entry] = []

    def __len__(self) -> int:
        return len(self.buf)

    @property
    def size(self) -> int:
        return len(self.buf)

    def add(self, digest: Digest, kind: int, stored: bytes | memoryview, size: int, codec: int = CODEC_RAW) -> Entry:
        entry = Entry(digest, kind, codec, len(self.buf), len(stored), size)
        self.buf += stored
        self.entries.append(entry)
        return entry

    def finish(self) -> tuple[str, bytearray, list[Entry]]:
        """The pack's id, bytes and entries; the builder is empty afterwards."""
        tail = encode_trailer(self.entries)
        if len(self.buf) + len(tail) > MAX_PACK_BYTES:
            raise ValueError("a pack must stay under 4 GiB")
        data, self.buf = self.buf, bytearray()
        data += tail
        return object_id(data), data, self.entries


def encode_trailer(entries: Sequence[Entry]) -> bytes:
    """What ends a pack: its entries in the order given, n, the check, the end magic."""
    return trailer_of([_pack_entry(e) for e in entries])


def trailer_of(raw_entries: Sequence[bytes]) -> bytes:
    """``encode_trailer`` for entries already packed (48 bytes each, ``entry_bytes``)."""
    trailer = b"".join(raw_entries) + struct.pack("<I", len(raw_entries))
    return trailer + struct.pack("<Q", xxhash.xxh3_64_intdigest(trailer)) + PACK_END


def entry_bytes(e: Entry) -> bytes:
    """An entry as the 48 bytes a trailer holds."""
    return _pack_entry(e)


def unpack_entry(raw: bytes | memoryview, where: str) -> Entry:
    """One 48-byte trailer entry, checked (kind, codec, algorithm, padding)."""
    return _unpack_entry(raw, where)


PACK_TAIL_SIZE = 4 + 8 + len(PACK_END)  # n, check, end magic


def trailer_length(tail: bytes, where: str) -> int:
    """From the last ``PACK_TAIL_SIZE`` bytes of a pack (n, check, end magic), the
    length of the entries that precede them."""
    if len(tail) != PACK_TAIL_SIZE or tail[-len(PACK_END) :] != PACK_END:
        raise IntegrityError(f"{where} is not a dataver pack (no end marker)")
    (n,) = struct.unpack("<I", tail[:4])
    return n * ENTRY_SIZE


def parse_trailer(data: bytes, where: str, pack_size: int | None = None) -> list[Entry]:
    """The entries of a pack from its last bytes: ``data`` is the pack's tail, at least
    the trailer and the fixed tail (the whole pack will do)."""
    if len(data) < PACK_TAIL_SIZE:
        raise IntegrityError(f"{where} is too short to be a dataver pack")
    tlen = trailer_length(data[-PACK_TAIL_SIZE:], where)
    if len(data) < tlen + PACK_TAIL_SIZE:
        raise IntegrityError(f"{where} is shorter than its trailer says")
    trailer = data[len(data) - PACK_TAIL_SIZE - tlen : len(data) - PACK_TAIL_SIZE + 4]  # entries and n
    (check,) = struct.unpack("<Q", data[-PACK_TAIL_SIZE + 4 : -len(PACK_END)])
    if xxhash.xxh3_64_intdigest(trailer) != check:
        raise IntegrityError(f"{where} has a damaged trailer (its checksum does not match)")
    n = tlen // ENTRY_SIZE
    entries = [_unpack_entry(trailer[i * ENTRY_SIZE : (i + 1) * ENTRY_SIZE], where) for i in range(n)]
    limit = pack_size - PACK_TAIL_SIZE - tlen if pack_size is not None else None
    for e in entries:
        if e.offset < len(PACK_MAGIC) or (limit is not None and e.offset + e.stored > limit):
            raise IntegrityError(f"{where} lists an object outside its body")
    return entries


# -- chunk maps ---------------------------------------------------------------------------
MAP_MAGIC = b"DVCHUNKS"
_MAP_HEAD = struct.Struct("<8sQIB3x")
_MAP_ITEM = struct.Struct("<32sI")
MAP_ITEM_SIZE = _MAP_ITEM.size  # 36
MAP_CHUNK_MAX = 8 * 1024 * 1024  # a map naming a longer chunk is refused (dataver cuts at most 256 KiB)


def encode_map(size: int, algorithm: str, chunks: Sequence[tuple[Digest, int]]) -> bytes:
    """A chunked file's map: its size, then its chunks (digest, length) in file order."""
    return map_head(size, algorithm, len(chunks)) + b"".join(map_item(d, n) for d, n in chunks)


def map_head(size: int, algorithm: str, n: int) -> bytes:
    return _MAP_HEAD.pack(MAP_MAGIC, size, n, ALGORITHM_IDS[algorithm])


def map_item(digest: Digest, length: int) -> bytes:
    return _MAP_ITEM.pack(_digest_field(digest), length)


def check_map(data: bytes | memoryview, where: str) -> tuple[int, int, str]:
    """(file size, chunk count, algorithm) of a map, every length checked (each 1 to
    MAP_CHUNK_MAX bytes, adding up to the size), without building its list: a rebuild
    then reads it ``iter_map`` a window at a time, so memory does not grow with the file."""
    if len(data) < _MAP_HEAD.size:
        raise IntegrityError(f"{where} is too short to be a chunk map")
    magic, size, n, algo = _MAP_HEAD.unpack(data[: _MAP_HEAD.size])
    if magic != MAP_MAGIC:
        raise IntegrityError(f"{where} is not a chunk map")
    if len(data) != _MAP_HEAD.size + n * MAP_ITEM_SIZE:
        raise IntegrityError(f"{where} is not as long as its {n} chunk(s) need")
    name = ALGORITHM_NAMES.get(algo)
    if name is None:
        raise IntegrityError(f"{where} names an unknown hash algorithm (number {algo})")
    width = _hex_length(name) // 2
    _digest_from(bytes(32), algo, where)  # an algorithm this build hashes with
    pad = bytes(32 - width)
    total = 0
    for field, length in _MAP_ITEM.iter_unpack(memoryview(data)[_MAP_HEAD.size :]):
        if not 0 < length <= MAP_CHUNK_MAX:
            raise IntegrityError(f"{where} has a chunk of {length} bytes")
        if field[width:] != pad:
            raise IntegrityError(f"{where} has a malformed {name} digest")
        total += length
    if total != size:
        raise IntegrityError(f"{where}: its chunks add up to {total} bytes, not {size}")
    return size, n, name


def iter_map(data: bytes | memoryview, where: str) -> Iterator[tuple[Digest, int]]:
    """(chunk digest, length) of each chunk of a map ``check_map`` passed, in order (the
    checks were all made there: a rebuild writes nothing before the whole map passed)."""
    algo = _MAP_HEAD.unpack(data[: _MAP_HEAD.size])[3]
    for field, length in _MAP_ITEM.iter_unpack(memoryview(data)[_MAP_HEAD.size :]):
        yield _digest_from(field, algo, where), length


def parse_map(data: bytes | memoryview, where: str) -> tuple[int, list[tuple[Digest, int]]]:
    """(file size, [(chunk digest, length), ...]) of a map, every field checked."""
    size, _, _ = check_map(data, where)
    return size, list(iter_map(data, where))


# -- index files ------------------------------------------------------------------------
def encode_index(records: Iterable[Record]) -> tuple[str, bytes]:
    """An index file holding ``records`` (sorted here; one record per key: the first
    given wins). Returns (id, bytes)."""
    by_key: dict[bytes, Record] = {}
    for r in records:
        by_key.setdefault(r.entry.key(), r)
    body = bytearray(INDEX_MAGIC)
    for key in sorted(by_key):
        body += pack_record(by_key[key])
    body += struct.pack("<II", len(by_key), 0)
    body += struct.pack("<Q", xxhash.xxh3_64_intdigest(body))
    data = bytes(body)
    return object_id(data), data


def index_count(size: int) -> int | None:
    """How many records an index file of ``size`` bytes holds (None if no index has it)."""
    n, rest = divmod(size - INDEX_OVERHEAD, RECORD_SIZE)
    return n if n >= 0 and rest == 0 else None


def parse_index(data: bytes, where: str) -> list[Record]:
    """Every record of a whole index file, checked (magic, length, checksum, order, and
    each record's fields)."""
    body = check_index(data, where)
    return parse_records(body, where)


def parse_records(raw: bytes | bytearray | memoryview, where: str) -> list[Record]:
    """Records from a run of whole records (part of an index file's body)."""
    out = []
    for i in range(0, len(raw) - len(raw) % RECORD_SIZE, RECORD_SIZE):
        field, kind, codec, algo, offset, stored, size, pack = _RECORD.unpack(raw[i : i + RECORD_SIZE])
        entry = _unpack_entry(_ENTRY.pack(field, kind, codec, algo, offset, stored, size), where)
        out.append(Record(entry, pack.hex()))
    return out


def lookup_window(n: int, key: bytes) -> tuple[int, int]:
    """Byte range ``[start, end)`` of an index file with ``n`` records in which the
    record with ``key`` lies, almost surely (digests are uniform, so its rank is close
    to ``n × key/2^64``; the window is ±(4·√n + 16) records). A reader that does not
    find it there, and whose key sorts outside the window's records, reads the rest."""
    if n == 0:
        return INDEX_HEADER, INDEX_HEADER
    guess = int(n * int.from_bytes(key[:8], "big") / 2**64)
    spread = int(4 * n**0.5) + 16
    lo, hi = max(0, guess - spread), min(n, guess + spread + 1)
    return INDEX_HEADER + lo * RECORD_SIZE, INDEX_HEADER + hi * RECORD_SIZE


def find_in(records: Sequence[Record], key: bytes) -> Record | None:
    for r in records:
        if r.entry.key() == key:
            return r
    return None


def record_key(raw: bytes | bytearray | memoryview) -> bytes:
    """The key of a packed record (``entry_key`` of its entry), without parsing it."""
    return bytes(raw[:33]) + bytes(raw[34:35])


def pack_record(r: Record) -> bytes:
    e = r.entry
    return _RECORD.pack(
        _digest_field(e.digest),
        e.kind,
        e.codec,
        ALGORITHM_IDS[e.digest.algorithm],
        e.offset,
        e.stored,
        e.size,
        bytes.fromhex(r.pack),
    )


class IndexCheck:
    """``check_index`` for an index file read in pieces, in order, each piece's edges on
    record boundaries (the first piece holds the magic; the last, the tail): ``feed``
    returns a piece's records, checked for order against everything fed before;
    ``finish`` checks the count and checksum and returns the file's ``object_id``.
    Records fed before a failing ``finish`` are not to be used."""

    def __init__(self, size: int, where: str):
        n = index_count(size)
        if n is None:
            raise IntegrityError(f"{where} is not a dataver index file")
        self.n, self.size, self.where = n, size, where
        self.at = 0
        self.name = xxhash.xxh3_128()
        self.check = xxhash.xxh3_64()
        self.last = b""
        self.tail = b""

    def feed(self, data: bytes | bytearray) -> memoryview:
        start, self.at = self.at, self.at + len(data)
        if self.at > self.size:
            raise IntegrityError(f"{self.where} is longer than listed")
        if start == 0 and bytes(data[:INDEX_HEADER]) != INDEX_MAGIC:
            raise IntegrityError(f"{self.where} is not a dataver index file")
        self.name.update(data)
        self.check.update(memoryview(data)[: max(0, self.size - 8 - start)])
        body_end = INDEX_HEADER + self.n * RECORD_SIZE
        lo, hi = max(start, INDEX_HEADER), min(self.at, body_end)
        if self.at > body_end:
            self.tail += bytes(data[max(0, body_end - start) :])
        body = memoryview(data)[lo - start : hi - start] if lo < hi else memoryview(b"")
        if len(body) % RECORD_SIZE:
            raise IntegrityError(f"{self.where} was read in pieces that split a record")
        last = self.last
        for i in range(0, len(body), RECORD_SIZE):
            key = record_key(body[i : i + RECORD_SIZE])
            if key <= last:
                raise IntegrityError(f"{self.where} is not sorted")
            last = key
        self.last = last
        return body

    def finish(self) -> str:
        if self.at != self.size:
            raise IntegrityError(f"{self.where} is shorter than listed")
        count, _, check = _INDEX_TAIL.unpack(self.tail)
        if count != self.n or self.check.intdigest() != check:
            raise IntegrityError(f"{self.where} is damaged (its count or checksum does not match)")
        return self.name.hexdigest()


def check_index(data: bytes, where: str) -> memoryview:
    """The records region of a whole index file, after the checks that need no parsing
    (magic, length, count, checksum, order); each record is parsed when it is used.
    Holds two keys at a time, not a list of them (an index file of a million objects)."""
    n = index_count(len(data))
    if n is None or data[:INDEX_HEADER] != INDEX_MAGIC:
        raise IntegrityError(f"{where} is not a dataver index file")
    count, _, check = _INDEX_TAIL.unpack(data[-_INDEX_TAIL.size :])
    if count != n or xxhash.xxh3_64_intdigest(data[:-8]) != check:
        raise IntegrityError(f"{where} is damaged (its count or checksum does not match)")
    body = memoryview(data)[INDEX_HEADER : INDEX_HEADER + n * RECORD_SIZE]
    last = b""
    for i in range(0, len(body), RECORD_SIZE):
        key = record_key(body[i : i + RECORD_SIZE])
        if key <= last:
            raise IntegrityError(f"{where} is not sorted")
        last = key
    return body


# -- compression (zstd, imported on first use) ---------------------------------------
def compress(data: bytes, level: int = 3) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(data)


def decompress(stored: bytes, size: int, where: str) -> bytes:
    import zstandard

    try:  # a stream read at most one byte past the size: a frame cannot inflate further
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(stored)) as reader:
            out = reader.read(size + 1)
    except zstandard.ZstdError:
        raise IntegrityError(f"{where} does not decompress") from None
    if len(out) != size:
        raise IntegrityError(f"{where} decompresses to {len(out)} bytes, not {size}")
    return out
