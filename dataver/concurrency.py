"""A parallel map that stops at the first failure.

``ThreadPoolExecutor.map`` inside ``with`` keeps running every queued task after one
has failed; against an unreachable remote that turns one error into minutes of
retries. Here the first exception cancels everything not yet started.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_parallel(fn: Callable[[T], R], items: Iterable[T], jobs: int) -> list[R]:
    """``[fn(x) for x in items]`` on ``jobs`` threads, in order; raises the first error."""
    items = list(items)
    if not items:
        return []
    if jobs <= 1 or len(items) == 1:
        return [fn(x) for x in items]
    failed = threading.Event()
    results: list[R | None] = [None] * len(items)
    indices = iter(range(len(items)))
    take = threading.Lock()

    def worker() -> None:
        # Each worker takes items until none are left or any task has failed, so
        # thousands of small items cost one future per thread, not one per item.
        while not failed.is_set():
            with take:
                i = next(indices, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException:
                failed.set()
                raise

    pool = ThreadPoolExecutor(min(jobs, len(items)))
    try:
        futures = [pool.submit(worker) for _ in range(min(jobs, len(items)))]
        wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            if f.done() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        wait(futures)
        for f in futures:
            if f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
        return results  # type: ignore[return-value]
    finally:
        failed.set()  # a KeyboardInterrupt here: the workers stop after their current item
        pool.shutdown(wait=True)
