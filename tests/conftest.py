"""Shared fixtures: real git repositories in temp dirs and a CLI runner.

``cli(...)`` runs dataver in-process (fast) and returns (exit code, stdout, stderr);
``cli_proc(...)`` runs it as a real subprocess (for kill and concurrency tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest

# The S3 fixtures are registered here, once, so that a session-scoped server is one server
# for the whole session: a test module that imports a fixture gets a fixture (and a server)
# of its own. Test modules take them from here; they import only the helpers.
from s3servers import (  # noqa: F401
    auth_s3_server,
    aws_env,
    s3_any_bucket,
    s3_bucket,
    s3_each_bucket,
    s3_server,
    seaweed_bucket,
    seaweed_server,
)

from dataver.cli.main import main


def pytest_configure(config: pytest.Config) -> None:
    """Compile dataver's modules to bytecode once, where the environment says not to
    write bytecode (``PYTHONDONTWRITEBYTECODE``): hundreds of tests start ``python -m
    dataver`` as a child process, and each child would otherwise compile the modules it
    imports afresh (about a tenth of a second of CPU each, a quarter of its start-up).
    The files go where Python itself would write them (``__pycache__``, ignored by git);
    where they cannot be written, the children compile as before."""
    if sys.dont_write_bytecode:
        import compileall

        import dataver

        try:
            compileall.compile_dir(os.path.dirname(dataver.__file__), quiet=2)
        except OSError:
            pass


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="session", autouse=True)
def _one_click_command():
    """Build dataver's click command once for all in-process runs.

    ``main()`` calls the typer app, and typer builds the whole click command tree on
    every call (it reads every command's signature and type hints again: 20-odd ms). A
    process of the dataver CLI runs ``main()`` once, but the tests run it in-process
    thousands of times. Reusing one command tree for many invocations is how click is
    meant to be used (its own test runner invokes one command object again and again).
    """
    import typer.main

    from dataver.cli.main import app

    build = typer.main.get_command
    built = build(app)

    def get_command(typer_instance: typer.Typer):
        return built if typer_instance is app else build(typer_instance)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.main, "get_command", get_command)
        yield


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch, tmp_path_factory):
    """Tests that call the git CLI must not depend on the machine's git config."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")


@pytest.fixture(autouse=True)
def _no_fsmonitor(monkeypatch):
    """No test starts or asks the machine's watchman (tests/test_fsmonitor.py turns it
    back on with a private server): status and add scan, as without watchman."""
    monkeypatch.setenv("DATAVER_FSMONITOR", "0")


@pytest.fixture
def cli(capsys, monkeypatch):
    def run(*args: str, cwd: str | os.PathLike | None = None) -> Result:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def cli_proc(*args: str, cwd: str | os.PathLike, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dataver", *map(str, args)], cwd=cwd, capture_output=True, text=True, **kwargs
    )


def git_commit(repo_dir: str | os.PathLike, message: str = "commit") -> str:
    """Stage everything git does not ignore and commit; returns the commit id."""
    repo = pygit2.Repository(str(repo_dir))
    repo.index.add_all()
    repo.index.write()
    tree = repo.index.write_tree()
    sig = pygit2.Signature("Test", "test@example.com")
    parents = [] if repo.head_is_unborn else [repo.head.target]
    return str(repo.create_commit("HEAD", sig, sig, message, tree, parents))


@pytest.fixture
def repo_dir(tmp_path, monkeypatch) -> Path:
    """A fresh git repository with ``dataver init`` done; the cwd is set to it."""
    root = tmp_path / "repo"
    root.mkdir()
    pygit2.init_repository(str(root))
    monkeypatch.chdir(root)
    assert main(["init"]) == 0
    return root


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def make_tree(root: Path, n_files: int = 20, seed: int = 0, max_size: int = 4096) -> dict[str, bytes]:
    """Deterministic folder of files (some in subfolders); returns rel path -> bytes."""
    import random

    rng = random.Random(seed)
    out = {}
    for i in range(n_files):
        rel = f"sub{i % 3}/f{i}.bin" if i % 2 else f"f{i}.bin"
        data = rng.randbytes(rng.randint(0, max_size))
        write(root / rel, data)
        out[rel] = data
    return out


def age(path: Path, seconds: float = 10.0) -> None:
    """Move mtimes into the past, outside the stat cache's racy window."""
    import time

    t = time.time() - seconds
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in paths:
        os.utime(p, (t, t))


def cached(repo: Path, digest, manifest: bool = False) -> bytes:
    """An object's bytes from the repository's cache, loose or packed (the store reads
    both: a folder of 1,024+ small files is packed, docs/formats.md "Cache packs")."""
    from dataver.odb import ObjectStore
    from dataver.store import ObjRef

    store = ObjectStore(str(Path(repo) / ".dataver" / "cache"))
    try:
        return store.read(ObjRef(digest, manifest))
    finally:
        store.packs.close()


def uncache(repo: Path, digest, manifest: bool = False) -> None:
    """Remove one object from the repository's cache, loose or packed (a packed one's
    pack is rewritten without it, as gc does)."""
    from dataver.odb import ObjectStore
    from dataver.store import ObjRef

    store = ObjectStore(str(Path(repo) / ".dataver" / "cache"))
    try:
        store.delete([ObjRef(digest, manifest)])
    finally:
        store.packs.close()
