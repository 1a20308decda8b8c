"""Helpers for the "any revision, anywhere" tests: a scripted git history of tracked
data, fresh clones, and exact file-set snapshots to compare against.

Module-scoped fixtures cannot use the function-scoped ``cli``/``capsys`` fixtures, so
``dv`` runs the CLI in-process with its own output capture and working directory.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Result, git_commit, write
from remote_view import objects_in

from dataver.cli.main import main
from dataver.hashing import digest_bytes

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
SKIP_DIRS = {".git", ".dataver"}


@contextlib.contextmanager
def git_identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The conftest's git isolation, for module-scoped fixtures."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        for k, v in GIT_ENV.items():
            mp.setenv(k, v)
        yield


def dv(*args: object, cwd: str | os.PathLike) -> Result:
    """Run ``dataver ARGS`` in-process in ``cwd``; the old cwd is restored."""
    old = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(old)
    return Result(code, out.getvalue(), err.getvalue())


def dv_ok(*args: object, cwd: str | os.PathLike) -> Result:
    r = dv(*args, cwd=cwd)
    assert r.code == 0, f"dataver {' '.join(map(str, args))} -> {r.code}\n{r.out}\n{r.err}"
    return r


def git(*args: object, cwd: str | os.PathLike, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(["git", *map(str, args)], cwd=cwd, capture_output=True, text=True, **kw)
    if check:
        assert p.returncode == 0, f"git {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def clone(src: Path, dest: Path, *extra: str) -> Path:
    git("clone", "--quiet", *extra, str(src), str(dest), cwd=src.parent)
    return dest


def snapshot(root: Path, under: str | None = None) -> dict[str, bytes]:
    """rel path -> bytes of every file (not .git/.dataver, pointers or .gitignore)."""
    out = {}
    base = root / under if under else root
    if not base.exists():
        return out
    for here, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            p = Path(here) / name
            rel = p.relative_to(root).as_posix()
            if name.endswith(".dv") or name == ".gitignore":
                continue
            out[rel] = p.read_bytes()
    return out


def executables(root: Path, rels: list[str]) -> set[str]:
    return {r for r in rels if os.stat(root / r).st_mode & stat.S_IXUSR}


def git_state(root: Path) -> tuple[str, str, str, dict[str, bytes]]:
    """HEAD, the index, `git status --porcelain` and the bytes of every pointer file."""
    head = git("rev-parse", "HEAD", cwd=root).stdout
    index = git("ls-files", "--stage", cwd=root).stdout
    status = git("status", "--porcelain", "--untracked-files=all", cwd=root).stdout
    pointers = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.dv") if ".git" not in p.parts}
    return head, index, status, pointers


def object_files(store_root: Path) -> set[tuple[str, bool]]:
    """(digest hex, is_manifest) of every object in a cache or folder remote, loose or packed."""
    return objects_in(store_root)


def blob(data: bytes) -> tuple[str, bool]:
    return (digest_bytes(data).hex, False)


def pointer_digest(pointer_bytes: bytes) -> str:
    for line in pointer_bytes.decode().splitlines():
        if line.startswith("digest:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no digest in pointer:\n{pointer_bytes.decode()}")


def pointer_fields(pointer_bytes: bytes) -> dict[str, str]:
    out = {}
    for line in pointer_bytes.decode().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


# -- the scripted history ---------------------------------------------------------------
@dataclass
class Commit:
    name: str  # c1.. : also the key tests are parametrized with
    sha: str
    tag: str | None
    files: dict[str, bytes]  # every tracked file's bytes at this commit (data/... and model.bin)
    executable: set[str] = field(default_factory=set)

    def tracked(self) -> set[str]:
        """Tracked paths (pointer targets) at this commit."""
        return {"data"} | ({"model.bin"} if "model.bin" in self.files else set())

    @property
    def data(self) -> dict[str, bytes]:
        return {k: v for k, v in self.files.items() if k.startswith("data/")}

    def objects(self) -> set[tuple[str, bool]]:
        """The blobs this commit's pointers need (manifests are added by the builder)."""
        return {blob(v) for v in self.files.values()}


