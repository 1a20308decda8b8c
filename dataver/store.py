"""The store contract: what every object store promises — the local cache, a remote in a
local folder, a remote on any fsspec filesystem (S3, GCS, SFTP, ...), the in-memory store.

Modelled on restic's ``internal/backend/backend.go``: a handful of methods keyed by an
object reference, each with its contract written down. Everything above the stores
(push, fetch, gc, verify, imports) is written against this contract alone; retries and
the translation of backend errors into dataver's are done once, around the calls, by
the fsspec store (``remotes.RemoteStore._call``), and progress is the caller's. One
contract test suite (``tests/test_store_contract.py``) runs against every
implementation.

An object is a **blob** (a file's content) or a **manifest** (a folder's file list),
named by the digest of its bytes (``Digest``; see docs/formats.md for the hash
definitions). A blob and a manifest with the same hex digest are different objects.

The key words MUST, MUST NOT and SHOULD are used as in RFC 2119.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from .concurrency import run_parallel
from .digest import Digest
from .errors import DataverError, IntegrityError, ObjectsMissing
from .hashing import CHUNK_SIZE, Hasher, digest_bytes, digest_manifest

MANIFEST_SUFFIX = ".manifest"
Sink = Callable[["ObjRef", "bytes | DataverError"], None]
BLOB, MANIFEST = "blob", "manifest"


@dataclass(frozen=True, slots=True)
class ObjRef:
    """An object in a store: its kind and its digest."""

    digest: Digest
    manifest: bool = False

    @property
    def kind(self) -> str:
        return MANIFEST if self.manifest else BLOB

    def relpath(self) -> str:
        """Where the object lives below a store's root (the cache's layout, and every
        remote's): ``xxh3-128/ab/cdef...`` plus ``.manifest`` for a manifest."""
        return self.digest.relpath() + (MANIFEST_SUFFIX if self.manifest else "")

    def __str__(self) -> str:
        return f"{self.kind} {self.digest}"


class Store(Protocol):
    """Objects by reference. Implementations: ``odb.ObjectStore`` (the cache),
    ``remotes.LocalRemoteStore`` (a folder), ``remotes.RemoteStore`` (any fsspec
    filesystem, and the in-memory store for tests)."""

    #: How the store is named in messages: ``the cache at PATH``, ``remote 'origin' (s3://b/p)``.
    where: str

    def missing(self, refs: Sequence[ObjRef], jobs: int = 8) -> list[ObjRef]:
        """The refs the store does not hold, in the order given.

        MUST be exact: a ref it returns is absent, a ref it omits is present (an object
        being written by another process counts as absent until it is complete).
        SHOULD cost far fewer requests than one per ref when many are asked (listings).
        MUST raise ``RemoteError`` when the store itself cannot be reached, rather than
        report everything missing.
        """
        ...

    def has(self, ref: ObjRef) -> bool:
        """Whether the store holds ``ref``; ``not missing([ref])``, for one object."""
        ...

    def check_reachable(self) -> None:
        """Raise ``RemoteError`` (one cheap request) if the store cannot be reached or
        does not exist, so a wrong URL is one clear error, not every object missing."""
        ...

    def prepare_write(self) -> None:
        """Make the store ready for puts (a folder remote's first push creates it).
        Callers MUST call it once before the first put of a command."""
        ...

    def put_bytes(self, ref: ObjRef, data: bytes) -> None:
        """Store ``data`` as ``ref``.

        MUST verify that ``data`` hashes to ``ref``'s digest (by its kind's hash) and
        raise ``IntegrityError``, storing nothing, when it does not. MUST be atomic: no
        reader ever sees a partial object under ``ref``'s name, whatever kills the
        writer. Putting an object the store already holds MUST succeed and leave it
        whole (the same name means the same bytes); a store MAY skip the write.
        """
        ...

    def put_file(self, ref: ObjRef, path: str, hasher: Hasher) -> None:
        """Store the bytes of the local file ``path`` as ``ref``; the same contract as
        ``put_bytes`` (verified with ``hasher``, atomic, never rewritten), for objects
        too large to hold in memory. The file MUST NOT be modified."""
        ...

    def read(self, ref: ObjRef, start: int = 0, end: int | None = None) -> bytes:
        """The object's bytes ``[start, end)`` (to the end when ``end`` is None; a range
        past the end is cut short, as Python slices are).

        MUST raise ``ObjectsMissing`` when the object is absent. Does not verify: a
        caller that hands bytes on checks them against the digest (a range cannot be).
        """
        ...

    def get_file(self, ref: ObjRef, dest: str, have: Any = None) -> None:
        """Copy the whole object into the local file ``dest`` (created or truncated).

        MUST raise ``ObjectsMissing`` when the object is absent. Does not verify (see
        ``read``); ``dest`` is the caller's temporary, never a final name. ``have``
        (``chunked.LocalChunks``) says where chunks of files already cached are: a
        store that keeps files chunked MAY copy those instead of downloading them.
        """
        ...

    def iter_objects(self) -> Iterator[tuple[ObjRef, int]]:
        """Every object the store holds, with its size in bytes, in no set order.

        MUST skip anything whose name is not an object's (a stranger's file, a
        temporary): what cannot be named is never reported, so never deleted.
        """
        ...

    def delete(self, refs: Iterable[ObjRef]) -> None:
        """Remove these objects. MUST NOT fail for an object that is already absent."""
        ...

    def path(self, ref: ObjRef) -> str:
        """Where the object lives, as the store's users see it (messages, gc's list)."""
        ...

    # -- batches -------------------------------------------------------------------------
    def writer(self, jobs: int = 8) -> Batch:
        """A batch of puts, used as a context manager: ``put_bytes``/``put_file`` as
        above (verified; thread-safe), except that objects MAY become visible only when
        the ``with`` block ends without an exception (a packed remote publishes them in
        one index file then). An abandoned batch (error, kill) MAY leave its objects
        absent, and MUST NOT leave any partly visible."""
        ...

    def read_many(self, refs: list[ObjRef], sink: Sink, jobs: int = 8) -> None:
        """Call ``sink(ref, bytes)`` once for each ref (from any thread, in any order),
        or ``sink(ref, error)`` with ``ObjectsMissing`` for an absent object and
        ``IntegrityError`` for one that cannot be unpacked. Does not verify (see ``read``).
        SHOULD cost far fewer requests than one per object (packs: coalesced ranges).
        Raises only for the store as a whole (``RemoteError``)."""
        ...

    def plan_delete(self, refs: Iterable[ObjRef]) -> Any:
        """What ``delete(refs)`` would do to packs (packstore.PackPlan), or None for a
        store without packs; changes nothing (gc's dry run)."""
        ...

    # -- maintenance ---------------------------------------------------------------------
    def stale_temporaries(self, older_than: float) -> list[str]:
        """Temporaries of writes killed midway, last written before ``older_than`` (epoch
        seconds). A store whose writes leave none (single PUTs) returns []. MUST NOT
        return a temporary a live writer may still rename into place (callers pass
        an hour ago)."""
        ...

    def remove_temporaries(self, paths: list[str]) -> None:
        """Delete what ``stale_temporaries`` returned; absent ones are fine."""
        ...


