"""The stat cache: (algorithm, path, inode, size, mtime_ns, ctime_ns) -> digest, in sqlite.

Rows are keyed by hash algorithm as well as path: a repository that switched
``core.hash`` asks for the digest under the algorithm it compares with, and never
gets one of another algorithm (which would read as "modified", or worse, be written
into a pointer of the wrong kind). It lets status and re-add of unchanged files cost a ``stat`` instead of a read. An
entry is trusted only when inode, size, mtime and ctime all still match: the ctime
because a tool can set the mtime back after an in-place edit of the same size
(``cp -p``, ``rsync -t``) but nothing sets the ctime back (git's ``core.trustctime``). Entries for files modified
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

from .digest import ALGORITHMS, Digest
from .hashing import HashedFile

RACY_WINDOW_NS = 100_000_000  # above the timestamp tick of ext4, xfs, btrfs, tmpfs
COARSE_RACY_WINDOW_NS = 2_000_000_000  # mtimes in whole milliseconds or coarser (FAT, HFS+, some NFS)
# Version 2 added the algorithm column, 3 the ctime. A database of another version is a
# cache like any other: its tables are dropped and made again (PRAGMA user_version).
SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    algorithm TEXT NOT NULL, path TEXT NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (algorithm, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS folders (
    algorithm TEXT NOT NULL, path TEXT NOT NULL, fingerprint TEXT NOT NULL, manifest TEXT NOT NULL,
    PRIMARY KEY (algorithm, path)
) WITHOUT ROWID;
"""
# Added within version 2 (made where missing, so no stat cache is dropped for it): per
# tracked folder, the watchman clock taken before the scan that found it to match
# ``manifest`` ("algorithm:hex"), with the watch's root and the folder's dev:inode.
_FSMONITOR_TABLE = """
CREATE TABLE IF NOT EXISTS fsmonitor (
    path TEXT PRIMARY KEY, watch_root TEXT NOT NULL, clock TEXT NOT NULL, folder TEXT NOT NULL,
    manifest TEXT NOT NULL
) WITHOUT ROWID
"""
# Also added within version 2: a folder manifest whose every blob the cache held when the
# cache's fan-out folders had this ``stamp`` (ObjectStore.stamp): while they keep it, no
# object was added or removed, so status need not look for each file's object again.
_PRESENCE_TABLE = """
CREATE TABLE IF NOT EXISTS presence (manifest TEXT PRIMARY KEY, stamp TEXT NOT NULL) WITHOUT ROWID
"""

Key = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns
PUT_BATCH = 5000  # rows per transaction when files are recorded as they go (StatRecorder)


class FileStat(NamedTuple):
    """The ``stat`` fields dataver compares, named as in ``os.stat_result`` so
    either can be passed where a stat is compared. A folder scan stores them as
    columns (``workspace.ScanFiles``) and hands these out on demand."""

    st_ino: int
    st_size: int
    st_mtime_ns: int
    st_mode: int
    st_ctime_ns: int


Stat = os.stat_result | FileStat


