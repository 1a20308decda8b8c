"""Pointers as committed at any revision, read through git objects only.

Nothing here touches HEAD, the index or the work tree: ``checkout --rev`` changes
data in the workspace while git stays where it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

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


def tracked_for(repo: Repo, rev: str | Sequence[str] | Revisions | None, user_paths: list[str] | None) -> list[Tracked]:
    """Pointers from the workspace (``rev`` None), from one revision, or from every
    revision a ``Revisions`` covers (``tracked_across``)."""
    from .workspace import find_tracked

    revisions = Revisions.of(rev)
    if revisions.plain:
        return find_tracked(repo, user_paths)
    if revisions.single is not None:
        return tracked_at(repo, revisions.single, user_paths)
    return tracked_across(repo, revisions, user_paths)


@dataclass(frozen=True)
class Revisions:
    """Which committed pointers a command covers (push, fetch, pull, ``status --remote``,
    ``verify --remote``), with the meaning ``gc`` gives the same flags.

    ``revs`` are the ``--rev`` values, in order; ``all_branches``/``all_tags``/
    ``all_commits`` add every branch tip, tag or commit. The workspace's pointers are
    covered too unless ``--rev`` names revisions: ``push -a`` sends the workspace's
    data and every branch's, ``push --rev v1 --rev v2`` exactly those two commits'.
    """

    revs: tuple[str, ...] = ()
    all_branches: bool = False
    all_tags: bool = False
    all_commits: bool = False

    @classmethod
    def of(cls, rev: str | Sequence[str] | Revisions | None) -> Revisions:
        if isinstance(rev, Revisions):
            return rev
        if rev is None:
            return cls()
        return cls((rev,) if isinstance(rev, str) else tuple(rev))

    @property
    def expands(self) -> bool:
        return self.all_branches or self.all_tags or self.all_commits

    @property
    def workspace(self) -> bool:
        return not self.revs

    @property
    def single(self) -> str | None:
        """The one revision, when exactly one ``--rev`` and no ``--all-*`` was given."""
        return self.revs[0] if len(self.revs) == 1 and not self.expands else None

    @property
    def plain(self) -> bool:
        """Only the workspace's pointers (no ``--rev``, no ``--all-*``)."""
        return not self.revs and not self.expands

    def commits(self, git: Git) -> list[str]:
        """The covered commits, resolved, each once: the ``--rev`` values first, in order."""
        out: dict[str, None] = {}
        for rev in self.revs:
            out[git.resolve(rev)] = None
        expanded: set[str] = set()
        if self.all_commits:
            expanded.update(git.all_commits())
        if self.all_branches:
            expanded.update(git.branches())
        if self.all_tags:
            expanded.update(git.tags())
        for commit in sorted(expanded):
            out.setdefault(commit, None)
        return list(out)

    def describe(self) -> str:
        parts = [*self.revs]
        parts += [name for name, on in (("every branch", self.all_branches), ("every tag", self.all_tags)) if on]
        if self.all_commits:
            parts.append("every commit")
        if self.workspace:
            parts.insert(0, "the workspace")
        return ", ".join(parts)


def tracked_across(repo: Repo, revisions: Revisions, user_paths: list[str] | None = None) -> list[Tracked]:
    """The pointers of every revision ``revisions`` covers (and the workspace's, when it
    does), each distinct pointer once; for display, a revision's path reads ``PATH at
    COMMIT``. With ``user_paths``, only those targets, and each must be tracked in at
    least one of them (a path that exists in some revisions only is normal)."""
    from .workspace import find_tracked

    git = require_git(repo)
    wanted: dict[str, str] | None = None
    if user_paths:
        wanted = {}
        for up in user_paths:
            rel = repo.rel(repo.resolve(up))
            wanted[rel[: -len(pointer_mod.SUFFIX)] if rel.endswith(pointer_mod.SUFFIX) else rel] = up
    out: list[Tracked] = []
    seen: set[tuple[str, Pointer]] = set()
    found: set[str] = set()

    def take(rel: str, ptr: Pointer, label: str | None) -> None:
        if wanted is not None and rel not in wanted:
            return
        found.add(rel)
        if (rel, ptr) in seen:
            return
        seen.add((rel, ptr))
        shown = rel if label is None else f"{rel} at {label}"
        out.append(Tracked(os.path.join(repo.root, rel + pointer_mod.SUFFIX), os.path.join(repo.root, rel), shown, ptr))

    if revisions.workspace:
        for t in find_tracked(repo):
            take(t.rel, t.pointer, None)
    for commit in revisions.commits(git):
        for rel, ptr in sorted(pointers_at(git, commit).items()):
            take(rel, ptr, commit[:10])
    if wanted is not None:
        for rel, up in wanted.items():
            if rel not in found:
                raise PathError(
                    f"{up} is not tracked in any revision covered ({revisions.describe()})",
                    "see dataver ls --rev REV for what each revision tracks",
                )
    return out
