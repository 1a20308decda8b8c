"""``diff``: what changed in tracked data between two revisions, or a revision and
the workspace, file by file inside tracked folders."""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from typing import Iterator

from .. import tree
from ..history import tracked_at
from ..progress import NO_PROGRESS, Progress
from ..repo import Repo
from ..workspace import Tracked, build_entries, file_digest, find_tracked, scan_folder
from .core import folder_entries, folder_entries_ready

WORKSPACE = None  # the workspace side of a diff

Snapshot = dict[str, tuple[str, int]]  # repo-relative file path -> (digest hex, size)


@dataclass
class Change:
    path: str
    change: str  # "added", "modified" or "deleted"
    old_size: int | None
    new_size: int | None
    old_digest: str | None
    new_digest: str | None


def diff(
    repo: Repo,
    a: str | None = "HEAD",
    b: str | None = WORKSPACE,
    paths: list[str] | None = None,
    progress: Progress = NO_PROGRESS,
) -> list[Change]:
    """Changes from side ``a`` to side ``b``; a side is a revision or None (workspace)."""
    if a is not WORKSPACE and b is not WORKSPACE:
        return _diff_revisions(repo, a, b, paths)
    old = _snapshot(repo, a, paths, progress)
    new = _snapshot(repo, b, paths, progress)
    changes = []
    for path in sorted(old.keys() | new.keys()):
        o, n = old.get(path), new.get(path)
        if o == n:
            continue
        kind = "added" if o is None else "deleted" if n is None else "modified"
        changes.append(Change(path, kind, o and o[1], n and n[1], o and o[0], n and n[0]))
    return changes


def _diff_revisions(repo: Repo, a: str, b: str, paths: list[str] | None) -> list[Change]:
    """Two revisions' tracked data compared pointer by pointer: a folder's two trees are
    walked in step, each in path order, and a subfolder whose manifest is the same on
    both sides is not read at all. Holds the nodes on one path and the changes, not a
    list of files (a one-file change in a million-file folder reads the nodes above it)."""
    wanted = _wanted_rels(repo, paths)

    def side(rev: str) -> dict[str, Tracked]:
        return {
            t.rel: t
            for t in tracked_at(repo, rev, None)
            if wanted is None or any(_under(w, t.rel) or _under(t.rel, w) for w in wanted)
        }

    old, new = side(a), side(b)
    changes: list[Change] = []
    for group in _nesting_groups(old.keys() | new.keys()):
        if len(group) == 1:  # one tracked path on either side or both: compared node by node
            o, n = old.get(group[0]), new.get(group[0])
            if o is not None and n is not None and o.pointer.digest == n.pointer.digest:
                continue  # the same file, or the same folder to the last byte
            same = _same_subfolders(repo, o, n)
            olds, news = _files(repo, o, same), _files(repo, n, same)
        else:  # tracked differently on the two sides (a folder, then its parts): file by file
            olds = heapq.merge(*(_files(repo, old[r], set()) for r in group if r in old))
            news = heapq.merge(*(_files(repo, new[r], set()) for r in group if r in new))
        for path, was, now in _merge(olds, news):
            if wanted is not None and not any(_under(path, w) for w in wanted):
                continue
            kind = "added" if was is None else "deleted" if now is None else "modified"
            changes.append(Change(path, kind, was and was[1], now and now[1], was and was[0], now and now[0]))
    changes.sort(key=lambda c: c.path)
    return changes


def _nesting_groups(rels: set[str]) -> list[list[str]]:
    """The tracked paths of two sides, in groups of paths that lie inside one another
    (``data`` on one side, ``data/x`` and ``data/y`` on the other); most are alone."""
    groups: list[list[str]] = []
    top = ""
    for rel in sorted(rels, key=lambda r: r + "/"):  # a folder's parts right after it
        if groups and _under(rel, top):
            groups[-1].append(rel)
        else:
            groups.append([rel])
            top = rel
    return groups


