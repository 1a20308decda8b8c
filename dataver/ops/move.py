"""``move`` and ``remove``: a tracked path renamed, or no longer tracked, with its
pointer and the ``.gitignore`` line ``add`` wrote kept in step (a hand-made ``mv``
leaves a stale ``/data`` line and a pointer naming the old place).

Each step is atomic, and the steps are ordered so that a command killed between two
of them loses nothing and finishes when run again.
"""

from __future__ import annotations

import errno
import os
import shlex
from dataclasses import dataclass, field

from .. import pointer as pointer_mod
from ..errors import PathError, StorageError, WouldLoseData
from ..fsutil import atomic_write, ensure_gitignored, remove_gitignored, remove_temporaries, sibling_temporaries
from ..repo import Repo, takes_lock
from ..safepath import check_target
from ..workspace import (
    DELETED,
    MISSING,
    UNCHANGED,
    Tracked,
    find_tracked,
    load_tracked,
    pointer_for,
    read_manifest,
    status,
    tracked_ancestor,
)


@dataclass
class Moved:
    source: str  # repo-relative
    dest: str
    moved_data: bool  # False: only the pointer moved (the data was not in the workspace)


@dataclass
class Removed:
    path: str  # repo-relative
    purged: bool  # the workspace data was deleted too
    kept: list[str] = field(default_factory=list)  # with purged: files there the pointer never tracked


@takes_lock
def move(repo: Repo, src: str, dst: str) -> Moved:
    """Move tracked ``src`` (a target or its ``.dv``) to ``dst``, or into ``dst`` when it
    is an existing folder that is not tracked data, as ``mv`` does. Its pointer is
    written at the new place first, then the data is renamed, then the old ``.gitignore``
    line and pointer go: run again after a kill, it takes up where it stopped."""
    (t,) = find_tracked(repo, [src])
    dest = repo.resolve(dst)
    if dest.endswith(pointer_mod.SUFFIX) and not os.path.isdir(dest):
        dest = dest[: -len(pointer_mod.SUFFIX)]
    if os.path.isdir(dest) and not os.path.exists(pointer_for(dest)):
        dest = os.path.join(dest, os.path.basename(t.path))
    rel = repo.rel(dest)
    _check_dest(repo, t, dest, rel, dst)
    remove_temporaries(sibling_temporaries([dest, t.path]))  # what a killed move left (pointer, .gitignore)
    resuming = os.path.exists(pointer_for(dest))  # a move killed after writing the new pointer
    has_data = os.path.lexists(t.path)
    if resuming and has_data and os.path.lexists(dest):
        raise PathError(
            f"both {t.rel} and {rel} exist",
            f"move or delete one of them by hand, then run: {shlex.join(['dataver', 'move', t.rel, rel])}",
        )
    if not resuming and os.path.lexists(dest):
        raise PathError(f"{rel} already exists", "choose another destination, or move that one away first")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    atomic_write(pointer_for(dest), pointer_mod.dumps(t.pointer))
    ensure_gitignored(dest)
    if has_data:
        try:
            os.rename(t.path, dest)
        except OSError as e:
            if e.errno == errno.EXDEV:
                raise PathError(
                    f"{rel} is on another file system than {t.rel}",
                    "move within one file system, or dataver add the data at the new place",
                ) from None
            raise StorageError(f"cannot move {t.rel} to {rel}: {e.strerror}") from None
        repo.state.rename(t.rel, rel)  # the stat cache's rows still vouch for the moved files
    remove_gitignored(t.path)  # before the old pointer goes: a kill between them is finished by a re-run
    _drop_pointer(t)
    return Moved(t.rel, rel, has_data)


