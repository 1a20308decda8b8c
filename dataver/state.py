"""The stat cache: (path, inode, size, mtime_ns) -> digest, in sqlite.

It lets status and re-add of unchanged files cost a ``stat`` instead of a read. An
entry is trusted only when all four values still match. Entries for files modified
within ``RACY_WINDOW_NS`` of being recorded are not stored: a same-size write in the
same timestamp tick would otherwise go unseen (git's "racily clean" problem). A
damaged database is deleted and rebuilt, never trusted. ``NullState`` is the twin
that remembers nothing.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from typing import Generator, Iterable, Iterator, Mapping, NamedTuple

from .digest import ALGORITHM, Digest
from .hashing import HashedFile

RACY_WINDOW_NS = 100_000_000  # above the timestamp tick of ext4, xfs, btrfs, tmpfs
COARSE_RACY_WINDOW_NS = 2_000_000_000  # mtimes in whole milliseconds or coarser (FAT, HFS+, some NFS)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, inode INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, digest TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folders (
    path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, manifest TEXT NOT NULL
) WITHOUT ROWID;
"""

Key = tuple[int, int, int]  # inode, size, mtime_ns
PUT_BATCH = 5000  # rows per transaction when files are recorded as they go (StatRecorder)


class FileStat(NamedTuple):
    """The four ``stat`` fields dataver compares, named as in ``os.stat_result`` so
    either can be passed where a stat is compared. A folder scan stores them as
    columns (``workspace.ScanFiles``) and hands these out on demand."""

    st_ino: int
    st_size: int
    st_mtime_ns: int
    st_mode: int


Stat = os.stat_result | FileStat


class NullState:
    """Remembers nothing: every file is hashed."""

    def rows_under(self, prefix: str) -> Iterator[tuple[str, Key, str]]:
        return iter(())

    def recorded_under(self, prefix: str) -> Generator[tuple[str, Key, str], None, None]:
        yield from ()

    def known_under(self, prefix: str, files: Mapping[str, Stat]) -> dict[str, Digest]:
        return {}

    def get(self, path: str, st: Stat) -> Digest | None:
        return None

    def put_many(self, root: str, hashed: Iterable[HashedFile]) -> None:
        pass

    def folder_manifest(self, path: str, fingerprint: str) -> str | None:
        return None

    def put_folder(self, path: str, fingerprint: str, manifest_hex: str) -> None:
        pass

    def close(self) -> None:
        pass


