"""The repository lock: one data-moving dataver process per repository at a time.

An ``fcntl.flock`` on ``.dataver/lock``: the kernel drops it when the holder exits,
so a crashed process never leaves a stale lock. The holder writes its PID into the
file so a waiter can say whom it waits for.
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Callable

from .errors import LockTimeout


class RepoLock:
    def __init__(self, path: str, timeout: float = 60.0, on_wait: Callable[[str], None] | None = None):
        self.path = path
        self.timeout = timeout
        self.on_wait = on_wait
        self._fd: int | None = None

    def __enter__(self) -> RepoLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(fd)
                if not told and self.on_wait is not None:
                    self.on_wait(f"waiting for the repository lock held by {holder}")
                    told = True
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(
                        f"the repository is locked by {holder} ({self.path})",
                        "wait for it to finish, or raise core.lock_timeout",
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"PID {pid}" if pid.isdigit() else "another dataver process"