def _check_dest(repo: Repo, t: Tracked, dest: str, rel: str, user: str) -> None:
    if dest == t.path:
        raise PathError(f"{user} is where {t.rel} already is")
    if (dest + os.sep).startswith(t.path + os.sep):
        raise PathError(f"cannot move {t.rel} into itself ({rel})")
    check_target(rel, user)
    owner = tracked_ancestor(repo, dest)
    if owner is not None:
        raise PathError(
            f"{rel} is inside the tracked folder {repo.rel(owner)}",
            "a tracked folder's files belong to its manifest: move the data elsewhere",
        )
    probe = os.path.dirname(dest)
    while len(probe) > len(repo.root):
        if os.path.islink(probe):
            raise PathError(f"{rel} is beyond a symbolic link ({repo.rel(probe)})", "name the real path")
        probe = os.path.dirname(probe)
    if os.path.exists(pointer_for(dest)):
        there = load_tracked(repo, pointer_for(dest)).pointer
        if there != t.pointer:
            raise PathError(f"{rel} is already tracked ({rel}.dv)", "choose another destination")
    elif repo.git is not None:
        repo.git.check_not_tracked(rel)


@takes_lock
def remove(repo: Repo, paths: list[str], purge: bool = False, force: bool = False) -> list[Removed]:
    """Stop tracking each path: its pointer and ``.gitignore`` line go, the data stays
    (``purge``: it is deleted too, when its bytes are all in the cache, or ``force``).
    Every path is checked before anything is changed."""
    tracked = find_tracked(repo, paths)
    if purge and not force:
        unsafe = []
        for t in tracked:
            if not os.path.lexists(t.path):
                continue
            for r in status(repo, [t], check_cache=True):  # gone already (a killed purge): nothing to lose
                if r.state not in (MISSING, DELETED) and (r.state != UNCHANGED or r.in_cache is False):
                    unsafe.append(r.path)
        if unsafe:
            more = f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else ""
            raise WouldLoseData(
                f"--purge would delete data whose bytes are not in the cache: {', '.join(unsafe[:5])}{more}",
                "dataver add it first (then remove --purge), or remove without --purge to keep the data, "
                "or --force to delete it anyway",
            )
    remove_temporaries(sibling_temporaries([t.path for t in tracked]))  # a killed remove's .gitignore temporary
    out = []
    for t in tracked:  # the data first: killed here, every pointer still names its data, in the cache
        purged = purge and os.path.lexists(t.path)
        kept = delete_tracked(repo, t) if purged else []
        out.append(Removed(t.rel, purged, kept))
    for t in tracked:  # killed here, the pointers are still there: run it again
        remove_gitignored(t.path)
    for t in tracked:  # the pointers last (killed between two, run it again for those still tracked)
        _drop_pointer(t)
    return out


def delete_tracked(repo: Repo, t: Tracked) -> list[str]:
    """Delete what ``t``'s pointer tracks, and only that: a file, or the files a folder's
    manifest lists and the folders they leave empty. A link standing for the folder is
    removed, not followed. What stays (files ``.dataverignore`` hides, a nested
    repository, anything the manifest does not list) is returned, repo-relative; the
    caller has checked that the listed files' bytes are in the cache."""
    try:
        if os.path.islink(t.path) or not os.path.isdir(t.path):
            os.unlink(t.path)
            return []
        for e in read_manifest(repo, t):
            try:
                os.unlink(os.path.join(t.path, *e.path.split("/")))
            except FileNotFoundError:
                pass
        left: list[str] = []
        for here, dirs, files in os.walk(t.path, topdown=False):
            left += [os.path.join(here, f) for f in files]
            left += [os.path.join(here, d) for d in dirs if os.path.islink(os.path.join(here, d))]
            try:
                os.rmdir(here)  # fails while anything is left in it
            except OSError:
                pass
    except OSError as e:
        raise StorageError(f"cannot delete {t.rel}: {e.strerror}") from None
    return sorted(repo.rel(p) for p in left)


def _drop_pointer(t: Tracked) -> None:
    try:
        os.unlink(t.pointer_path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise StorageError(f"cannot remove {t.rel}.dv: {e.strerror}") from None
