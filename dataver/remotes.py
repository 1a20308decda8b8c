"""Remotes: a config section or URL -> an object store over fsspec.

A remote holds objects in the cache's layout (``xxh3-128/ab/cdef...`` plus
``.manifest``) under its URL. This module is the boundary to fsspec, s3fs and
botocore: their exceptions are retried here when transient and translated into
``RemoteError`` (naming the remote, never its credentials) when not.

Atomic uploads: on filesystems with rename (local folders, sftp) an object is
written under ``tmp/`` and renamed into place; on object stores (s3, gcs, azure,
memory) a single PUT or a completed multipart upload is already atomic.
"""

from __future__ import annotations

import errno
import io
import os
import re
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, TypeVar

from . import chunked, packfmt, packstore, s3io
from .concurrency import run_parallel
from .config import Config
from .digest import ALGORITHMS, Digest
from .errors import ConfigError, IntegrityError, ObjectsMissing, PointerError, RemoteError
from .fsutil import files_older_than, read_range
from .linking import write_new
from .store import MANIFEST_SUFFIX, Batch, DirectBatch, ObjRef, check_bytes, check_file

T = TypeVar("T")

SECTION_PREFIX = 'remote "'
SECRET_KEYS = ("access_key_id", "secret_access_key", "session_token", "password", "key_file")
S3_KEYS = (
    "endpoint_url",
    "region",
    "profile",
    "anonymous",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "jobs",
    "layout",
)
# Protocols whose fsspec implementation offers an atomic rename (mv) within the store.
RENAME_PROTOCOLS = ("file", "local", "sftp", "ssh")
LIST_PAGE_KEYS = 1000  # S3 ListObjectsV2 page size
READ_ONLY_PROTOCOLS = ("http", "https")
# Package that provides each protocol, for the "install it" message.
BACKEND_PACKAGES = {
    "s3": "s3fs (pip install 'dataver[s3]')",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "sftp": "paramiko",
    "ssh": "paramiko",
    "http": "aiohttp",
    "https": "aiohttp",
}
UPLOAD_PART_SIZE = 8 * 1024 * 1024
# The names uploads give their temporaries in <remote>/tmp/; gc removes no other file
# there (a remote URL can come from a stranger's committed config).
_OUR_TEMP = re.compile(r"(\d+-)?[0-9a-f]{16}\.tmp")
RETRIES = 4


def section_name(name: str) -> str:
    return f'{SECTION_PREFIX}{name}"'


def check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise ConfigError(f"invalid remote name {name!r}", "use letters, digits, '.', '_' or '-'")


def remote_names(config: Config) -> list[str]:
    return [s[len(SECTION_PREFIX) : -1] for s in config.sections() if s.startswith(SECTION_PREFIX) and s.endswith('"')]


def redact(url: str) -> str:
    """A URL fit for messages: any user:password@ part removed."""
    return re.sub(r"//[^/@]*@", "//", url)


# fsspec protocols whose URL names a host, bucket or container before the first "/"
_NEEDS_HOST = frozenset(
    "s3 s3a gs gcs az abfs abfss adl oss http https ftp sftp ssh smb webdav webhdfs hdfs oci tos tosfs".split()
)
# fsspec protocols that are no place to keep objects (wrappers, archives, read-only views)
_NOT_A_STORE = frozenset(
    "dataver dvc cached blockcache filecache simplecache reference zip tar libarchive data generic "
    "git github gist dir async_wrapper asyncwrapper dask jupyter jlab pyscript root wandb".split()
)


def check_url(url: str) -> str | None:
    """Refuse a remote URL that cannot work (ConfigError): empty, an unknown protocol, a
    network protocol with no host or bucket, a wrapper or archive protocol. A folder
    path is fine. Returns a note when the protocol needs a package not installed here."""
    shown = redact(url)
    if not url.strip():
        raise ConfigError("a remote URL cannot be empty", "give a folder path or a URL such as s3://BUCKET/PREFIX")
    if "://" not in url:
        return None  # a folder path (relative ones are taken from the repository root)
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    example = "a folder path, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, or another fsspec URL"
    if scheme in ("file", "local"):
        if not rest.strip("/"):
            raise ConfigError(f"remote URL {shown!r} names no folder", "e.g. file:///srv/dataver-store")
        return None
    if scheme in _NOT_A_STORE:
        raise ConfigError(f"remote URL {shown!r}: {scheme}:// cannot hold a remote's objects", f"use {example}")
    import fsspec

    note = None
    try:
        fsspec.get_filesystem_class(scheme)
    except ValueError:
        raise ConfigError(f"remote URL {shown!r}: unknown protocol {scheme!r}", f"use {example}") from None
    except ImportError as e:
        note = f"{scheme}:// needs a package not installed here: {e}"
    if scheme in _NEEDS_HOST and not rest.split("/", 1)[0].split("@")[-1]:
        raise ConfigError(f"remote URL {shown!r} names no host or bucket", f"e.g. {scheme}://HOST-OR-BUCKET/PATH")
    return note


def ref_from_name(fan: str, name: str, algorithm: str | None = None) -> ObjRef | None:
    """The object a remote file ``<algorithm>/<fan>/<name>`` holds (default algorithm:
    xxh3-128), or None if it is not one of ours (gc must never delete what it cannot name)."""
    from .digest import DEFAULT_ALGORITHM

    algorithm = algorithm or DEFAULT_ALGORITHM
    is_manifest = name.endswith(MANIFEST_SUFFIX)
    hex_ = fan + (name[: -len(MANIFEST_SUFFIX)] if is_manifest else name)
    try:
        return ObjRef(Digest(algorithm, hex_), is_manifest)
    except PointerError:
        return None


def default_remote_name(config: Config) -> str:
    name = config.get("core.remote")
    if name:
        return name
    names = remote_names(config)
    if len(names) == 1:
        return names[0]
    if not names:
        raise RemoteError("no remote is configured", "add one: dataver remote add NAME URL --default")
    raise RemoteError(
        f"several remotes ({', '.join(names)}) and no default",
        "name one with -r NAME, or set: dataver remote default NAME",
    )


