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
from typing import Collection, Iterable, Iterator

from . import tree
from .chunked import CHUNKED_MIN, LocalChunks
from .concurrency import run_parallel
from .digest import Digest
from .errors import CORRUPT_REMOTE, DataverError, IntegrityError, ObjectsMissing, StorageError, Unrestored
from .hashing import Hasher
from .odb import ObjectStore, adopt
from .progress import NO_PROGRESS, Progress
from .refbatch import RefBatches
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
    """Objects some pointers need, each once, with their sizes: 42 bytes each, on a
    temporary file past a few MiB (``refbatch``), read back a batch at a time. The path
    that names an object in messages is found again (``names``) only for the objects
    that need one: a failure, a listing."""

    cache: ObjectStore | None = None
    tracked: list[Tracked] = field(default_factory=list)  # whose walk found them
    objects: RefBatches | None = None
    extra: dict[ObjRef, str] = field(default_factory=dict)  # added by hand: their names

    def add(self, ref: ObjRef, size: int, display: str | None = None) -> None:
        assert self.objects is not None
        self.objects.add(ref, size)
        if display is not None:
            self.extra.setdefault(ref, display)

    def unknown_refs(self) -> list[ObjRef]:
        return [ObjRef(u.digest, manifest=True) for u in self.unknown]

    def batches(self) -> Iterator[dict[ObjRef, int]]:
        """The objects (but folders' manifests that could not be found), a batch at a time."""
        assert self.objects is not None
        unknown = set(self.unknown_refs())
        for batch in self.objects.batches():
            for ref in unknown & batch.keys():
                del batch[ref]
            if batch:
                yield batch

    def names(self, refs: Collection[ObjRef] | None = None) -> dict[ObjRef, tuple[int, str]]:
        """``(size, path)`` of ``refs`` (of every object when None), from a second walk of
        the pointers (their manifests are in the cache by now). Holds one entry per object
        asked about: ask about failures, not about everything, where memory matters."""
        assert self.cache is not None
        out: dict[ObjRef, tuple[int, str]] = {}
        for ref, display in self.extra.items():
            if refs is None or ref in refs:
                out[ref] = (0, display)
        for ref, size, display in needed(self.cache, self.tracked, Walk()):
            if (refs is None or ref in refs) and ref not in out:
                out[ref] = (size, display)
                if refs is not None and len(out) == len(refs):
                    break
        return out

    def name(self, names: dict[ObjRef, tuple[int, str]], ref: ObjRef) -> str:
        found = names.get(ref)
        return found[1] if found is not None else str(ref.digest)

    def close(self) -> None:
        if self.objects is not None:
            self.objects.close()

    def __enter__(self) -> Wanted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wanted_objects(
    cache: ObjectStore, tracked: list[Tracked], source: Store | None = None, hasher: Hasher | None = None
) -> Wanted:
    """Everything the pointers need (``needed``), each object once."""
    w = Wanted(cache=cache, tracked=list(tracked), objects=RefBatches(cache.tmp_dir))
    for ref, size, _ in needed(cache, w.tracked, w, source, hasher):
        w.add(ref, size)
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
    """Upload what the remote lacks, a batch of objects at a time, every blob before any
    manifest. The store contract verifies every object on its way in
    (``put_bytes``/``put_file``), so a damaged cache object is reported, not spread.

    A first pass, without the remote's lock, says whether anything is to be sent and how
    much. Only then is a writer opened (a packed remote's shared lock, so no gc removes
    what counts as present) and every batch asked about again under it, each batch's
    blobs sent and made visible (``Batch.checkpoint``) before the next: the batches are
    the wanted objects' (``Wanted.batches``), the same on a re-run, so a push killed
    in a batch makes the same packs again and leaves none that no index names."""
    remote.prepare_write()
    first, batches = _first_pass(cache, remote, wanted, jobs)
    unknown_refs = wanted.unknown_refs()
    if not first.files:
        return _pushed(wanted, first, remote.missing(unknown_refs, jobs) if unknown_refs else [])
    with remote.writer(jobs) as writer:
        checked = first if batches == 1 and not writer.recheck else _Sorted()
        progress.start("uploading", total_bytes=first.nbytes, total_files=first.files)
        try:
            if batches == 1:  # one batch: its blobs, then its manifests, in one plan
                if checked is not first:
                    for batch in wanted.batches():
                        checked.add(cache, remote, batch, jobs)
                _send(cache, writer, {**checked.blobs, **checked.manifests}, jobs, progress, hasher, checked.result)
            else:
                manifests = RefBatches(cache.tmp_dir)
                with manifests:
                    for batch in wanted.batches():
                        _push_batch(cache, remote, writer, batch, jobs, progress, hasher, checked, manifests)
                    batch = {}  # not held while the manifests go
                    for todo in manifests.batches():
                        _send(cache, writer, todo, jobs, progress, hasher, checked.result)
        finally:
            progress.close()
        lost = remote.missing(unknown_refs, jobs) if unknown_refs else []
    for digest, chunk_map in writer.chunk_maps():  # hints for fetching other versions later
        cache.put_map(digest, chunk_map)
    return _pushed(wanted, checked, lost)


