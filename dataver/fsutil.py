"""Small filesystem helpers shared by operations: atomic writes, .gitignore entries."""

from __future__ import annotations

import os
import shutil
from typing import BinaryIO, Iterable

from .errors import StorageError
from .linking import temp_owner, temp_sibling


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


def read_range(f: BinaryIO, start: int, end: int | None) -> bytes:
    """Bytes ``[start, end)`` of the open file ``f`` (slice semantics), with a buffer no
    larger than what is there: ``f.read(n)`` allocates ``n`` bytes first, and reading
    a 2 KiB object with ``n`` = 8 MiB cost an mmap per object (see ``read_at_most``)."""
    size = os.fstat(f.fileno()).st_size
    stop = size if end is None else min(end, size)
    if stop <= start:
        return b""
    f.seek(start)
    return f.read(stop - start)


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


def _gitignore_of(target: str) -> tuple[str, str, str | None]:
    """(the .gitignore beside ``target``, the ``/name`` line for it, its text or None)."""
    folder, name = os.path.split(target)
    gitignore = os.path.join(folder, ".gitignore")
    try:
        with open(gitignore, "rb") as f:
            text: str | None = f.read().decode("utf-8", errors="surrogateescape")
    except FileNotFoundError:
        text = None
    except OSError as e:
        raise StorageError(f"cannot read {gitignore}: {e.strerror}") from None
    return gitignore, _gitignore_pattern(name), text


def ensure_gitignored(target: str) -> bool:
    """Add ``/name`` for ``target`` to the .gitignore beside it; True if it was added."""
    gitignore, pattern, found = _gitignore_of(target)
    text = found or ""
    if pattern in text.splitlines():
        return False
    if text and not text.endswith("\n"):
        text += "\n"
    atomic_write(gitignore, (text + pattern + "\n").encode("utf-8", errors="surrogateescape"))
    return True


def remove_gitignored(target: str) -> bool:
    """Take ``ensure_gitignored``'s ``/name`` line for ``target`` out of the .gitignore
    beside it (every copy of it; other lines kept as they are). A .gitignore left with
    nothing in it is deleted. True if it changed."""
    gitignore, pattern, text = _gitignore_of(target)
    if text is None:
        return False
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if line.rstrip("\r\n") != pattern]
    if len(kept) == len(lines):
        return False
    if not "".join(kept).strip():
        try:
            os.unlink(gitignore)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StorageError(f"cannot remove {gitignore}: {e.strerror}") from None
        return True
    atomic_write(gitignore, "".join(kept).encode("utf-8", errors="surrogateescape"))
    return True


def sibling_temporaries(targets: Iterable[str]) -> list[str]:
    """dataver's temporaries left beside ``targets`` by a killed write: of the target
    itself, of its pointer file, or of the ``.gitignore`` beside it. Each folder is
    listed once, however many targets it holds. The caller holds the repository lock,
    so no other dataver process is writing them."""
    by_folder: dict[str, set[str]] = {}
    for target in targets:
        folder, name = os.path.split(target)
        owners = by_folder.setdefault(folder, {".gitignore"})
        owners.update((name[:80], (name + ".dv")[:80]))
    found = []
    for folder, owners in by_folder.items():
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        found += [os.path.join(folder, n) for n in names if temp_owner(n) in owners]
    return found


def remove_temporaries(paths: Iterable[str]) -> int:
    """Delete dataver's own temporary files (never a folder); returns how many went."""
    removed = 0
    for path in paths:
        try:
            os.unlink(path)
            removed += 1
        except IsADirectoryError:
            pass
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StorageError(f"cannot remove dataver's temporary file {path}: {e.strerror}") from None
    return removed


def remove_temporaries_of(dest: str) -> int:
    """Delete what a killed write of ``dest`` left beside it: temporary files, and the
    staging folder a folder is assembled in before it is renamed into place."""
    folder, name = os.path.split(dest)
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for n in names:
        if temp_owner(n) == name[:80]:
            path = os.path.join(folder, n)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                remove_temporaries([path])
            removed += 1
    return removed


def files_older_than(folder: str, older_than: float) -> list[str]:
    """The entries of ``folder`` last modified before ``older_than`` (epoch seconds);
    [] if it does not exist. Stores find their stale temporaries with it."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        path = os.path.join(folder, name)
        try:
            if os.lstat(path).st_mtime < older_than:
                out.append(path)
        except FileNotFoundError:
            pass
    return out
