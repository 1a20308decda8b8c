"""Moving objects between the local cache and a remote: wanted - present = missing.

On push, blobs travel before the manifests that list them, so a remote never holds
a manifest whose files were not sent first. On fetch, a folder's manifest comes
first (it is what says which blobs to fetch); a manifest in the cache without its
blobs is harmless, since status and checkout report the blobs as missing. Every downloaded object is hashed
before it gets its name in the cache (``odb.adopt``); nothing bad is kept. A fetch goes
on past an object the remote lacks or holds corrupt, and lists each in its result; only
a failure of the remote as a whole (RemoteError) or of the cache (StorageError) stops it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from . import tree
from .chunked import CHUNKED_MIN, LocalChunks
from .concurrency import run_parallel
from .digest import Digest
from .errors import CORRUPT_REMOTE, DataverError, IntegrityError, ObjectsMissing, StorageError, Unrestored
from .hashing import Hasher
from .odb import ObjectStore, adopt
from .progress import NO_PROGRESS, Progress
from .remotes import redact
from .store import Batch, ObjRef, Store, check_bytes
from .workspace import Tracked


@dataclass
class Walk:
    """What a walk of pointers found besides the objects themselves."""

    unknown: list[Unrestored] = field(default_factory=list)  # folders whose manifest we lack (or got corrupt)
    manifests_fetched: int = 0  # manifests downloaded to expand folders
    manifest_bytes: int = 0  # and their bytes (a manifest's size is known only once it is read)


def needed(
    cache: ObjectStore,
    tracked: Iterable[Tracked],
    walk: Walk,
    source: Store | None = None,
    hasher: Hasher | None = None,
) -> Iterator[tuple[ObjRef, int, str]]:
    """``(ref, size, display path)`` of every object the pointers need: the one answer
    push, fetch, gc, verify and imports share. A folder needs its manifest and every
    blob the manifest lists; an output of ``dataver run`` also needs the objects its
    lineage block names (the ``git diff`` and package lock); a manifest the cache lacks is fetched from ``source`` when
    one is given (with a ``hasher``), else the folder goes into ``walk.unknown``. Yielded
    as found, so a caller that keeps only digests never holds a path per file."""
    for t in tracked:
        lineage = t.pointer.lineage  # its stored diff and package lock travel with the output
        for s in lineage.stored() if lineage is not None and lineage.output_for(t.rel, t.pointer.digest) else ():
            yield ObjRef(s.digest), s.size, f"{t.rel} (lineage)"
        if not t.pointer.is_dir:
            yield ObjRef(t.pointer.digest), t.pointer.size, t.rel
            continue
        mref = ObjRef(t.pointer.digest, manifest=True)
        yield mref, 0, t.rel
        if not cache.has(mref):
            if source is None or hasher is None:
                walk.unknown.append(Unrestored(t.rel, mref.digest, manifest=True))
                continue
            try:
                download_object(cache, source, mref, hasher, t.rel)
            except ObjectsMissing:
                walk.unknown.append(Unrestored(t.rel, mref.digest, manifest=True))
                continue
            except IntegrityError:
                walk.unknown.append(_corrupt_on(source, t.rel, mref))
                continue
            walk.manifests_fetched += 1
            walk.manifest_bytes += len(cache.read(mref))
        yield from _folder_objects(cache, t, walk, source, hasher)


class _NodeUnknown(Exception):
    """A tree node the cache lacks and no source gives (``needed`` records it)."""

    def __init__(self, unrestored: Unrestored):
        self.unrestored = unrestored


def _folder_objects(
    cache: ObjectStore, t: Tracked, walk: Walk, source: Store | None, hasher: Hasher | None
) -> Iterator[tuple[ObjRef, int, str]]:
    """``needed`` for a folder whose root manifest the cache holds: a tree's other nodes
    (fetched from ``source`` when the cache lacks them, a node's children in one batch)
    and every file's blob."""
    root = t.pointer.digest
    nodes: list[ObjRef] = []

    def read(digest: Digest) -> bytes:
        ref = ObjRef(digest, manifest=True)
        if digest != root:
            nodes.append(ref)
            if not cache.has(ref):
                if source is None or hasher is None:
                    raise _NodeUnknown(Unrestored(t.rel, digest, manifest=True))
                _fetch_nodes(cache, source, [ref], hasher, t.rel, walk)
        data = cache.read_manifest_bytes(digest)
        if source is not None and hasher is not None and tree.is_tree(data):
            subs, _ = tree.children(data, digest.algorithm, f"manifest of {t.rel}")
            missing = cache.missing([ObjRef(d, manifest=True) for d in subs])
            if missing:
                _fetch_nodes(cache, source, missing, hasher, t.rel, walk)
        return data

    try:
        for e in tree.walk(read, root, f"manifest of {t.rel}"):
            while nodes:
                yield nodes.pop(), 0, t.rel
            yield ObjRef(e.digest), e.size, f"{t.rel}/{e.path}"
    except _NodeUnknown as u:
        walk.unknown.append(u.unrestored)
    while nodes:
        yield nodes.pop(), 0, t.rel


def _fetch_nodes(
    cache: ObjectStore, source: Store, refs: list[ObjRef], hasher: Hasher, display: str, walk: Walk | None
) -> None:
    """Bring tree nodes into the cache in one batch of reads, each verified and parsed
    before it is stored. A node the source lacks or holds damaged stops the walk."""
    problem: list[Unrestored] = []

    def sink(ref: ObjRef, data: bytes | DataverError) -> None:
        if isinstance(data, ObjectsMissing):
            problem.append(Unrestored(display, ref.digest, manifest=True))
        elif isinstance(data, DataverError):
            if not isinstance(data, IntegrityError):
                raise data
            problem.append(_corrupt_on(source, display, ref))
        else:
            try:
                check_bytes(ref, data, source.where)
                _manifest_check(source, ref, display)(data)
                cache.put_bytes(ref, data)
            except IntegrityError:
                problem.append(_corrupt_on(source, display, ref))
                return
            if walk is not None:
                walk.manifests_fetched += 1
                walk.manifest_bytes += len(data)

    source.read_many(refs, sink, max(1, hasher.jobs))
    if problem:
        raise _NodeUnknown(problem[0])


@dataclass
class Wanted(Walk):
    """Objects some pointers need, with sizes and a path to name each in messages."""

    refs: dict[ObjRef, tuple[int, str]] = field(default_factory=dict)  # ref -> (size, display path)

    def add(self, ref: ObjRef, size: int, display: str) -> None:
        self.refs.setdefault(ref, (size, display))

    def unknown_refs(self) -> list[ObjRef]:
        return [ObjRef(u.digest, manifest=True) for u in self.unknown]


def wanted_objects(
    cache: ObjectStore, tracked: list[Tracked], source: Store | None = None, hasher: Hasher | None = None
) -> Wanted:
    """Everything the pointers need (``needed``), each object once."""
    w = Wanted()
    for ref, size, display in needed(cache, tracked, w, source, hasher):
        w.add(ref, size, display)
    return w


@dataclass
class TransferResult:
    transferred: int = 0
    present: int = 0  # already where they needed to be
    nbytes: int = 0
    failed: list[Unrestored] = field(default_factory=list)  # not transferred: missing, or corrupt on the remote
    repaired: list[tuple[str, ObjRef]] = field(default_factory=list)  # corrupt cache objects replaced


def push(
    cache: ObjectStore,
    remote: Store,
    wanted: Wanted,
    jobs: int,
    progress: Progress,
    hasher: Hasher,
) -> TransferResult:
    """Upload what the remote lacks. The store contract verifies every object on its
    way in (``put_bytes``/``put_file``), so a damaged cache object is reported, not spread."""
    unknown_refs = wanted.unknown_refs()
    unknown = set(unknown_refs)
    known = [ref for ref in wanted.refs if ref not in unknown]
    lacking = set(cache.missing(known))
    local = [r for r in known if r not in lacking]
    not_local = [r for r in known if r in lacking]
    # One question to the remote for both: what to send, and which of the objects
    # we lack it lacks too (those are lost unless someone else still has them).
    remote.prepare_write()
    everything = local + not_local + unknown_refs
    absent = set(remote.missing(everything, jobs))
    result = TransferResult()
    if any(r in absent for r in local):
        # Something to send: a batch (a packed remote's shared lock, so no gc removes
        # what we count as present), and the question asked again under it.
        with remote.writer(jobs) as batch:
            if batch.recheck:  # only what was there may have gone (a gc before our lock)
                absent |= set(remote.missing([r for r in everything if r not in absent], jobs))
            _send(cache, batch, [r for r in local if r in absent], wanted, jobs, progress, hasher, result)
        for digest, chunk_map in batch.chunk_maps():  # hints for fetching other versions later
            cache.put_map(digest, chunk_map)
    result.failed = [u for u, r in zip(wanted.unknown, unknown_refs, strict=True) if r in absent] + [
        Unrestored(wanted.refs[r][1], r.digest, manifest=r.manifest) for r in not_local if r in absent
    ]
    result.present = len(known) - len(absent & set(known))
    return result


def _send(
    cache: ObjectStore,
    batch: Batch,
    to_send: list[ObjRef],
    wanted: Wanted,
    jobs: int,
    progress: Progress,
    hasher: Hasher,
    result: TransferResult,
) -> None:
    manifest_sizes: list[int] = []  # a manifest's size is known once it is read

    def send(ref: ObjRef) -> None:
        size = wanted.refs[ref][0]
        try:
            if not ref.manifest and size <= hasher.chunk_size:
                batch.put_bytes(ref, cache.read(ref))  # small blobs (most): one read serves check and upload
            else:
                packed = cache.packed_bytes(ref)  # a manifest may be packed in the cache
                if packed is not None:
                    batch.put_bytes(ref, packed)
                else:
                    batch.put_file(ref, cache.path(ref), hasher)
                if ref.manifest:
                    manifest_sizes.append(len(packed) if packed is not None else os.path.getsize(cache.path(ref)))
        except IntegrityError:
            raise IntegrityError(
                f"cache object {cache.path(ref)} is corrupt (its bytes do not hash to {ref.digest.short()}); "
                "not pushed",
                "repair it: dataver fetch --repair (from a remote with a good copy); without one, delete "
                "that file and dataver add the data again",
            ) from None
        progress.advance(size, 1)

    groups = batch.plan(
        [(r, wanted.refs[r][0]) for r in to_send if not r.manifest] + [(r, 0) for r in to_send if r.manifest]
    )
    if groups is not None:  # the store's order (packs): first what it did not plan (large objects)
        planned = {r for g in groups for r in g}
        groups = [[r for r in to_send if r not in planned], *groups]
    _run_in_order(to_send, send, jobs, wanted, progress, "uploading", groups)
    result.transferred = len(to_send)
    result.nbytes = sum(wanted.refs[r][0] for r in to_send) + sum(manifest_sizes)


def fetch(
    cache: ObjectStore, remote: Store, wanted: Wanted, hasher: Hasher, jobs: int, progress: Progress = NO_PROGRESS
) -> TransferResult:
    """Download what the cache lacks. An object the remote lacks, or holds corrupt, is
    skipped and listed in ``failed`` while the other downloads go on."""
    result = TransferResult(failed=list(wanted.unknown))
    unknown = set(wanted.unknown_refs())
    remote.check_reachable()  # a wrong URL is one clear error, not every object "missing"
    known = [ref for ref in wanted.refs if ref not in unknown]
    to_get = cache.missing(known)
    result.present = len(known) - len(to_get)
    failed: dict[ObjRef, Unrestored] = {}  # filled in by the download threads
    got: list[int] = []  # the sizes of the manifests stored (unknown until read)

    def stored(ref: ObjRef) -> None:
        progress.advance(wanted.refs[ref][0], 1)

    def sink(ref: ObjRef, data: bytes | DataverError) -> None:
        """A small object read from the remote: verified into the cache, or recorded."""
        display = wanted.refs[ref][1]
        if isinstance(data, ObjectsMissing):
            failed[ref] = Unrestored(display, ref.digest, manifest=ref.manifest)
        elif isinstance(data, IntegrityError):
            failed[ref] = _corrupt_on(remote, display, ref)
        elif isinstance(data, DataverError):
            raise data
        elif len(data) > hasher.chunk_size:  # larger than its pointer said: the file path
            large(ref)
        else:
            try:
                if ref.manifest:  # hashed first: only a manifest that is what it claims gets parsed
                    check_bytes(ref, data, remote.where)
                    _manifest_check(remote, ref, display)(data)
                cache.put_bytes(ref, data)
            except IntegrityError:
                failed[ref] = _corrupt_on(remote, display, ref)
                return
            if ref.manifest:
                got.append(len(data))
            stored(ref)

    have = LocalChunks(cache)  # chunks of cached files, for objects stored chunked

    def large(ref: ObjRef) -> None:
        display = wanted.refs[ref][1]
        try:
            download_object(cache, remote, ref, hasher, have=have)
        except ObjectsMissing:
            failed[ref] = Unrestored(display, ref.digest, manifest=ref.manifest)
            return
        except IntegrityError:  # already discarded: nothing bad has a name in the cache
            failed[ref] = _corrupt_on(remote, display, ref)
            return
        stored(ref)

    def small(ref: ObjRef) -> bool:
        """Read into memory (many per request); the rest, and files a packed remote may
        hold chunked, go through a temporary file."""
        return ref.manifest or wanted.refs[ref][0] < min(hasher.chunk_size + 1, CHUNKED_MIN)

    if to_get:
        progress.start("downloading", total_bytes=sum(wanted.refs[r][0] for r in to_get), total_files=len(to_get))
        try:
            for part in ([r for r in to_get if not r.manifest], [r for r in to_get if r.manifest]):
                remote.read_many([r for r in part if small(r)], sink, jobs)  # blobs, then the manifests
                run_parallel(large, [r for r in part if not small(r)], jobs)
        finally:
            progress.close()
    result.failed = sorted(result.failed + list(failed.values()), key=lambda u: u.path)
    result.transferred = len(to_get) - len(failed) + wanted.manifests_fetched
    result.present -= wanted.manifests_fetched  # counted as present above, but they just arrived
    result.nbytes = sum(wanted.refs[r][0] for r in to_get if r not in failed) + wanted.manifest_bytes + sum(got)
    return result


def remove_corrupt(
    cache: ObjectStore, wanted: Wanted, hasher: Hasher, jobs: int, progress: Progress = NO_PROGRESS
) -> list[tuple[str, ObjRef]]:
    """Re-hash the wanted objects present in the cache and delete those whose bytes
    do not match their names, so a fetch brings good copies. Returns what was removed."""
    refs = list(wanted.refs)
    lacking = set(cache.missing(refs))
    present = [r for r in refs if r not in lacking]

    def check(ref: ObjRef) -> bool:
        if ref.manifest:
            try:
                cache.read_manifest_bytes(ref.digest)
                return True
            except IntegrityError:
                return False
        return cache.check_blob(ref.digest, hasher)

    progress.start("checking cache", total_bytes=sum(wanted.refs[r][0] for r in present), total_files=len(present))
    good = run_parallel(check, present, max(1, hasher.jobs))
    progress.close()
    bad = [r for r, ok in zip(present, good, strict=True) if not ok]
    cache.delete(bad)
    return [(wanted.refs[r][1], r) for r in bad]


def fetch_manifest(cache: ObjectStore, remote: Store, digest, hasher: Hasher, display: str | None = None) -> None:
    """Bring one folder manifest into the cache, a tree's every node (each verified and
    parsed, a level's missing nodes in one batch); ObjectsMissing if one is absent,
    IntegrityError if one is damaged on the remote."""
    root = ObjRef(digest, manifest=True)
    if not cache.has(root):
        download_object(cache, remote, root, hasher, display)
    name = display or digest.short()
    level, seen = [digest], {digest}
    while level:
        below: list[Digest] = []
        for d in level:
            subs, _ = tree.children(cache.read_manifest_bytes(d), d.algorithm, f"manifest of {name}")
            below += [s for s in subs if s not in seen]
            seen.update(subs)
        missing = cache.missing([ObjRef(d, manifest=True) for d in below])
        if missing:
            try:
                _fetch_nodes(cache, remote, missing, hasher, name, None)
            except _NodeUnknown as e:
                u = e.unrestored
                if u.reason == CORRUPT_REMOTE:
                    raise IntegrityError(f"manifest {u.digest} of {name} is damaged on {remote.where}") from None
                raise ObjectsMissing(f"manifest {u.digest} of {name} is not on {remote.where}") from None
        level = below


def download_object(
    cache: ObjectStore,
    remote: Store,
    ref: ObjRef,
    hasher: Hasher,
    display: str | None = None,
    have: LocalChunks | None = None,
) -> None:
    """Download one object into the cache, verified (a manifest also parsed: see adopt);
    ``display`` names the folder a manifest belongs to in messages."""
    try:
        os.makedirs(cache.tmp_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.tmp_dir, suffix=".download")
    except OSError as e:
        raise StorageError(
            f"cannot write to the cache at {cache.root}: {e.strerror}",
            "free some space or fix permissions, then re-run (nothing was half-written)",
        ) from None
    os.close(fd)
    try:
        remote.get_file(ref, tmp, have=have if have is not None else LocalChunks(cache))
        check = _manifest_check(remote, ref, display) if ref.manifest else None
        adopt(cache, tmp, ref.digest, ref.manifest, hasher, check)
    except IntegrityError as e:
        raise _remote_copy_damaged(e, remote, ref) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _manifest_check(remote: Store, ref: ObjRef, display: str | None):
    """Parse a downloaded manifest before it is stored: its paths pass the path check."""
    what = f"manifest of {display}" if display else f"manifest {ref.digest.short()}"
    return lambda data: tree.check_object(data, f"{what} (from {remote.where})", ref.digest.algorithm)


def download_small_object(cache: ObjectStore, remote: Store, ref: ObjRef, hasher: Hasher) -> None:
    """Fetch a blob expected to fit one chunk into memory, verify it, store it: no
    temporary download file. A remote object larger than that takes the file path."""
    data = remote.read(ref, 0, hasher.chunk_size + 1)
    if len(data) > hasher.chunk_size:
        download_object(cache, remote, ref, hasher)
        return
    try:
        cache.put_bytes(ref, data)
    except IntegrityError as e:
        raise _remote_copy_damaged(e, remote, ref) from None


def _corrupt_on(remote: Store, display: str, ref: ObjRef) -> Unrestored:
    return Unrestored(display, ref.digest, CORRUPT_REMOTE, remote.where, ref.manifest)


def _remote_copy_damaged(e: IntegrityError, remote: Store, ref: ObjRef) -> IntegrityError:
    return IntegrityError(
        f"{e.message} on {remote.where}",
        f"the remote copy is damaged: delete {redact(remote.path(ref))} on the remote, then dataver push "
        "from a machine that has the data (push never overwrites an object the remote already has)",
    )


def _run_in_order(
    refs: list[ObjRef],
    fn,
    jobs: int,
    wanted: Wanted,
    progress: Progress,
    desc: str,
    groups: list[list[ObjRef]] | None = None,
) -> None:
    """``fn`` on each ref, in parallel within a group, one group after the other
    (default: blobs, then manifests); stop at the first error ``fn`` raises (per-object
    failures that should not stop the rest, ``fn`` records instead)."""
    if not refs:
        return
    if groups is None:
        groups = [[r for r in refs if not r.manifest], [r for r in refs if r.manifest]]
    progress.start(desc, total_bytes=sum(wanted.refs[r][0] for r in refs), total_files=len(refs))
    try:
        for group in groups:
            run_parallel(fn, group, jobs)
    finally:
        progress.close()