def memory_store(name: str = "memory") -> RemoteStore:
    """A store in memory, for tests: fsspec's MemoryFileSystem with a dict of its own
    (the class's default store is shared by the whole process)."""
    from fsspec.implementations.memory import MemoryFileSystem

    fs = MemoryFileSystem(skip_instance_cache=True)
    fs.store, fs.pseudo_dirs = {}, [""]
    store = RemoteStore(name, "memory://dataver", {})
    store._fs = fs
    return store


def open_remote(config: Config, name: str | None, repo_root: str | None = None) -> RemoteStore:
    name = name or default_remote_name(config)
    options = config.section(section_name(name))
    if options is None or "url" not in options:
        raise RemoteError(
            f"remote {name!r} is not configured",
            f"known remotes: {', '.join(remote_names(config)) or 'none'}; add one with dataver remote add",
        )
    url = options["url"]
    try:
        check_url(url)  # a committed config may name a URL no remote add would take
    except ConfigError as e:
        raise ConfigError(
            f"remote {name!r}: {e.message}", f"fix it: dataver remote modify {name} url NEW-URL ({e.hint})"
        ) from None
    path = url[len("file://") :] if url.startswith("file://") else url if "://" not in url else None
    relative = path is not None and not os.path.isabs(os.path.expanduser(path))
    if relative and repo_root is not None:
        url = os.path.normpath(os.path.join(repo_root, path))  # relative to the repository root
    options = {k: v for k, v in options.items() if k != "url"}
    cls = LocalRemoteStore if _split_url(url)[0] == "file" else RemoteStore
    store = cls(name, url, options)
    store.relative = relative and repo_root is None
    return store


class BytesReader(io.RawIOBase):
    """A seekable read-only file over ``data`` that never copies it whole (an upload body
    for clients that would: see ``RemoteStore.write_file``). ``len()`` is the size."""

    def __init__(self, data: bytes | bytearray | memoryview):
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._at = 0

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        piece = self._view[self._at : self._at + len(b)]
        n = len(piece)
        memoryview(b).cast("B")[:n] = piece
        self._at += n
        return n

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._at + size)
        piece = self._view[self._at : end].tobytes() if end > self._at else b""
        self._at = max(self._at, end)
        return piece

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._at = base + offset
        return self._at

    def tell(self) -> int:
        return self._at


