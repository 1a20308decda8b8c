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

    def guarded(x: T) -> R | None:
        # A worker takes its next item before this thread can cancel it: once any task
        # has failed, start nothing new (its result is never used: the error is raised).
        if failed.is_set():
            return None
        try:
            return fn(x)
        except BaseException:
            failed.set()
            raise

    pool = ThreadPoolExecutor(min(jobs, len(items)))
    try:
        futures = [pool.submit(guarded, x) for x in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in futures:
            if f.done() and f.exception() is not None:
                for p in pending:
                    p.cancel()
                raise f.exception()  # type: ignore[misc]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
