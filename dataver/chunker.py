"""Content-defined chunking: where a file's bytes are cut into chunks.

The boundaries are a function of the bytes alone (FastCDC 2020, the gear hash of its
reference C code, normalized chunking level 1, through ``pyfastcdc``), so an insert or a
delete moves only the boundaries next to it: a new version of a big file shares all
its other chunks with the old one. Parameters (normative, docs/formats.md "Content-defined
chunking"): a chunk is at least ``MIN`` (64 KiB) and at most ``MAX`` (1 MiB) bytes, except
the last, which may be shorter; a cut is sought from ``MIN`` on, with a stricter mask up to
``AVG_PARAM`` (192 KiB) bytes into the chunk and a looser one after, so chunks average about
``MIN + AVG_PARAM`` (256 KiB; 282 KiB measured on random data). Data of at most ``MIN``
bytes is one chunk.

Why 64K/256K/1M (benchmarks/chunking.py, docs/benchmarks.md "Chunking parameters"): the
smallest index (64-byte records: ~220 MB per TB of unique data, against ~900 MB at
16K/64K/256K) that meets issue 13's dedup targets on the 64 MiB CSV for every seed tried;
512K/1M/8M's misses them on some.

Pure: bytes in, boundaries out. ``pyfastcdc`` holds the GIL while it cuts (1.5-2.7 GB/s
on one core here with the XXH3-128 of each chunk); dataver cuts at push time, not in ``add``.
"""

from __future__ import annotations

from typing import Iterator

MIN = 64 * 1024
AVG_PARAM = 192 * 1024  # pyfastcdc's avg_size: where the looser mask starts (chunks average ~256 KiB)
MAX = 1024 * 1024
NORMALIZATION = 1
SEED = 0  # the reference gear table


def cuts(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each chunk of ``data``, in order; one chunk (or none,
    for empty data) below ``MIN`` bytes."""
    if len(data) <= MIN:
        if data:
            yield 0, len(data)
        return
    # a fresh cutter per call: pyfastcdc's object is not safe to share between threads
    from pyfastcdc import FastCDC

    cutter = FastCDC(AVG_PARAM, min_size=MIN, max_size=MAX, normalized_chunking=NORMALIZATION, seed=SEED)
    for c in cutter.cut_buf(data):
        yield c.offset, c.length
