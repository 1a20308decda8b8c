"""``reproduce``: re-run a recorded command where it ran, and compare the outputs' bytes.

A temporary git worktree of the recorded commit (the user's work tree, HEAD and index
stay as they are) gets the recorded ``git diff`` applied and every dataver input placed
at its recorded digest, from the cache or else the default remote. The recorded command
runs there, only because the user asked (the caller is shown it first, through
``announce``); each output is hashed under its recorded algorithm and compared. The
environment then and now is compared too, so a difference comes with its likely cause.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from .. import environment
from ..digest import Digest
from ..errors import CommandFailed, ObjectsMissing, PathError, RepoError
from ..history import require_git
from ..lineagefmt import Item, Lineage, Stored
from ..manifest import Entry
from ..pointer import new_pointer
from ..repo import Repo
from ..store import ObjRef
from ..workspace import Tracked, manifest_entries
from .lineage import record_of

INTERACTIVE = "(python session)"  # the command api.record writes for code that was not a script


@dataclass
class OutputCheck:
    path: str
    recorded: str
    now: str | None  # None: the command did not write it
    identical: bool


@dataclass
class ReproduceResult:
    path: str
    command: list[str]
    wdir: str
    commit: str
    outputs: list[OutputCheck]
    identical: bool
    env_changes: list[str]
    env: environment.EnvDiff
    warnings: list[str] = field(default_factory=list)
    worktree: str | None = None  # kept with --keep


def reproduce(
    repo: Repo,
    path: str,
    rev: str | None = None,
    keep: bool = False,
    announce: Callable[[Lineage, str], None] | None = None,
) -> ReproduceResult:
    rel, _, lin = record_of(repo, path, rev)
    git = require_git(repo)
    if lin.code.commit is None:
        raise RepoError(f"the record of {rel} names no commit (it was made before the first one): nothing to check out")
    if lin.cmd[0] == INTERACTIVE:
        raise RepoError(
            f"{rel} was recorded by dataver.api.record in an interactive session: there is no command to re-run",
            "re-run the notebook or code yourself; dataver lineage shows its inputs",
        )
    _bring(repo, lin)
    tmp = tempfile.mkdtemp(prefix="dataver-reproduce-")
    worktree = os.path.join(tmp, "worktree")
    kept = False
    try:
        git.add_worktree(worktree, lin.code.commit)
        if lin.code.diff is not None:
            git.apply_patch(worktree, repo.cache.read(ObjRef(lin.code.diff.digest)))
        warnings = _place_inputs(repo, lin, worktree)
        _refuse_links(worktree, lin.wdir, "runs in", whole=True)
        cwd = os.path.join(worktree, lin.wdir)
        if announce is not None:
            announce(lin, worktree)
        try:
            code = subprocess.run(list(lin.cmd), cwd=cwd).returncode
        except OSError as e:
            raise CommandFailed(f"cannot run the recorded command {lin.cmd[0]!r}: {e.strerror}", 127) from None
        if code != 0:
            keep = True  # let the user look at what went wrong
            raise CommandFailed(
                f"the recorded command exited with code {code} in the reproduction",
                128 - code if code < 0 else code,
                f"the worktree is kept for inspection: {worktree}",
            )
        checks = [_check(o, worktree, repo) for o in lin.outputs]
        then = _captured(repo, lin)
        now = environment.capture(list(lin.env.vars))
        env_diff = environment.diff(then, now)
        identical = all(c.identical for c in checks)
        kept = keep
        return ReproduceResult(
            rel, list(lin.cmd), lin.wdir, lin.code.commit, checks, identical, env_diff.lines(), env_diff, warnings,
            worktree if keep else None,
        )  # fmt: skip
    finally:
        if not keep and not kept:
            git.remove_worktree(worktree)
            shutil.rmtree(tmp, ignore_errors=True)


def _bring(repo: Repo, lin: Lineage) -> None:
    """Fetch from the default remote whatever the record needs that the cache lacks:
    the diff, the inputs (manifests first, then their files). The package lock is
    optional (without it the package comparison is skipped)."""
    from ..remotes import open_remote, remote_names
    from ..transfer import fetch, wanted_objects

    tracked = [
        Tracked("", "", i.path, new_pointer(i.kind, i.digest, 0, 0)) for i in lin.inputs if i.kind in ("file", "dir")
    ]
    required = [ObjRef(lin.code.diff.digest)] if lin.code.diff else []
    required += [ObjRef(t.pointer.digest, manifest=t.pointer.is_dir) for t in tracked]
    optional = [ObjRef(lin.env.lock.digest)] if lin.env.lock else []
    if not repo.cache.missing(required + optional) or not remote_names(repo.config):
        return
    remote = open_remote(repo.config, None, repo.root)
    with repo.cache_lock(), repo.hasher() as hasher:
        wanted = wanted_objects(repo.cache, tracked, remote, hasher)
        for ref in ([ObjRef(lin.code.diff.digest)] if lin.code.diff else []) + optional:
            wanted.add(ref, 0, "lineage record")
        fetch(repo.cache, remote, wanted, hasher, repo.jobs)


def _place_inputs(repo: Repo, lin: Lineage, worktree: str) -> list[str]:
    """Write each dataver input at its recorded digest into the worktree; check that each
    git-tracked input and params file there has its recorded digest."""
    from .run import digest_of

    warnings = []
    for item in lin.inputs:
        dest = os.path.join(worktree, item.path)
        if item.kind == "git" or not item.kind:
            continue
        _refuse_links(worktree, item.path, "writes")
        _remove(dest)
        if item.kind == "file":
            _copy_blob(repo, item.digest, dest, item.path, False)
        else:
            os.makedirs(dest, exist_ok=True)
            for e in _entries(repo, item):
                _copy_blob(repo, e.digest, os.path.join(dest, e.path), f"{item.path}/{e.path}", e.executable)
    for item in [i for i in lin.inputs if i.kind == "git"] + list(lin.params):
        dest = os.path.join(worktree, item.path)
        if not os.path.exists(dest):
            warnings.append(f"{item.path}: not in the recorded commit (was it committed?)")
        elif digest_of(repo, dest, item.digest.algorithm) != item.digest:
            warnings.append(f"{item.path}: differs from the recorded version (a file git does not track changed?)")
    return warnings


def _refuse_links(worktree: str, rel: str, what: str, whole: bool = False) -> None:
    """A record's paths pass the path check when it is read, but the recorded commit's
    own files can make a folder on the way a symbolic link (to anywhere): never write,
    delete or run through one. ``whole``: ``rel`` itself must not be a link either."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    probe = worktree
    for part in parts if whole else parts[:-1]:
        probe = os.path.join(probe, part)
        if os.path.islink(probe):
            raise PathError(
                f"refusing to reproduce: the record {what} {rel}, but "
                f"{os.path.relpath(probe, worktree)} is a symbolic link at the recorded commit",
                "nothing was written outside the temporary worktree; such a record is not reproducible here",
            )