class State(NullState):
    """sqlite-backed stat cache at ``path``; keys are repo-relative posix paths."""

    def __init__(self, path: str):
        self.path = path
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        for attempt in (1, 2):
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                db.execute("SELECT count(*) FROM files LIMIT 1").fetchone()
                return db
            except sqlite3.DatabaseError as e:
                if attempt == 2 or "readonly" in str(e):
                    raise  # not damage: the caller works without a stat cache
                self._discard()
        raise AssertionError("unreachable")

    def _discard(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.path + suffix)
            except FileNotFoundError:
                pass

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError:
            self._rebuild()
            return []

    def _rebuild(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        self._discard()
        self._db = self._open()

    def rows_under(self, prefix: str) -> Iterator[tuple[str, Key, str]]:
        """``(path, (inode, size, mtime_ns), hex)`` of every entry under folder
        ``prefix``, in path order, streamed from one query (raises sqlite3.DatabaseError)."""
        lo = prefix + "/"
        hi = prefix + "0"  # '0' sorts right after '/'
        cursor = self._db.execute(
            "SELECT path, inode, size, mtime_ns, digest FROM files WHERE path >= ? AND path < ? ORDER BY path",
            (lo, hi),
        )
        for p, i, s, m, d in cursor:
            yield p, (i, s, m), d

    def recorded_under(self, prefix: str) -> Generator[tuple[str, Key, str], None, None]:
        """``(name relative to folder prefix, (inode, size, mtime_ns), hex)`` of its
        entries with a well-formed digest, in name order (code-point order, as in a
        manifest), for callers that merge them with a manifest instead of collecting
        them. A damaged database ends the stream early and is rebuilt: rows already
        read passed sqlite's page checks, and files it did not reach get hashed."""
        cut = len(prefix) + 1
        try:
            for path, key, hex_ in self.rows_under(prefix):
                if _is_hex(hex_):
                    yield path[cut:], key, hex_
        except sqlite3.DatabaseError:
            self._rebuild()

    def known_under(self, prefix: str, files: Mapping[str, Stat]) -> dict[str, Digest]:
        """The recorded digests of ``files`` (named relative to folder ``prefix``) whose
        inode, size and mtime still match. Rows are matched as they stream out of
        sqlite, so a 200,000-file folder never holds all its rows in memory."""
        cut = len(prefix) + 1
        known: dict[str, Digest] = {}
        try:
            for path, key, hex_ in self.rows_under(prefix):
                name = path[cut:]
                st = files.get(name)
                if st is not None and key == (st.st_ino, st.st_size, st.st_mtime_ns) and _is_hex(hex_):
                    known[name] = Digest(ALGORITHM, hex_)
        except sqlite3.DatabaseError:
            self._rebuild()
            return {}
        return known

    def get(self, path: str, st: Stat) -> Digest | None:
        rows = self._query("SELECT inode, size, mtime_ns, digest FROM files WHERE path = ?", (path,))
        if rows and rows[0][:3] == (st.st_ino, st.st_size, st.st_mtime_ns) and _is_hex(rows[0][3]):
            return Digest(ALGORITHM, rows[0][3])
        return None

    def put_many(self, root: str, hashed: Iterable[HashedFile]) -> None:
        """Record hashed files (absolute paths under ``root``) in one transaction."""
        now = time.time_ns()
        rows = [
            (os.path.relpath(h.path, root).replace(os.sep, "/"), h.inode, h.size, h.mtime_ns, h.digest.hex)
            for h in hashed
            if not is_racy(h.mtime_ns, now)
        ]
        if not rows:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", rows)
        except sqlite3.DatabaseError:
            self._rebuild()

    def folder_manifest(self, path: str, fingerprint: str) -> str | None:
        """The manifest digest (hex) recorded for folder ``path`` when its files had
        exactly this fingerprint, or None. One row replaces a whole folder's per-file
        lookups when nothing in it changed."""
        rows = self._query("SELECT fingerprint, manifest FROM folders WHERE path = ?", (path,))
        if rows and rows[0][0] == fingerprint and _is_hex(rows[0][1]):
            return rows[0][1]
        return None

    def put_folder(self, path: str, fingerprint: str, manifest_hex: str) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO folders VALUES (?, ?, ?)", (path, fingerprint, manifest_hex))
        except sqlite3.DatabaseError:
            self._rebuild()

    def close(self) -> None:
        self._db.close()


def is_racy(mtime_ns: int, now_ns: int) -> bool:
    """True if a same-size write could still go unseen at this mtime's resolution."""
    window = COARSE_RACY_WINDOW_NS if mtime_ns % 1_000_000 == 0 else RACY_WINDOW_NS
    return now_ns - mtime_ns < window


_HEX32 = re.compile(r"[0-9a-f]{32}")


def _is_hex(text: object) -> bool:
    return isinstance(text, str) and _HEX32.fullmatch(text) is not None


class StatRecorder:
    """Records hashed or placed files in a stat cache ``PUT_BATCH`` at a time, for
    callers that fold a stream of results (add, checkout, status): at 200,000 files
    they never hold every pending row at once. Call ``flush`` at the end."""

    def __init__(self, state: NullState, root: str):
        self.state, self.root = state, root
        self.pending: list[HashedFile] = []

    def add(self, hashed: HashedFile) -> None:
        self.pending.append(hashed)
        if len(self.pending) >= PUT_BATCH:
            self.flush()

    def flush(self) -> None:
        self.state.put_many(self.root, self.pending)
        self.pending = []