class RemoteStore:
    """Objects on one remote. Methods retry transient faults and raise RemoteError."""

    def __init__(self, name: str, url: str, options: dict[str, str]):
        self.name = name
        self.url = url
        self.display = redact(url)
        self.protocol, self.root, storage = _split_url(url)
        self._storage = _storage_options(self.protocol, options, storage)
        self.jobs = int(options["jobs"]) if options.get("jobs", "").isdigit() else None
        # "loose": never start the packed layout here (for teams still on a dataver without packs)
        self.layout = options.get("layout", "").strip().lower()
        if self.layout not in ("", "packed", "loose"):
            raise ConfigError(f"remote {name!r}: layout must be 'packed' or 'loose', not {self.layout!r}")
        self.relative = False  # a relative folder path that no repository root anchored
        self._fs: Any = None
        self._marker: Any = _UNREAD  # packstore.Marker, or None for a loose (format 1) remote
        self._index: Any = None  # packstore.PackIndex, once a packed remote is read
        self._reachable = False

    def default_jobs(self) -> int:
        """Parallel requests when neither ``-j`` nor the ``jobs`` option says: many, since
        a network store's latency, not the CPU, bounds each request."""
        return max(8, 4 * (os.cpu_count() or 1))

    # -- the fsspec filesystem, built lazily (importing s3fs costs ~0.3 s) ----------
    @property
    def fs(self) -> Any:
        if self._fs is None:
            import fsspec

            try:
                cls = fsspec.get_filesystem_class(self.protocol)
            except (ImportError, ValueError) as e:
                package = BACKEND_PACKAGES.get(self.protocol)
                need = f"install {package}" if package else "install the fsspec backend for it"
                raise RemoteError(
                    f"remote {self.name!r} uses {self.protocol}://, which is not available here: {e}", need
                ) from None
            self._fs = self._call(lambda: cls(**self._storage), "connect to")
            if self.protocol == "s3":
                self._fs.retries = 1  # we retry (with backoff) one level up, in _call
            if getattr(self._fs, "async_impl", False):
                _quiet_dropped_connection_tasks(self._fs.loop)
        return self._fs

    @property
    def read_only(self) -> bool:
        return self.protocol in READ_ONLY_PROTOCOLS

    @property
    def where(self) -> str:
        return f"remote {self.name!r} ({self.display})"

    # -- the store contract (dataver/store.py) -----------------------------------------
    def has(self, ref: ObjRef) -> bool:
        return not self.missing([ref])

    def put_bytes(self, ref: ObjRef, data: bytes) -> None:
        check_bytes(ref, data, self.where)
        self.upload_bytes(data, ref)

    def put_file(self, ref: ObjRef, path: str, hasher: Any) -> None:
        check_file(ref, path, hasher, self.where)
        self.upload(path, ref)

    def read(self, ref: ObjRef, start: int = 0, end: int | None = None) -> bytes:
        record = self._packed_record(ref)
        if record is not None:
            return self._read_packed(ref, lambda rec: self._read_entry(rec, start, end))
        return self._read_loose(ref, start, end)

    def _read_entry(self, record: Any, start: int = 0, end: int | None = None) -> bytes:
        """The bytes ``[start, end)`` of a packed object, whole or chunked (then only
        the chunks that overlap the range are read)."""
        if record.entry.kind != packfmt.KIND_MAP:
            return packstore.read_entry(self, record, start, end)
        lo = max(start, 0)
        spans: list[tuple[int, bytes]] = []
        lock = threading.Lock()

        def keep(offset: int, data: bytes) -> None:
            with lock:
                spans.append((offset, data))

        _, size = chunked.rebuild(self, self._index, record, keep, None, self._rebuild_jobs(), (lo, end or 1 << 62))
        hi = size if end is None else min(end, size)
        if hi <= lo:
            return b""
        out = bytearray(hi - lo)
        for offset, data in spans:
            a, b = max(offset, lo), min(offset + len(data), hi)
            if a < b:
                out[a - lo : b - lo] = data[a - offset : b - offset]
        return bytes(out)

    def _read_loose(self, ref: ObjRef, start: int, end: int | None) -> bytes:
        def read() -> bytes:
            if end is not None and end <= start:
                return b""
            try:
                # start=0, not None: a whole-object read is then one ranged GET (s3fs sends
                # a HEAD first for start=None, to choose between one GET and parallel ones)
                return self.fs.cat_file(self.path(ref), start=start, end=end)
            except OSError as e:
                if e.errno == errno.EINVAL and "range" in str(e).lower():
                    return b""  # S3 answers a range past the end (or of an empty object) with 416
                raise

        return self._call(read, "download from", ref)

    def get_file(self, ref: ObjRef, dest: str, have: Any = None) -> None:
        """``have`` (chunked.LocalChunks): where chunks of other cached files are, for a
        chunked object (then only the chunks the cache lacks are downloaded)."""
        record = self._packed_record(ref)
        if record is None:
            self.download(ref, dest)
            return
        if record.entry.kind == packfmt.KIND_MAP:
            self._read_packed(ref, lambda rec: self._rebuild_file(ref, rec, dest, have))
            return
        data = self._read_packed(ref, lambda rec: packstore.read_entry(self, rec))
        with open(dest, "wb") as f:
            f.write(data)

    def _rebuild_jobs(self) -> int:
        """Ranged reads in flight while one chunked file is rebuilt: each holds up to
        8 MiB (packstore.RANGE_MAX), so at most 8 of them, whatever the CPU count."""
        return min(8, self.default_jobs())

    def _rebuild_file(self, ref: ObjRef, record: Any, dest: str, have: Any) -> None:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            data, size = chunked.rebuild(self, self._index, record, chunked.write_at(fd), have, self._rebuild_jobs())
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        if have is not None:  # a hint for the next version of this file (checked when used)
            have.cache.put_map(ref.digest, data)

    def delete(self, refs: Iterable[ObjRef]) -> None:
        self.delete_planned(refs)

    def delete_planned(self, refs: Iterable[ObjRef], jobs: int = 8) -> packstore.PackPlan | None:
        """``delete``, returning what it did to the packs (None on a loose remote)."""
        refs = list(refs)
        index = self._index_for_writing()
        packed = [r for r in refs if index is not None and index.holds(r)]
        loose = [r for r in refs if index is None or not index.holds(r)]
        if loose:
            self.remove(loose)
        if index is None:
            return None
        expand = chunked.garbage_chunks(self, jobs)
        return packstore.collect(self, index, packed, self.marker.pack_size, jobs, expand)

    def plan_delete(self, refs: Iterable[ObjRef]) -> packstore.PackPlan | None:
        """What ``delete`` would do to the packs, without doing it (gc --dry-run)."""
        index = self._index_for_writing()
        if index is None:
            return None
        sizes, mtimes = packstore.pack_sizes(self)
        index.load()
        doomed = chunked.garbage_chunks(self, 8)(index, packstore.doomed_keys(refs))
        now = time.time()
        p = packstore.plan(index, self, doomed, sizes, now)
        named = set(index.packs())
        p.orphans = [pk for pk in sizes if pk not in named]
        return p

    def check_packs(self, deep: bool = False, jobs: int = 8) -> list[tuple[str, str]]:
        """(what, problem) where the index and the packs disagree (packstore.check_packs);
        [] for a loose remote."""
        index = self._packed_index()
        return [] if index is None else packstore.check_packs(self, index, deep, jobs)

    def writer(self, jobs: int = 8) -> Batch:
        """A batch of puts (see store.Store.writer): on a packed remote, small objects
        go into packs under a shared lock and become visible with one index file."""
        if self._index_for_writing() is None:
            return DirectBatch(self)
        return _PackedBatch(self, jobs)

    def read_many(self, refs: list[ObjRef], sink: Callable[[ObjRef, Any], None], jobs: int = 8) -> None:
        """``sink(ref, bytes)`` for each object, or ``sink(ref, error)`` for one that is
        absent or does not unpack (see store.Store.read_many): packed objects with
        coalesced ranged reads, loose ones one read each. Many refs are read a batch at
        a time (``READ_BATCH``): the index records looked up for them are held for one
        batch, not for the whole pull."""
        for at in range(0, len(refs), READ_BATCH):
            self._read_batch(refs[at : at + READ_BATCH], sink, jobs)

    def _read_batch(self, refs: list[ObjRef], sink: Callable[[ObjRef, Any], None], jobs: int) -> None:
        index = self._packed_index()
        found = [(r, rec) for r in refs if index is not None and (rec := index.find_stored(r)) is not None]
        in_pack = {r for r, _ in found}
        loose = [r for r in refs if r not in in_pack]
        packed = [(r, rec) for r, rec in found if rec.entry.kind != packfmt.KIND_MAP]
        for r, rec in found:
            if rec.entry.kind == packfmt.KIND_MAP:  # a chunked object among small ones (1 to 8 MiB)
                try:
                    sink(r, self._read_packed(r, self._read_entry))
                except (ObjectsMissing, IntegrityError) as e:
                    sink(r, e)
        if packed:
            gone = packstore.read_many(self, packed, sink, jobs)
            if gone:  # a gc repacked them since the index was read
                index.load(force=True)
                again = [(r, rec) for r in gone if (rec := index.find(r)) is not None]
                loose += [r for r in gone if index.find(r) is None]
                for r in packstore.read_many(self, again, sink, jobs):
                    sink(r, self._absent(r))

        def one(ref: ObjRef) -> None:
            try:
                data = self._read_loose(ref, 0, None)
            except ObjectsMissing as e:
                sink(ref, e)
                return
            sink(ref, data)

        run_parallel(one, loose, jobs)

    # -- the packed layout (packstore) ------------------------------------------------
    @property
    def marker(self) -> Any:
        """The remote's format marker (packstore.Marker), or None: a loose remote."""
        if self._marker is _UNREAD:
            from . import packstore

            try:
                data = self.read_file(packstore.MARKER)
            except ObjectsMissing:
                self._marker = None
            else:
                self._marker = packstore.Marker.parse(data, self.where)
        return self._marker

    def _packed_index(self) -> Any:
        """The merged index of a packed remote, or None for a loose one.

        A reader does not need the marker: index files are found by listing ``index/``
        (their names and magic carry their format, docs/formats.md), so where that
        listing is not empty the marker is not read. Writers read it first
        (``prepare_write``), and so does a read that finds an object missing
        (``_absent``: a newer dataver's remote says so)."""
        if self._index is None:
            listed = None
            if self._marker is _UNREAD:
                listed = packstore.PackIndex(self)
                if listed.listing():
                    self._index = listed
                    self._reachable = True  # the listing answered
                    return listed
            if self.marker is not None:
                self._index = listed or packstore.PackIndex(self)
        return self._index

    def _index_for_writing(self) -> Any:
        """``_packed_index`` after reading the marker: a command that changes the remote
        checks first that it knows the remote's format (a newer dataver's is refused)."""
        _ = self.marker
        return self._packed_index()

    def _absent(self, ref: ObjRef) -> ObjectsMissing:
        """The error for an object this remote does not hold, or a RemoteError where the
        remote was written by a newer dataver (its marker, if not read so far, says so)."""
        if self._marker is _UNREAD:
            _ = self.marker
        return ObjectsMissing(f"object {ref.digest} is not on {self.where}")

    def _packed_record(self, ref: ObjRef) -> Any:
        """The record that stores ``ref`` in a pack: its own, or its chunk map's."""
        index = self._packed_index()
        return None if index is None else index.find_stored(ref)

    def _read_packed(self, ref: ObjRef, read: Callable[[Any], T]) -> T:
        """``read(record)``, once more after reloading the index if the pack is gone."""
        try:
            return read(self._index.find_stored(ref))
        except ObjectsMissing:
            self._index.load(force=True)
            record = self._index.find_stored(ref)
            if record is None:
                raise self._absent(ref) from None
            return read(record)

    def start_packed(self) -> bool:
        """Write the format marker if this remote holds no objects yet (a new remote is
        packed; one that already holds loose objects stays as it is until
        ``dataver remote upgrade``). True when the remote is packed."""
        if self.marker is not None:
            return True
        if self.layout == "loose":
            return False
        names = {name for name, _, _ in self._list_top()}
        if names & set(ALGORITHMS):
            return False
        self.write_file(packstore.MARKER, packstore.Marker().to_bytes())
        self._marker = packstore.Marker()
        return True

    def upgrade(self) -> Any:
        """Make a loose remote packed: write the marker. Loose objects stay readable."""
        if self.marker is None:
            self.prepare_write()
            self.write_file(packstore.MARKER, packstore.Marker().to_bytes())
            self._marker = packstore.Marker()
        return self._marker

    # -- files below the root (packstore.Files) ---------------------------------------
    def _abs(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    def read_file(self, rel: str, start: int = 0, end: int | None = None) -> bytes:
        return self._read_below(rel, start, end, streamed=False)  # type: ignore[return-value]

    def read_buffer(self, rel: str, start: int, end: int) -> bytes | bytearray:
        streamed = end - start > s3io.PIECE and self.protocol in ("s3", "s3a")
        return self._read_below(rel, start, end, streamed)

    def _read_below(self, rel: str, start: int, end: int | None, streamed: bool) -> bytes | bytearray:
        path = self._abs(rel)

        def read() -> bytes | bytearray:
            if end is not None and end <= start:
                return b""
            try:
                if streamed and end is not None:
                    return s3io.read_range(self.fs, path, start, end)  # one buffer: see dataver/s3io.py
                return self.fs.cat_file(path, start=start, end=end)  # start=0: no HEAD (see _read_loose)
            except FileNotFoundError:
                raise ObjectsMissing(f"{rel} is not on {self.where}") from None
            except OSError as e:
                if e.errno == errno.EINVAL and "range" in str(e).lower():
                    return b""
                raise

        return self._call(read, "download from")

    def write_file(self, rel: str, data: bytes) -> None:
        if self.read_only:
            raise RemoteError(f"remote {self.name!r} ({self.display}) is read-only ({self.protocol}://)")
        if self.protocol in RENAME_PROTOCOLS:
            self._write_renamed_to(lambda tmp: self.fs.pipe_file(tmp, data), self._abs(rel))
        elif self.protocol in ("s3", "s3a"):
            # botocore turns bytes into a BytesIO, and aiohttp's payload for a BytesIO
            # copies it whole (getbuffer unshares it): a second 16 MiB per pack in flight.
            # A reader over the same bytes is streamed in pieces instead.
            self._call(lambda: self.fs.pipe_file(self._abs(rel), BytesReader(data)), "upload to")
        else:
            self._call(lambda: self.fs.pipe_file(self._abs(rel), data), "upload to")

    def list_files(self, rel_dir: str) -> list[tuple[str, int, float]]:
        def ls() -> list[tuple[str, int, float]]:
            try:
                infos = self.fs.ls(self._abs(rel_dir), detail=True)
            except FileNotFoundError:
                return []
            return [
                (os.path.basename(str(i["name"]).rstrip("/")), int(i.get("size") or 0), _mtime(i))
                for i in infos
                if i.get("type") != "directory"
            ]

        return self._call(ls, "list")

    def _list_top(self) -> list[tuple[str, int, float]]:
        def ls() -> list[tuple[str, int, float]]:
            try:
                return [(os.path.basename(str(p).rstrip("/")), 0, 0.0) for p in self.fs.ls(self.root, detail=False)]
            except FileNotFoundError:
                return []

        return self._call(ls, "list")

    def delete_files(self, rels: list[str]) -> None:
        if rels:
            self._rm_paths([self._abs(r) for r in rels])

    def path(self, ref: ObjRef) -> str:
        return f"{self.root.rstrip('/')}/{ref.relpath()}"

    # -- which objects are there -----------------------------------------------------
    def missing(self, refs: list[ObjRef], jobs: int = 8) -> list[ObjRef]:
        """The refs the remote lacks, in few round trips.

        Few objects: parallel existence checks. Many: list only the fan-out folders
        they live in (at most 256 listings, paginated by the store), which is far
        cheaper than one request per object.
        """
        if not refs:
            return []
        self.check_reachable()
        index = self._packed_index()
        if index is not None:
            if len(refs) > index.FEW:
                index.load()
            asked, refs = refs, [r for r in refs if not index.holds(r)]
            if not refs:
                return []
            lacking = set(self._missing_loose(refs, jobs))
            return [r for r in asked if r in lacking]
        return self._missing_loose(refs, jobs)

    def _missing_loose(self, refs: list[ObjRef], jobs: int) -> list[ObjRef]:
        if len(refs) <= 64:
            present = run_parallel(lambda r: self._exists(self.path(r)), refs, jobs)
            return [r for r, ok in zip(refs, present, strict=True) if not ok]
        fans = sorted({os.path.dirname(self.path(r)) for r in refs})
        have = self._whole_listing(fans)
        if have is None:
            listed = run_parallel(self._list_names, fans, jobs)
            have = {f"{fan}/{n}" for fan, names in zip(fans, listed, strict=True) for n in names}
        return [r for r in refs if self.path(r) not in have]

    def _whole_listing(self, fans: list[str]) -> set[str] | None:
        """Every object path on the remote, when one paginated listing of it (1,000
        keys a page on S3) is estimated to cost fewer requests than listing ``fans``
        one by one; else None. The estimate comes from listing the first fan-out
        folder, which holds about 1/256 of the objects."""
        if len(fans) < 16:
            return None
        sample = len(self._list_names(fans[0]))
        pages = sample * 256 // LIST_PAGE_KEYS + 1
        if pages * 4 > len(fans):
            return None
        have: set[str] = set()
        for base in sorted({os.path.dirname(fan) for fan in fans}):  # <root>/<algorithm>, each one asked about

            def find(base: str = base) -> list[str]:
                try:
                    return [str(p).rstrip("/") for p in self.fs.find(base)]
                except FileNotFoundError:
                    return []

            tails = (p.rsplit("/", 2)[-2:] for p in self._call(find, "list"))
            have.update(f"{base}/{t[0]}/{t[1]}" for t in tails if len(t) == 2)
        return have

    def check_reachable(self) -> None:
        """One cheap request, so a wrong endpoint, bucket or credential fails once, fast
        (once per command: a remote that answered stays answered; a packed remote's
        marker, which is read anyway, is that answer)."""
        if self._reachable or self._packed_index() is not None:
            self._reachable = True
            return
        self._check_reachable()
        self._reachable = True

    def _check_reachable(self) -> None:
        if self.protocol == "s3":
            bucket = self.root.split("/", 1)[0]
            self._call(lambda: self.fs.ls(bucket, detail=False) and None, "list")
        elif not self._call(lambda: self.fs.exists(self.root), "check"):
            raise RemoteError(
                f"remote {self.name!r} ({self.display}) does not exist",
                "check the URL (dataver remote list), or dataver push to create it",
            )

    def prepare_write(self) -> None:
        """Create the remote's root folder where the store has folders (push may start a remote)."""
        if self.protocol in (*RENAME_PROTOCOLS, "memory") and not self.read_only:
            self._call(lambda: self.fs.makedirs(self.root, exist_ok=True), "create")
        if not self.read_only:
            self.start_packed()

    def _exists(self, path: str) -> bool:
        return self._call(lambda: self.fs.exists(path), "check")

    def _list_names(self, folder: str) -> list[str]:
        def ls() -> list[str]:
            try:
                return [os.path.basename(str(p).rstrip("/")) for p in self.fs.ls(folder, detail=False)]
            except FileNotFoundError:
                return []  # check_reachable already proved the bucket or folder is there

        return self._call(ls, "list")

    def iter_objects(self) -> list[tuple[ObjRef, int]]:
        """Every object on the remote with its size (one recursive listing per algorithm)."""
        from .digest import ALGORITHMS

        out = []
        for algorithm in ALGORITHMS:
            base = f"{self.root.rstrip('/')}/{algorithm}"

            def find(base: str = base) -> dict:
                try:
                    return self.fs.find(base, detail=True)
                except FileNotFoundError:
                    return {}

            for path, info in self._call(find, "list").items():
                ref = ref_from_name(*str(path).rstrip("/").split("/")[-2:], algorithm)
                if ref is not None:
                    out.append((ref, int(info.get("size") or 0)))
        return self._with_packed(out)

    def _with_packed(self, loose: list[tuple[ObjRef, int]]) -> list[tuple[ObjRef, int]]:
        index = self._packed_index()
        if index is None:
            return loose
        seen = {ref for ref, _ in loose}
        return loose + [(ref, size) for ref, size in packstore.iter_packed(self, index) if ref not in seen]

    def remove(self, refs: list[ObjRef]) -> None:
        self._rm_paths([self.path(r) for r in refs])

    def _rm_paths(self, paths: list[str]) -> None:
        if self.read_only:
            raise RemoteError(f"remote {self.name!r} ({self.display}) is read-only")

        def rm() -> None:
            try:
                self.fs.rm(paths)
            except FileNotFoundError:  # some filesystems refuse a batch naming an absent file
                for path in paths:
                    try:
                        self.fs.rm_file(path)
                    except FileNotFoundError:
                        pass

        self._call(rm, "delete from")

    def stale_temporaries(self, older_than: float) -> list[str]:
        """Leftovers of uploads killed midway, last written before ``older_than`` (epoch
        seconds). Object stores upload in one PUT and leave none."""
        if self.protocol not in RENAME_PROTOCOLS:
            return []

        def ls() -> list[str]:
            try:
                infos = self.fs.ls(f"{self.root.rstrip('/')}/tmp", detail=True)
            except FileNotFoundError:
                return []
            return [i["name"] for i in infos if float(i.get("mtime") or 0) < older_than]

        return [p for p in self._call(ls, "list") if _OUR_TEMP.fullmatch(os.path.basename(str(p)))]

    def remove_temporaries(self, paths: list[str]) -> None:
        self._call(lambda: self.fs.rm(paths), "delete from")

    # -- moving bytes ---------------------------------------------------------------------
    def upload(self, local_path: str, ref: ObjRef, callback: Any = None) -> None:
        if self.read_only:
            raise RemoteError(f"remote {self.name!r} ({self.display}) is read-only ({self.protocol}://)")
        final = self.path(ref)
        kwargs: dict[str, Any] = {"callback": callback} if callback is not None else {}
        if self.protocol == "s3":
            kwargs["chunksize"] = UPLOAD_PART_SIZE
        if self.protocol in RENAME_PROTOCOLS:
            self._write_renamed(lambda tmp: self.fs.put_file(local_path, tmp, **kwargs), ref)
        else:
            self._call(lambda: self.fs.put_file(local_path, final, **kwargs), "upload to", ref)

    def _write_renamed(self, write: Callable[[str], Any], ref: ObjRef) -> None:
        self._write_renamed_to(write, self.path(ref), ref)

    def _write_renamed_to(self, write: Callable[[str], Any], final: str, ref: ObjRef | None = None) -> None:
        """``write(tmp)`` a temporary in the remote's ``tmp/`` and rename it to
        ``final``, so no partial object ever has that name."""
        tmp = f"{self.root.rstrip('/')}/tmp/{secrets.token_hex(8)}.tmp"

        def write_and_rename() -> None:
            self.fs.makedirs(os.path.dirname(tmp), exist_ok=True)
            write(tmp)
            self.fs.makedirs(os.path.dirname(final), exist_ok=True)
            self.fs.mv(tmp, final)

        try:
            self._call(write_and_rename, "upload to", ref)
        finally:
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except Exception:  # noqa: BLE001 - best-effort cleanup of our own temporary
                pass

    def download(self, ref: ObjRef, local_path: str, callback: Any = None) -> None:
        kwargs: dict[str, Any] = {"callback": callback} if callback is not None else {}
        self._call(lambda: self.fs.get_file(self.path(ref), local_path, **kwargs), "download from", ref)

    def upload_bytes(self, data: bytes, ref: ObjRef) -> None:
        """Upload an object held in memory: one PUT on object stores; elsewhere a
        temporary that is renamed, so no partial object ever has the final name."""
        if self.read_only:
            raise RemoteError(f"remote {self.name!r} ({self.display}) is read-only ({self.protocol}://)")
        if self.protocol in RENAME_PROTOCOLS:
            self._write_renamed(lambda tmp: self.fs.pipe_file(tmp, data), ref)
        else:
            self._call(lambda: self.fs.pipe_file(self.path(ref), data), "upload to", ref)

    # -- retries and error translation ----------------------------------------------
    def _call(self, fn: Callable[[], T], what: str, ref: ObjRef | None = None) -> T:
        delay = 0.2
        for attempt in range(RETRIES + 1):
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - every backend error is translated here
                if _transient(e) and attempt < RETRIES:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise self._translate(e, what, ref) from None
        raise AssertionError("unreachable")

    def _translate(self, e: BaseException, what: str, ref: ObjRef | None) -> Exception:
        where = f"remote {self.name!r} ({self.display})"
        if isinstance(e, (RemoteError, ObjectsMissing)):
            return e
        if isinstance(e, FileNotFoundError):
            if ref is not None and what == "download from":
                return self._absent(ref)
            return RemoteError(
                f"{where} does not exist (no such bucket or folder)", "check the URL: dataver remote list"
            )
        if isinstance(e, PermissionError) or _code(e) in _AUTH_CODES or _names(e) & _AUTH_ERRORS:
            return RemoteError(
                f"access to {where} was denied (cannot {what} it)",
                f"check credentials: dataver remote modify {self.name} access_key_id ... --local, "
                "or the AWS_* environment variables / profile",
            )
        if _is_connection_error(e):
            return RemoteError(f"cannot reach {where}: {_short(e)}", "check the endpoint and your network, then re-run")
        return RemoteError(f"cannot {what} {where}: {type(e).__name__}: {_short(e)}")


class LocalRemoteStore(RemoteStore):
    """A remote in a local (or mounted) folder, through plain ``os`` calls.

    Same layout and contract as any remote (upload to ``tmp/`` then rename); it skips
    fsspec, which costs about ten file-system calls per object here.
    """

    def __init__(self, name: str, url: str, options: dict[str, str]):
        super().__init__(name, url, options)
        self._made_dirs: set[str] = set()

    def _exists(self, path: str) -> bool:
        return os.path.exists(path)

    def default_jobs(self) -> int:
        """A local folder is bounded by the CPU: more threads than cores only contend
        (20,000 small files pushed on 2 cores: 4.6 s with 1 thread, 5.0 with 2, 6.6 with 8,
        and 3x the memory). Set the ``jobs`` option higher for a network mount."""
        return max(1, min(4, os.cpu_count() or 1))

    def _list_names(self, folder: str) -> list[str]:
        try:
            return os.listdir(folder)
        except FileNotFoundError:
            return []

    def _whole_listing(self, fans: list[str]) -> set[str] | None:
        return None  # a listdir per fan-out folder is already cheap here

    def check_reachable(self) -> None:
        if not os.path.isdir(self.root):
            raise RemoteError(
                f"remote {self.name!r} ({self.display}) does not exist",
                "check the URL (dataver remote list), or dataver push to create it",
            )

    def prepare_write(self) -> None:
        self._call(lambda: os.makedirs(os.path.join(self.root, "tmp"), exist_ok=True), "create")
        self.start_packed()

    def upload(self, local_path: str, ref: ObjRef, callback: Any = None) -> None:
        self._write_renamed(lambda tmp: shutil.copyfile(local_path, tmp), ref)

    def _write_renamed_to(self, write: Callable[[str], Any], final: str, ref: ObjRef | None = None) -> None:
        tmp = os.path.join(self.root, "tmp", f"{os.getpid()}-{secrets.token_hex(8)}.tmp")

        def write_and_rename() -> None:
            try:
                write(tmp)
                parent = os.path.dirname(final)
                if parent not in self._made_dirs:
                    os.makedirs(parent, exist_ok=True)
                    self._made_dirs.add(parent)
                os.replace(tmp, final)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise

        self._call(write_and_rename, "upload to", ref)

    def download(self, ref: ObjRef, local_path: str, callback: Any = None) -> None:
        self._call(lambda: shutil.copyfile(self.path(ref), local_path), "download from", ref)

    def _read_loose(self, ref: ObjRef, start: int, end: int | None) -> bytes:
        def read() -> bytes:
            with open(self.path(ref), "rb") as f:
                return read_range(f, start, end)

        return self._call(read, "download from", ref)

    # -- files below the root (packstore.Files), with os calls --------------------------
    def read_file(self, rel: str, start: int = 0, end: int | None = None) -> bytes:
        def read() -> bytes:
            try:
                with open(self._abs(rel), "rb") as f:
                    return read_range(f, start, end)
            except FileNotFoundError:
                raise ObjectsMissing(f"{rel} is not on {self.where}") from None

        return self._call(read, "download from")

    def read_buffer(self, rel: str, start: int, end: int) -> bytes:
        return self.read_file(rel, start, end)

    def write_file(self, rel: str, data: bytes) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "xb") as f:
                f.write(data)

        self._write_renamed_to(write, self._abs(rel))

    def list_files(self, rel_dir: str) -> list[tuple[str, int, float]]:
        def ls() -> list[tuple[str, int, float]]:
            out = []
            try:
                with os.scandir(self._abs(rel_dir)) as it:
                    for e in it:
                        try:
                            if e.is_file(follow_symlinks=False):
                                st = e.stat(follow_symlinks=False)
                                out.append((e.name, st.st_size, st.st_mtime))
                        except FileNotFoundError:
                            continue
            except FileNotFoundError:
                return []
            return out

        return self._call(ls, "list")

    def _list_top(self) -> list[tuple[str, int, float]]:
        return [(n, 0, 0.0) for n in self._list_names(self.root)]

    def _rm_paths(self, paths: list[str]) -> None:
        def rm() -> None:
            for p in paths:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass

        self._call(rm, "delete from")

    def upload_bytes(self, data: bytes, ref: ObjRef) -> None:
        self._write_renamed(lambda tmp: write_new(tmp, data, 0o644), ref)

    def iter_objects(self) -> list[tuple[ObjRef, int]]:
        from .digest import ALGORITHMS

        out = []
        for algorithm in ALGORITHMS:
            base = os.path.join(self.root, algorithm)
            for fan in sorted(self._list_names(base)):
                for name in self._list_names(os.path.join(base, fan)):
                    ref = ref_from_name(fan, name, algorithm)
                    if ref is not None:
                        out.append((ref, os.stat(self.path(ref)).st_size))
        return self._with_packed(out)

    def stale_temporaries(self, older_than: float) -> list[str]:
        found = files_older_than(os.path.join(self.root, "tmp"), older_than)
        return [p for p in found if _OUR_TEMP.fullmatch(os.path.basename(p))]

    def remove_temporaries(self, paths: list[str]) -> None:
        self._rm_paths(paths)


