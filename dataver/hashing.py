"""The parallel chunked hasher: dataver's performance-critical path.

It reads files in ``CHUNK_SIZE`` chunks and hands them to a hash algorithm from the
registry in ``digest.py``, which defines what a digest is (normative text and test
vectors in docs/formats.md). In short:

* ``xxh3-128`` (the default). A file of at most ``CHUNK_SIZE`` bytes:
  ``XXH3_128(content, seed=0)``, the same value ``xxhsum -H2`` prints. A larger file is
  cut into ``CHUNK_SIZE`` chunks (the last may be shorter). Each chunk ``i`` has
  ``d_i = XXH3_128(chunk_i, seed=0)`` as 16 big-endian bytes, and the file's digest is
  ``XXH3_128(b"dataver-chunked-v1\\0" || u64be(size) || u64be(CHUNK_SIZE) || d_0 ||
  ... || d_n-1, seed=SEED_CHUNKED)``. A folder manifest:
  ``XXH3_128(manifest_bytes, seed=SEED_MANIFEST)``. The three use different seeds (and
  the chunked form binds size and chunk size), so a small file can never share a
  digest with a large file's chunk list or a manifest except by an xxh3 collision.
  Chunks are hashed on a thread pool in any order and combined in file order.
* ``blake3``: BLAKE3-256 of the whole file (what ``b3sum`` prints), and of a
  manifest's bytes. Chunks are fed to one BLAKE3 state in file order; BLAKE3 spreads
  each chunk over threads itself.

The result depends only on the bytes and the algorithm, never on ``jobs``.

Speed (see shared/design/PERFORMANCE-NOTES.md): reads go with ``os.preadv`` into
page-aligned anonymous-mmap buffers that each worker thread allocates once and
reuses; a misaligned ``bytearray`` reads 3-5x slower, and a fresh buffer per chunk
pays page faults. xxhash and blake3 release the GIL, so threads overlap I/O and hashing.
"""

from __future__ import annotations

import mmap
import os
import queue
import stat as stat_mod
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from .digest import (
    CHUNK_SIZE,
    DEFAULT_ALGORITHM,
    SEED_BLOB,
    SEED_CHUNKED,
    SEED_MANIFEST,
    Algorithm,
    Digest,
    get_algorithm,
    xxh3_combine,
)
from .errors import FileChanged, PathError, UnreadableFile
from .progress import NO_PROGRESS, Progress

# The xxh3-128 constants live with its definition in digest.py; named here too, where
# docs/formats.md and older callers look for them.
__all__ = [
    "CHUNK_SIZE",
    "SEED_BLOB",
    "SEED_CHUNKED",
    "SEED_MANIFEST",
    "HashedFile",
    "Hasher",
    "combine_chunk_digests",
    "default_jobs",
    "digest_bytes",
    "digest_manifest",
    "path_error",
]
SMALL_FILE_THREADS = 2
# Small files are handed to workers in batches to amortise executor overhead.
_SMALL_BATCH_BYTES = 4 * 1024 * 1024
_SMALL_BATCH_FILES = 256

T = TypeVar("T")
R = TypeVar("R")

Sink = Callable[[int, memoryview], None]
"""Receives each chunk's bytes at its offset (used to copy while hashing)."""


def default_jobs() -> int:
    return max(1, min(32, os.cpu_count() or 1))


def combine_chunk_digests(size: int, chunk_digests: Iterable[bytes], chunk_size: int = CHUNK_SIZE) -> Digest:
    """The xxh3-128 digest of a large file from its chunk digests, in file order."""
    return Digest(DEFAULT_ALGORITHM, xxh3_combine(size, chunk_digests, chunk_size))