def _same_subfolders(repo: Repo, o: Tracked | None, n: Tracked | None) -> set[str]:
    """Subfolders (``sub/dir/``) whose manifest is the same in two versions of a folder,
    the outermost only: the nodes of each side are read down to where they agree."""
    if o is None or n is None or not (o.pointer.is_dir and n.pointer.is_dir):
        return set()
    for t in (o, n):
        folder_entries_ready(repo, t)
    read = repo.cache.read_manifest_bytes
    same: set[str] = set()
    todo = [("", o.pointer.digest, n.pointer.digest)]
    while todo:
        prefix, da, db = todo.pop()
        subs_b = dict(tree.subfolders(read, db, f"manifest of {n.rel}"))
        for name, d in tree.subfolders(read, da, f"manifest of {o.rel}"):
            other = subs_b.get(name)
            if other == d:
                same.add(f"{prefix}{name}/")
            elif other is not None:
                todo.append((f"{prefix}{name}/", d, other))
    return same


def _files(repo: Repo, t: Tracked | None, same: set[str]) -> Iterator[tuple[str, tuple[str, int]]]:
    """``(repo-relative path, (hex, size))`` of every file of one pointer, in path order,
    leaving out the subfolders ``same`` names."""
    if t is None:
        return
    if not t.pointer.is_dir:
        yield t.rel, (t.pointer.digest.hex, t.pointer.size)
        return
    folder_entries_ready(repo, t)
    skip = (lambda sub: sub in same) if same else None
    for e in tree.walk(repo.cache.read_manifest_bytes, t.pointer.digest, f"manifest of {t.rel}", skip):
        yield f"{t.rel}/{e.path}", (e.digest.hex, e.size)


def _merge(
    olds: Iterator[tuple[str, tuple[str, int]]], news: Iterator[tuple[str, tuple[str, int]]]
) -> Iterator[tuple[str, tuple[str, int] | None, tuple[str, int] | None]]:
    """Two path-ordered streams joined: ``(path, old, new)`` where they differ."""
    o, n = next(olds, None), next(news, None)
    while o is not None or n is not None:
        if n is None or (o is not None and o[0] < n[0]):
            assert o is not None
            yield o[0], o[1], None
            o = next(olds, None)
        elif o is None or n[0] < o[0]:
            yield n[0], None, n[1]
            n = next(news, None)
        else:
            if o[1] != n[1]:
                yield o[0], o[1], n[1]
            o, n = next(olds, None), next(news, None)


def _snapshot(repo: Repo, side: str | None, paths: list[str] | None, progress: Progress) -> Snapshot:
    """Every file of the tracked data on one side; with ``paths``, only those tracked
    paths and parts of tracked folders (``data/images``: the files under it)."""
    wanted = _wanted_rels(repo, paths)
    if side is WORKSPACE:
        tracked = find_tracked(repo)
        if wanted is not None:
            named = [t for t in tracked if any(_under(w, t.rel) or _under(t.rel, w) for w in wanted)]
            if not named:  # nothing here holds them: say what find_tracked says of them
                find_tracked(repo, paths)
            tracked = named
        snap = _workspace_snapshot(repo, tracked, progress)
    else:
        snap = {}
        for t in tracked_at(repo, side, None):
            if wanted is not None and not any(_under(w, t.rel) or _under(t.rel, w) for w in wanted):
                continue
            if t.pointer.is_dir:
                for e in folder_entries(repo, t):
                    snap[f"{t.rel}/{e.path}"] = (e.digest.hex, e.size)
            else:
                snap[t.rel] = (t.pointer.digest.hex, t.pointer.size)
    if wanted is None:
        return snap
    return {path: v for path, v in snap.items() if any(_under(path, w) for w in wanted)}


def _under(path: str, top: str) -> bool:
    """``path`` is ``top`` or lies below it."""
    return path == top or path.startswith(top + "/")


def _wanted_rels(repo: Repo, paths: list[str] | None) -> set[str] | None:
    if not paths:
        return None
    rels = set()
    for p in paths:
        rel = repo.rel(repo.resolve(p))
        rels.add(rel[:-3] if rel.endswith(".dv") else rel)
    return rels


def _workspace_snapshot(repo: Repo, tracked: list[Tracked], progress: Progress) -> Snapshot:
    out: Snapshot = {}
    for t in tracked:
        if t.pointer.is_dir:
            if not os.path.isdir(t.path):
                continue
            scan = scan_folder(t.path, t.rel, repo)
            for e in build_entries(repo, t.path, t.rel, scan, t.pointer.digest.algorithm, progress):
                out[f"{t.rel}/{e.path}"] = (e.digest.hex, e.size)
        elif os.path.isfile(t.path):
            st = os.stat(t.path)
            out[t.rel] = (file_digest(repo, t.path, st, t.pointer.digest.algorithm, progress).hex, st.st_size)
    return out