def _first_pass(cache: ObjectStore, remote: Store, wanted: Wanted, jobs: int) -> tuple[_Sorted, int]:
    """Push's first look, without the remote's lock: what is to send (the objects kept
    only when there is one batch), and how many batches there are."""
    first = _Sorted()
    batches = 0
    for batch in wanted.batches():
        first.add(cache, remote, batch, jobs)
        batches += 1
        if batches > 1:
            first.forget()  # counts only: every batch is asked about again under the lock
    return first, batches


def _push_batch(
    cache: ObjectStore,
    remote: Store,
    writer: Batch,
    batch: dict[ObjRef, int],
    jobs: int,
    progress: Progress,
    hasher: Hasher,
    checked: _Sorted,
    manifests: RefBatches,
) -> None:
    """One batch of a long push, under the writer's lock: asked about again, its blobs
    sent and made visible, its manifests kept for the end."""
    here = _Sorted()
    here.add(cache, remote, batch, jobs)
    checked.merge(here)
    if here.blobs:
        _send(cache, writer, here.blobs, jobs, progress, hasher, checked.result)
        writer.checkpoint()
    for ref, size in here.manifests.items():
        manifests.add(ref, size)


class _Sorted:
    """Objects of push's batches sorted by where they are: to send (local, not on the
    remote), failing (in neither), or present (on the remote)."""

    def __init__(self) -> None:
        self.blobs: dict[ObjRef, int] = {}  # to send: ref -> size (of one batch; see forget)
        self.manifests: dict[ObjRef, int] = {}
        self.files = 0  # to send, counted over every batch added
        self.nbytes = 0
        self.failing: list[ObjRef] = []
        self.result = TransferResult()

    def add(self, cache: ObjectStore, remote: Store, batch: dict[ObjRef, int], jobs: int) -> None:
        refs = list(batch)
        lacking = set(cache.missing(refs))
        absent = set(remote.missing(refs, jobs))
        for ref in refs:
            if ref in absent:
                if ref in lacking:
                    self.failing.append(ref)
                else:
                    (self.manifests if ref.manifest else self.blobs)[ref] = batch[ref]
                    self.files += 1
                    self.nbytes += batch[ref]
        self.result.present += len(refs) - len(absent)

    def forget(self) -> None:
        """Keep the counts, not the objects to send."""
        self.blobs, self.manifests = {}, {}

    def merge(self, other: _Sorted) -> None:
        """Counts and failures of a batch sorted under the lock (its objects are sent)."""
        self.failing += other.failing
        self.result.present += other.result.present


def _pushed(wanted: Wanted, done: _Sorted, lost: list[ObjRef]) -> TransferResult:
    """The result: what was sent (``done.result``), and each object that could not be,
    named by its path (found again for these only)."""
    result = done.result
    names = wanted.names(set(done.failing)) if done.failing else {}
    gone = set(lost)
    result.failed = [u for u, r in zip(wanted.unknown, wanted.unknown_refs(), strict=True) if r in gone] + [
        Unrestored(wanted.name(names, r), r.digest, manifest=r.manifest) for r in done.failing
    ]
    return result


def _send(
    cache: ObjectStore,
    batch: Batch,
    todo: dict[ObjRef, int],
    jobs: int,
    progress: Progress,
    hasher: Hasher,
    result: TransferResult,
) -> None:
    """Upload the objects ``todo`` names (ref -> size), in the order the store plans."""
    manifest_sizes: list[int] = []  # a manifest's size is known once it is read

    def send(ref: ObjRef) -> None:
        size = todo[ref]
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

    refs = list(todo)
    groups = batch.plan([(r, 0 if r.manifest else todo[r]) for r in refs])
    if groups is not None:  # the store's order (packs): first what it did not plan (large objects)
        planned = {r for g in groups for r in g}
        groups = [[r for r in refs if r not in planned], *groups]
    else:  # blobs before the manifests that list them
        groups = [[r for r in refs if not r.manifest], [r for r in refs if r.manifest]]
    for group in groups:
        run_parallel(send, group, jobs)
    result.transferred += len(refs)
    result.nbytes += sum(todo.values()) + sum(manifest_sizes)


