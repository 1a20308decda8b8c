"""Locks between dataver processes: one per repository, one per cache.

Both are ``fcntl.flock`` locks, which the kernel drops when the holder exits, so a
crashed or killed process never leaves a stale lock behind.

* The repository lock (``.dataver/lock``, exclusive): one data-moving command per
  repository at a time. The holder writes its PID so a waiter can say whom it waits for.
* The cache lock (``<cache>/lock``): shared by every command that adds or reads
  objects, exclusive for ``gc``. Several repositories may share one cache
  (``cache.dir``); this keeps a ``gc`` in one from deleting an object another is
  adding before its pointer exists.

Locks are always taken in that order (repository, then cache), so two processes
cannot wait on each other.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from typing import Callable

from .errors import LockTimeout, StorageError


class FileLock:
    def __init__(
        self,
        path: str,
        what: str,
        shared: bool = False,
        timeout: float = 60.0,
        on_wait: Callable[[str], None] | None = None,
    ):
        self.path = path
        self.what = what
        self.shared = shared
        self.timeout = timeout
        self.on_wait = on_wait
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            fd = self._open()
        except OSError as e:
            raise StorageError(
                f"cannot open {self.what} {self.path}: {e.strerror}",
                "every user of this repository or cache needs write access to it (fix permissions)",
            ) from None
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(fd)
                if not told and self.on_wait is not None:
                    self.on_wait(f"waiting for {self.what} held by {holder}")
                    told = True
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockTimeout(
                        f"{self.what} is held by {holder} ({self.path})",
                        "wait for it to finish, or raise core.lock_timeout",
                    ) from None
                time.sleep(0.1)
        if not self.shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            # A reader of a cache someone else owns: flock works on a read-only
            # descriptor, and a shared holder writes nothing into the file.
            if self.shared and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and os.path.isfile(self.path):
                return os.open(self.path, os.O_RDONLY)
            raise

    def release(self) -> None:
        if self._fd is not None:
            if not self.shared:
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class Locks:
    """Several locks taken in order and released in reverse."""

    def __init__(self, *locks: FileLock):
        self.locks = locks

    def __enter__(self) -> Locks:
        taken = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for lock in reversed(self.locks):
            lock.release()


def _read_holder(fd: int) -> str:
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"PID {pid}" if pid.isdigit() else "another dataver process"