_UNREAD = object()
# objects a read_many looks up and reads at once (their records: ~400 bytes each); refs
# arrive in manifest order, as push packed them, so a batch is a few packs' ranges
READ_BATCH = 8192


def _mtime(info: dict) -> float:
    """Last-modified time of an fsspec listing entry, whatever the backend calls it."""
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, (int, float)):
            return float(value)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
    return 0.0


class _PackedBatch(Batch):
    """Puts into a packed remote: objects up to ``packstore.PACKED_MAX`` into packs,
    larger ones loose; a shared lock held from the start until the index is written."""

    recheck = True

    def __init__(self, remote: RemoteStore, jobs: int):
        self.remote = remote
        self.lock = packstore.RemoteLock(remote, exclusive=False, command="push").acquire()
        try:
            remote._index.load(force=True)  # what the remote holds now that no gc can run
        except BaseException:
            self.lock.release()
            raise
        existing = set(packstore.pack_sizes(remote)[0])
        # What it writes is not added to the loaded index (72 bytes an object): the index
        # is unloaded when the batch ends, and read again by a later look-up.
        self.packs = packstore.PackWriter(remote, remote._index, remote.marker.pack_size, existing, remember=False)
        self._encoders: ThreadPoolExecutor | None = None
        self._encoders_lock = threading.Lock()
        self._maps: list[tuple[Digest, bytes]] = []

    def plan(self, items: list[tuple[ObjRef, int]]) -> list[list[ObjRef]]:
        return self.packs.plan(
            (ref, size) for ref, size in items if size <= packstore.PACKED_MAX and not chunked.chunkable(ref, size)
        )

    def put_bytes(self, ref: ObjRef, data: bytes) -> None:
        if chunked.chunkable(ref, len(data)):
            self._put_chunked(ref, chunked.reader_of(data), len(data))
            return
        if len(data) > packstore.PACKED_MAX:
            self.remote.put_bytes(ref, data)
            return
        check_bytes(ref, data, self.remote.where)
        self.packs.add(ref, data)

    def put_file(self, ref: ObjRef, path: str, hasher: Any) -> None:
        size = os.path.getsize(path)
        if chunked.chunkable(ref, size):
            with open(path, "rb") as f:
                self._put_chunked(ref, f.readinto, size)
            return
        if size > packstore.PACKED_MAX:
            self.remote.put_file(ref, path, hasher)
            return
        with open(path, "rb") as f:
            self.put_bytes(ref, f.read())

    def _encode_all(self, pieces: list[memoryview]) -> list[tuple[bytes | memoryview, int]]:
        """Chunks' stored bytes and codecs (packstore.encode_chunk), on a few threads."""
        threads = max(1, min(4, os.cpu_count() or 1))
        with self._encoders_lock:
            if self._encoders is None:
                self._encoders = ThreadPoolExecutor(threads, "dataver-zstd")
        step = -(-len(pieces) // threads)  # one task per thread, not one per chunk
        runs = self._encoders.map(
            lambda i: [packstore.encode_chunk(p) for p in pieces[i : i + step]], range(0, len(pieces), step)
        )
        return [enc for run in runs for enc in run]

    def _put_chunked(self, ref: ObjRef, readinto: Callable[[memoryview], int], size: int) -> None:
        """The object's new chunks, then its map, in packs of their own (chunked.split)."""
        seq = self.packs.sequence()
        chunk_map = chunked.split(ref, readinto, size, seq, self.remote.where, self._encode_all)
        seq.add(packstore.Part(ref.digest, packfmt.KIND_MAP), chunk_map)
        seq.close()
        with self._encoders_lock:
            self._maps.append((ref.digest, chunk_map))

    def chunk_maps(self) -> list[tuple[Digest, bytes]]:
        return list(self._maps)

    def checkpoint(self) -> None:
        self.commit()

    def commit(self) -> None:
        self.packs.flush()
        self.lock.check_held()  # a push suspended past its lock's expiry publishes nothing
        self.packs.commit()

    def close(self) -> None:
        try:
            if self._encoders is not None:
                self._encoders.shutdown()
            self.packs.close()
        finally:
            self.remote._index.unload()
            self.lock.release()


_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "ExpiredToken",
    "403",
}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "500",
    "502",
    "503",
    "504",
}


