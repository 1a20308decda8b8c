"""``get``, ``import`` and ``update``: data from another dataver repository.

The other repository is read at a revision through git (a local path is opened in
place; a URL is cloned once, bare, into the per-user clone cache and fetched again
before each use: ``dataver/clones.py``). Its objects come from its
local cache when it is a folder on this machine, else from the default remote named
in its committed ``.dataver/config``. An import pointer is an ordinary pointer plus
a ``source.*`` block (repo, rev asked for, resolved commit, path there), so ``pull``
reproduces exactly the resolved commit's data and ``update`` moves the pin.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass

from .. import pointer as pointer_mod
from .. import tree
from ..config import Config
from ..errors import ObjectsMissing, PathError, RemoteError, RepoError, Unrestored
from ..fsutil import atomic_write, ensure_gitignored, remove_temporaries_of
from ..gitscm import Git, find_git_root
from ..hashing import Hasher
from ..history import pointers_at
from ..linking import place, place_bytes, temp_sibling
from ..odb import ObjectStore, copy_verified
from ..pointer import Pointer
from ..progress import NO_PROGRESS, Progress
from ..remotes import RemoteStore, open_remote, remote_names
from ..repo import DATAVER_DIR, Repo, takes_lock
from ..safepath import reserved_in
from ..store import ObjRef, check_bytes
from ..transfer import TransferResult, wanted_objects
from ..transfer import fetch as fetch_objects
from ..workspace import Tracked, load_tracked, manifest_entries, pointer_for, tracked_ancestor
from .core import CheckoutResult, checkout, missing_error

TRANSFER_JOBS = 8


def _scp_like(url: str) -> bool:
    """git's ``user@host:path`` form."""
    head = url.split("/", 1)[0]
    return ":" in head and not os.path.exists(url)


def _is_bare(path: str) -> bool:
    """A bare git repository (a clone with no work tree, e.g. ``git clone --bare``)."""
    return all(os.path.exists(os.path.join(path, p)) for p in ("HEAD", "objects", "refs")) and not os.path.exists(
        os.path.join(path, ".git")
    )


class Source:
    """Another dataver repository, opened read-only at git level."""

    NOT_FOUND_HINT = "check the path or URL: a dataver repository on this machine, or any URL git can clone"
    MOVED_HINT = "it may have moved: fix source.repo in the pointer, or import it again"

    def __init__(self, url: str, missing_hint: str = NOT_FOUND_HINT):
        """``missing_hint``: what to do when ``url`` is a local path that does not exist
        (a pointer's ``source.repo`` calls for ``MOVED_HINT``)."""
        self.url = url
        self._repo: Repo | None = None  # the source's own, when it is a repository on this machine
        self.stale: str | None = None  # why the cached clone of a URL could not be fetched again
        local = url[len("file://") :] if url.startswith("file://") else url
        if os.path.isdir(local) and _is_bare(local):  # a bare repository here: git objects only
            self.root: str | None = None
            self.git = Git(os.path.abspath(local))
            self.display = url
        elif os.path.isdir(local):  # a repository on this machine: open it in place
            root = find_git_root(os.path.abspath(local))
            if root is None:
                raise RepoError(f"{url} is not inside a git repository")
            self.root = root
            self.git = Git(root)
            self.display = root
        elif "://" not in url and not _scp_like(url):
            raise RepoError(f"source repository {url} does not exist", missing_hint)
        else:
            from ..clones import cached_clone

            path, self.stale = cached_clone(url)  # cloned once per user, fetched before each use
            self.git = Git(path)
            self.root = None
            self.display = url

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find(self, rev: str, path: str) -> tuple[str, str, Pointer]:
        """(commit, tracked path there, pointer) for ``path`` at ``rev``."""
        commit = self.git.resolve(rev)
        rel = path.strip("/").removesuffix(pointer_mod.SUFFIX)
        found = pointers_at(self.git, commit)
        if rel not in found:
            raise PathError(
                f"{path} is not tracked by dataver in {self.display} at {rev}",
                f"tracked there: {', '.join(sorted(found)) or 'nothing'}",
            )
        return commit, rel, found[rel]

    def cache(self) -> ObjectStore | None:
        """The source's own cache, when it is a repository on this machine (opened once;
        ``close`` closes it)."""
        if self.root is None or not os.path.isdir(os.path.join(self.root, DATAVER_DIR)):
            return None
        if self._repo is None:
            self._repo = Repo(self.root)
        return self._repo.cache

    def manifest_remote(self, commit: str, folder: str) -> RemoteStore:
        """The remote to bring ``folder``'s manifest from, when the source's own cache
        lacks it; ObjectsMissing when the source names none."""
        remote = self.remote(commit)
        if remote is None:
            raise ObjectsMissing(
                f"the manifest of {folder} is in neither {self.display}'s cache nor a remote it names",
                "ask the source repository's owners to dataver push it",
            )
        return remote

    def remote(self, commit: str) -> RemoteStore | None:
        """The default remote named in the source's committed config at ``commit``."""
        text = self.git.file_at(commit, f"{DATAVER_DIR}/config")
        if text is None:
            return None
        local = ""
        if self.root is not None:  # credentials a local source keeps beside its config
            try:
                with open(os.path.join(self.root, DATAVER_DIR, "config.local"), encoding="utf-8") as f:
                    local = f.read()
            except OSError:
                pass
        config = Config.from_text(text.decode("utf-8", errors="replace"), local)
        if not remote_names(config):
            return None
        remote = open_remote(config, None, self.root)
        if self.root is None and remote.relative:
            raise RemoteError(
                f"the default remote of {self.display} is a relative path ({remote.url}), "
                "which only means something inside that repository",
                "use the repository's local path instead of a URL, or give it an absolute remote",
            )
        return remote


