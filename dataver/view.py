"""A read-only view of tracked data at one revision (or the workspace pointers).

Answers "which object holds this path" and "what is in this folder" without
touching the workspace, and hands out local paths of verified cache objects,
fetching from the default remote when an object is not in the cache. Used by
``dataver.api`` and the ``dataver://`` fsspec filesystem.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from .digest import Digest
from .errors import IntegrityError, ObjectsMissing, PathError
from .history import tracked_for
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
        self.repo = repo
        self.rev = rev
        self._tracked: dict[str, Tracked] = {t.rel: t for t in tracked_for(repo, rev, None)}
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

            self._remote = default_remote(self.repo)
        return self._remote  # type: ignore[return-value]

    # -- lookups -------------------------------------------------------------------
    def _folder(self, t: Tracked) -> dict[str, FileInfo]:
        if t.rel not in self._folders:
            from .ops.core import folder_entries

            self._folders[t.rel] = {
                f"{t.rel}/{e.path}": FileInfo(f"{t.rel}/{e.path}", e.digest, e.size, e.executable)
                for e in folder_entries(self.repo, t, self.remote)
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
        cache = self.repo.cache
        if not cache.has_blob(info.digest):
            self._fetch(info)
        path = cache.blob_file(info.digest)  # a packed object is unpacked (checked) for a path
        if verify and info.digest not in self._verified:
            with self.repo.hasher() as hasher:
                if hasher.hash_file(path, algorithm=info.digest.algorithm).digest != info.digest:
                    raise IntegrityError(
                        f"cache object for {info.path} is corrupt ({path})",
                        "replace it from a remote: dataver fetch --repair",
                    )
            self._verified.add(info.digest)
        return path

    def _fetch(self, info: FileInfo) -> None:
        from .transfer import download_object

        remote = self.remote()
        if remote is None:
            raise ObjectsMissing(f"{info.path} ({info.digest}) is not in the cache and no remote is configured")
        with self.repo.cache_lock(), self.repo.hasher() as hasher:
            download_object(self.repo.cache, remote, ObjRef(info.digest), hasher)


def _norm(path: str) -> str:
    path = path.replace(os.sep, "/").strip("/")
    norm = posixpath.normpath(path) if path else ""
    if norm.startswith("..") or norm == ".":
        return "" if norm == "." else norm
    return norm