def _code(e: BaseException) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    cause = e.__cause__ or e.__context__
    return _code(cause) if cause is not None and cause is not e else ""


_AUTH_ERRORS = {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound", "NoAuthTokenError"}


def _names(e: BaseException) -> set[str]:
    return {type(x).__name__ for x in _chain(e)}


def _is_connection_error(e: BaseException) -> bool:
    names = _names(e)
    if names & {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ConnectionRefusedError",
        "ConnectionResetError",
        "ClientOSError",
        "ServerTimeoutError",
        "FSTimeoutError",
        "ClientPayloadError",  # the connection dropped in the middle of a body
        "ResponseStreamingError",
        "IncompleteReadError",
    }:
        return True
    return any(
        isinstance(x, OSError)
        and x.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ETIMEDOUT, errno.ENETUNREACH)
        for x in _chain(e)
    )


def _quiet_dropped_connection_tasks(loop: Any) -> None:
    """When a connection drops mid-request, aiohttp leaves a task whose exception nobody
    awaits, and asyncio prints "Task exception was never retrieved" with a traceback on
    stderr. The request itself fails too, and _call retries and reports it: drop those."""

    def handler(loop: Any, context: dict) -> None:
        exc = context.get("exception")
        if exc is not None and (isinstance(exc, ConnectionError) or _is_connection_error(exc)):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _transient(e: BaseException) -> bool:
    return _code(e) in _TRANSIENT_CODES or _is_connection_error(e)


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__  # type: ignore[assignment]