def bring(
    cache: ObjectStore,
    src: Source,
    commit: str,
    tracked: list[Tracked],
    hasher: Hasher,
    progress: Progress = NO_PROGRESS,
) -> TransferResult:
    """Copy what ``tracked`` (pointers of ``src`` at ``commit``) need into ``cache``: from
    the source's own cache when it is a repository on this machine, then what is still
    missing from its default remote. Both are stores (dataver/store.py), so one fetch
    serves each: every object verified, every manifest parsed before it is stored."""
    sources = [s for s in (src.cache(), src.remote(commit)) if s is not None]
    if not sources:
        with wanted_objects(cache, tracked) as wanted:
            names = wanted.names()
        unknown = set(wanted.unknown_refs())
        refs = [r for r in names if r not in unknown]
        lacking = set(cache.missing(refs))
        failed = [Unrestored(names[r][1], r.digest, manifest=r.manifest) for r in refs if r in lacking]
        return TransferResult(present=len(refs) - len(lacking), failed=list(wanted.unknown) + failed)
    total = TransferResult()
    for source in sources:
        with wanted_objects(cache, tracked, source, hasher) as wanted:
            result = fetch_objects(cache, source, wanted, hasher, TRANSFER_JOBS, progress)
        total.present = result.present - total.transferred  # found in the cache, not brought by an earlier source
        total.transferred += result.transferred
        total.nbytes += result.nbytes
        total.failed = result.failed  # what the last source tried still lacks
        if not result.failed:
            break
    return total


def _source_tracked(src: Source, rev: str, path: str, where: str) -> tuple[str, Tracked]:
    commit, rel, ptr = src.find(rev, path)
    return commit, Tracked(where + pointer_mod.SUFFIX, where, rel, ptr)


def _source_targets(
    src: Source, cache: ObjectStore, hasher: Hasher, rev: str, path: str, where: str
) -> tuple[str, list[Tracked], bool]:
    """What ``path`` names in the source at ``rev``, to be written at ``where``: a tracked
    path (one pointer), or a path inside a tracked folder there (each file of that part,
    from the folder's manifest: the source's own cache, else its remote into ``cache``).
    The flag says whether ``where`` is a folder made of a part's files."""
    from .targets import Part, PartFile, expand

    commit = src.git.resolve(rev)
    rel = path.strip("/").removesuffix(pointer_mod.SUFFIX)
    found = pointers_at(src.git, commit)
    if rel in found or not any(rel.startswith(t + "/") for t in found):
        commit, t = _source_tracked(src, rev, path, where)
        return commit, [t], False
    owner_rel = next(t for t in found if rel.startswith(t + "/"))
    owner = Tracked("", owner_rel, owner_rel, found[owner_rel])
    part = Part(owner, rel[len(owner_rel) + 1 :])
    own = src.cache()
    files = None
    if own is not None and own.has_manifest(owner.pointer.digest):
        try:
            files = expand(own, part)
        except ObjectsMissing:  # its cache lacks a node below the top: the source's remote has it
            files = None
    if files is None:
        files = expand(cache, part, src.manifest_remote(commit, owner_rel), hasher)
    single = len(files) == 1 and files[0].rel == f"{owner_rel}/{part.sub}"
    out: list[Tracked] = []
    for f in files:
        inside = f.rel[len(owner_rel) + 1 + len(part.sub) + 1 :]
        dest = where if single else os.path.join(where, *inside.split("/"))
        out.append(PartFile(dest + pointer_mod.SUFFIX, dest, f.rel, f.pointer, where, f.executable))
    return commit, out, not single


