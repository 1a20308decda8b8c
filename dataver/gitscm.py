"""Everything dataver asks git, through pygit2 (the only module that imports it)."""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

from .errors import PathError, RepoError


def find_git_root(start: str) -> str | None:
    """The work tree root of the git repository containing ``start``, if any."""
    import pygit2

    found = pygit2.discover_repository(start)
    if not found:
        return None
    repo = pygit2.Repository(found)
    return None if repo.workdir is None else os.path.normpath(repo.workdir)


def clone_bare(url: str, dest: str) -> str:
    """Clone ``url`` (anything git can clone) as a bare repository into ``dest``."""
    import pygit2

    try:
        pygit2.clone_repository(url, dest, bare=True)
    except (pygit2.GitError, ValueError, KeyError) as e:
        raise RepoError(f"cannot clone {url}: {e}", "check the URL and that git can reach it") from None
    return dest


def update_bare(path: str) -> str | None:
    """Fetch every branch and tag of a bare clone's ``origin`` into it (forced, pruned);
    None when that worked, else git's reason (the clone is left as it was)."""
    import pygit2

    try:
        repo = pygit2.Repository(path)
        repo.remotes["origin"].fetch(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], prune=True)
    except (pygit2.GitError, KeyError, ValueError) as e:
        return str(e) or type(e).__name__
    return None


