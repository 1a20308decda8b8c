"""Many object references with their sizes, kept compact and handed back in batches.

What push, fetch and their missing-object checks walk at a million files: one 42-byte
record per reference (the pack index's key of the object, then its size), in one of
256 runs by the first byte of its digest. Up to ``MEMORY_BYTES`` (4 MiB) of records stay in
memory; past that every run is appended to an unnamed temporary file in the cache's
``tmp/`` (created unlinked, so a killed command leaves nothing behind). ``batches``
gives the references back run by run, several runs merged while a batch stays under
``BATCH`` references, each reference once (a reference's runs are fixed by its digest,
so a repeat always lands in the same batch). Memory is then a batch's objects, not
the whole set's: about 42 bytes per reference before it spills, nothing per reference
after.
"""

from __future__ import annotations

import os
import struct
import tempfile
from typing import IO, Iterator

from . import packfmt
from .config import env_int
from .digest import ALGORITHMS, Digest
from .errors import StorageError
from .packstore import key_of
from .store import ObjRef

MEMORY_BYTES = 4 << 20  # records held in memory before the runs go to temporary files
BATCH = 50_000  # references in one batch (more only when one run alone holds more)
BATCH_ENV = "DATAVER_REF_BATCH"  # another batch size (tests: many batches from a few objects)
_KEY = 34  # packfmt.entry_key: digest field (32), kind, algorithm
_RECORD = struct.Struct(f"<{_KEY}sQ")
FANS = 256


def _ref(key: bytes) -> ObjRef:
    name = packfmt.ALGORITHM_NAMES[key[33]]
    length = ALGORITHMS[name].hex_length // 2
    return ObjRef(Digest.of_bytes(name, key[:length]), key[32] == packfmt.KIND_MANIFEST)


class RefBatches:
    """References with sizes: ``add`` them, then read them back with ``batches``."""

    def __init__(self, tmp_dir: str, memory_bytes: int | None = None, batch: int | None = None):
        self.tmp_dir = tmp_dir
        self.memory_bytes = MEMORY_BYTES if memory_bytes is None else memory_bytes
        self.batch = batch or env_int(BATCH_ENV, BATCH, minimum=1)
        self.count = 0  # references added, repeats included
        self.nbytes = 0  # their sizes added up, repeats included
        self._runs = [bytearray() for _ in range(FANS)]
        self._held = 0  # bytes in _runs
        self._counts = [0] * FANS  # records per run, in memory and on disk
        self._files: list[IO[bytes] | None] = [None] * FANS

    def __len__(self) -> int:
        return self.count

    def add(self, ref: ObjRef, size: int) -> None:
        key = key_of(ref)  # a pack index's key: digest field, kind, algorithm
        fan = key[0]
        self._runs[fan] += _RECORD.pack(key, size)
        self._counts[fan] += 1
        self.count += 1
        self.nbytes += size
        self._held += _RECORD.size
        if self._held >= self.memory_bytes:
            self._spill()

    def _spill(self) -> None:
        try:
            for fan, run in enumerate(self._runs):
                if not run:
                    continue
                f = self._files[fan]
                if f is None:
                    f = self._files[fan] = self._new_file()
                f.seek(0, os.SEEK_END)
                f.write(run)
                run.clear()
        except OSError as e:
            raise StorageError(
                f"cannot write a temporary list of objects in {self.tmp_dir}: {e.strerror}",
                "free some space there (or set cache.dir to a larger disk) and re-run; nothing was changed",
            ) from None
        self._held = 0

    def _new_file(self) -> IO[bytes]:
        """An unnamed file: in the cache's tmp/ (its disk), else the system's temporary folder
        (a cache this process may only read: another repository's, for an import)."""
        try:
            os.makedirs(self.tmp_dir, exist_ok=True)
            return tempfile.TemporaryFile(dir=self.tmp_dir, prefix="refs-")
        except OSError:
            return tempfile.TemporaryFile(prefix="dataver-refs-")

    def _read_run(self, fan: int) -> bytes:
        f = self._files[fan]
        if f is None:
            return bytes(self._runs[fan])
        f.seek(0)
        return f.read() + bytes(self._runs[fan])

    def batches(self) -> Iterator[dict[ObjRef, int]]:
        """Every reference once, with its size (the first added), a batch at a time."""
        fan = 0
        while fan < FANS:
            out: dict[ObjRef, int] = {}
            planned = 0
            while fan < FANS and (not planned or planned + self._counts[fan] <= self.batch):
                planned += self._counts[fan]
                raw = self._read_run(fan)
                seen: dict[bytes, int] = {}
                for key, size in _RECORD.iter_unpack(raw):
                    seen.setdefault(key, size)
                del raw
                for key, size in seen.items():
                    out[_ref(key)] = size
                fan += 1
            if out:
                yield out

    def close(self) -> None:
        for f in self._files:
            if f is not None:
                f.close()
        self._files = [None] * FANS
        self._runs = [bytearray() for _ in range(FANS)]
        self._held = 0

    def __enter__(self) -> RefBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
