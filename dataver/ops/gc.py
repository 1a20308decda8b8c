"""``gc``: remove objects no kept revision needs, from the cache or a remote.

The keep set is the objects referenced by the workspace's pointers plus, as asked,
the pointers committed on every branch tip, every tag, or every commit. A folder's
blobs are known only through its manifest, so a manifest that cannot be found (in
the cache, or on the default remote) stops gc rather than guessing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ..digest import Digest
from ..errors import ObjectsMissing
from ..history import pointers_at, require_git
from ..manifest import loads as load_manifest
from ..remotes import open_remote, remote_names
from ..repo import Repo
from ..transfer import fetch_manifest
from ..workspace import find_tracked

STALE_TEMP_SECONDS = 3600


@dataclass
class GcResult:
    removed: int = 0
    freed: int = 0
    kept: int = 0
    temporaries: int = 0
    dry_run: bool = False
    revisions: int = 0  # commits whose pointers were kept
    where: str = "cache"
    removed_paths: list[str] = field(default_factory=list)


@dataclass
class KeepSet:
    blobs: set[Digest] = field(default_factory=set)
    manifests: set[Digest] = field(default_factory=set)
    revisions: int = 0


def keep_set(repo: Repo, all_branches: bool = False, all_tags: bool = False, all_commits: bool = False) -> KeepSet:
    keep = KeepSet()
    pointers = [(t.rel, t.pointer) for t in find_tracked(repo)]
    if all_branches or all_tags or all_commits:
        git = require_git(repo)
        revs: set[str] = set()
        if all_commits:
            revs.update(git.all_commits())
        if all_branches:
            revs.update(git.branches())
        if all_tags:
            revs.update(git.tags())
        keep.revisions = len(revs)
        for rev in sorted(revs):
            pointers += [(f"{rel} at {rev[:10]}", p) for rel, p in pointers_at(git, rev).items()]
    remote = None
    for display, ptr in pointers:
        if not ptr.is_dir:
            keep.blobs.add(ptr.digest)
            continue
        keep.manifests.add(ptr.digest)
        if not repo.cache.has_manifest(ptr.digest):
            if remote is None and remote_names(repo.config):
                remote = open_remote(repo.config, None, repo.root)
            if remote is not None:
                with repo.hasher() as hasher:
                    try:
                        fetch_manifest(repo.cache, remote, ptr.digest, hasher)
                    except ObjectsMissing:
                        pass
        if not repo.cache.has_manifest(ptr.digest):
            raise ObjectsMissing(
                f"the manifest of {display} is in neither the cache nor the remote, "
                "so gc cannot tell which files it needs",
                "fetch it (dataver fetch --rev REV), or re-add the folder",
            )
        data = repo.cache.read_manifest_bytes(ptr.digest)
        keep.blobs.update(e.digest for e in load_manifest(data, f"manifest of {display}"))
    return keep


def gc(
    repo: Repo,
    dry_run: bool = False,
    all_branches: bool = False,
    all_tags: bool = False,
    all_commits: bool = False,
    remote_name: str | None = None,
) -> GcResult:
    keep = keep_set(repo, all_branches, all_tags, all_commits)
    if remote_name is not None:
        return _gc_remote(repo, keep, remote_name, dry_run)
    result = GcResult(dry_run=dry_run, revisions=keep.revisions)
    for digest, is_manifest, path in list(repo.cache.iter_objects()):
        if digest in (keep.manifests if is_manifest else keep.blobs):
            result.kept += 1
            continue
        result.removed += 1
        result.freed += os.lstat(path).st_size
        result.removed_paths.append(path)
        if not dry_run:
            repo.cache.remove(path)
    cutoff = time.time() - STALE_TEMP_SECONDS
    for tmp in repo.cache.stale_temporaries():
        try:
            if os.lstat(tmp).st_mtime < cutoff:
                result.temporaries += 1
                if not dry_run:
                    repo.cache.remove(tmp)
        except FileNotFoundError:
            pass
    return result


def _gc_remote(repo: Repo, keep: KeepSet, remote_name: str, dry_run: bool) -> GcResult:
    remote = open_remote(repo.config, remote_name, repo.root)
    result = GcResult(dry_run=dry_run, revisions=keep.revisions, where=f"remote {remote_name}")
    doomed = []
    for ref, size in remote.iter_objects():
        if ref.digest in (keep.manifests if ref.manifest else keep.blobs):
            result.kept += 1
        else:
            result.removed += 1
            result.freed += size
            doomed.append(ref)
    result.removed_paths = [remote.path(r) for r in doomed]
    if not dry_run and doomed:
        remote.remove(doomed)
    stale = remote.stale_temporaries(time.time() - STALE_TEMP_SECONDS)  # uploads killed midway
    result.temporaries = len(stale)
    if not dry_run and stale:
        remote.remove_temporaries(stale)
    return result