def _rand(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


Step = Callable[[Path], None]


def _c1(root: Path) -> None:
    write(root / "data/a.txt", "alpha, version 1\n")
    write(root / "data/b.bin", _rand(1, 3000))
    write(root / "data/sub/c.txt", "charlie\n" * 50)
    write(root / "data/sub/deep/d.bin", _rand(2, 5000))
    write(root / "data/dup1.txt", "same bytes\n")
    write(root / "data/dup2.txt", "same bytes\n")


def _c2(root: Path) -> None:
    write(root / "data/a.txt", "alpha, version 2 (changed)\n")
    write(root / "data/e.txt", "echo\n")
    write(root / "model.bin", _rand(3, 2000))


def _c3(root: Path) -> None:
    (root / "data/b.bin").unlink()
    os.rename(root / "data/sub/c.txt", root / "data/sub/c_renamed.txt")


def _c4(root: Path) -> None:
    write(root / "data/sub/deep/d.bin", _rand(4, 5000))
    write(root / "data/empty.txt", b"")
    write(root / "data/run.sh", "#!/bin/sh\necho hi\n")
    os.chmod(root / "data/run.sh", 0o755)
    write(root / "model.bin", _rand(5, 2500))


def _c5(root: Path) -> None:
    (root / "data/moved").mkdir()
    os.rename(root / "data/a.txt", root / "data/moved/a.txt")
    shutil.rmtree(root / "data/sub/deep")
    (root / "data/dup2.txt").unlink()
    write(root / "data/x", "x is a file here\n")


def _c6(root: Path) -> None:
    (root / "data/x").unlink()
    write(root / "data/x/inner.txt", "x is a folder now\n")
    write(root / "data/sub/deep/d.bin", _rand(2, 5000))  # an old blob comes back
    write(root / "model.bin", _rand(6, 1800))


STEPS: list[tuple[Step, str | None]] = [(_c1, "v1"), (_c2, None), (_c3, "v2"), (_c4, None), (_c5, "v3"), (_c6, None)]


@dataclass
class History:
    root: Path  # the original repository (its cache holds everything)
    store: Path  # the folder remote named in the committed config
    commits: list[Commit]

    def by_name(self, name: str) -> Commit:
        return next(c for c in self.commits if c.name == name)


def build_history(
    base: Path, push: str = "rev", remote_url: str | None = None, steps: list[tuple[Step, str | None]] = STEPS
) -> History:
    """git init + dataver init in ``base/repo``, a default folder remote ``base/store``
    committed in .dataver/config, then one commit (and maybe a tag) per step.

    ``push``: "rev" pushes every commit with ``push --rev`` at the end, "each" pushes
    after each commit, "none" leaves the remote empty.
    """
    root, store = base / "repo", base / "store"
    root.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main", cwd=root)
    dv_ok("init", cwd=root)
    dv_ok("remote", "add", "storage", remote_url or str(store), "--default", cwd=root)
    commits: list[Commit] = []
    for i, (step, tag) in enumerate(steps, 1):
        step(root)
        targets = ["data"] + (["model.bin"] if (root / "model.bin").exists() else [])
        dv_ok("add", *targets, cwd=root)
        sha = git_commit(root, f"c{i}")
        if tag:
            git("tag", tag, sha, cwd=root)
        files = snapshot(root)
        commits.append(Commit(f"c{i}", sha, tag, files, executables(root, list(files))))
        if push == "each":
            dv_ok("push", cwd=root)
    if push == "rev":
        for c in commits:
            dv_ok("push", "--rev", c.tag or c.sha, cwd=root)
    assert git("status", "--porcelain", cwd=root).stdout == ""
    return History(root, store, commits)


def manifest_of(h: History, c: Commit) -> tuple[str, bool]:
    data = git("show", f"{c.sha}:data.dv", cwd=h.root).stdout.encode()
    return (pointer_digest(data), True)


def rev_of(c: Commit) -> str:
    """How tests name a commit: its tag when it has one, else a short SHA."""
    return c.tag or c.sha[:10]
