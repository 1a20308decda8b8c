"""The local content-addressed object store (the cache).

Layout: ``<root>/<algorithm>/ab/cdef...`` for file contents (blobs), one folder per
hash algorithm (``xxh3-128``, ``blake3``), and the same path plus ``.manifest`` for
folder manifests; ``<root>/packs/`` holds small objects packed (``cachepacks``: what
``add`` and ``fetch`` store inside ``packing()``); ``<root>/tmp/`` holds objects being
written. An object is in the cache if either holds it.

Contract: an object is visible under its final name only once its bytes are complete
and hash to that name. Writers copy into ``tmp/`` while hashing, check the digest,
make the file read-only and rename it into place; a crash leaves at most a stray
temporary file, which ``gc`` removes. Objects are not fsynced one by one (that
costs seconds per thousand files); ``verify`` detects damage after a power loss.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import re
import secrets
import shutil
import stat as stat_mod
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from . import packfmt
from .cachepacks import MAX_PACKED_MANIFEST, SMALL_BLOB, CachePacks
from .digest import ALGORITHMS, DEFAULT_ALGORITHM, Digest
from .errors import FileChanged, IntegrityError, ObjectsMissing, PointerError, StorageError, UnreadableFile
from .fsutil import files_older_than, read_at_most, read_range
from .hashing import CHUNK_SIZE, HashedFile, Hasher, digest_bytes, digest_manifest
from .linking import reflink
from .packfmt import KIND_BLOB, KIND_MANIFEST
from .progress import NO_PROGRESS, Progress
from .state import is_racy
from .store import MANIFEST_SUFFIX, DirectBatch, ObjRef, check_bytes, read_each

_TMP_COUNTER = itertools.count()
# A manifest line is ~60 bytes + the path: 1 GiB is millions of files. The bound keeps
# a hostile or damaged manifest from exhausting memory (manifests are read whole).
MAX_MANIFEST_BYTES = 1024 * 1024 * 1024
_OUR_TEMP = re.compile(r"\d+-\d+-[0-9a-f]{6}\.tmp|tmp\w+\.download")  # _mkstemp's and a download's names
F = TypeVar("F", bound=Callable[..., Any])


def _writes_cache(method: F) -> F:
    """Turn a raw OSError while writing an object (disk full, permissions) into
    StorageError naming the cache; the temporary file is already cleaned up."""

    @functools.wraps(method)
    def wrapper(self: ObjectStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            raise StorageError(
                f"cannot write to the cache at {self.root}: {e.strerror or e}",
                "free some space or fix permissions, then re-run (nothing was half-written)",
            ) from None

    return wrapper  # type: ignore[return-value]


class ObjectStore:
    """Blobs and manifests by digest under one root folder."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.tmp_dir = os.path.join(self.root, "tmp")
        self._made_dirs: set[str] = set()
        # Blobs whose bytes this process fetched and hashed on their way in: reading
        # them back moments later (a pull's checkout) need not hash them a second time.
        # Loose ones only (large files: few); small ones packed this session are told by
        # ``packs.fresh`` (a set of every hex was ~100 MB of a 1,000,000-file pull's
        # peak). Not filled by add, which never reads back what it stored.
        self.verified: set[str] = set()
        self.packs = CachePacks(self.root, self._mkstemp, self._store_loose)

    def packing(self):
        """A context in which small objects stored go into a pack, written when it
        ends (docs/formats.md, "Cache packs"). Callers write what names the objects
        (pointers) only after it ends."""
        return self.packs.session()

    @property
    def where(self) -> str:
        return f"the cache at {self.root}"

    # -- the store contract (dataver/store.py) -------------------------------------
    def path(self, ref: ObjRef) -> str:
        """The object's file if it has one; for a packed object, its pack (for
        messages; ``read`` reads either)."""
        loose = os.path.join(self.root, ref.relpath())
        if not os.path.exists(loose):
            pack = self.packs.pack_of(ref.digest, _kind(ref))
            if pack is not None:
                return f"{pack} ({ref.kind} {ref.digest.hex})"
        return loose

    def has(self, ref: ObjRef) -> bool:
        return os.path.exists(os.path.join(self.root, ref.relpath())) or self.packs.holds(ref.digest, _kind(ref))

    def prepare_write(self) -> None:
        """Nothing to do: writes create the folders they need."""

    def check_reachable(self) -> None:
        """Always: a cache that does not exist yet is an empty one."""

    def missing(self, refs: Sequence[ObjRef], jobs: int = 8) -> list[ObjRef]:
        present = self.blobs_present([r.digest for r in refs if not r.manifest])
        return [r for r in refs if not (self.has(r) if r.manifest else r.digest in present)]

    def put_bytes(self, ref: ObjRef, data: bytes) -> None:
        if ref.manifest:
            check_bytes(ref, data, self.where)
            self._add_checked_manifest(data, ref.digest)
        else:
            self.add_verified_bytes(data, ref.digest, CHUNK_SIZE)

    def put_file(self, ref: ObjRef, path: str, hasher: Hasher) -> None:
        if ref.manifest:  # read once, then checked like any bytes
            with open(path, "rb") as f:
                self.put_bytes(ref, f.read())
        else:
            self.add_verified_copy(path, ref.digest, hasher)

    def read(self, ref: ObjRef, start: int = 0, end: int | None = None) -> bytes:
        loose = os.path.join(self.root, ref.relpath())
        try:
            with open(loose, "rb") as f:
                return read_range(f, start, end)
        except FileNotFoundError:
            data = self.packs.read(ref.digest, _kind(ref))
            if data is None:
                raise ObjectsMissing(f"{ref} is not in {self.where}") from None
            return data[start:end]
        except OSError as e:
            raise UnreadableFile(f"cannot read cache object {loose}: {e.strerror}") from None

    def packed_bytes(self, ref: ObjRef) -> bytes | None:
        """A packed object's bytes (unchecked), or None if it is not packed."""
        return self.packs.read(ref.digest, _kind(ref))

    def get_file(self, ref: ObjRef, dest: str, have: Any = None) -> None:
        try:
            shutil.copyfile(os.path.join(self.root, ref.relpath()), dest)
        except FileNotFoundError:
            data = self.packs.read(ref.digest, _kind(ref))
            if data is None:
                raise ObjectsMissing(f"{ref} is not in {self.where}") from None
            with open(dest, "wb") as f:
                f.write(data)

    def iter_objects(self) -> Iterator[tuple[ObjRef, int]]:
        for digest, is_manifest, path in self.iter_paths():
            try:
                yield ObjRef(digest, is_manifest), os.lstat(path).st_size
            except FileNotFoundError:
                continue  # removed meanwhile (gc of another process holds the lock; a race at most)
        for digest, kind, size in self.packs.iter_objects():
            yield ObjRef(digest, kind == KIND_MANIFEST), size

    def delete(self, refs: Iterable[ObjRef]) -> None:
        refs = list(refs)
        if refs:
            self.new_generation()
        for ref in refs:
            _unlink_quietly(os.path.join(self.root, ref.relpath()))
            if not ref.manifest:
                _unlink_quietly(self.map_path(ref.digest))
        self.packs.drop({packfmt.entry_key(r.digest, _kind(r)) for r in refs})

    def generation(self) -> str:
        """Changes whenever an object is removed (``new_generation``): a subfolder's
        manifest recorded by its fingerprint is reused only under the same one."""
        try:
            with open(os.path.join(self.root, "generation"), "rb") as f:
                text = f.read(64).decode("ascii", "replace")
        except OSError:
            return "0"
        return text if re.fullmatch(r"[0-9a-f]{1,64}", text) else "?"

    def new_generation(self) -> None:
        """Called before objects are removed: a fresh random generation (written whole,
        by rename; a failure to write it stops the removal)."""
        os.makedirs(self.tmp_dir, exist_ok=True)
        fd, tmp = self._mkstemp()
        try:
            _pwrite_all(fd, memoryview(secrets.token_hex(16).encode()), 0)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, os.path.join(self.root, "generation"))
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def writer(self, jobs: int = 8) -> DirectBatch:
        return DirectBatch(self)

    def read_many(self, refs: list[ObjRef], sink: Callable[[ObjRef, Any], None], jobs: int = 8) -> None:
        read_each(self, refs, sink, jobs)

    def plan_delete(self, refs: Iterable[ObjRef]) -> None:
        return None  # the cache keeps one file per object: nothing to repack

    # -- chunk maps of whole files (dataver.chunked) ------------------------------
    def map_path(self, digest: Digest) -> str:
        """Where the chunk map of the blob ``digest`` is kept: a hint for fetching other
        versions of the file chunk by chunk (maps/<algorithm>/<hex>)."""
        return os.path.join(self.root, "maps", digest.algorithm, digest.hex)

    @_writes_cache
    def put_map(self, digest: Digest, data: bytes) -> None:
        path = self.map_path(digest)
        if not os.path.exists(path):
            self._store_bytes(data, path)

    def chunk_maps(self) -> Iterator[tuple[Digest, str]]:
        """(blob digest, map path) of each kept map whose blob is in the cache."""
        for algorithm in ALGORITHMS:
            base = os.path.join(self.root, "maps", algorithm)
            try:
                names = sorted(os.listdir(base))
            except FileNotFoundError:
                continue
            for name in names:
                try:
                    digest = Digest(algorithm, name)
                except Exception:
                    continue
                if os.path.exists(self.blob_path(digest)):  # mapped blobs (>= 1 MiB) are never packed
                    yield digest, os.path.join(base, name)

    # -- paths ----------------------------------------------------------------
    def blob_path(self, digest: Digest) -> str:
        return os.path.join(self.root, digest.relpath())

    def blob_file(self, digest: Digest) -> str:
        """The path of a file holding the blob: its own, or for a packed blob a copy
        unpacked to its loose place (checked first) for callers that need a path."""
        path = self.blob_path(digest)
        if not os.path.exists(path):
            data = self.packs.read(digest, KIND_BLOB)
            if data is not None:
                actual = digest_bytes(data, CHUNK_SIZE, digest.algorithm)
                if actual != digest:
                    raise IntegrityError(
                        f"cache object {self.path(ObjRef(digest))} is corrupt (its bytes hash to {actual.short()})",
                        "replace it from a remote: dataver fetch --repair",
                    )
                self._store_bytes(data, path)
        return path

    def manifest_path(self, digest: Digest) -> str:
        return os.path.join(self.root, digest.relpath() + MANIFEST_SUFFIX)

    def has_blob(self, digest: Digest) -> bool:
        return os.path.exists(self.blob_path(digest)) or self.packs.holds(digest, KIND_BLOB)

    def blobs_present(self, digests: list[Digest]) -> set[Digest]:
        """Which of ``digests`` the store holds."""
        by_algorithm: dict[str, list[str]] = {}
        for d in digests:
            by_algorithm.setdefault(d.algorithm, []).append(d.hex)
        present = {(a, h) for a, hexes in by_algorithm.items() for h in self.hexes_present(hexes, a)}
        return {d for d in digests if (d.algorithm, d.hex) in present}

    def hexes_present(self, hexes: list[str], algorithm: str) -> set[str]:
        """Which blobs, named by already-validated ``algorithm`` hex digests, the store
        holds. Many at once: one listing per fan-out folder involved (at most 256)
        instead of one stat per object."""
        base = os.path.join(self.root, algorithm)
        self.packs.refresh()
        if len(hexes) < 512:
            return {
                h
                for h in hexes
                if os.path.exists(os.path.join(base, h[:2], h[2:])) or self.packs.holds(Digest(algorithm, h), KIND_BLOB)
            }
        by_fan: dict[str, list[str]] = {}
        for h in hexes:
            by_fan.setdefault(h[:2], []).append(h)
        present: set[str] = set()
        algorithm_id = packfmt.ALGORITHM_IDS[algorithm]
        for fan, wanted in by_fan.items():  # one folder's listing in memory at a time
            try:
                names = set(os.listdir(os.path.join(base, fan)))
            except FileNotFoundError:
                names = set()
            rest = []
            for h in wanted:
                (present.add(h) if h[2:] in names else rest.append(h))
            if rest:
                present.update(r.hex() for r in self.packs.present([bytes.fromhex(h) for h in rest], algorithm_id))
        return present

    def count_held(self, hexes: Iterable[str], algorithm: str) -> int | None:
        """How many names ``hexes`` gives (``algorithm`` hex digests, repeats counted), if
        the store holds a blob for every one; else None. For a whole folder at once:
        the names are kept as bytes by fan-out folder (~56 bytes each; a list and a set of
        strings took that status to 192 MiB at 1,000,000 files, this to 85 MiB), each
        folder listed once, stopping at the first miss. A word that is no hex digest is held by nothing."""
        base = os.path.join(self.root, algorithm)
        by_fan: dict[bytes, list[bytes]] = {}
        count = 0
        for h in hexes:
            try:
                raw = bytes.fromhex(h)
            except ValueError:
                return None
            if len(raw) < 2:
                return None
            by_fan.setdefault(raw[:1], []).append(raw[1:])
            count += 1
        algorithm_id = packfmt.ALGORITHM_IDS.get(algorithm)
        self.packs.refresh()
        for fan, wanted in by_fan.items():
            try:
                names = os.listdir(os.path.join(base, fan.hex()))
            except FileNotFoundError:
                names = []
            have = set()
            for name in names:
                try:
                    have.add(bytes.fromhex(name))
                except ValueError:
                    continue  # a manifest (.manifest) or a stranger's file
            rest = [fan + w for w in wanted if w not in have]
            if rest and (algorithm_id is None or len(set(self.packs.present(rest, algorithm_id))) != len(set(rest))):
                return None
        return count

    def stamp(self, algorithm: str) -> str | None:
        """A value that changes whenever an ``algorithm`` object is added to or removed
        from the store: the count and newest mtime of its fan-out folders (a name added
        or removed changes its folder's mtime), and the packs folder's mtime. None while that mtime is too recent to
        tell a later change in the same clock tick (the stat cache's racy rule)."""
        base = os.path.join(self.root, algorithm)
        packs = self.packs.stamp()
        if packs is None:
            return None
        try:
            newest, count = os.stat(base).st_mtime_ns, 0
            with os.scandir(base) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        newest = max(newest, e.stat(follow_symlinks=False).st_mtime_ns)
                        count += 1
        except FileNotFoundError:
            return f"0:0:{packs}" if packs != "-" else None
        except OSError:
            return None
        return None if is_racy(newest, time.time_ns()) else f"{count}:{newest}:{packs}"

    def has_manifest(self, digest: Digest) -> bool:
        return os.path.exists(self.manifest_path(digest)) or self.packs.holds(digest, KIND_MANIFEST)

    # -- writing ----------------------------------------------------------------
    @_writes_cache
    def add_file(self, path: str, hasher: Hasher, progress: Progress = NO_PROGRESS) -> HashedFile:
        """Copy ``path`` into the store while hashing it with the hasher's algorithm;
        returns its digest and stat.

        Uses a reflink clone where the filesystem offers one (no data copied); for a
        large file, a copy inside the kernel (``copy_file_range``: twice as fast as
        moving the bytes through Python) followed by hashing the copy; for a small
        one, a single pass that hashes while it writes. Either way the object's name
        is the digest of the bytes actually stored, and a source that changed in the
        meantime is refused (FileChanged). Inside ``packing()``, a file of at most
        ``SMALL_BLOB`` bytes is read once, hashed and appended to the pack instead.
        """
        if self.packs.active:
            before = _stat_or_none(path)
            if before is not None and before.st_size <= SMALL_BLOB and stat_mod.S_ISREG(before.st_mode):
                return self._add_small(path, hasher, progress)
        fd_tmp, tmp = self._mkstemp()
        try:
            try:
                before = _stat_or_none(path)
                digest = None
                if before is not None:
                    if _try_clone(path, fd_tmp):
                        digest = hasher.hash_file(tmp, progress=progress).digest
                    elif before.st_size > hasher.chunk_size:
                        digest = _kernel_copy_hashed(path, fd_tmp, tmp, before.st_size, hasher, progress)
                if digest is not None:
                    after = _stat_or_none(path)
                    if after is None or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                        raise FileChanged(
                            f"{path} changed while it was being added", "re-run when nothing writes to it"
                        )
                    hashed = HashedFile(
                        path,
                        digest,
                        before.st_size,
                        before.st_ino,
                        before.st_mtime_ns,
                        bool(before.st_mode & 0o100),
                        before.st_ctime_ns,
                    )
                else:
                    hashed = hasher.hash_file(
                        path, sink=lambda off, view: _pwrite_all(fd_tmp, view, off), progress=progress
                    )
                # The object keeps the data's mtime: a hardlink or symlink to it then is as
                # old as the data, not racily new, so the stat cache can vouch for it.
                os.utime(fd_tmp, ns=(hashed.mtime_ns, hashed.mtime_ns))
                os.fchmod(fd_tmp, 0o444)
            finally:
                os.close(fd_tmp)
            self._publish(tmp, self.blob_path(hashed.digest))
            return hashed
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def _add_small(self, path: str, hasher: Hasher, progress: Progress) -> HashedFile:
        pieces: list[bytes] = []
        hashed = hasher.hash_file(path, sink=lambda off, view: pieces.append(bytes(view)), progress=progress)
        data = b"".join(pieces)
        if len(data) <= SMALL_BLOB:
            self.packs.put(hashed.digest, KIND_BLOB, data)
        elif not os.path.exists(self.blob_path(hashed.digest)):  # it grew meanwhile (hash_file saw it whole)
            self._store_bytes(data, self.blob_path(hashed.digest))
        return hashed

    @_writes_cache
    def add_verified_copy(self, src: str, digest: Digest, hasher: Hasher, progress: Progress = NO_PROGRESS) -> None:
        """Copy ``src`` (e.g. a downloaded object) in, only if it hashes to ``digest``.
        A small one the packs already hold is checked and not stored a second time."""
        st = _stat_or_none(src)
        if st is not None and st.st_size <= SMALL_BLOB and self.packs.holds(digest, KIND_BLOB):
            actual = hasher.hash_file(src, progress=progress, algorithm=digest.algorithm).digest
            if actual != digest:
                raise IntegrityError(f"{src} hashes to {actual}, expected {digest}; not stored")
            return
        fd_tmp, tmp = self._mkstemp()
        try:
            try:
                hashed = hasher.hash_file(
                    src,
                    sink=lambda off, view: _pwrite_all(fd_tmp, view, off),
                    progress=progress,
                    algorithm=digest.algorithm,
                )
                os.fchmod(fd_tmp, 0o444)
            finally:
                os.close(fd_tmp)
            if hashed.digest != digest:
                raise IntegrityError(f"{src} hashes to {hashed.digest}, expected {digest}; not stored")
            self._publish(tmp, self.blob_path(digest))
            self.verified.add(digest.hex)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    @_writes_cache
    def add_verified_bytes(self, data: bytes, digest: Digest, chunk_size: int) -> None:
        """Store an object held in memory (a download), only if it hashes to ``digest``."""
        actual = digest_bytes(data, chunk_size, digest.algorithm)
        if actual != digest:
            raise IntegrityError(f"object {digest} is corrupt (its bytes hash to {actual.short()}); not stored")
        if self.packs.active and len(data) <= SMALL_BLOB:
            self.packs.put(digest, KIND_BLOB, bytes(data))  # packs.fresh says it was verified here
        else:
            self._store_bytes(data, self.blob_path(digest))
            self.verified.add(digest.hex)

    def verified_here(self, digest: Digest) -> bool:
        """Whether this process hashed the blob's bytes as it stored them (a pull's
        downloads): loose ones are named in ``verified``, packed ones by ``packs.fresh``."""
        return digest.hex in self.verified or self.packs.fresh(digest, KIND_BLOB)

    def read_small_blob(self, digest: Digest, limit: int) -> bytes | None:
        """The bytes of a blob of at most ``limit`` bytes, checked against its digest
        (one read for both the check and the caller); None if it is larger."""
        path = self.blob_path(digest)
        try:
            with open(path, "rb") as f:
                data = read_at_most(f, limit)
        except FileNotFoundError:
            packed = self.packs.read(digest, KIND_BLOB)
            if packed is None:
                raise ObjectsMissing(f"object {digest} is not in the cache ({path})") from None
            data, path = packed, self.path(ObjRef(digest))
        except OSError as e:
            raise UnreadableFile(f"cannot read cache object {path}: {e.strerror}") from None
        if len(data) > limit:
            return None
        if digest_bytes(data, limit, digest.algorithm) != digest:  # at most one chunk: one call
            raise IntegrityError(
                f"cache object {path} is corrupt (its bytes do not hash to {digest.short()})",
                "replace it from a remote: dataver fetch --repair; or re-add the data",
            )
        return data

    def add_manifest(self, data: bytes, algorithm: str = DEFAULT_ALGORITHM) -> Digest:
        """Store manifest bytes (whose header names ``algorithm``) under their digest."""
        digest = digest_manifest(data, algorithm)
        self._add_checked_manifest(data, digest)
        return digest

    @_writes_cache
    def _add_checked_manifest(self, data: bytes, digest: Digest) -> None:
        path = self.manifest_path(digest)
        if self.packs.active and len(data) <= MAX_PACKED_MANIFEST:
            if not os.path.exists(path):
                self.packs.put(digest, KIND_MANIFEST, bytes(data))
        elif not os.path.exists(path):
            self._store_bytes(data, path)

    def _store_loose(self, digest: Digest, kind: int, data: bytes) -> None:
        """A checked object as a file of its own (what a packing session does with few)."""
        final = self.manifest_path(digest) if kind == KIND_MANIFEST else self.blob_path(digest)
        if not os.path.exists(final):
            self._store_bytes(data, final)

    def _store_bytes(self, data: bytes, final: str) -> None:
        """Write checked bytes to a temporary, make it read-only, give it its name."""
        fd_tmp, tmp = self._mkstemp()
        try:
            try:
                _pwrite_all(fd_tmp, memoryview(data), 0)
                os.fchmod(fd_tmp, 0o444)
            finally:
                os.close(fd_tmp)
            self._publish(tmp, final)
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def _mkstemp(self) -> tuple[int, str]:
        """A new temporary file in ``tmp/``: PID, a per-process counter and a random
        tag make the name unique without tempfile's retry loop."""
        name = os.path.join(self.tmp_dir, f"{os.getpid()}-{next(_TMP_COUNTER)}-{secrets.token_hex(3)}.tmp")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            try:
                return os.open(name, flags, 0o600), name
            except FileNotFoundError:
                os.makedirs(self.tmp_dir, exist_ok=True)
                return os.open(name, flags, 0o600), name
        except OSError as e:
            raise StorageError(f"cannot write to the cache at {self.root}: {e.strerror}") from e

    def _publish(self, tmp: str, final: str) -> None:
        """Give a verified temporary file its final name. An object already there is
        kept (like git, never rewritten): workspace hardlinks to it stay shared, and a
        concurrent writer of the same object wrote the same bytes."""
        parent = os.path.dirname(final)
        if parent not in self._made_dirs:
            os.makedirs(parent, exist_ok=True)
            self._made_dirs.add(parent)
        if os.path.exists(final):
            os.unlink(tmp)
        else:
            os.replace(tmp, final)

    # -- reading ----------------------------------------------------------------
    def read_manifest_bytes(self, digest: Digest) -> bytes:
        """The manifest's bytes, checked against its digest (and a size bound)."""
        path = self.manifest_path(digest)
        try:
            with open(path, "rb") as f:
                data = read_at_most(f, MAX_MANIFEST_BYTES)
                if len(data) > MAX_MANIFEST_BYTES:
                    raise PointerError(
                        f"manifest {digest.short()} is larger than {MAX_MANIFEST_BYTES // 2**20} MiB ({path})",
                        "dataver reads manifests whole; split the folder into several tracked folders",
                    )
        except FileNotFoundError:
            packed = self.packs.read(digest, KIND_MANIFEST)
            if packed is None:
                raise ObjectsMissing(
                    f"manifest {digest} is not in the cache",
                    "fetch it from a remote (dataver pull), or re-add the folder",
                ) from None
            data, path = packed, self.path(ObjRef(digest, manifest=True))
        if digest_manifest(data, digest.algorithm) != digest:
            raise IntegrityError(
                f"cache object {path} is corrupt (its bytes do not hash to {digest.short()})",
                "replace it from a remote: dataver fetch --repair; or re-add the folder",
            )
        return data

    def check_blob(self, digest: Digest, hasher: Hasher, progress: Progress = NO_PROGRESS) -> bool:
        """Re-hash a blob; False if its bytes do not match its name (or a pack
        holding it cannot give them back)."""
        if not os.path.exists(self.blob_path(digest)):
            try:
                data = self.packs.read(digest, KIND_BLOB)
            except IntegrityError:
                return False
            if data is not None:
                progress.advance(len(data))
                return digest_bytes(data, hasher.chunk_size, digest.algorithm) == digest
        return hasher.hash_file(self.blob_path(digest), progress=progress, algorithm=digest.algorithm).digest == digest

    def iter_paths(self) -> Iterator[tuple[Digest, bool, str]]:
        """Yield ``(digest, is_manifest, path)`` for every object in the store, under
        every registered algorithm's folder."""
        for algorithm in ALGORITHMS:
            base = os.path.join(self.root, algorithm)
            try:
                fans = sorted(os.listdir(base))
            except FileNotFoundError:
                continue
            for fan in fans:
                fan_dir = os.path.join(base, fan)
                if len(fan) != 2 or not os.path.isdir(fan_dir):
                    continue
                for name in sorted(os.listdir(fan_dir)):
                    is_manifest = name.endswith(MANIFEST_SUFFIX)
                    hex_ = fan + (name[: -len(MANIFEST_SUFFIX)] if is_manifest else name)
                    try:
                        digest = Digest(algorithm, hex_)
                    except Exception:
                        continue  # not ours; never delete what we cannot name
                    yield digest, is_manifest, os.path.join(fan_dir, name)

    def remove(self, path: str) -> None:
        self.new_generation()
        _unlink_quietly(path)

    def stale_temporaries(self, older_than: float = float("inf")) -> list[str]:
        """Temporaries in ``tmp/`` last written before ``older_than`` (epoch seconds):
        what writers killed midway left (a live writer's are newer). Only names dataver
        gives its temporaries: the cache folder may be shared, or set by a stranger's config."""
        return [p for p in files_older_than(self.tmp_dir, older_than) if _OUR_TEMP.fullmatch(os.path.basename(p))]

    def remove_temporaries(self, paths: list[str]) -> None:
        for path in paths:
            _unlink_quietly(path)


