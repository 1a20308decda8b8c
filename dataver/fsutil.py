"""Small filesystem helpers shared by operations: atomic writes, .gitignore entries."""

from __future__ import annotations

import os
from typing import BinaryIO

from .errors import StorageError
from .linking import temp_sibling


def read_at_most(f: BinaryIO, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of the open file ``f`` (getting ``limit + 1`` means
    it is too large), with a buffer the size of the file rather than of the limit:
    ``f.read(8 MiB + 1)`` maps and unmaps 8 MiB even for a 1 KiB file, which made
    reading 20,000 small objects 3-6x slower (1.2-2.6 s against 0.37 s here)."""
    try:
        size = os.fstat(f.fileno()).st_size
    except OSError:
        size = limit
    return f.read(min(size, limit) + 1)


def atomic_write(path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` via a temporary sibling and rename; False if unchanged."""
    try:
        with open(path, "rb") as f:
            if f.read(len(data) + 1) == data:
                return False
    except OSError:
        pass
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"cannot write {path}: {e.strerror}") from None
    return True


def _gitignore_pattern(name: str) -> str:
    escaped = "".join("\\" + c if c in "*?[]!#\\" else c for c in name)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped


def ensure_gitignored(target: str) -> bool:
    """Add ``/name`` for ``target`` to the .gitignore beside it; True if it was added."""
    folder, name = os.path.split(target)
    gitignore = os.path.join(folder, ".gitignore")
    pattern = _gitignore_pattern(name)
    try:
        with open(gitignore, "rb") as f:
            text = f.read().decode("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        text = ""
    if pattern in text.splitlines():
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    atomic_write(gitignore, (text + pattern + "\n").encode("utf-8", errors="surrogateescape"))
    return True