def _short(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return redact(text)[:200]


def _split_url(url: str) -> tuple[str, str, dict[str, Any]]:
    """(protocol, root path as fsspec wants it, storage options from the URL)."""
    if "://" not in url:
        return "file", os.path.abspath(os.path.expanduser(url)), {}
    protocol = url.split("://", 1)[0].lower()
    if protocol in ("file", "local"):
        return "file", os.path.abspath(url.split("://", 1)[1]), {}
    import fsspec

    try:
        cls = fsspec.get_filesystem_class(protocol)
        root, storage = cls._strip_protocol(url), cls._get_kwargs_from_urls(url)
    except (ImportError, ValueError):
        root, storage = url.split("://", 1)[1], {}  # the error comes when the remote is used
    return protocol, str(root).rstrip("/"), storage


# dataver's remote keys -> s3fs.S3FileSystem arguments
_S3_ARGUMENTS = {
    "endpoint_url": "endpoint_url",
    "profile": "profile",
    "access_key_id": "key",
    "secret_access_key": "secret",
    "session_token": "token",
}


def _storage_options(protocol: str, options: dict[str, str], from_url: dict[str, Any]) -> dict[str, Any]:
    """Config values -> fsspec constructor arguments (s3fs's names for S3)."""
    out: dict[str, Any] = dict(from_url)
    out["skip_instance_cache"] = True
    if protocol == "s3":
        out.update({_S3_ARGUMENTS[k]: v for k, v in options.items() if k in _S3_ARGUMENTS})
        if "region" in options:
            out["client_kwargs"] = {"region_name": options["region"]}
        if _truthy(options.get("anonymous", "")):
            out["anon"] = True
        out["use_listings_cache"] = False
        # botocore's "max_attempts" counts retries (1 = two tries, with up to 1 s of random
        # backoff between): "total_max_attempts" 1 leaves the retrying to _call.
        out["config_kwargs"] = {"connect_timeout": 5, "read_timeout": 60, "retries": {"total_max_attempts": 1}}
        return out
    if protocol in ("file", "local"):
        return {"auto_mkdir": True}
    for key, value in options.items():
        if key not in ("jobs", "layout"):
            out[key] = _typed(value)
    return out


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _typed(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if re.fullmatch(r"-?\d+", text.strip()):
        return int(text)
    return text