def _kernel_copy_hashed(
    src: str,
    fd_dst: int,
    dst_path: str,
    size: int,
    hasher: Hasher,
    progress: Progress,
    algorithm: str | None = None,
) -> Digest | None:
    """Copy ``size`` bytes of ``src`` into ``fd_dst`` in the kernel while hashing what
    lands in ``dst_path`` (with ``algorithm``, default the hasher's); the digest of the
    copy, or None (nothing written) where the kernel cannot copy between these files."""
    copier = _KernelCopy.start(src, fd_dst, size, hasher.chunk_size)
    if copier is None:
        return None
    try:
        return hasher.hash_growing(dst_path, size, copier.wait_for, progress, algorithm)
    finally:
        copier.stop()


class _KernelCopy:
    """``copy_file_range`` of a source into a cache temporary, in a background thread
    and in steps, so the caller can hash each step of the copy while the kernel
    writes the next (on 2 cores: the 2 GiB add went from copy-then-hash to about
    the time of the copy alone)."""

    def __init__(self, src: str, fd_src: int, fd_dst: int, size: int, step: int, done: int):
        self.src, self._fd_src, self._fd_dst = src, fd_src, fd_dst
        self.size, self._step = size, step
        self.done = done  # bytes [0, done) are in the destination
        self._error: BaseException | None = None
        self._finished = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="dataver-copy", daemon=True)

    @classmethod
    def start(cls, src: str, fd_dst: int, size: int, step: int) -> _KernelCopy | None:
        """Copy the first step here; None (nothing written) if the kernel cannot copy
        between these two files, and the caller copies while hashing instead."""
        if not hasattr(os, "copy_file_range"):
            return None
        try:
            fd_src = os.open(src, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None  # let the hashing path produce the proper error
        try:
            first = os.copy_file_range(fd_src, fd_dst, min(step, size), 0, 0)
        except OSError as e:
            os.close(fd_src)
            if e.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                return None
            raise _copy_error(src, e) from None
        copier = cls(src, fd_src, fd_dst, size, step, first)
        if first == 0:
            copier._finished = True
        else:
            copier._thread.start()
        return copier

    def _run(self) -> None:
        try:
            while self.done < self.size and not self._stopping:
                n = os.copy_file_range(
                    self._fd_src, self._fd_dst, min(self._step, self.size - self.done), self.done, self.done
                )
                if n == 0:
                    break  # the source shrank: wait_for reports it
                with self._cond:
                    self.done += n
                    self._cond.notify_all()
        except BaseException as e:  # handed to the waiting thread
            with self._cond:
                self._error = e
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def wait_for(self, end: int) -> None:
        """Block until bytes ``[0, end)`` are copied; raise what stopped the copy."""
        with self._cond:
            while self.done < end and not self._finished:
                self._cond.wait()
            if self.done >= end:
                return
            if isinstance(self._error, OSError):
                raise _copy_error(self.src, self._error) from None
            if self._error is not None:
                raise self._error
            raise FileChanged(f"{self.src} shrank while it was being added", "re-run when nothing writes to it")

    def stop(self) -> None:
        """End the copy (early, if hashing failed) before the files are closed."""
        self._stopping = True
        if self._thread.is_alive():
            self._thread.join()
        os.close(self._fd_src)


def _copy_error(src: str, e: OSError) -> OSError | UnreadableFile:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
        return e  # the cache side: _writes_cache reports it as a write failure
    return UnreadableFile(f"cannot read {src}: {e.strerror}")


def _try_clone(src: str, fd_dst: int) -> bool:
    try:
        fd_src = os.open(src, os.O_RDONLY)
    except OSError:
        return False  # let the hashing path produce the proper error
    try:
        return reflink(fd_src, fd_dst)
    finally:
        os.close(fd_src)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def copy_verified(
    obj_path: str,
    digest: Digest,
    dest_tmp: str,
    hasher: Hasher,
    progress: Progress = NO_PROGRESS,
    mode: int = 0o600,
) -> None:
    """Copy an object out to a new file ``dest_tmp`` (created with ``mode``), failing
    if its bytes are corrupt.

    Large objects are copied inside the kernel and the copy is hashed (what is
    checked is what was written); small ones are hashed while they are written.
    """
    fd = os.open(dest_tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
    try:
        size = os.stat(obj_path).st_size
        actual = None
        if size > hasher.chunk_size:
            actual = _kernel_copy_hashed(obj_path, fd, dest_tmp, size, hasher, progress, digest.algorithm)
        if actual is None:
            actual = hasher.hash_file(
                obj_path,
                sink=lambda off, view: _pwrite_all(fd, view, off),
                progress=progress,
                algorithm=digest.algorithm,
            ).digest
    finally:
        os.close(fd)
    if actual != digest:
        raise IntegrityError(
            f"cache object {obj_path} is corrupt (its bytes hash to {actual.short()}, not {digest.short()})",
            "replace it from a remote: dataver fetch --repair; or re-add the data",
        )


def adopt(
    store: ObjectStore,
    tmp_path: str,
    digest: Digest,
    manifest: bool,
    hasher: Hasher,
    check: Callable[[bytes], object] | None = None,
) -> None:
    """Move a downloaded file into the store if and only if it hashes to ``digest``
    (and, for a manifest, ``check`` accepts its bytes: a hostile manifest with a right
    digest is refused before it gets a name, not only when it is read).

    ``tmp_path`` must be in ``store.tmp_dir`` (same filesystem, so the rename is atomic).
    On a mismatch the file is deleted and IntegrityError raised.
    """
    try:
        if manifest:
            if os.path.getsize(tmp_path) > MAX_MANIFEST_BYTES:
                raise IntegrityError(f"downloaded manifest {digest} is larger than any dataver writes; not stored")
            with open(tmp_path, "rb") as f:
                data = f.read()
            actual = digest_manifest(data, digest.algorithm)
            if actual == digest and check is not None:
                check(data)
            del data
        else:
            actual = hasher.hash_file(tmp_path, algorithm=digest.algorithm).digest
        if actual != digest:
            raise IntegrityError(f"downloaded object {digest} is corrupt (its bytes hash to {actual.short()})")
        os.chmod(tmp_path, 0o444)
        store._publish(tmp_path, store.manifest_path(digest) if manifest else store.blob_path(digest))
        if not manifest:
            store.verified.add(digest.hex)
    except BaseException:
        _unlink_quietly(tmp_path)
        raise


def _kind(ref: ObjRef) -> int:
    return KIND_MANIFEST if ref.manifest else KIND_BLOB
