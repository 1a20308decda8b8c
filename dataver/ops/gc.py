"""``gc``: remove objects no kept revision needs, from the cache or a remote.

The keep set is the objects referenced by the workspace's pointers plus, as asked,
the pointers committed on every branch tip, every tag, or every commit. A folder's
blobs are known only through its manifest, so a manifest that cannot be found (in
the cache, or on the default remote) stops gc rather than guessing.

In the cache, gc also never deletes the only copy of committed data, whatever the
scope: an object outside the keep set that some commit reachable from a branch or
tag needs, and that no configured remote holds, is kept unless ``not_pushed_too``.
That walk reads each distinct git tree and pointer blob of the history once and
asks each remote once, in one batch, about those objects only. It is lenient where
the scoped walk is strict, because leniency there can only keep more: paths do not
matter; a pointer that does not parse keeps the digests its ``digest:`` lines name;
and a committed folder whose manifest is not in the cache protects no blobs by
listing, since without its manifest the cache cannot rebuild that folder anyway,
and a remote that holds the manifest holds its blobs too (push sends them first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Collection

from .. import pointer as pointer_mod
from .. import tree
from ..digest import Digest
from ..errors import MISSING, IntegrityError, ObjectsMissing, PointerError, RemoteError
from ..gitscm import Git
from ..history import Revisions, pointers_at, require_git
from ..manifest import listed_hexes
from ..remotes import open_remote, remote_names
from ..repo import Repo, takes_lock
from ..store import ObjRef, Store
from ..transfer import Walk, needed
from ..workspace import Tracked, find_tracked
from .sync import transfer_jobs

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
    # kept although outside the scope: committed data that no remote holds
    unpushed_kept: int = 0
    unpushed_bytes: int = 0
    unpushed_revisions: list[str] = field(default_factory=list)  # push --rev each of these to save them all
    unreachable_remotes: dict[str, str] = field(default_factory=dict)  # name -> why; counted as holding nothing
    unreadable_pointers: list[str] = field(default_factory=list)  # committed, malformed: their digests kept
    unlisted_folders: int = 0  # committed folder versions whose manifest is not in the cache
    # a packed remote: packs deleted whole, packs rewritten (their garbage over the threshold)
    packs_deleted: int = 0
    packs_rewritten: int = 0
    bytes_rewritten: int = 0
    orphan_packs: int = 0  # packs of killed pushes, no index names them


@dataclass
class KeepSet:
    """The objects gc keeps: raw digest bytes by algorithm and kind (about 75 bytes an
    object; a set of ``Digest`` values took 239 MB for a million files)."""

    held: dict[tuple[str, bool], set[bytes]] = field(default_factory=dict)
    revisions: int = 0

    def add(self, ref: ObjRef) -> None:
        key = (ref.digest.algorithm, ref.manifest)
        self.held.setdefault(key, set()).add(bytes.fromhex(ref.digest.hex))

    def __contains__(self, ref: ObjRef) -> bool:
        held = self.held.get((ref.digest.algorithm, ref.manifest))
        return held is not None and bytes.fromhex(ref.digest.hex) in held


def keep_set(repo: Repo, all_branches: bool = False, all_tags: bool = False, all_commits: bool = False) -> KeepSet:
    keep = KeepSet()
    pointers = [(t.rel, t.pointer) for t in find_tracked(repo)]
    revisions = Revisions(all_branches=all_branches, all_tags=all_tags, all_commits=all_commits)
    if revisions.expands:
        git = require_git(repo)
        revs = revisions.commits(git)
        keep.revisions = len(revs)
        for rev in revs:
            pointers += [(f"{rel} at {rev[:10]}", p) for rel, p in pointers_at(git, rev, check_paths=False).items()]
    remote = open_remote(repo.config, None, repo.root) if remote_names(repo.config) else None
    walk = Walk()
    tracked = (Tracked("", "", display, ptr) for display, ptr in pointers)
    with repo.hasher() as hasher:
        for ref, _, _ in needed(repo.cache, tracked, walk, remote, hasher):
            keep.add(ref)
    if walk.unknown:  # a folder whose files gc cannot list: deleting anything could lose them
        u = walk.unknown[0]
        if u.reason != MISSING:
            raise IntegrityError(
                f"the manifest of {u.path} is corrupt on {u.where}, so gc cannot tell which files it needs",
                "delete that copy and push the folder again from a machine that has it, or re-add the folder",
            )
        raise ObjectsMissing(
            f"the manifest of {u.path} is in neither the cache nor the remote, so gc cannot tell which files it needs",
            "fetch it (dataver fetch --rev REV), or re-add the folder",
        )
    return keep


@takes_lock(cache_exclusive=True)
def gc(
    repo: Repo,
    dry_run: bool = False,
    all_branches: bool = False,
    all_tags: bool = False,
    all_commits: bool = False,
    remote_name: str | None = None,
    not_pushed_too: bool = False,
    confirm: Callable[[GcResult], None] | None = None,
) -> GcResult:
    """Plan, then (unless ``dry_run``) delete. ``confirm`` sees the plan first, as a
    dry-run result, and may raise to stop before anything is deleted."""
    keep = keep_set(repo, all_branches, all_tags, all_commits)
    if remote_name is not None:
        remote = open_remote(repo.config, remote_name, repo.root)
        return _collect(remote, keep, dry_run, confirm, f"remote {remote_name}")
    guard = None if not_pushed_too or all_commits else repo.git

    def spare(doomed: dict[ObjRef, int], result: GcResult) -> None:
        if guard is not None:
            _keep_unpushed(repo, guard, doomed, result)

    return _collect(repo.cache, keep, dry_run, confirm, "cache", spare)


def _collect(
    store: Store,
    keep: KeepSet,
    dry_run: bool,
    confirm: Callable[[GcResult], None] | None,
    where: str,
    spare: Callable[[dict[ObjRef, int], GcResult], None] | None = None,
) -> GcResult:
    """Delete from ``store`` (through the store contract) every object ``keep`` does not
    keep and ``spare`` does not take back, and temporaries of killed writes older than
    an hour. ``confirm`` sees the plan first and may raise to stop it."""
    result = GcResult(dry_run=True, revisions=keep.revisions, where=where)
    doomed: dict[ObjRef, int] = {}  # ref -> size
    for ref, size in store.iter_objects():
        if ref in keep:
            result.kept += 1
        else:
            doomed[ref] = size
    if doomed and spare is not None:
        spare(doomed, result)
    result.removed = len(doomed)
    result.freed = sum(doomed.values())
    result.removed_paths = [store.path(r) for r in doomed]
    stale = store.stale_temporaries(time.time() - STALE_TEMP_SECONDS)
    result.temporaries = len(stale)
    packs = store.plan_delete(doomed)
    if packs is not None:
        result.packs_deleted, result.packs_rewritten = len(packs.packs_deleted), len(packs.packs_rewritten)
        result.bytes_rewritten, result.orphan_packs = packs.bytes_rewritten, len(packs.orphans)
    if dry_run:
        return result
    if confirm is not None:
        confirm(result)
    if doomed or result.orphan_packs or result.packs_rewritten:
        store.delete(doomed)
    if stale:
        store.remove_temporaries(stale)
    result.dry_run = False
    return result


def _keep_unpushed(repo: Repo, git: Git, doomed: dict[ObjRef, int], result: GcResult) -> None:
    """Move out of ``doomed`` what some commit needs and no remote holds."""
    committed = committed_among(repo, git, doomed)
    result.unreadable_pointers = committed.unreadable
    result.unlisted_folders = committed.unlisted
    for ref in held_nowhere(repo, list(committed.owners), result.unreachable_remotes):
        size = doomed.pop(ref)
        result.kept += 1
        result.unpushed_kept += 1
        result.unpushed_bytes += size
        if committed.owners[ref] not in result.unpushed_revisions:
            result.unpushed_revisions.append(committed.owners[ref])


@dataclass
class Committed:
    """Which of some objects the history needs, each with one commit that needs it."""

    owners: dict[ObjRef, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # "path at commit" of pointers that do not parse
    unlisted: int = 0  # committed folder versions whose manifest is not (readable) in the cache


def committed_among(repo: Repo, git: Git, refs: Collection[ObjRef]) -> Committed:
    """Which of ``refs`` some commit reachable from a branch or tag needs.

    Branch tips and tags are walked first, so the commit named for an object is a
    recent one where it can be. Only digests matter here, never paths.
    """
    found = Committed()
    blobs = {r.digest.hex: r for r in refs if not r.manifest}
    expanded: set[Digest] = set()

    def need(ref: ObjRef | None, commit: str) -> None:
        if ref is not None and ref in refs:
            found.owners.setdefault(ref, commit)

    def need_folder(digest: Digest, commit: str, salvaged: bool = False) -> None:
        """The folder's manifest, and what it lists: blobs, and a tree's other nodes."""
        todo = [(digest, salvaged)]
        while todo:
            digest, salvaged = todo.pop()
            need(ObjRef(digest, manifest=True), commit)
            if digest in expanded:
                continue
            expanded.add(digest)
            try:
                data = repo.cache.read_manifest_bytes(digest)
            except (ObjectsMissing, IntegrityError, PointerError):
                found.unlisted += not salvaged  # a salvaged digest may well name a file
                continue
            if not tree.is_tree(data):
                for hex_ in listed_hexes(data):
                    need(blobs.get(hex_), commit)
                continue
            for hex_, is_node in tree.listed(data):
                if not is_node:
                    need(blobs.get(hex_), commit)
                    continue
                try:
                    todo.append((Digest(digest.algorithm, hex_), False))
                except PointerError:
                    found.unlisted += 1  # a damaged node: what it meant to name is unknown

    starts = git.branches() + git.tags()
    for commit, path, data in git.pointer_blobs(dict.fromkeys(starts + git.all_commits())):
        if not pointer_mod.reads_like_pointer(data):
            continue  # not a pointer (pointers_at skips it too)
        try:
            ptr = pointer_mod.loads(data)
        except PointerError:
            found.unreadable.append(f"{path} at {commit[:10]}")
            for digest in pointer_mod.digests_named(data):
                need(ObjRef(digest), commit)
                need_folder(digest, commit, salvaged=True)
            continue
        if ptr.is_dir:
            need_folder(ptr.digest, commit)
        else:
            need(ObjRef(ptr.digest), commit)
        lineage = ptr.lineage  # an output's stored diff and package lock go with it
        if lineage is not None and any(o.digest == ptr.digest for o in lineage.outputs):
            for stored in lineage.stored():
                need(ObjRef(stored.digest), commit)
    return found


def held_nowhere(repo: Repo, refs: list[ObjRef], unreachable: dict[str, str]) -> list[ObjRef]:
    """Those of ``refs`` that no configured remote holds.

    One batched check per remote, each asked only about what the remotes before it
    lack. A remote that cannot be reached holds nothing here; its name and the
    reason go into ``unreachable``.
    """
    for name in remote_names(repo.config):
        if not refs:
            break
        try:
            remote = open_remote(repo.config, name, repo.root)
            refs = remote.missing(refs, transfer_jobs(repo, remote, None))
        except RemoteError as e:
            unreachable[name] = e.message
    return refs
