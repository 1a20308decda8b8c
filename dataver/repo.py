"""The repository context: where things are and the objects built from config.

Holds no operations (those live in ``dataver.ops``); just the root, the config, the
cache, the stat cache, the lock and path helpers shared by every operation.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import sqlite3
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Iterator

from .config import Config
from .errors import ConfigError, PathError, RepoError
from .hashing import Hasher, default_jobs
from .linking import DEFAULT_LINK_TYPES, parse_link_types
from .lock import FileLock, Locks
from .odb import ObjectStore
from .safepath import reserved_in, reserved_name
from .state import NullState, State

if TYPE_CHECKING:
    from .fsmonitor import Session as FsMonitorSession

DATAVER_DIR = ".dataver"
DATAVER_GITIGNORE = "/cache/\n/state.db*\n/lock\n/config.local\n/*.tmp\n"


def takes_lock(fn: Callable | None = None, *, cache_exclusive: bool = False) -> Callable:
    """An op that writes (its first argument a ``Repo``) runs holding the repository
    lock (re-entrant: the CLI may hold it already)."""

    def wrap(f: Callable) -> Callable:
        @functools.wraps(f)
        def locked(repo: Repo, *args, **kwargs):
            with repo.lock(cache_exclusive=cache_exclusive):
                return f(repo, *args, **kwargs)

        return locked

    return wrap(fn) if fn is not None else wrap


class Repo:
    """A dataver repository rooted at ``root`` (the folder holding ``.dataver/``)."""

    def __init__(self, root: str, use_state: bool = True):
        self.root = os.path.abspath(root)
        self.dataver_dir = os.path.join(self.root, DATAVER_DIR)
        if not os.path.isdir(self.dataver_dir):
            raise RepoError(f"{self.root} is not a dataver repository", "run: dataver init")
        self.config = Config(self.dataver_dir)
        self._use_state = use_state
        self._held: Locks | None = None  # the repository lock, while this object holds it
        self._depth = 0
        self._held_exclusive = False

    def __enter__(self) -> Repo:
        """``with Repo.find() as repo:`` closes the stat cache and the cache's packs after."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def find(cls, start: str | None = None) -> Repo:
        here = os.path.abspath(start or os.getcwd())
        probe = here
        while True:
            if os.path.isdir(os.path.join(probe, DATAVER_DIR)):
                return cls(probe)
            parent = os.path.dirname(probe)
            if parent == probe:
                raise RepoError(f"not inside a dataver repository ({here})", "run: dataver init")
            probe = parent

    # -- objects built from config ----------------------------------------------
    @cached_property
    def cache(self) -> ObjectStore:
        configured = self.config.get("cache.dir")
        path = (
            os.path.join(self.dataver_dir, os.path.expanduser(configured))
            if configured
            else os.path.join(self.dataver_dir, "cache")
        )
        # cache.dir may come from a committed config (a stranger's): never inside a .git.
        parts = os.path.normpath(path).split(os.sep)
        if any(reserved_name(part) == ".git" for part in parts):
            raise ConfigError(
                f"cache.dir {configured!r} (in .dataver/config or config.local) is inside a .git folder",
                "point it elsewhere: dataver config cache.dir PATH, or remove the setting",
            )
        if os.path.lexists(path) and not os.path.isdir(path):  # a file (or a dangling link) in its place
            where = self.rel(path) if (path + os.sep).startswith(self.root + os.sep) else path
            raise RepoError(
                f"the cache {where} is not a folder",
                f"move it aside (mv {shlex.quote(path)} {shlex.quote(path + '.bad')}): dataver makes a new, empty "
                "cache, then dataver pull (or add) brings the data back",
            )
        return ObjectStore(path)

    @cached_property
    def state(self) -> State | NullState:
        if not self._use_state:
            return NullState()
        try:
            return State(os.path.join(self.dataver_dir, "state.db"))
        except (sqlite3.Error, OSError):
            # .dataver/ or state.db not writable (read-only checkout, another user's
            # repository): work without the stat cache rather than fail; files are hashed.
            return NullState()

    @cached_property
    def fsmonitor(self) -> FsMonitorSession:
        """What watchman says changed in tracked folders (opened at first use)."""
        from .fsmonitor import Session

        return Session(self)

    @cached_property
    def link_types(self) -> tuple[str, ...]:
        text = self.config.get("cache.link")
        return parse_link_types(text) if text else DEFAULT_LINK_TYPES

    @cached_property
    def jobs(self) -> int:
        text = self.config.get("core.jobs")
        if text is None:
            return default_jobs()
        if not text.isdigit() or int(text) < 1:
            raise ConfigError(f"core.jobs must be a positive integer, not {text!r}")
        return int(text)

    @cached_property
    def hash_algorithm(self) -> str:
        """The algorithm new content is hashed with (``core.hash``; pointers and manifests
        already written keep theirs)."""
        from .digest import ALGORITHMS, DEFAULT_ALGORITHM, known_names

        name = self.config.get("core.hash") or DEFAULT_ALGORITHM
        if name not in ALGORITHMS:
            raise ConfigError(
                f"core.hash {name[:40]!r} (in .dataver/config or config.local) is not a hash algorithm dataver knows",
                f"use one of {known_names()}: dataver config core.hash NAME; or upgrade dataver",
            )
        return name

    def hasher(self, jobs: int | None = None) -> Hasher:
        """A hasher for this repository: new content gets its ``core.hash`` algorithm."""
        return Hasher(jobs or self.jobs, algorithm=self.hash_algorithm)

    @contextlib.contextmanager
    def lock(self, on_wait: Callable[[str], None] | None = None, cache_exclusive: bool = False) -> Iterator[None]:
        """The repository lock, then the cache lock (shared; exclusive for gc). Every op
        that writes takes it itself, so the library is as safe as the CLI; it is
        re-entrant per ``Repo`` (the CLI's ``with repo.lock(note)`` around an op, pull's
        fetch and checkout), as one process's second ``flock`` would wait for its first."""
        if self._held is not None:
            if cache_exclusive and not self._held_exclusive:
                raise RuntimeError("the cache lock is held shared; an exclusive one must be taken first")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        locks = self._locks(on_wait, cache_exclusive)
        with locks:
            self._held, self._depth, self._held_exclusive = locks, 1, cache_exclusive
            try:
                yield
            finally:
                self._held, self._depth, self._held_exclusive = None, 0, False

    def _locks(self, on_wait: Callable[[str], None] | None, cache_exclusive: bool) -> Locks:
        text = self.config.get("core.lock_timeout", "60")
        try:
            timeout = float(text)
        except ValueError:
            raise ConfigError(f"core.lock_timeout must be a number of seconds, not {text!r}") from None
        return Locks(
            FileLock(os.path.join(self.dataver_dir, "lock"), "the repository lock", False, timeout, on_wait),
            self.cache_lock(on_wait, exclusive=cache_exclusive, timeout=timeout),
        )

    def cache_lock(
        self, on_wait: Callable[[str], None] | None = None, exclusive: bool = False, timeout: float | None = None
    ) -> FileLock:
        """The cache lock alone: shared for commands that only read the workspace but may
        bring objects into the cache (ls, diff, get, the API), so gc waits for them."""
        if timeout is None:
            try:
                timeout = float(self.config.get("core.lock_timeout", "60") or 60)
            except ValueError:
                raise ConfigError("core.lock_timeout must be a number of seconds") from None
        return FileLock(os.path.join(self.cache.root, "lock"), "the cache lock", not exclusive, timeout, on_wait)

    @cached_property
    def git(self):
        """The git repository (``gitscm.Git``) holding this one, or None."""
        from .gitscm import Git, find_git_root

        return Git(self.root) if find_git_root(self.root) == self.root else None

    def close(self) -> None:
        if "state" in self.__dict__:
            self.state.close()
        if "cache" in self.__dict__:
            self.cache.packs.close()

    # -- paths ----------------------------------------------------------------------
    def resolve(self, user_path: str) -> str:
        """An absolute path for a user-given one, checked to be inside the repo."""
        path = os.path.abspath(user_path).rstrip(os.sep) or os.sep
        rel = os.path.relpath(path, self.root)
        if rel == ".":
            raise PathError(f"{user_path} is the repository root", "name a file or folder inside it")
        if rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
            raise PathError(f"{user_path} is outside the repository {self.root}")
        where = reserved_in(rel.split(os.sep))
        if where is not None:  # .git or .dataver in any spelling a filesystem takes for them
            raise PathError(f"{user_path} is inside {where}, which dataver never tracks")
        return path

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.root).replace(os.sep, "/")


