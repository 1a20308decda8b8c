"""Big files on a packed remote as content-defined chunks (docs/formats.md, "Chunked
files"): a new version of a big file costs only the chunks it does not share.

A blob of ``CHUNKED_MIN`` bytes or more is stored as its chunks (``chunker`` cuts them;
each is named by the digest of its bytes) and a map naming them in order, itself named
by the *file's* digest. Pointers, manifests and the cache are unchanged: they name
whole files, and the local cache keeps whole files (checkout links them).

- **push** (``split``): the file is read once, in ``CHUNK_SIZE`` blocks; each block feeds
  the whole-file hash (the put is verified like any other) and the chunker; chunks the
  remote's index and this push lack go into packs of their own (``PackWriter.sequence``),
  then the map.
- **fetch** (``rebuild``): the map is read, then each chunk is taken from a file already
  in the cache that holds it (their maps are kept in the cache's ``maps/``) or read from
  the packs with coalesced ranged reads. Every chunk is hashed before it is written, and
  the caller hashes the whole file before it gets its name.
- **gc** (``live_chunks``): the maps that stay are read, and a chunk none of them names
  is garbage like an unused object.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import defaultdict
from typing import Callable, Iterable

from . import chunker, packfmt
from .digest import Digest, get_algorithm
from .errors import IntegrityError, ObjectsMissing
from .hashing import CHUNK_SIZE
from .packfmt import KIND_CHUNK, KIND_MAP, Record
from .packstore import Files, PackIndex, Part, PartRun, read_entry, read_many
from .store import ObjRef

CHUNKED_MIN = 1 << 20  # blobs this large or larger are stored chunked on a packed remote
MAP_MAX = 64 << 20  # a map larger than this is refused; files that could need one stay whole
# Files above this could need a larger map (every chunk at chunker.MIN): they stay whole.
CHUNKED_MAX = MAP_MAX // packfmt.MAP_ITEM_SIZE * chunker.MIN


def chunkable(ref: ObjRef, size: int) -> bool:
    """Whether a packed remote stores ``ref`` (of ``size`` bytes) chunked."""
    return not ref.manifest and CHUNKED_MIN <= size <= CHUNKED_MAX


# -- push --------------------------------------------------------------------------------------
def split(
    ref: ObjRef,
    readinto: Callable[[memoryview], int],
    size: int,
    seq: PartRun,
    where: str,
    encode: Callable[[list[memoryview]], list[tuple[bytes | memoryview, int]]] | None = None,
) -> bytes:
    """Cut the ``size`` bytes that ``readinto(buffer)`` fills in (like a file's) into
    chunks, add the new ones to ``seq``, check the whole against ``ref``; returns the map
    (the caller adds it). ``encode``: compresses a block's new chunks (on several
    threads; zstd releases the GIL), in order. One buffer of ``CHUNK_SIZE`` plus the
    largest chunk serves the whole file; the pack being built copies what it keeps."""
    algo = get_algorithm(ref.digest.algorithm)
    whole = algo.new_file_hash(size, CHUNK_SIZE, 1) if size > CHUNK_SIZE else None
    small_hex = ""
    items = bytearray()
    n_chunks = total = 0
    buf = bytearray(chunker.MAX + CHUNK_SIZE)
    view = memoryview(buf)
    carry = 0  # bytes at the start of buf that the last block left uncut
    block_no = 0
    try:
        while True:
            n = _fill(readinto, view[carry : carry + CHUNK_SIZE])
            eof = n < CHUNK_SIZE
            if n:
                block = view[carry : carry + n]
                if whole is not None:
                    whole.feed(block_no, block)
                elif block_no == 0:
                    small_hex = algo.hash_small(block)
                block_no += 1
            data = view[: carry + n]
            cuts = list(chunker.cuts(data))
            keep = len(data)
            if not eof and cuts:  # the last cut may only be where this block ends: cut again with more
                keep = cuts.pop()[0]
            new: dict[Part, memoryview] = {}
            for off, length in cuts:
                piece = data[off : off + length]
                part = Part(Digest(algo.name, algo.hash_small(piece)), KIND_CHUNK)
                if part not in new and seq.wants(part):
                    new[part] = piece
                items += packfmt.map_item(part.digest, length)
                n_chunks += 1
                total += length
            stored = encode(list(new.values())) if encode is not None and new else [None] * len(new)
            for (part, piece), enc in zip(new.items(), stored, strict=True):
                seq.add(part, piece, enc)  # type: ignore[arg-type]
            del new, stored
            if eof:
                break
            carry = len(data) - keep  # at most one chunk: it cannot overlap where it moves from
            view[:carry] = view[keep : keep + carry]
    finally:
        view.release()
    actual = whole.hexdigest() if whole is not None else small_hex
    if actual != ref.digest.hex or total != size:
        raise IntegrityError(f"{ref} does not match its bytes (they hash to {actual[:12]}...); not stored in {where}")
    return packfmt.map_head(size, algo.name, n_chunks) + bytes(items)


def _fill(readinto: Callable[[memoryview], int], into: memoryview) -> int:
    """Fill ``into`` from ``readinto`` up to its end or the end of the data."""
    got = 0
    while got < len(into):
        n = readinto(into[got:])
        if not n:
            break
        got += n
    return got


def reader_of(data: bytes | memoryview) -> Callable[[memoryview], int]:
    """A ``readinto`` over bytes in memory."""
    src = memoryview(data)
    at = 0

    def readinto(into: memoryview) -> int:
        nonlocal at
        n = min(len(into), len(src) - at)
        into[:n] = src[at : at + n]
        at += n
        return n

    return readinto


# -- fetch -------------------------------------------------------------------------------------
class LocalChunks:
    """Chunks that whole files in the cache already hold, found through the maps the
    cache keeps of them (``maps/<algorithm>/<hex>``, written when a file is pushed or
    rebuilt). A hint only: a chunk taken from here is hashed before it is used."""

    def __init__(self, cache: object):
        self.cache = cache
        self._where: dict[Digest, tuple[str, int, int]] | None = None
        self._lock = threading.Lock()

    def find(self, digest: Digest) -> tuple[str, int, int] | None:
        with self._lock:
            if self._where is None:
                self._where = self._scan()
        return self._where.get(digest)

    def _scan(self) -> dict[Digest, tuple[str, int, int]]:
        out: dict[Digest, tuple[str, int, int]] = {}
        for digest, path in self.cache.chunk_maps():  # type: ignore[attr-defined]
            blob = self.cache.blob_path(digest)  # type: ignore[attr-defined]
            try:
                with open(path, "rb") as f:
                    _, chunks = packfmt.parse_map(f.read(MAP_MAX + 1), path)
            except (OSError, IntegrityError):
                continue  # a damaged hint is no hint
            at = 0
            for d, length in chunks:
                out.setdefault(d, (blob, at, length))
                at += length
        return out


def read_map(files: Files, record: Record, where: str) -> tuple[bytes, int]:
    """(map bytes, file size) of a map record, checked (``packfmt.check_map``); its
    chunks are then read with ``packfmt.iter_map``."""
    if record.entry.size > MAP_MAX:
        raise IntegrityError(f"the chunk map of {record.entry.digest} on {where} claims {record.entry.size} bytes")
    data = read_entry(files, record)
    what = f"the chunk map of {record.entry.digest} on {where}"
    size, _, algorithm = packfmt.check_map(data, what)
    if algorithm != record.entry.digest.algorithm:
        raise IntegrityError(f"{what} names chunks of another algorithm")
    return data, size


REBUILD_WINDOW = 2048  # chunks (~512 MiB of file) a rebuild looks up and reads at a time


def rebuild(
    files: Files,
    index: PackIndex,
    record: Record,
    write: Callable[[int, bytes], None],
    local: LocalChunks | None,
    jobs: int,
    span: tuple[int, int] | None = None,
) -> tuple[bytes, int]:
    """Write the chunked file of map ``record`` with ``write(offset, bytes)``: chunks from
    ``local`` where it holds them, the rest from the packs. ``span`` = (start, end):
    only the chunks that overlap it. Returns (the map's bytes, the file's size).
    The map's chunks are parsed, looked up and read ``REBUILD_WINDOW`` at a time, so
    memory does not grow with the file (the map's own bytes are 36 per chunk)."""
    where = files.where
    data, size = read_map(files, record, where)
    lo, hi = span if span is not None else (0, size)
    items = packfmt.iter_map(data, f"the chunk map of {record.entry.digest} on {where}")
    offset = 0
    while window := list(itertools.islice(items, REBUILD_WINDOW)):
        start = offset
        if start >= hi:
            break
        offset += sum(length for _, length in window)
        if offset > lo:
            _rebuild_window(files, index, record, window, start, (lo, hi), write, local, jobs)
    return data, size


def _rebuild_window(
    files: Files,
    index: PackIndex,
    record: Record,
    chunks: list[tuple[Digest, int]],
    offset: int,
    span: tuple[int, int],
    write: Callable[[int, bytes], None],
    local: LocalChunks | None,
    jobs: int,
) -> None:
    """``rebuild`` of ``chunks``, the first at ``offset`` of the file."""
    where = files.where
    algo = get_algorithm(record.entry.digest.algorithm)
    lo, hi = span
    at: dict[Digest, list[int]] = defaultdict(list)
    lengths: dict[Digest, int] = {}
    for d, length in chunks:
        if offset < hi and offset + length > lo:
            at[d].append(offset)
            lengths[d] = length
        offset += length

    def put(digest: Digest, piece: bytes) -> bool:
        if len(piece) != lengths[digest] or algo.hash_small(piece) != digest.hex:
            return False
        for o in at[digest]:
            write(o, piece)
        return True

    remote: list[tuple[Part, Record]] = []
    for d in at:
        found = local.find(d) if local is not None else None
        if found is not None and _from_local(found, d, put):
            continue
        rec = index.find(Part(d, KIND_CHUNK))
        if rec is None:
            raise ObjectsMissing(f"chunk {d.short()} of {record.entry.digest} is not on {where}")
        remote.append((Part(d, KIND_CHUNK), rec))

    def sink(part: Part, piece: object) -> None:
        if isinstance(piece, Exception):
            raise piece
        if not put(part.digest, piece):  # type: ignore[arg-type]
            raise IntegrityError(f"{part} of {record.entry.digest} on {where} does not match its bytes")

    gone = read_many(files, remote, sink, jobs, views=True)  # type: ignore[arg-type]
    if gone:  # a gc repacked them meanwhile: once more from where they are now
        index.load(force=True)
        again = []
        for part in gone:
            rec = index.find(part)
            if rec is None:
                raise ObjectsMissing(f"{part} of {record.entry.digest} is not on {where}")
            again.append((part, rec))
        if read_many(files, again, sink, jobs, views=True):  # type: ignore[arg-type]
            raise ObjectsMissing(f"chunks of {record.entry.digest} vanished from {where} twice; re-run")


def _from_local(found: tuple[str, int, int], digest: Digest, put: Callable[[Digest, bytes], bool]) -> bool:
    path, offset, length = found
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return put(digest, f.read(length))
    except OSError:
        return False


# -- gc ----------------------------------------------------------------------------------------
def live_chunks(files: Files, maps: Iterable[Record], jobs: int) -> set[bytes]:
    """Keys of every chunk the maps ``maps`` name (the maps are read and checked)."""
    keys: set[bytes] = set()
    lock = threading.Lock()
    wanted = [(Part(r.entry.digest, KIND_MAP), r) for r in maps]

    def sink(part: Part, data: object) -> None:
        if isinstance(data, Exception):
            raise data
        _, chunks = packfmt.parse_map(data, f"the chunk map of {part.digest} on {files.where}")  # type: ignore[arg-type]
        found = {packfmt.entry_key(d, KIND_CHUNK) for d, _ in chunks}
        with lock:
            keys.update(found)

    if read_many(files, wanted, sink, jobs, limit=MAP_MAX):  # type: ignore[arg-type]
        raise ObjectsMissing(f"a chunk map vanished from {files.where} during gc; re-run gc")
    return keys


def garbage_chunks(files: Files, jobs: int) -> Callable[[PackIndex, set[bytes]], set[bytes]]:
    """gc's ``expand``: the doomed keys, plus every chunk that no map staying names."""

    def expand(index: PackIndex, doomed: set[bytes]) -> set[bytes]:
        chunks: set[bytes] = set()
        maps: list[Record] = []
        for r in index.all_records():
            if r.entry.kind == KIND_CHUNK:
                chunks.add(r.entry.key())
            elif r.entry.kind == KIND_MAP and r.entry.key() not in doomed:
                maps.append(r)
        if not chunks:
            return doomed
        return doomed | (chunks - live_chunks(files, maps, jobs))

    return expand


def write_at(fd: int) -> Callable[[int, bytes], None]:
    """``write(offset, bytes)`` into an open file (any thread)."""

    def write(offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n

    return write
