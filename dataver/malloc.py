"""Keep large short-lived buffers (16 MiB packs, 8 MiB ranged reads) out of the heap.

glibc serves allocations above its mmap threshold with their own mmap, returned to the
system when freed. But the threshold is dynamic: each time such a block is freed it
rises to that block's size (up to 32 MiB), so after the first pack is uploaded every
later pack is carved from the heap (one arena per thread), and freed heap memory mostly
stays in the process. A push to S3 of 20,000 small files peaked at 370 MB RSS with
195 MB of Python objects alive at most; with the threshold fixed at 1 MiB, 228 MB
(docs/benchmarks.md). Setting the threshold also turns the dynamic rise off.

``steady()`` does that once per process, on glibc only, unless the user set
``MALLOC_MMAP_THRESHOLD_`` (their choice wins). Elsewhere it does nothing.
"""

from __future__ import annotations

import os
import sys
import threading

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
THRESHOLD = 1 << 20
_done = False
_lock = threading.Lock()


def steady() -> None:
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        _done = True
        if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
            return
        try:
            import ctypes

            mallopt = ctypes.CDLL(None).mallopt  # absent on musl: AttributeError
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt(_M_MMAP_THRESHOLD, THRESHOLD)
        except (OSError, AttributeError):
            pass