class Git:
    def __init__(self, root: str):
        import pygit2

        try:
            self._repo = pygit2.Repository(root)
        except pygit2.GitError as e:
            raise RepoError(f"cannot open the git repository at {root}: {e}") from None

    @property
    def git_dir(self) -> str:
        return os.path.normpath(self._repo.path)

    def config_value(self, key: str) -> str | None:
        try:
            return self._repo.config[key]
        except KeyError:
            return None

    def set_config(self, key: str, value: str) -> None:
        """Set ``key`` in the repository's own git config (.git/config)."""
        self._repo.config[key] = value

    def conflicts(self, suffix: str) -> list[tuple[str, bytes | None, bytes | None, bytes | None]]:
        """(path, base, ours, theirs) bytes of each unmerged index entry whose path ends
        in ``suffix`` (None: absent on that side)."""
        index = self._repo.index
        if index.conflicts is None:
            return []
        out = []
        for base, ours, theirs in index.conflicts:
            path = next(e.path for e in (base, ours, theirs) if e is not None)
            if path.endswith(suffix):
                out.append((path, *(None if e is None else self._repo[e.id].data for e in (base, ours, theirs))))
        return sorted(out)

    @property
    def workdir(self) -> str | None:
        return None if self._repo.workdir is None else os.path.normpath(self._repo.workdir)

    def tracked_under(self, relpath: str) -> list[str]:
        """Paths in the git index equal to ``relpath`` or under it (posix, repo-relative)."""
        prefix = relpath.rstrip("/") + "/"
        return [e.path for e in self._repo.index if e.path == relpath or e.path.startswith(prefix)]

    def tracks(self, relpath: str) -> bool:
        """Is ``relpath`` itself (a file or a symbolic link) in the git index?"""
        return relpath in self._repo.index

    def check_not_tracked(self, relpath: str) -> None:
        hits = self.tracked_under(relpath)
        if hits:
            raise PathError(
                f"{relpath} is tracked by git ({len(hits)} file(s), e.g. {hits[0]})",
                f"stop tracking it in git first: git rm -r --cached {relpath}",
            )

    def resolve(self, rev: str) -> str:
        """A commit id for any revision git understands (branch, tag, short SHA, HEAD~3)."""
        import pygit2

        if rev == "HEAD" and self._repo.head_is_unborn:
            raise RepoError("the git repository has no commits yet", "commit your pointer files first")
        try:
            obj = self._repo.revparse_single(rev)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise RepoError(f"unknown revision {rev!r}", "see git log / git tag for valid revisions") from None
        return str(commit.id)

    def file_at(self, rev: str, relpath: str) -> bytes | None:
        """The bytes of a committed file at ``rev``, or None if it is not there."""
        commit = self._repo.get(self.resolve(rev))
        try:
            entry = commit.tree[relpath]
        except KeyError:
            return None
        obj = self._repo.get(entry.id)
        return obj.data if entry.type_str == "blob" else None

    def branches(self) -> list[str]:
        return [str(self._repo.branches.local[b].target) for b in self._repo.branches.local]

    def tags(self) -> list[str]:
        import pygit2

        out = []
        for ref in self._repo.references:
            if ref.startswith("refs/tags/"):
                try:
                    out.append(str(self._repo.revparse_single(ref).peel(pygit2.Commit).id))
                except (ValueError, pygit2.GitError):
                    continue  # a tag of something that is not a commit
        return out

    def all_commits(self) -> list[str]:
        """Every commit reachable from any branch or tag."""
        import pygit2

        starts = self.branches() + self.tags()
        if not starts:
            return []
        # One walk from every start: stopping a walk at the first commit already seen
        # would skip the other parents of a merge (their ancestors were never seen).
        walker = self._repo.walk(starts[0], pygit2.enums.SortMode.NONE)
        for start in starts[1:]:
            walker.push(start)
        return sorted({str(commit.id) for commit in walker})

    def pointer_files_at(self, rev: str, suffix: str = ".dv") -> list[tuple[str, bytes]]:
        """(repo-relative path, bytes) of every pointer file committed at ``rev``.

        Reads git objects only: the index, HEAD and the work tree are untouched.
        """
        commit = self._repo.get(self.resolve(rev))
        return sorted(self._pointer_blobs(commit.tree, suffix, None))

    def pointer_blobs(self, commits: Iterable[str], suffix: str = ".dv") -> Iterator[tuple[str, str, bytes]]:
        """``(commit id, path, bytes)`` once per distinct pointer-file blob in ``commits``.

        For a walk over a whole history: git trees are content-addressed, so a tree
        already walked (the root of an identical commit, a folder no commit since has
        changed) holds nothing new and is skipped, and each blob is read once. ``path``
        is where the blob was first met, for messages only.
        """
        seen: set = set()
        for cid in commits:
            commit = self._repo.get(cid)
            for path, data in self._pointer_blobs(commit.tree, suffix, seen):
                yield cid, path, data

    def _pointer_blobs(self, root: Any, suffix: str, seen: set | None) -> Iterator[tuple[str, bytes]]:
        """Pointer files under the tree ``root``; with ``seen``, trees and blobs whose
        id is in it are skipped and the ids of those read are added."""
        import pygit2

        if seen is not None:
            if root.id in seen:
                return
            seen.add(root.id)
        stack = [("", root)]
        while stack:
            prefix, tree = stack.pop()
            for entry in tree:
                if seen is not None and entry.id in seen:
                    continue
                path = prefix + entry.name
                if entry.type_str == "tree":
                    if seen is not None:
                        seen.add(entry.id)
                    stack.append((path + "/", self._repo.get(entry.id)))
                elif (
                    entry.type_str == "blob"
                    and entry.name.endswith(suffix)
                    and entry.filemode != pygit2.GIT_FILEMODE_LINK
                ):
                    if seen is not None:
                        seen.add(entry.id)
                    yield path, self._repo.get(entry.id).data

    # -- for lineage: the code a run saw, and a worktree to re-run it in -------------------
    def head_commit(self) -> str | None:
        """HEAD's commit id, or None before the first commit."""
        return None if self._repo.head_is_unborn else str(self._repo.head.target)

    def diff_text(self, commit: str = "HEAD") -> bytes:
        """``git diff COMMIT`` (binary-safe; no external diff or textconv) of the files git
        tracks, less pointer files and ``.gitignore`` files, which dataver itself writes
        (a run records data by digest)."""
        excludes = [":(exclude)*.dv", ":(exclude).gitignore", ":(exclude)*/.gitignore"]
        return self._git(
            ["diff", commit, "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--", ".", *excludes]
        )

    def add_worktree(self, path: str, commit: str) -> None:
        """A detached git worktree of ``commit`` at ``path`` (HEAD and the work tree here stay)."""
        self._git(["worktree", "add", "--detach", "--quiet", path, commit])

    def remove_worktree(self, path: str) -> None:
        self._git(["worktree", "remove", "--force", path], check=False)
        self._git(["worktree", "prune"], check=False)

    def apply_patch(self, worktree: str, patch: bytes) -> None:
        """Apply a ``git diff`` to the work tree at ``worktree``."""
        self._git(["-C", worktree, "apply", "--binary", "--whitespace=nowarn", "-"], stdin=patch)

    def _git(self, args: list[str], stdin: bytes | None = None, check: bool = True) -> bytes:
        import subprocess

        root = self.workdir or self.git_dir
        try:
            out = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise RepoError(f"cannot run git {args[0]}: {e}", "install git and make sure it is on PATH") from None
        if check and out.returncode != 0:
            why = out.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RepoError(f"git {' '.join(args[:2])} failed: {why[-1] if why else out.returncode}")
        return out.stdout

    def path_history(self, rev: str, relpath: str, limit: int = 10_000) -> Iterator[tuple[str, bytes | None]]:
        """``(commit id, bytes of relpath or None)`` for ``rev`` and its ancestors, newest
        first (time order, at most ``limit`` commits): how a pointer file changed."""
        import pygit2

        walker = self._repo.walk(self.resolve(rev), pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
        for n, commit in enumerate(walker):
            if n >= limit:
                return
            try:
                entry = commit.tree[relpath]
            except KeyError:
                yield str(commit.id), None
                continue
            yield str(commit.id), self._repo.get(entry.id).data if entry.type_str == "blob" else None
