"""Content-defined chunking: where a file's bytes are cut into chunks.

The boundaries are a function of the bytes alone (FastCDC 2020, the gear hash of its
reference C code, normalized chunking level 1, through ``pyfastcdc``), so an insert or a
delete moves only the boundaries next to it: a new version of a big file shares all
its other chunks with the old one. Parameters (normative, docs/formats.md "Chunked
files"): a chunk is at least ``MIN`` bytes and at most ``MAX``, except the last; a cut
is sought from ``MIN`` on with the mask of ``AVG_PARAM``, so chunks average about
``MIN + AVG_PARAM``. A file smaller than ``MIN`` is one chunk.

Pure: bytes in, boundaries out. ``pyfastcdc`` holds the GIL while it cuts (~1.1 GB/s
here with the XXH3-128 of each chunk); dataver cuts at push time, not in ``add``.
"""

from __future__ import annotations

from typing import Iterator

MIN = 16 * 1024
AVG_PARAM = 48 * 1024  # pyfastcdc's avg_size: the mask's target beyond MIN (chunks average ~64 KiB)
MAX = 256 * 1024
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