def digest_bytes(data: bytes | memoryview, chunk_size: int = CHUNK_SIZE, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
    """The digest of in-memory content, by the same definition as files."""
    algo = get_algorithm(algorithm)
    size = len(data)
    if size <= chunk_size:
        return Digest(algorithm, algo.hash_small(data))
    view = memoryview(data)
    fh = algo.new_file_hash(size, chunk_size, 1)
    for i, offset in enumerate(range(0, size, chunk_size)):
        fh.feed(i, view[offset : offset + chunk_size])
    return Digest(algorithm, fh.hexdigest())


def digest_manifest(data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
    """The digest of a folder manifest's bytes (its header names the same algorithm)."""
    return Digest(algorithm, get_algorithm(algorithm).hash_manifest(data))


@dataclass(frozen=True, slots=True)
class HashedFile:
    """A file's digest with the stat it was taken under (for the stat cache)."""

    path: str
    digest: Digest
    size: int
    inode: int
    mtime_ns: int
    executable: bool
    ctime_ns: int  # with inode, size and mtime, what the stat cache matches on


class Hasher:
    """Hashes files with a shared thread pool and per-thread aligned buffers.

    Use as a context manager, or call ``close()``. ``jobs`` is the number of worker
    threads; the digests do not depend on it. ``algorithm`` is the one new content
    is hashed with; checking content against a known digest passes that digest's
    algorithm to the call (``hash_file(path, algorithm=digest.algorithm)``).
    """

    def __init__(
        self,
        jobs: int | None = None,
        chunk_size: int = CHUNK_SIZE,
        small_jobs: int | None = None,
        algorithm: str = DEFAULT_ALGORITHM,
    ):
        if chunk_size % mmap.PAGESIZE:
            raise ValueError("chunk_size must be a multiple of the page size")
        self.algorithm = get_algorithm(algorithm).name
        self.jobs = jobs or default_jobs()
        self.small_jobs = small_jobs or min(self.jobs, SMALL_FILE_THREADS)
        self.chunk_size = chunk_size
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="dataver-hash", initializer=self._mark_worker)

    def _algorithm(self, name: str | None) -> Algorithm:
        return get_algorithm(name or self.algorithm)

    def _mark_worker(self) -> None:
        self._local.is_worker = True

    def __enter__(self) -> Hasher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- buffers and reads -------------------------------------------------
    def _buffer(self) -> memoryview:
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = memoryview(mmap.mmap(-1, self.chunk_size))
            self._local.buf = buf
        return buf

    def _read_at(self, fd: int, path: str, offset: int, length: int) -> memoryview:
        """Read exactly ``length`` bytes at ``offset`` into this thread's buffer."""
        view = self._buffer()[:length]
        got = 0
        while got < length:
            try:
                n = os.preadv(fd, [view[got:]], offset + got)
            except OSError as e:
                raise UnreadableFile(f"cannot read {path}: {e.strerror}") from e
            if n == 0:
                raise FileChanged(f"{path} shrank while it was being read", "re-run when nothing writes to it")
            got += n
        return view

    # -- single files -------------------------------------------------------
    def hash_file(
        self, path: str, sink: Sink | None = None, progress: Progress = NO_PROGRESS, algorithm: str | None = None
    ) -> HashedFile:
        """Hash one file, optionally passing every chunk to ``sink`` (copy-while-hash),
        with ``algorithm`` (default: the hasher's).

        Raises ``FileChanged`` if the file's size or mtime moved while we read it.
        """
        algo = self._algorithm(algorithm)
        fd = _open_for_read(path)
        try:
            before = os.fstat(fd)
            if not stat_mod.S_ISREG(before.st_mode):
                raise PathError(f"{path} is not a regular file")
            size = before.st_size
            if size <= self.chunk_size:
                view = self._read_at(fd, path, 0, size)
                digest = Digest(algo.name, algo.hash_small(view))
                if sink is not None:
                    sink(0, view)
                progress.advance(size)
            else:
                digest = self._hash_chunked(fd, path, size, algo, sink, progress)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if (after.st_size, after.st_mtime_ns) != (size, before.st_mtime_ns):
            raise FileChanged(f"{path} changed while it was being hashed", "re-run when nothing writes to it")
        return HashedFile(
            path, digest, size, before.st_ino, before.st_mtime_ns, bool(before.st_mode & 0o100), before.st_ctime_ns
        )

    def hash_growing(
        self,
        path: str,
        size: int,
        ready: Callable[[int], None],
        progress: Progress = NO_PROGRESS,
        algorithm: str | None = None,
    ) -> Digest:
        """Digest of the first ``size`` bytes of a file that another thread is still
        writing (a copy into the cache), chunk by chunk as they land, so hashing
        overlaps the copy. ``ready(end)`` blocks until bytes ``[0, end)`` are written,
        and raises if the writer failed."""
        algo = self._algorithm(algorithm)
        fd = _open_for_read(path)
        try:
            if size <= self.chunk_size:
                ready(size)
                view = self._read_at(fd, path, 0, size)
                progress.advance(size)
                return Digest(algo.name, algo.hash_small(view))
            return self._hash_chunked(fd, path, size, algo, None, progress, ready)
        finally:
            os.close(fd)

    def _hash_chunked(
        self,
        fd: int,
        path: str,
        size: int,
        algo: Algorithm,
        sink: Sink | None,
        progress: Progress,
        ready: Callable[[int], None] | None = None,
    ) -> Digest:
        on_worker = getattr(self._local, "is_worker", False)
        fh = algo.new_file_hash(size, self.chunk_size, 1 if on_worker else self.jobs)

        def chunk(index: int) -> None:
            offset = index * self.chunk_size
            length = min(self.chunk_size, size - offset)
            if ready is not None:
                ready(offset + length)
            view = self._read_at(fd, path, offset, length)
            fh.feed(index, view)
            if sink is not None:
                sink(offset, view)
            progress.advance(length)

        indices = range(-(-size // self.chunk_size))
        if on_worker or not algo.parallel:
            # In file order, in this thread. On a pool thread (a file bigger than
            # map_sized was told), waiting on the pool from inside it could deadlock it.
            for i in indices:
                chunk(i)
        else:
            for _ in self._pool.map(chunk, indices):  # raises the first chunk's failure
                pass
        return Digest(algo.name, fh.hexdigest())

    # -- many files ----------------------------------------------------------
    def hash_many(
        self, paths: Sequence[str], progress: Progress = NO_PROGRESS, algorithm: str | None = None
    ) -> Iterator[HashedFile]:
        """Hash many files in parallel (with ``algorithm``, default the hasher's);
        yields in no particular order."""
        sized = []
        for p in paths:
            try:
                sized.append((p, os.stat(p).st_size))
            except OSError as e:
                raise path_error(p, e) from e
        return self.map_sized(sized, lambda p, prog: self.hash_file(p, progress=prog, algorithm=algorithm), progress)

    def map_sized(
        self, sized: Sequence[tuple[T, int]], fn: Callable[[T, Progress], R], progress: Progress = NO_PROGRESS
    ) -> Iterator[R]:
        """Run ``fn(item, progress)`` over items of known byte size, in parallel.

        Items up to one chunk go to the pool in batches; larger ones run one at a
        time in the calling thread, where ``fn`` may itself use the pool (chunked
        hashing) without deadlocking it. Yields results in no particular order.
        """
        small = [pair for pair in sized if pair[1] <= self.chunk_size]  # the caller's tuples, not copies
        large = [pair for pair in sized if pair[1] > self.chunk_size]

        def run_batch(batch: list[tuple[T, int]]) -> list[R]:
            out = []
            for item, size in batch:
                out.append(fn(item, NO_PROGRESS))
                progress.advance(size, 1)
            return out

        # Small files cost mostly per-file Python work, which holds the GIL: beyond
        # SMALL_FILE_THREADS, more threads only contend (measured on 16 cores: 57k
        # files/s with 1 thread, 39k with 2, 25k with 16; on this project's 2-core
        # machine 1 and 2 threads are even: docs/benchmarks.md). So a
        # few workers pull batches from a shared queue while the rest of the pool
        # stays free for the chunks of large files.
        batches = _batches(small)
        lock = threading.Lock()
        stop = threading.Event()
        finished: queue.SimpleQueue = queue.SimpleQueue()  # result lists, failures, _WORKER_DONE

        def worker() -> None:
            try:
                while not stop.is_set():
                    with lock:
                        batch = next(batches, None)
                    if batch is None:
                        return
                    finished.put(run_batch(batch))
            except BaseException as e:  # handed to the consumer, which raises it
                stop.set()
                finished.put(_Failed(e))
            finally:
                finished.put(_WORKER_DONE)

        workers = min(self.small_jobs, len(small))
        futures = [self._pool.submit(worker) for _ in range(workers)]
        try:
            for item, _ in large:
                yield fn(item, _BytesOnly(progress))
                progress.advance(nfiles=1)
            # Results stream out batch by batch, so a caller that folds them into
            # something smaller never holds them all (200,000 files: ~60 MB less).
            while workers:
                got = finished.get()
                if got is _WORKER_DONE:
                    workers -= 1
                elif isinstance(got, _Failed):
                    raise got.error
                else:
                    yield from got
        finally:
            stop.set()
            for f in futures:
                f.cancel()


_WORKER_DONE = object()


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


class _BytesOnly(Progress):
    """Passes byte progress of one chunked file through to the outer bar."""

    def __init__(self, outer: Progress):
        self.outer = outer

    def advance(self, nbytes: int = 0, nfiles: int = 0) -> None:
        self.outer.advance(nbytes)


def _batches(sized: list[tuple[T, int]]) -> Iterator[list[tuple[T, int]]]:
    batch: list[tuple[T, int]] = []
    nbytes = 0
    for item, size in sized:
        batch.append((item, size))
        nbytes += size
        if len(batch) >= _SMALL_BATCH_FILES or nbytes >= _SMALL_BATCH_BYTES:
            yield batch
            batch, nbytes = [], 0
    if batch:
        yield batch


def _open_for_read(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as e:
        raise path_error(path, e) from e


def path_error(path: str, e: OSError) -> PathError:
    """Our error for an OSError met while opening or reading ``path``."""
    import errno

    if e.errno == errno.ENOENT:
        return PathError(f"{path} does not exist")
    if e.errno == errno.ELOOP:
        from .errors import SymlinkLoop

        return SymlinkLoop(f"{path} is a symbolic link loop")
    if e.errno in (errno.EACCES, errno.EPERM):
        return UnreadableFile(f"cannot read {path}: permission denied", "fix its permissions, then re-run")
    return UnreadableFile(f"cannot read {path}: {e.strerror}")