def check_bytes(ref: ObjRef, data: bytes | memoryview, where: str) -> None:
    """``put_bytes``'s check: IntegrityError unless ``data`` hashes to ``ref``."""
    algorithm = ref.digest.algorithm
    actual = digest_manifest(bytes(data), algorithm) if ref.manifest else digest_bytes(data, CHUNK_SIZE, algorithm)
    if actual != ref.digest:
        raise IntegrityError(f"{ref} does not match its bytes (they hash to {actual.short()}); not stored in {where}")


def check_file(ref: ObjRef, path: str, hasher: Hasher, where: str) -> None:
    """``put_file``'s check: IntegrityError unless the file at ``path`` hashes to ``ref``."""
    if ref.manifest:
        with open(path, "rb") as f:
            check_bytes(ref, f.read(), where)
        return
    actual = hasher.hash_file(path, algorithm=ref.digest.algorithm).digest
    if actual != ref.digest:
        raise IntegrityError(f"{path} does not hash to {ref} (it hashes to {actual.short()}); not stored in {where}")


class Batch:
    """A batch of puts (``Store.writer``): use it as a context manager."""

    #: True when what the store holds may have changed since the caller last asked
    #: (a packed remote re-reads its index under the batch's lock): ask ``missing`` again.
    recheck = False

    def chunk_maps(self) -> list[tuple[Digest, bytes]]:
        """(blob digest, chunk map) of each object this batch stored chunked
        (chunked.py): a caller with a cache keeps them, so that a later fetch of
        another version of the file finds the chunks it shares locally."""
        return []

    def put_bytes(self, ref: ObjRef, data: bytes) -> None:
        raise NotImplementedError

    def put_file(self, ref: ObjRef, path: str, hasher: Hasher) -> None:
        raise NotImplementedError

    def plan(self, items: list[tuple[ObjRef, int]]) -> list[list[ObjRef]] | None:
        """What will be put, in order, with sizes: a store that packs decides its packs
        from it, so a re-run after a kill makes the same ones. Optional. A store may
        answer with groups of the refs it planned: put them group after group (not
        all at once), which bounds what it holds in memory; refs in no group are put
        before them, in any order."""
        return None

    def checkpoint(self) -> None:
        """Make every object put so far visible, as ``commit`` does, and go on: a long
        batch calls it between parts, so what it holds stays bounded and a killed run
        keeps what was made visible. The store needs nothing here when each put is
        visible at once."""

    def commit(self) -> None:
        """Make every put object visible (called when the block ends cleanly)."""

    def close(self) -> None:
        """Release what the batch holds (called however the block ends)."""

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            if exc_type is None:
                self.commit()
        finally:
            self.close()


class DirectBatch(Batch):
    """The batch of a store whose puts are visible at once: each put goes straight in."""

    def __init__(self, store: Store):
        self.store = store

    def put_bytes(self, ref: ObjRef, data: bytes) -> None:
        self.store.put_bytes(ref, data)

    def put_file(self, ref: ObjRef, path: str, hasher: Hasher) -> None:
        self.store.put_file(ref, path, hasher)


def read_each(store: Store, refs: list[ObjRef], sink: Callable[[ObjRef, Any], None], jobs: int) -> None:
    """``Store.read_many`` for a store without packs: one ``read`` per object."""

    def one(ref: ObjRef) -> None:
        try:
            data = store.read(ref)
        except ObjectsMissing as e:
            sink(ref, e)
            return
        sink(ref, data)

    run_parallel(one, refs, jobs)