def init(path: str, no_scm: bool = False, force: bool = False, hash_algorithm: str | None = None) -> Repo:
    """Create ``.dataver/`` in ``path``; it must be a git work tree root unless ``no_scm``.
    ``hash_algorithm`` sets ``core.hash`` in the shared config."""
    from .config import validate

    root = os.path.abspath(path)
    if hash_algorithm is not None:
        validate("core.hash", hash_algorithm)  # before anything is created
    dv = os.path.join(root, DATAVER_DIR)
    if os.path.isdir(dv) and not force:
        raise RepoError(f"{root} is already a dataver repository")
    if not no_scm:
        from .gitscm import find_git_root

        git_root = find_git_root(root)
        if git_root is None:
            raise RepoError(f"{root} is not inside a git repository", "run git init first, or use --no-scm")
        if git_root != root:
            raise RepoError(f"run dataver init at the git work tree root ({git_root}), not in {root}")
    os.makedirs(dv, exist_ok=True)
    for name, text in (("config", "[core]\n"), (".gitignore", DATAVER_GITIGNORE)):
        target = os.path.join(dv, name)
        if not os.path.exists(target):
            with open(target, "w") as f:
                f.write(text)
    repo = Repo(root)
    if hash_algorithm is not None:
        repo.config.set("core.hash", hash_algorithm)
    return repo