# -- get ------------------------------------------------------------------------------
@dataclass
class GetResult:
    path: str
    files: int
    size: int
    commit: str
    stale: str | None = None  # why the cached clone of the URL could not be fetched again


def get(
    url: str, path: str, rev: str | None = None, out: str | None = None, progress: Progress = NO_PROGRESS
) -> GetResult:
    """Download ``path`` of the repository at ``url`` (at ``rev``) to ``out``; no pointer is kept."""
    dest = os.path.abspath(out or os.path.basename(path.rstrip("/").removesuffix(pointer_mod.SUFFIX)))
    where = reserved_in(dest.split(os.sep))
    if where is not None:
        raise PathError(f"refusing to write {dest}: it is inside {where}, which dataver never writes")
    if os.path.lexists(dest):
        raise PathError(f"{dest} already exists", "choose another destination with -o, or remove it")
    try:
        repo: Repo | None = Repo.find()
    except RepoError:
        repo = None
    if repo is not None and (dest + os.sep).startswith(repo.root + os.sep):
        owner = tracked_ancestor(repo, dest)
        if owner is not None:
            raise PathError(
                f"refusing to write {dest}: it is inside {repo.rel(owner)}, which {repo.rel(owner)}.dv tracks",
                "choose another destination with -o",
            )
    remove_temporaries_of(dest)  # a killed get's half-made file or folder
    scratch = None if repo is not None else tempfile.mkdtemp(prefix="dataver-get-cache-")
    cache = repo.cache if repo is not None else ObjectStore(scratch)
    lock = repo.cache_lock() if repo is not None else contextlib.nullcontext()
    try:
        with lock, Source(url) as src, Hasher() as hasher:
            commit, targets, folder = _source_targets(src, cache, hasher, rev or "HEAD", path, dest)
            result = bring(cache, src, commit, targets, hasher, progress)
            if result.failed:
                raise missing_error(
                    result.failed,
                    f"{src.display} and its remote",
                    "ask the source repository's owners to dataver push them",
                )
            if folder:  # files of a part of a folder there
                files = _materialize_files(cache, targets, dest, hasher)
            else:
                files = _materialize(cache, targets[0], dest, hasher)
        return GetResult(dest, files, sum(t.pointer.size for t in targets), commit, src.stale)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _materialize(cache: ObjectStore, t: Tracked, dest: str, hasher: Hasher) -> int:
    """Write the tracked data to ``dest`` as plain, verified copies."""
    if not t.pointer.is_dir:
        _copy_to(cache, t.pointer.digest, dest, False, hasher)
        return 1
    entries = manifest_entries(cache, t.pointer.digest, t.rel)
    staging = temp_sibling(dest)
    os.makedirs(staging)
    try:
        for e in entries:
            target = os.path.join(staging, *e.path.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _copy_to(cache, e.digest, target, e.executable, hasher)
        os.replace(staging, dest)  # the folder appears whole, or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(entries)


def _materialize_files(cache: ObjectStore, targets: list[Tracked], dest: str, hasher: Hasher) -> int:
    """Write the files of a part of a folder (their paths under ``dest``) as a folder
    that appears whole, or not at all."""
    staging = temp_sibling(dest)
    os.makedirs(staging)
    try:
        for t in targets:
            target = os.path.join(staging, os.path.relpath(t.path, dest))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _copy_to(cache, t.pointer.digest, target, getattr(t, "executable", False), hasher)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return len(targets)


def _copy_to(cache: ObjectStore, digest, dest: str, executable: bool, hasher: Hasher) -> None:
    """A plain, verified copy of an object at ``dest`` (temporary sibling, then rename)."""
    data = None if os.path.exists(cache.blob_path(digest)) else cache.packed_bytes(ObjRef(digest))
    if data is not None:  # a small packed object: checked, then written from its bytes
        check_bytes(ObjRef(digest), data, cache.where)
        place_bytes(data, dest, executable)
        return
    place(
        cache.blob_path(digest),
        dest,
        ("copy",),
        executable,
        lambda src, tmp, mode: copy_verified(src, digest, tmp, hasher, mode=mode),
    )


# -- import / update ---------------------------------------------------------------------
@dataclass
class ImportResult:
    path: str
    commit: str
    changed: bool
    fetched: TransferResult
    checkout: CheckoutResult | None
    stale: str | None = None  # why the cached clone of the URL could not be fetched again


@takes_lock
def import_(
    repo: Repo, url: str, path: str, rev: str | None = None, out: str | None = None, progress: Progress = NO_PROGRESS
) -> ImportResult:
    """Track data of another repository, pinned to the commit ``rev`` resolves to."""
    target = repo.resolve(out or os.path.basename(path.rstrip("/").removesuffix(pointer_mod.SUFFIX)))
    if os.path.exists(pointer_for(target)):
        raise PathError(
            f"{repo.rel(target)} is already tracked ({repo.rel(target)}.dv)",
            f"to move an import's pin use: dataver update {repo.rel(target)}.dv --rev REV",
        )
    if os.path.lexists(target):
        raise PathError(f"{repo.rel(target)} already exists", "choose another destination with -o, or remove it")
    owner = tracked_ancestor(repo, target)
    if owner is not None:
        raise PathError(
            f"{repo.rel(target)} is inside {repo.rel(owner)}, which {repo.rel(owner)}.dv tracks",
            "choose another destination with -o",
        )
    if repo.git is not None:
        repo.git.check_not_tracked(repo.rel(target))
    source_url = os.path.abspath(url) if os.path.isdir(url) else url
    return _pin(repo, source_url, path, rev, target, None, progress)


@takes_lock
def update(repo: Repo, pointer_path: str, rev: str | None = None, progress: Progress = NO_PROGRESS) -> ImportResult:
    """Re-resolve an import's revision (or move it to ``rev``) and check out the result."""
    path = repo.resolve(pointer_path)
    if not path.endswith(pointer_mod.SUFFIX):
        path = pointer_for(path)
    t = load_tracked(repo, path)
    source = t.pointer.source
    if not source.get("repo") or not source.get("path"):
        raise PathError(
            f"{t.rel} is not an import (its pointer has no source.repo / source.path)",
            "update works on pointers made by dataver import",
        )
    return _pin(repo, source["repo"], source["path"], rev or source.get("rev"), t.path, t.pointer, progress)


def _pin(
    repo: Repo, url: str, path: str, rev: str | None, target: str, old: Pointer | None, progress: Progress
) -> ImportResult:
    with Source(url, Source.NOT_FOUND_HINT if old is None else Source.MOVED_HINT) as src, repo.hasher() as hasher:
        commit, targets, folder = _source_targets(src, repo.cache, hasher, rev or "HEAD", path, target)
        if folder:  # a folder inside a tracked folder there: its files, and a manifest of them made here
            fetched = bring(repo.cache, src, commit, targets, hasher, progress)
            t = _part_folder(repo, targets, target, path.strip("/"), hasher.algorithm)
        else:
            t = targets[0]
            fetched = bring(repo.cache, src, commit, [t], hasher, progress)
        stale = src.stale
    if fetched.failed:
        raise missing_error(fetched.failed, f"{url} and its remote")
    new = Pointer(t.pointer.kind, t.pointer.digest, t.pointer.size, t.pointer.files, old.extra if old else ())
    new = new.with_source({"repo": url, "rev": rev or "", "commit": commit, "path": t.rel})
    ensure_gitignored(target)
    changed = atomic_write(pointer_for(target), pointer_mod.dumps(new))
    result = checkout(repo, [repo.rel(target)], False, progress)
    return ImportResult(repo.rel(target), commit, changed, fetched, result, stale)


def _part_folder(repo: Repo, files: list[Tracked], target: str, part: str, algorithm: str) -> Tracked:
    """The pointer of an imported folder that is a part of a tracked folder there: a
    manifest of its files (paths relative to it), stored in the cache."""
    from ..manifest import Entry

    entries = [
        Entry(os.path.relpath(f.path, target).replace(os.sep, "/"), f.pointer.digest, f.pointer.size, f.executable)
        for f in files
    ]
    digest = tree.build(entries, algorithm, lambda data: repo.cache.add_manifest(data, algorithm))
    ptr = Pointer("dir", digest, sum(e.size for e in entries), len(entries))
    return Tracked(pointer_for(target), target, part, ptr)


def fetch_imports(repo: Repo, tracked: list[Tracked], progress: Progress = NO_PROGRESS) -> list[Unrestored]:
    """Bring what imported pointers need from their sources, at their pinned commits.
    An import of a folder inside a tracked folder there has a manifest made here, which
    the source never had: its files come from the source and the manifest is made again
    (and must give the pointer's digest).

    Returns what could not be brought (missing there, or corrupt).
    """
    missing: list[Unrestored] = []
    groups: dict[tuple[str, str], list[Tracked]] = {}
    for t in tracked:
        s = t.pointer.source
        if s.get("repo") and s.get("commit"):
            groups.setdefault((s["repo"], s["commit"]), []).append(t)
    for (url, commit), ts in groups.items():
        with Source(url, Source.MOVED_HINT) as src, repo.hasher() as hasher:
            found = pointers_at(src.git, commit)
            whole = [t for t in ts if t.pointer.source.get("path") in found or not t.pointer.is_dir]
            if whole:
                missing += bring(repo.cache, src, commit, whole, hasher, progress).failed
            for t in ts:
                if t in whole:
                    continue
                part = t.pointer.source["path"]
                _, files, _ = _source_targets(src, repo.cache, hasher, commit, part, t.path)
                failed = bring(repo.cache, src, commit, files, hasher, progress).failed
                if failed:
                    missing += failed
                    continue
                made = _part_folder(repo, files, t.path, part, t.pointer.digest.algorithm)
                if made.pointer.digest != t.pointer.digest:
                    missing.append(Unrestored(t.rel, t.pointer.digest, manifest=True))
    return missing


# -- ls of another repository ------------------------------------------------------------
def ls_source(url: str, path: str | None = None, rev: str | None = None) -> list:
    """``ls --repo URL``: the tracked paths of another repository at ``rev`` (its HEAD by
    default), or the files of a tracked folder (or of a part of one) there, as
    ``dvc list URL`` lists them. Manifests come from its cache, else its remote into a
    scratch cache that is removed after."""
    from .core import Listed

    with Source(url) as src:
        commit = src.git.resolve(rev or "HEAD")
        found = pointers_at(src.git, commit)
        if path is None:
            return [Listed(rel, p.kind, p.size, p.digest.hex, p.files) for rel, p in sorted(found.items())]
        scratch = tempfile.mkdtemp(prefix="dataver-ls-")
        try:
            cache = ObjectStore(scratch)
            with Hasher() as hasher:
                commit, targets, _ = _source_targets(src, cache, hasher, commit, path, "")
                if len(targets) == 1 and targets[0].pointer.is_dir:  # a tracked folder: its files
                    t = targets[0]
                    own = src.cache()
                    where = own if own is not None and own.has_manifest(t.pointer.digest) else cache
                    if where is cache:
                        from ..transfer import fetch_manifest

                        remote = src.manifest_remote(commit, t.rel)
                        fetch_manifest(cache, remote, t.pointer.digest, hasher, t.rel)
                    return [
                        Listed(f"{t.rel}/{e.path}", "file", e.size, e.digest.hex, None, e.executable)
                        for e in manifest_entries(where, t.pointer.digest, t.rel)
                    ]
            return [
                Listed(t.rel, t.pointer.kind, t.pointer.size, t.pointer.digest.hex, t.pointer.files)
                if t.pointer.is_dir
                else Listed(t.rel, "file", t.pointer.size, t.pointer.digest.hex, None, getattr(t, "executable", False))
                for t in targets
            ]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
