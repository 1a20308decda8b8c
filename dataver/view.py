"""A read-only view of tracked data at one revision (or the workspace pointers).

Answers "which object holds this path" and "what is in this folder" without
touching the workspace, and hands out local paths of verified cache objects,
fetching from the default remote when an object is not in the cache. Used by
``dataver.api`` and the ``dataver://`` fsspec filesystem.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from dataclasses import dataclass

from .digest import Digest
from .errors import IntegrityError, ObjectsMissing, PathError, RepoError
from .hashing import Hasher
from .history import tracked_for
from .manifest import Entry
from .odb import ObjectStore
from .repo import Repo
from .store import ObjRef, Store
from .workspace import Tracked


@dataclass(frozen=True)
class FileInfo:
    path: str
    digest: Digest
    size: int
    executable: bool = False


class RevisionView:
    def __init__(self, repo: Repo, rev: str | None = None):
        self.repo: Repo | None = repo
        self.rev = rev
        self.cache: ObjectStore = repo.cache
        self._setup({t.rel: t for t in tracked_for(repo, rev, None)})

    def _setup(self, tracked: dict[str, Tracked]) -> None:
        self._tracked = tracked
        self._folders: dict[str, dict[str, FileInfo]] = {}
        # per tracked folder: each folder inside it -> {name: (kind, size)}, built once
        self._dirs: dict[str, dict[str, dict[str, tuple[str, int]]]] = {}
        self._verified: set[Digest] = set()
        self._remote: Store | None | bool = False  # False: not opened yet

    def remote(self) -> Store | None:
        """The default remote, opened once for every object this view fetches (its
        marker and index are read once), or None where no remote is configured."""
        if self._remote is False:
            from .ops.core import default_remote

            assert self.repo is not None
            self._remote = default_remote(self.repo)
        return self._remote  # type: ignore[return-value]

    def _hasher(self) -> Hasher:
        return self.repo.hasher() if self.repo is not None else Hasher()

    def _lock(self) -> contextlib.AbstractContextManager:
        return self.repo.cache_lock() if self.repo is not None else contextlib.nullcontext()

    def _entries(self, t: Tracked) -> list[Entry]:
        from .ops.core import folder_entries

        assert self.repo is not None
        return folder_entries(self.repo, t, self.remote)

    # -- lookups -------------------------------------------------------------------
    def _folder(self, t: Tracked) -> dict[str, FileInfo]:
        if t.rel not in self._folders:
            self._folders[t.rel] = {
                f"{t.rel}/{e.path}": FileInfo(f"{t.rel}/{e.path}", e.digest, e.size, e.executable)
                for e in self._entries(t)
            }
        return self._folders[t.rel]

    def _index(self, t: Tracked) -> dict[str, dict[str, tuple[str, int]]]:
        """The folders inside tracked folder ``t`` (its own path included), each with its
        entries: made in one pass over the manifest, so ``listdir`` and ``is_dir`` cost
        a dict look-up instead of a pass over every file (fsspec's ``du``/``find`` call
        them once per folder)."""
        dirs = self._dirs.get(t.rel)
        if dirs is None:
            dirs = {t.rel: {}}
            for full, f in self._folder(t).items():
                parent, _, name = full.rpartition("/")
                known = parent in dirs
                dirs.setdefault(parent, {})[name] = ("file", f.size)
                while not known and parent != t.rel:  # a new folder: link it to its parents
                    up, _, sub = parent.rpartition("/")
                    known = up in dirs
                    dirs.setdefault(up, {})[sub] = ("directory", 0)
                    parent = up
            self._dirs[t.rel] = dirs
        return dirs

    def file(self, path: str) -> FileInfo:
        path = _norm(path)
        t = self._tracked.get(path)
        if t is not None and not t.pointer.is_dir:
            return FileInfo(path, t.pointer.digest, t.pointer.size)
        owner = self._owner(path)
        if owner is not None:
            info = self._folder(owner).get(path)
            if info is not None:
                return info
        where = f"at {self.rev}" if self.rev else "in the workspace pointers"
        raise PathError(
            f"{path} is not a tracked file {where}", "see: dataver ls" + (f" --rev {self.rev}" if self.rev else "")
        )

    def _owner(self, path: str) -> Tracked | None:
        probe = path
        while "/" in probe:
            probe = probe.rsplit("/", 1)[0]
            t = self._tracked.get(probe)
            if t is not None:
                return t if t.pointer.is_dir else None
        return None

    def listdir(self, path: str) -> list[tuple[str, str, int]]:
        """(name, "file"|"directory", size) of the entries directly under ``path``."""
        path = _norm(path)
        prefix = path + "/" if path else ""
        entries: dict[str, tuple[str, int]] = {}

        def add(full: str, size: int, is_dir: bool = False) -> None:
            head, _, rest = full[len(prefix) :].partition("/")
            entries[head] = ("directory", 0) if rest or is_dir else ("file", size)

        for rel, t in self._tracked.items():
            if t.pointer.is_dir and (rel == path or path.startswith(rel + "/")):
                for name, (kind, size) in self._index(t).get(path, {}).items():  # inside: its manifest
                    entries[name] = (kind, size)
            elif rel.startswith(prefix):  # a tracked path below: a file, or a folder
                add(rel, t.pointer.size, t.pointer.is_dir)
        if not entries and path and not self.is_dir(path):
            raise FileNotFoundError(path)
        return sorted((name, kind, size) for name, (kind, size) in entries.items())

    def is_dir(self, path: str) -> bool:
        path = _norm(path)
        if path == "":
            return True
        t = self._tracked.get(path)
        if t is not None:
            return t.pointer.is_dir
        prefix = path + "/"
        if any(rel.startswith(prefix) for rel in self._tracked):
            return True
        owner = self._owner(path)
        return owner is not None and path in self._index(owner)

    # -- bytes ------------------------------------------------------------------------
    def local_path(self, info: FileInfo, verify: bool = True) -> str:
        """Path of the cache object holding ``info``'s bytes (fetched if needed, verified)."""
        cache = self._holder(info.digest)
        if not cache.has_blob(info.digest):
            self._fetch(info)
        path = cache.blob_file(info.digest)  # a packed object is unpacked (checked) for a path
        if verify and info.digest not in self._verified:
            with self._hasher() as hasher:
                if hasher.hash_file(path, algorithm=info.digest.algorithm).digest != info.digest:
                    raise IntegrityError(
                        f"cache object for {info.path} is corrupt ({path})",
                        "replace it from a remote: dataver fetch --repair",
                    )
            self._verified.add(info.digest)
        return path

    def _holder(self, digest: Digest) -> ObjectStore:
        """The cache to read ``digest`` from (a source repository's own, where it holds it)."""
        return self.cache

    def _fetch(self, info: FileInfo) -> None:
        from .transfer import download_object

        remote = self.remote()
        if remote is None:
            raise ObjectsMissing(f"{info.path} ({info.digest}) is not in the cache and no remote is configured")
        with self._lock(), self._hasher() as hasher:
            download_object(self.cache, remote, ObjRef(info.digest), hasher)