class NullState:
    """Remembers nothing: every file is hashed."""

    def rows_under(self, prefix: str, algorithm: str) -> Iterator[tuple[str, Key, str]]:
        return iter(())

    def recorded_under(self, prefix: str, algorithm: str) -> Generator[tuple[str, Key, str], None, None]:
        yield from ()

    def known_under(self, prefix: str, files: Mapping[str, Stat], algorithm: str) -> dict[str, Digest]:
        return {}

    def get(self, path: str, st: Stat, algorithm: str) -> Digest | None:
        return None

    def known_paths(self, prefix: str, files: Mapping[str, Stat], algorithm: str) -> dict[str, Digest]:
        return {}

    def put_many(self, root: str, hashed: Iterable[HashedFile]) -> None:
        pass

    def folder_manifest(self, path: str, fingerprint: str, algorithm: str) -> Digest | None:
        return None

    def put_folder(self, path: str, fingerprint: str, manifest: Digest) -> None:
        pass

    def fsmonitor_clock(self, path: str) -> tuple[str, str, str, Digest] | None:
        return None

    def presence_stamp(self, manifest: Digest) -> str | None:
        return None

    def put_presence(self, manifest: Digest, stamp: str) -> None:
        pass

    def put_fsmonitor(self, path: str, watch_root: str, clock: str, folder: str, manifest: Digest) -> None:
        pass

    def drop_fsmonitor(self, path: str) -> None:
        pass

    def forget(self, folder: str, names: list[str]) -> None:
        pass

    def rename(self, old: str, new: str) -> None:
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
                if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    _migrate(db)
                db.execute("SELECT count(*) FROM files LIMIT 1").fetchone()
                have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "fsmonitor" not in have:
                    db.execute(_FSMONITOR_TABLE)  # IF NOT EXISTS would take the write lock every time
                if "presence" not in have:
                    db.execute(_PRESENCE_TABLE)
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

    def rows_under(self, prefix: str, algorithm: str) -> Iterator[tuple[str, Key, str]]:
        """``(path, (inode, size, mtime_ns, ctime_ns), hex)`` of every ``algorithm`` entry under
        folder ``prefix``, in path order, streamed from one query (raises sqlite3.DatabaseError)."""
        lo = prefix + "/"
        hi = prefix + "0"  # '0' sorts right after '/'
        cursor = self._db.execute(
            "SELECT path, inode, size, mtime_ns, ctime_ns, digest FROM files"
            " WHERE algorithm = ? AND path >= ? AND path < ? ORDER BY path",
            (algorithm, lo, hi),
        )
        for p, i, s, m, c, d in cursor:
            yield p, (i, s, m, c), d

    def recorded_under(self, prefix: str, algorithm: str) -> Generator[tuple[str, Key, str], None, None]:
        """``(name relative to folder prefix, (inode, size, mtime_ns, ctime_ns), hex)`` of its
        entries with a well-formed digest, in name order (code-point order, as in a
        manifest), for callers that merge them with a manifest instead of collecting
        them. A damaged database ends the stream early and is rebuilt: rows already
        read passed sqlite's page checks, and files it did not reach get hashed."""
        cut = len(prefix) + 1
        length = ALGORITHMS[algorithm].hex_length
        try:
            for path, key, hex_ in self.rows_under(prefix, algorithm):
                if _is_hex(hex_, length):
                    yield path[cut:], key, hex_
        except sqlite3.DatabaseError:
            self._rebuild()

    def known_under(self, prefix: str, files: Mapping[str, Stat], algorithm: str) -> dict[str, Digest]:
        """The recorded digests of ``files`` (named relative to folder ``prefix``) whose
        inode, size, mtime and ctime still match. Rows are matched as they stream out of
        sqlite, so a 200,000-file folder never holds all its rows in memory."""
        cut = len(prefix) + 1
        length = ALGORITHMS[algorithm].hex_length
        known: dict[str, Digest] = {}
        try:
            for path, key, hex_ in self.rows_under(prefix, algorithm):
                name = path[cut:]
                st = files.get(name)
                if st is not None and key == stat_key(st) and _is_hex(hex_, length):
                    known[name] = Digest(algorithm, hex_)
        except sqlite3.DatabaseError:
            self._rebuild()
            return {}
        return known

    def known_paths(self, prefix: str, files: Mapping[str, Stat], algorithm: str) -> dict[str, Digest]:
        """``known_under`` for a few files among many: looked up by path, 500 at a time,
        rather than by reading every row under the folder."""
        length = ALGORITHMS[algorithm].hex_length
        names = list(files)
        known: dict[str, Digest] = {}
        for i in range(0, len(names), 500):
            batch = {f"{prefix}/{n}": n for n in names[i : i + 500]}
            marks = ", ".join("?" * len(batch))
            rows = self._query(
                f"SELECT path, inode, size, mtime_ns, ctime_ns, digest FROM files"
                f" WHERE algorithm = ? AND path IN ({marks})",
                (algorithm, *batch),
            )
            for path, ino, size, mtime, ctime, hex_ in rows:
                name = batch[path]
                if (ino, size, mtime, ctime) == stat_key(files[name]) and _is_hex(hex_, length):
                    known[name] = Digest(algorithm, hex_)
        return known

    def get(self, path: str, st: Stat, algorithm: str) -> Digest | None:
        """The file's recorded ``algorithm`` digest, if its stat still matches."""
        rows = self._query(
            "SELECT inode, size, mtime_ns, ctime_ns, digest FROM files WHERE algorithm = ? AND path = ?",
            (algorithm, path),
        )
        if rows and rows[0][:4] == stat_key(st) and _is_hex(rows[0][4], ALGORITHMS[algorithm].hex_length):
            return Digest(algorithm, rows[0][4])
        return None

    def put_many(self, root: str, hashed: Iterable[HashedFile]) -> None:
        """Record hashed files (absolute paths under ``root``) in one transaction,
        each under its digest's algorithm."""
        now = time.time_ns()
        rows = []
        for h in hashed:
            if not is_racy(h.mtime_ns, now):
                rel = os.path.relpath(h.path, root).replace(os.sep, "/")
                rows.append((h.digest.algorithm, rel, h.inode, h.size, h.mtime_ns, h.ctime_ns, h.digest.hex))
        if not rows:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.DatabaseError:
            self._rebuild()

    def folder_manifest(self, path: str, fingerprint: str, algorithm: str) -> Digest | None:
        """The ``algorithm`` manifest digest recorded for folder ``path`` when its files
        had exactly this fingerprint, or None. One row replaces a whole folder's
        per-file lookups when nothing in it changed."""
        rows = self._query(
            "SELECT fingerprint, manifest FROM folders WHERE algorithm = ? AND path = ?", (algorithm, path)
        )
        if rows and rows[0][0] == fingerprint and _is_hex(rows[0][1], ALGORITHMS[algorithm].hex_length):
            return Digest(algorithm, rows[0][1])
        return None

    def put_folder(self, path: str, fingerprint: str, manifest: Digest) -> None:
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO folders VALUES (?, ?, ?, ?)",
                (manifest.algorithm, path, fingerprint, manifest.hex),
            )
        except sqlite3.DatabaseError:
            self._rebuild()

    def presence_stamp(self, manifest: Digest) -> str | None:
        """The cache stamp under which every blob of ``manifest`` was found present."""
        rows = self._query("SELECT stamp FROM presence WHERE manifest = ?", (str(manifest),))
        return str(rows[0][0]) if rows else None

    def put_presence(self, manifest: Digest, stamp: str) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO presence VALUES (?, ?)", (str(manifest), stamp))
        except sqlite3.DatabaseError:
            self._rebuild()

    def fsmonitor_clock(self, path: str) -> tuple[str, str, str, Digest] | None:
        """(watch root, clock, folder dev:inode, manifest) recorded for folder ``path``
        by ``put_fsmonitor``, or None."""
        rows = self._query("SELECT watch_root, clock, folder, manifest FROM fsmonitor WHERE path = ?", (path,))
        if not rows:
            return None
        algorithm, _, hex_ = str(rows[0][3]).partition(":")
        if algorithm not in ALGORITHMS or not _is_hex(hex_, ALGORITHMS[algorithm].hex_length):
            return None
        return rows[0][0], rows[0][1], rows[0][2], Digest(algorithm, hex_)

    def put_fsmonitor(self, path: str, watch_root: str, clock: str, folder: str, manifest: Digest) -> None:
        """Record that a scan which began at watchman ``clock`` found folder ``path``
        to match ``manifest``."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO fsmonitor VALUES (?, ?, ?, ?, ?)",
                (path, watch_root, clock, folder, f"{manifest.algorithm}:{manifest.hex}"),
            )
        except sqlite3.DatabaseError:
            self._rebuild()

    def drop_fsmonitor(self, path: str) -> None:
        try:
            self._db.execute("DELETE FROM fsmonitor WHERE path = ?", (path,))
        except sqlite3.DatabaseError:
            self._rebuild()

    def forget(self, folder: str, names: list[str]) -> None:
        """Drop the rows of files ``names`` (relative to ``folder``), of every
        algorithm, and the folder's fingerprint: they are hashed again."""
        keys = [(a, f"{folder}/{n}") for n in names for a in ALGORITHMS]
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM files WHERE algorithm = ? AND path = ?", keys)
                self._db.execute("DELETE FROM folders WHERE path = ?", (folder,))
        except sqlite3.DatabaseError:
            self._rebuild()

    def rename(self, old: str, new: str) -> None:
        """What is recorded for path ``old`` and everything under it, now under ``new``
        (``dataver move``: rename(2) keeps the files' inodes and times, so their rows
        still vouch; a moved file's own ctime changed, and its row then simply misses)."""
        lo, hi, cut = old + "/", old + "0", len(old) + 1
        try:
            with self._db:
                self._db.execute("BEGIN")
                for table in ("files", "folders"):
                    self._db.execute(
                        f"DELETE FROM {table} WHERE path = ? OR (path >= ? AND path < ?)", (new, new + "/", new + "0")
                    )
                    self._db.execute(
                        f"UPDATE {table} SET path = ? || substr(path, ?) WHERE path = ? OR (path >= ? AND path < ?)",
                        (new, cut, old, lo, hi),
                    )
                self._db.execute("DELETE FROM fsmonitor WHERE path IN (?, ?)", (old, new))
        except sqlite3.DatabaseError:
            self._rebuild()

    def close(self) -> None:
        self._db.close()


def stat_key(st: Stat) -> Key:
    """What a stat-cache row is matched on: inode, size, mtime, ctime."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def is_racy(mtime_ns: int, now_ns: int) -> bool:
    """True if a same-size write could still go unseen at this mtime's resolution."""
    window = COARSE_RACY_WINDOW_NS if mtime_ns % 1_000_000 == 0 else RACY_WINDOW_NS
    return now_ns - mtime_ns < window


_HEX_OF_LENGTH = {n: re.compile(f"[0-9a-f]{{{n}}}") for n in {a.hex_length for a in ALGORITHMS.values()}}


def _is_hex(text: object, length: int) -> bool:
    return isinstance(text, str) and _HEX_OF_LENGTH[length].fullmatch(text) is not None


def _migrate(db: sqlite3.Connection) -> None:
    """Make the tables of this schema version, dropping those of another one (their
    rows are only a cache). Checked again under the write lock: another process may
    have done it meanwhile."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            db.execute("DROP TABLE IF EXISTS files")
            db.execute("DROP TABLE IF EXISTS folders")
            db.execute("DROP TABLE IF EXISTS fsmonitor")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


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
