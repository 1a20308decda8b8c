"""Putting cache objects into the workspace: reflink, hardlink, symlink or copy.

``cache.link`` is an ordered preference; the first type the filesystem supports
wins. Every placement writes a temporary sibling and renames it over the
destination, so a crash leaves either the old file or the new one, never a torn
one. Hardlinks and symlinks share the cache object's read-only inode, so an edit
cannot change a cache object; ``unprotect`` swaps such a file for a private copy.
An executable file is never hardlinked or symlinked (the mode belongs to the shared
object), it falls through to the next type.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil

from .errors import ConfigError, StorageError

LINK_TYPES = ("reflink", "hardlink", "symlink", "copy")
DEFAULT_LINK_TYPES = ("reflink", "copy")
TEMP_MARK = ".dataver-tmp-"
_FICLONE = getattr(fcntl, "FICLONE", 0x40049409)
_UNSUPPORTED = {
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOTTY,
    errno.ENOSYS,
    errno.EPERM,
    errno.EMLINK,
    errno.EBADF,
}


def parse_link_types(text: str) -> tuple[str, ...]:
    """``"hardlink,copy"`` -> ``("hardlink", "copy")``, validated."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in LINK_TYPES]
    if not kinds or bad:
        raise ConfigError(
            f"cache.link must list link types from {', '.join(LINK_TYPES)}; got {text!r}",
            "e.g. dataver config cache.link reflink,hardlink,copy",
        )
    return kinds


# Filesystems (by st_dev) that refused a clone in this process: ext4, say, refuses
# every one, and asking again costs an open, a create and an ioctl per file.
_NO_REFLINK: set[int] = set()


def reflink_refused(path: str) -> bool:
    """True if the filesystem holding ``path`` already refused a reflink."""
    try:
        return os.stat(path).st_dev in _NO_REFLINK
    except OSError:
        return False


def reflink(fd_src: int, fd_dst: int) -> bool:
    """Clone ``fd_src`` into ``fd_dst`` (copy-on-write); False if unsupported."""
    dev = os.fstat(fd_dst).st_dev
    if dev in _NO_REFLINK:
        return False
    try:
        fcntl.ioctl(fd_dst, _FICLONE, fd_src)
        return True
    except OSError as e:
        if e.errno in _UNSUPPORTED:
            if e.errno != errno.EXDEV:  # cross-device says nothing about this filesystem
                _NO_REFLINK.add(dev)
            return False
        raise


def temp_sibling(dest: str) -> str:
    head, tail = os.path.split(dest)
    return os.path.join(head, f".{tail[:80]}{TEMP_MARK}{secrets.token_hex(4)}")


def _final_name(tmp: str) -> str:
    """The destination a temporary sibling stands for (for messages)."""
    head, tail = os.path.split(tmp)
    return os.path.join(head, tail[1:].split(TEMP_MARK, 1)[0])


_TEMP_NAME = re.compile(r"\.(.*)" + re.escape(TEMP_MARK) + r"[0-9a-f]{8}", re.DOTALL)


def is_temp_name(name: str) -> bool:
    """Is ``name`` one of ``temp_sibling``'s names (dataver's own, never user data)?"""
    return TEMP_MARK in name and _TEMP_NAME.fullmatch(name) is not None


def temp_owner(name: str) -> str | None:
    """The name (its first 80 characters) a temporary sibling was made for, or None."""
    m = _TEMP_NAME.fullmatch(name) if TEMP_MARK in name else None
    return m.group(1) if m else None


def place(obj_path: str, dest: str, link_types: tuple[str, ...], executable: bool, copy=None) -> str:
    """Make ``dest`` hold the object at ``obj_path``; returns the link type used.

    ``copy(src, tmp, mode)`` performs (and may verify) a plain copy into a new file
    ``tmp`` it creates with ``mode``; defaults to a plain copy. A file this makes is
    created with the mode it keeps (``_new_file_mode``): the kernel applies the umask.
    """
    tmp = temp_sibling(dest)
    mode = _new_file_mode(executable)
    try:
        for kind in link_types:
            if executable and kind in ("hardlink", "symlink"):
                continue
            if _make(kind, obj_path, tmp, copy, mode):
                os.replace(tmp, dest)
                return kind
        _make("copy", obj_path, tmp, copy, mode)
        os.replace(tmp, dest)
        return "copy"
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):  # the rename (a name too long, a folder gone): say which file
            raise StorageError(f"cannot write {dest}: {e.strerror or e}") from None
        raise


def place_bytes(data: bytes, dest: str, executable: bool) -> str:
    """Make ``dest`` hold ``data`` (a packed object's checked bytes), as ``place``
    makes a copy: a temporary sibling written whole, then renamed. Returns "copy"."""
    return place(dest, dest, ("copy",), executable, lambda _src, tmp, mode: write_new(tmp, data, mode))


def _new_file_mode(executable: bool) -> int:
    """The mode a workspace file is created with; the kernel takes the umask from it,
    as it does for git. (Reading the umask means setting it, process-wide: a file
    another thread created meanwhile would get no umask at all.)"""
    return 0o777 if executable else 0o666


def _copy_file(src: str, tmp: str, mode: int) -> None:
    """A plain copy of ``src`` into a new file ``tmp`` created with ``mode``, written
    through the descriptor that created it (a mode without the owner's write bit, from
    a umask such as 0o222, would refuse a second open for writing)."""
    with open(src, "rb") as fsrc:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        try:
            size, at = os.fstat(fsrc.fileno()).st_size, 0
            try:
                while at < size:  # inside the kernel, as shutil.copyfile does on Linux
                    n = os.sendfile(fd, fsrc.fileno(), at, size - at)
                    if n == 0:
                        break
                    at += n
            except OSError as e:
                if at or e.errno not in _UNSUPPORTED:
                    raise
                with open(fd, "wb", closefd=False) as fdst:
                    shutil.copyfileobj(fsrc, fdst)
        finally:
            os.close(fd)


def write_new(path: str, data: bytes | memoryview, mode: int = 0o600) -> None:
    """Create the file ``path`` (it must not exist) holding ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _make(kind: str, src: str, tmp: str, copy, mode: int) -> bool:
    try:
        if kind == "reflink":
            if reflink_refused(os.path.dirname(tmp)):
                return False
            fd_src = os.open(src, os.O_RDONLY)
            try:
                fd_dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                try:
                    ok = reflink(fd_src, fd_dst)
                finally:
                    os.close(fd_dst)
            finally:
                os.close(fd_src)
            if not ok:
                os.unlink(tmp)
            return ok
        if kind == "hardlink":
            os.link(src, tmp)
        elif kind == "symlink":
            os.symlink(src, tmp)
        else:
            (copy or _copy_file)(src, tmp, mode)
        return True
    except OSError as e:
        if kind != "copy" and e.errno in _UNSUPPORTED:
            return False
        raise StorageError(f"cannot write {_final_name(tmp)}: {e.strerror}") from e


def is_protected_link(path: str, cache_root: str) -> bool:
    """True if ``path`` is a symlink into the cache or shares an inode with a cache object."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if os.path.islink(path):
        return os.path.realpath(path).startswith(cache_root + os.sep)
    return st.st_nlink > 1 and not (st.st_mode & 0o222)


def unprotect(path: str) -> bool:
    """Replace a linked file with a private writable copy; True if it changed anything."""
    st = os.stat(path)
    tmp = temp_sibling(path)
    try:
        _copy_file(path, tmp, _new_file_mode(bool(st.st_mode & 0o100)))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True
