"""``diff``: what changed in tracked data between two revisions, or a revision and
the workspace, file by file inside tracked folders."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..history import tracked_at
from ..progress import NO_PROGRESS, Progress
from ..repo import Repo
from ..workspace import Tracked, build_entries, file_digest, find_tracked, scan_folder
from .core import folder_entries

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