class SourceView(RevisionView):
    """The tracked data of another repository, named by path or URL (``api``'s and
    ``dataver://``'s ``repo=``), at ``rev`` (its HEAD by default): its pointers from git
    (a URL's clone kept in the per-user clone cache, fetched again first), manifests and
    objects from its own cache when it is on this machine, else from the default remote
    its committed config names, into a per-URL cache beside the clone."""

    def __init__(self, url: str, rev: str | None = None):
        from .history import pointers_at
        from .ops.imports import Source

        self.src = Source(url)
        self.repo = None
        self.rev = rev or "HEAD"
        self.commit = self.src.git.resolve(self.rev)
        self.cache = ObjectStore(_view_cache(url))
        found = pointers_at(self.src.git, self.commit)
        self._setup({rel: Tracked("", rel, rel, p) for rel, p in found.items()})
        self._own = self.src.cache()

    def remote(self) -> Store | None:
        if self._remote is False:
            self._remote = self.src.remote(self.commit)
        return self._remote  # type: ignore[return-value]

    def _entries(self, t: Tracked) -> list[Entry]:
        from .workspace import manifest_entries

        digest = t.pointer.digest
        if self._own is not None and self._own.has_manifest(digest):
            return manifest_entries(self._own, digest, t.rel)
        if not self.cache.has_manifest(digest):
            remote = self.remote() or self.src.manifest_remote(self.commit, t.rel)  # the latter raises
            from .transfer import fetch_manifest

            with self._hasher() as hasher:
                fetch_manifest(self.cache, remote, digest, hasher, t.rel)
        return manifest_entries(self.cache, digest, t.rel)

    def _holder(self, digest: Digest) -> ObjectStore:
        if self._own is not None and self._own.has_blob(digest):
            return self._own
        return self.cache

    def close(self) -> None:
        self.src.close()


def _view_cache(url: str) -> str:
    """The object cache of a repository read by URL or path: beside its clone."""
    import hashlib

    from .clones import clones_root

    name = os.path.abspath(url) if os.path.exists(url) else url
    key = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return os.path.join(clones_root(), key, "objects")


def open_view(repo: str | None = None, rev: str | None = None) -> RevisionView:
    """A view of ``repo`` (default: the repository here): a path inside a dataver work
    tree is that repository; any other path or URL git can open is read as a source."""
    if repo is None:
        return RevisionView(Repo.find(None), rev)
    if os.path.isdir(repo):
        try:
            return RevisionView(Repo.find(repo), rev)
        except RepoError:
            pass  # a bare repository, or a folder git knows: a source
    return SourceView(repo, rev)


def _norm(path: str) -> str:
    path = path.replace(os.sep, "/").strip("/")
    norm = posixpath.normpath(path) if path else ""
    if norm.startswith("..") or norm == ".":
        return "" if norm == "." else norm
    return norm
