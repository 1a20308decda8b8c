"""push, fetch, pull, and remote status/verify: the cache <-> a remote."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MISSING, ObjectsMissing, RemoteError, Unrestored, UsageError
from ..history import Revisions, tracked_at, tracked_for
from ..progress import NO_PROGRESS, Progress
from ..remotes import RemoteStore, open_remote, remote_names
from ..repo import Repo, takes_lock
from ..store import ObjRef
from ..transfer import TransferResult, Walk, Wanted, needed, remove_corrupt, wanted_objects
from ..transfer import fetch as fetch_objects
from ..transfer import push as push_objects
from ..workspace import Tracked, find_tracked
from .core import CheckoutResult, checkout
from .targets import resolve


def transfer_jobs(repo: Repo, remote: RemoteStore, jobs: int | None) -> int:
    """Parallel requests to ``remote``: ``jobs`` if given, else its ``jobs`` key, else its default."""
    return jobs or remote.jobs or remote.default_jobs()


@takes_lock
def push(
    repo: Repo,
    paths: list[str] | None = None,
    remote_name: str | None = None,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
    rev: str | Revisions | None = None,
) -> TransferResult:
    """Send to the remote what the pointers (of the workspace, of ``rev``, or of every
    revision a ``Revisions`` covers) need and it lacks."""
    remote = open_remote(repo.config, remote_name, repo.root)
    tracked = resolve(repo, rev, paths)
    with wanted_objects(repo.cache, tracked) as wanted, repo.hasher() as hasher:
        _with_folder_manifests(repo, tracked, wanted)
        return push_objects(repo.cache, remote, wanted, transfer_jobs(repo, remote, jobs), progress, hasher)


def _with_folder_manifests(repo: Repo, tracked: list[Tracked], wanted: Wanted) -> None:
    """A part of a tracked folder is pushed with its folder's manifest (every node), or no
    other clone could find the part: what pull of a path inside a folder reads first."""
    from .targets import PartFile

    folders = {(repo.rel(t.root), t.folder) for t in tracked if isinstance(t, PartFile) and t.folder is not None}
    for rel, ptr in sorted(folders, key=lambda f: f[0]):
        folder = Tracked("", "", rel, ptr)
        wanted.tracked.append(folder)  # names its nodes in messages
        for ref, size, _ in needed(repo.cache, [folder], Walk()):
            if ref.manifest:
                wanted.add(ref, size)


@takes_lock
def fetch(
    repo: Repo,
    paths: list[str] | None = None,
    remote_name: str | None = None,
    jobs: int | None = None,
    progress: Progress = NO_PROGRESS,
    rev: str | Revisions | None = None,
    repair: bool = False,
) -> TransferResult:
    """Bring into the cache what the pointers (of the workspace, at ``rev``, or of every
    revision a ``Revisions`` covers) need.

    Imported pointers are served from our remote when it has their objects, else
    from their source repository at the pinned commit. With ``repair``, cache objects
    whose bytes do not match their names are deleted first and fetched again.
    """
    try:
        tracked = resolve(repo, rev, paths)
    except ObjectsMissing:  # a path inside a folder whose manifest the cache lacks: from the remote
        with repo.hasher() as hasher:
            tracked = resolve(repo, rev, paths, open_remote(repo.config, remote_name, repo.root), hasher)
    imported = [t for t in tracked if t.pointer.source]
    only_imports = bool(imported) and len(imported) == len(tracked)
    if remote_name is None and not remote_names(repo.config) and only_imports:
        result = TransferResult()  # only imports and no remote of our own: their sources serve them
    else:
        try:
            result = _fetch_from(
                repo, open_remote(repo.config, remote_name, repo.root), tracked, jobs, progress, repair
            )
        except RemoteError:
            if not only_imports:
                raise
            result = TransferResult()  # our remote is not usable (not pushed to yet): the sources serve

    incomplete = [t for t in imported if not _complete(repo, t)]
    if incomplete:  # only now contact their sources (which may be offline or gone)
        from .imports import fetch_imports

        still = fetch_imports(repo, incomplete, progress)
        listed = {u.digest for u in still}
        result.failed = [u for u in result.failed if not _present(repo, u) and u.digest not in listed] + still
    return result


def _fetch_from(
    repo: Repo, remote: RemoteStore, tracked: list[Tracked], jobs: int | None, progress: Progress, repair: bool
) -> TransferResult:
    with repo.hasher() as hasher, repo.cache.packing():  # small objects packed; the pack is written at the end
        if repair:
            _drop_corrupt_manifests(repo, tracked)
        with wanted_objects(repo.cache, tracked, remote, hasher) as wanted:
            repaired = remove_corrupt(repo.cache, wanted, hasher, hasher.jobs, progress) if repair else []
            result = fetch_objects(repo.cache, remote, wanted, hasher, transfer_jobs(repo, remote, jobs), progress)
        result.repaired = repaired
        return result


def _complete(repo: Repo, t: Tracked) -> bool:
    """Does the cache hold everything this pointer needs?"""
    walk = Walk()
    refs = [ref for ref, _, _ in needed(repo.cache, [t], walk)]
    return not walk.unknown and not repo.cache.missing(refs)


def _drop_corrupt_manifests(repo: Repo, tracked: list[Tracked]) -> None:
    from ..errors import IntegrityError

    for t in tracked:
        if t.pointer.is_dir and repo.cache.has_manifest(t.pointer.digest):
            try:
                repo.cache.read_manifest_bytes(t.pointer.digest)
            except IntegrityError:
                repo.cache.delete([ObjRef(t.pointer.digest, manifest=True)])


def _present(repo: Repo, u: Unrestored) -> bool:
    return repo.cache.has(ObjRef(u.digest, u.manifest))


@dataclass
class PullResult:
    fetched: TransferResult
    checkout: CheckoutResult

    @property
    def failed(self) -> list[Unrestored]:
        """Every file the pull did not restore, once, with the most telling reason: a
        file checkout found missing from the cache takes the reason its fetch gave
        (absent from, or corrupt on, the remote); objects fetch could not bring for
        files already right in the workspace are listed too."""
        from_fetch = {u.digest: u for u in self.fetched.failed}
        out = []
        for u in self.checkout.failed:
            why = from_fetch.get(u.digest) if u.reason == MISSING else None
            out.append(u._replace(reason=why.reason, where=why.where) if why else u)
        seen = {u.digest for u in self.checkout.failed}
        out += [u for u in self.fetched.failed if u.digest not in seen]
        return sorted(out, key=lambda u: u.path)


@takes_lock
def pull(
    repo: Repo,
    paths: list[str] | None = None,
    remote_name: str | None = None,
    jobs: int | None = None,
    force: bool = False,
    progress: Progress = NO_PROGRESS,
    rev: str | Revisions | None = None,
) -> PullResult:
    """fetch, then checkout of everything that arrived (missing objects are reported).

    The fetch covers every revision ``rev`` names; the checkout is of one: the only
    ``--rev``, else the workspace's pointers (``pull -a`` fetches every branch's data
    and checks out the workspace's, as ``dvc pull -a`` does)."""
    revisions = Revisions.of(rev)
    if len(revisions.revs) > 1:
        raise UsageError(
            f"pull checks out one revision, and {len(revisions.revs)} were given ({', '.join(revisions.revs)})",
            "fetch them all (dataver fetch --rev A --rev B), then dataver checkout --rev REV for the one you want",
        )
    fetched = fetch(repo, paths, remote_name, jobs, progress, revisions)
    at = revisions.revs[0] if revisions.revs else None
    return PullResult(fetched, checkout(repo, paths, force, progress, at))