def fetch(
    cache: ObjectStore, remote: Store, wanted: Wanted, hasher: Hasher, jobs: int, progress: Progress = NO_PROGRESS
) -> TransferResult:
    """Download what the cache lacks, a batch at a time (every blob before any manifest).
    An object the remote lacks, or holds corrupt, is skipped and listed in ``failed``
    while the other downloads go on."""
    result = TransferResult()
    remote.check_reachable()  # a wrong URL is one clear error, not every object "missing"
    failed: dict[ObjRef, bool] = {}  # filled in by the download threads: ref -> corrupt (else absent)
    failed_bytes = [0]
    got: list[int] = []  # the sizes of the manifests stored (unknown until read)
    have = LocalChunks(cache)  # chunks of cached files, for objects stored chunked
    tmp = cache.tmp_dir
    with RefBatches(tmp) as blobs, RefBatches(tmp) as manifests:
        result.present = _lacking(cache, wanted, blobs, manifests)
        if blobs.count or manifests.count:
            progress.start(
                "downloading", total_bytes=blobs.nbytes + manifests.nbytes, total_files=blobs.count + manifests.count
            )
            try:
                for part in (blobs, manifests):
                    for todo in part.batches():
                        _get(cache, remote, todo, hasher, jobs, progress, have, failed, failed_bytes, got)
            finally:
                progress.close()
        to_get = blobs.count + manifests.count
        nbytes = blobs.nbytes + manifests.nbytes
    names = wanted.names(set(failed)) if failed else {}
    result.failed = sorted(
        list(wanted.unknown)
        + [
            _corrupt_on(remote, wanted.name(names, r), r)
            if corrupt
            else Unrestored(wanted.name(names, r), r.digest, manifest=r.manifest)
            for r, corrupt in failed.items()
        ],
        key=lambda u: u.path,
    )
    result.transferred = to_get - len(failed) + wanted.manifests_fetched
    result.present -= wanted.manifests_fetched  # counted as present above, but they just arrived
    result.nbytes = nbytes - failed_bytes[0] + wanted.manifest_bytes + sum(got)
    return result


def _lacking(cache: ObjectStore, wanted: Wanted, blobs: RefBatches, manifests: RefBatches) -> int:
    """Put the wanted objects the cache lacks into ``blobs`` and ``manifests``; return how
    many it holds (a function: no batch outlives it)."""
    present = 0
    for batch in wanted.batches():
        refs = list(batch)
        lacking = cache.missing(refs)
        present += len(refs) - len(lacking)
        for ref in lacking:
            (manifests if ref.manifest else blobs).add(ref, batch[ref])
    return present


def _get(
    cache: ObjectStore,
    remote: Store,
    todo: dict[ObjRef, int],
    hasher: Hasher,
    jobs: int,
    progress: Progress,
    have: LocalChunks,
    failed: dict[ObjRef, bool],
    failed_bytes: list[int],
    got: list[int],
) -> None:
    """Download the objects ``todo`` names (ref -> size) into the cache, each verified."""

    def fail(ref: ObjRef, corrupt: bool) -> None:
        failed[ref] = corrupt  # one key per thread: dict assignment is atomic

    def sink(ref: ObjRef, data: bytes | DataverError) -> None:
        """A small object read from the remote: verified into the cache, or recorded."""
        if isinstance(data, ObjectsMissing):
            fail(ref, False)
        elif isinstance(data, IntegrityError):
            fail(ref, True)
        elif isinstance(data, DataverError):
            raise data
        elif len(data) > hasher.chunk_size:  # larger than its pointer said: the file path
            large(ref)
        else:
            try:
                if ref.manifest:  # hashed first: only a manifest that is what it claims gets parsed
                    check_bytes(ref, data, remote.where)
                    _manifest_check(remote, ref, None)(data)
                cache.put_bytes(ref, data)
            except IntegrityError:
                fail(ref, True)
                return
            if ref.manifest:
                got.append(len(data))
            progress.advance(todo[ref], 1)

    def large(ref: ObjRef) -> None:
        try:
            download_object(cache, remote, ref, hasher, have=have)
        except ObjectsMissing:
            fail(ref, False)
            return
        except IntegrityError:  # already discarded: nothing bad has a name in the cache
            fail(ref, True)
            return
        progress.advance(todo[ref], 1)

    def small(ref: ObjRef) -> bool:
        """Read into memory (many per request); the rest, and files a packed remote may
        hold chunked, go through a temporary file."""
        return ref.manifest or todo[ref] < min(hasher.chunk_size + 1, CHUNKED_MIN)

    refs = list(todo)
    remote.read_many([r for r in refs if small(r)], sink, jobs)
    run_parallel(large, [r for r in refs if not small(r)], jobs)
    failed_bytes[0] += sum(size for ref, size in todo.items() if ref in failed)  # here, not on the threads


def remove_corrupt(
    cache: ObjectStore, wanted: Wanted, hasher: Hasher, jobs: int, progress: Progress = NO_PROGRESS
) -> list[tuple[str, ObjRef]]:
    """Re-hash the wanted objects present in the cache and delete those whose bytes
    do not match their names, so a fetch brings good copies. Returns what was removed."""

    def check(ref: ObjRef) -> bool:
        if ref.manifest:
            try:
                cache.read_manifest_bytes(ref.digest)
                return True
            except IntegrityError:
                return False
        return cache.check_blob(ref.digest, hasher)

    assert wanted.objects is not None
    bad: list[ObjRef] = []
    progress.start("checking cache")  # totals unknown until the batches are read (repeats, absent objects)
    try:
        for batch in wanted.batches():
            lacking = set(cache.missing(list(batch)))
            present = [r for r in batch if r not in lacking]
            good = run_parallel(check, present, max(1, jobs))
            for ref, ok in zip(present, good, strict=True):
                progress.advance(batch[ref], 1)
                if not ok:
                    bad.append(ref)
    finally:
        progress.close()
    names = wanted.names(set(bad)) if bad else {}  # before the delete: a bad node names files below it
    cache.delete(bad)
    return [(wanted.name(names, r), r) for r in bad]


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
