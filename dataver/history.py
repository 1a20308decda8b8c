"""Pointers as committed at any revision, read through git objects only.

Nothing here touches HEAD, the index or the work tree: ``checkout --rev`` changes
data in the workspace while git stays where it is.
"""

from __future__ import annotations

import os

from . import pointer as pointer_mod
from .errors import PathError, PointerError, RepoError
from .gitscm import Git
from .pointer import Pointer
from .repo import Repo
from .safepath import check_target
from .workspace import Tracked


def require_git(repo: Repo) -> Git:
    if repo.git is None:
        raise RepoError("this dataver repository is not a git work tree root, so it has no revisions")
    return repo.git


def pointers_at(git: Git, rev: str, check_paths: bool = True) -> dict[str, Pointer]:
    """Repo-relative tracked path -> pointer, for every pointer committed at ``rev``.

    Every target passes the path check (``safepath``) and no target may lie inside
    another, so nothing a command does with them can reach ``.git``/``.dataver``.
    ``check_paths=False`` is for callers that only read digests (gc's keep set):
    a hostile name must not make them keep less.
    """
    out = {}
    for rel, data in git.pointer_files_at(rev):
        if not pointer_mod.reads_like_pointer(data):
            continue  # a committed file that merely ends in .dv (raw DV video, say)
        target = rel[: -len(pointer_mod.SUFFIX)]
        if check_paths:
            check_target(target, f"{rel} at {rev}")
        out[target] = pointer_mod.loads(data, f"{rel} at {rev}")
    if check_paths:
        check_not_nested(sorted(out), f" at {rev}")
    return out


def check_not_nested(targets: list[str], where: str = "") -> None:
    """Refuse sorted targets where one lies inside another: checking out both would
    write one pointer's data into the other's folder (or delete it as an extra file)."""
    for outer, inner in zip(targets, targets[1:], strict=False):
        if inner.startswith(outer + "/"):
            raise PointerError(
                f"{inner}.dv{where}: its target {inner} is inside {outer}, which {outer}.dv tracks",
                "a tracked folder's files belong to its manifest; remove one of the two pointers",
            )


def tracked_at(repo: Repo, rev: str, user_paths: list[str] | None = None) -> list[Tracked]:
    """The pointers at ``rev`` (all, or those naming ``user_paths``) as ``Tracked``."""
    git = require_git(repo)
    found = pointers_at(git, rev)
    if not user_paths:
        selected = sorted(found)
    else:
        selected = []
        for up in user_paths:
            rel = repo.rel(repo.resolve(up))
            if rel.endswith(pointer_mod.SUFFIX):
                rel = rel[: -len(pointer_mod.SUFFIX)]
            if rel not in found:
                owner = next((t for t in found if rel.startswith(t + "/")), None)
                hint = (
                    f"it is inside {owner}, which was tracked then; name that"
                    if owner
                    else "see dataver ls --rev REV for what was tracked"
                )
                raise PathError(f"{up} was not tracked at {rev}", hint)
            selected.append(rel)
    return [
        Tracked(os.path.join(repo.root, rel + pointer_mod.SUFFIX), os.path.join(repo.root, rel), rel, found[rel])
        for rel in selected
    ]


def tracked_for(repo: Repo, rev: str | None, user_paths: list[str] | None) -> list[Tracked]:
    """Pointers from the workspace (``rev`` None) or from a revision."""
    from .workspace import find_tracked

    return find_tracked(repo, user_paths) if rev is None else tracked_at(repo, rev, user_paths)