@dataclass
class RemoteRecord:
    path: str
    digest: str
    local: bool
    remote: bool


def tracked_at_head(repo: Repo) -> list[Tracked]:
    """Pointers as committed at HEAD (the workspace's when there is no git)."""
    if repo.git is None:
        return find_tracked(repo)
    return tracked_at(repo, "HEAD")


def remote_status(
    repo: Repo,
    paths: list[str] | None = None,
    remote_name: str | None = None,
    jobs: int | None = None,
    at_head: bool = False,
    rev: str | Revisions | None = None,
) -> list[RemoteRecord]:
    """Per object the pointers need (the workspace's, HEAD's with ``at_head``, or those
    of the revisions ``rev`` covers): is it in the cache, on the remote, both, neither?"""
    remote = open_remote(repo.config, remote_name, repo.root)
    tracked = tracked_at_head(repo) if at_head and rev is None else tracked_for(repo, rev, paths)
    with repo.hasher() as hasher, wanted_objects(repo.cache, tracked, remote, hasher) as wanted:
        names = wanted.names()  # a record per object: the listing holds them all anyway
    unknown = set(wanted.unknown_refs())
    refs = [r for r in names if r not in unknown]
    on_remote_missing = set(remote.missing(refs, transfer_jobs(repo, remote, jobs)))
    not_local = set(repo.cache.missing(refs))
    records = [
        RemoteRecord(_display(names, ref), str(ref.digest), ref not in not_local, ref not in on_remote_missing)
        for ref in refs
    ]
    for u in wanted.unknown:  # a manifest absent from both, or corrupt on the remote: unusable there
        records.append(RemoteRecord(u.path, str(u.digest), False, False))
    return sorted(records, key=lambda r: r.path)


def _display(names: dict[ObjRef, tuple[int, str]], ref: ObjRef) -> str:
    display = names[ref][1]
    return f"{display} (manifest)" if ref.manifest else display


def verify_remote(
    repo: Repo,
    remote_name: str | None,
    deep: bool = False,
    jobs: int | None = None,
    rev: str | Revisions | None = None,
) -> list:
    """``verify --remote``: every object the pointers at HEAD (or of the revisions ``rev``
    covers) need is on the remote, and a packed remote's index agrees with its packs.
    ``deep``: every pack is read whole and every object in it re-hashed; on a loose
    remote, every object those pointers need is re-hashed."""
    from ..errors import IntegrityError
    from ..store import check_bytes
    from .core import Problem

    remote = open_remote(repo.config, remote_name, repo.root)
    name = remote.name
    records = remote_status(repo, None, name, jobs, at_head=True, rev=rev)
    problems = [Problem(r.path, f"object {r.digest} is not on remote {name!r}") for r in records if not r.remote]
    n = transfer_jobs(repo, remote, jobs)
    problems += [Problem(what, problem) for what, problem in remote.check_packs(deep, n)]
    if deep and remote.marker is None:
        tracked = tracked_at_head(repo) if rev is None else tracked_for(repo, rev, None)
        with wanted_objects(repo.cache, tracked) as wanted:
            names = wanted.names()
        lacking = set(remote.missing(list(names), n))
        present = [r for r in names if r not in lacking]
        bad: list = []

        def sink(ref, data) -> None:
            if isinstance(data, bytes):
                try:
                    check_bytes(ref, data, remote.where)
                except IntegrityError:
                    bad.append(Problem(names[ref][1], f"object {ref.digest} on remote {name!r} is corrupt"))

        remote.read_many(present, sink, n)
        problems += bad
    return sorted(problems, key=lambda p: p.path)