def _entries(repo: Repo, item: Item) -> list[Entry]:
    try:
        return manifest_entries(repo.cache, item.digest, item.path)
    except ObjectsMissing:
        raise ObjectsMissing(
            f"the input {item.path} ({item.digest.short()}) is in neither the cache nor the remote",
            "push it from where the run was recorded (dataver push), then try again",
        ) from None


def _copy_blob(repo: Repo, digest: Digest, dest: str, display: str, executable: bool) -> None:
    if not repo.cache.has_blob(digest):
        raise ObjectsMissing(
            f"the input {display} ({digest.short()}) is in neither the cache nor the remote",
            "push it from where the run was recorded (dataver push), then try again",
        )
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    repo.cache.get_file(ObjRef(digest), dest)
    os.chmod(dest, 0o755 if executable else 0o644)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _check(o: Item, worktree: str, repo: Repo) -> OutputCheck:
    from .run import digest_of

    path = os.path.join(worktree, o.path)
    if not os.path.exists(path):
        return OutputCheck(o.path, str(o.digest), None, False)
    now = digest_of(repo, path, o.digest.algorithm)
    return OutputCheck(o.path, str(o.digest), str(now), now == o.digest)


def _captured(repo: Repo, lin: Lineage) -> environment.Captured:
    e = lin.env
    return environment.Captured(e.python, e.platform, e.cpu, e.lock_kind, _text(repo, e.lock), dict(e.vars))


def _text(repo: Repo, stored: Stored | None) -> str | None:
    if stored is None or not repo.cache.has(ObjRef(stored.digest)):
        return None
    return repo.cache.read(ObjRef(stored.digest)).decode("utf-8", "replace")
