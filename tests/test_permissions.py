"""Permission errors: unreadable inputs, unwritable workspace folders and caches.

The tests run as root too. Root normally ignores file modes (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH), so as root each dataver process is started with those two
capabilities dropped from its bounding set: for uid 0 a new program's capabilities
come from the bounding set, so the process then obeys file modes like anyone else.
As any other user, plain chmod is enough.

Documented behaviour (docs/guarantees.md, "Exit codes" and section 5): an unreadable
input is a bad path, exit 4, naming the file; something that cannot be written stops
the command with exit 11 naming what could not be written; no traceback, no pointer
to a missing object, no partial object, no partial workspace file.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import git_commit, write

from dataver.digest import DEFAULT_ALGORITHM
from dataver.errors import StorageError, UnreadableFile
from dataver.hashing import digest_bytes, digest_manifest

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
IS_ROOT = os.geteuid() == 0
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

# The codes docs/guarantees.md documents; checked against dataver's own table too.
EXIT_UNREADABLE = 4
EXIT_CANNOT_WRITE = 11


def drop_dac_capabilities() -> None:
    """``preexec_fn``: drop the capabilities that let root bypass file modes."""
    assert _libc is not None
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_CAPBSET_DROP, {cap}): {os.strerror(err)}")


def run_obeying_modes(argv: list[str], cwd: str | os.PathLike, **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv`` so that file modes apply to it, even as root."""
    return subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=drop_dac_capabilities if IS_ROOT else None,
        **kwargs,
    )


def modes_apply_or_skip(tmp: Path) -> None:
    """Skip, with the reason, only where a process cannot be made to obey file modes."""
    probe = tmp / "mode-probe"
    probe.write_bytes(b"secret")
    probe.chmod(0)
    try:
        p = run_obeying_modes([sys.executable, "-c", f"open({str(probe)!r}, 'rb')"], cwd=tmp)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH for a child process here: {e}")
    finally:
        probe.chmod(0o600)
    if p.returncode == 0:
        pytest.skip("a process here reads a mode-000 file even with DAC capabilities dropped")
    assert "PermissionError" in p.stderr, p.stderr


@pytest.fixture(autouse=True)
def _modes_apply(tmp_path_factory):
    modes_apply_or_skip(tmp_path_factory.mktemp("probe"))


@pytest.fixture
def chmod(tmp_path):
    """chmod that is undone at teardown (so tmp_path can be removed by any user)."""
    changed: list[tuple[Path, int]] = []

    def do(path: Path, mode: int) -> None:
        changed.append((path, stat.S_IMODE(os.lstat(path).st_mode)))
        os.chmod(path, mode)

    yield do
    for path, mode in reversed(changed):
        if os.path.lexists(path):
            os.chmod(path, mode)


def dv(*args: str, cwd: str | os.PathLike) -> subprocess.CompletedProcess:
    return run_obeying_modes([sys.executable, "-m", "dataver", *map(str, args)], cwd=cwd)


def test_exit_codes_are_the_documented_ones():
    assert UnreadableFile.exit_code == EXIT_UNREADABLE
    assert StorageError.exit_code == EXIT_CANNOT_WRITE


def cache_objects(cache: Path) -> set[str]:
    base = cache / DEFAULT_ALGORITHM
    return {str(p.relative_to(cache)) for p in base.glob("*/*")} if base.is_dir() else set()


def assert_cache_sound(cache: Path) -> None:
    """Every object hashes to its name and no temporary file is left behind."""
    for rel in cache_objects(cache):
        data = (cache / rel).read_bytes()
        name = rel.split("/", 1)[1].replace("/", "")
        if name.endswith(".manifest"):
            assert digest_manifest(data).hex == name.removesuffix(".manifest"), rel
        else:
            assert digest_bytes(data).hex == name, rel
    tmp = cache / "tmp"
    assert not tmp.is_dir() or not os.listdir(tmp), os.listdir(tmp)


def assert_fails_cleanly(p: subprocess.CompletedProcess, code: int, *named: str) -> None:
    """Exit ``code`` with one ``error:`` message naming each of ``named``; no traceback."""
    assert p.returncode == code, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("error: "), p.stderr
    first = p.stderr.splitlines()[0]
    for what in named:
        assert what in first, f"{what!r} not named in: {first}"


def no_temporaries(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*dataver-tmp*")]


# -- add: unreadable inputs ---------------------------------------------------------


def test_add_unreadable_file_names_it_and_writes_nothing(repo_dir, chmod):
    secret = write(repo_dir / "secret.bin", os.urandom(50_000))
    chmod(secret, 0)
    p = dv("add", "secret.bin", cwd=repo_dir)
    assert_fails_cleanly(p, EXIT_UNREADABLE, "secret.bin", "permission denied")
    assert not (repo_dir / "secret.bin.dv").exists()
    gitignore = repo_dir / ".gitignore"
    assert not gitignore.exists() or "secret.bin" not in gitignore.read_text()
    cache = repo_dir / ".dataver" / "cache"
    assert cache_objects(cache) == set()
    assert_cache_sound(cache)
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0  # the user's file untouched


def test_add_folder_with_unreadable_file_names_it_and_writes_nothing(repo_dir, chmod):
    for i in range(12):
        write(repo_dir / "d" / f"f{i}.bin", os.urandom(1000 + i))
    secret = write(repo_dir / "d" / "sub" / "secret.bin", b"secret")
    chmod(secret, 0)
    p = dv("add", "d", cwd=repo_dir)
    assert_fails_cleanly(p, EXIT_UNREADABLE, "d/sub/secret.bin", "permission denied")
    assert not (repo_dir / "d.dv").exists()
    cache = repo_dir / ".dataver" / "cache"
    # Objects of files read before the failure may be there, complete; never the
    # folder's manifest, and nothing half-written.
    assert not any(o.endswith(".manifest") for o in cache_objects(cache))
    assert_cache_sound(cache)
    # Once the file is readable again the same command succeeds.
    os.chmod(secret, 0o644)
    p = dv("add", "d", cwd=repo_dir)
    assert p.returncode == 0, p.stderr
    assert dv("verify", cwd=repo_dir).returncode == 0


@pytest.mark.parametrize("mode", [0o000, 0o300, 0o600], ids=["no-access", "not-listable", "listable-not-searchable"])
def test_add_folder_with_unreadable_subfolder_names_it(repo_dir, chmod, mode):
    write(repo_dir / "d" / "a.bin", b"a" * 100)
    write(repo_dir / "d" / "sub" / "b.bin", b"b" * 100)
    chmod(repo_dir / "d" / "sub", mode)
    p = dv("add", "d", cwd=repo_dir)
    assert_fails_cleanly(p, EXIT_UNREADABLE, "d/sub")
    assert not (repo_dir / "d.dv").exists()
    cache = repo_dir / ".dataver" / "cache"
    assert not any(o.endswith(".manifest") for o in cache_objects(cache))
    assert_cache_sound(cache)


# -- checkout / pull into a workspace folder that is not writable ----------------------


def _tracked_project(root: Path, cli, tmp_path: Path) -> dict[str, bytes]:
    """``ds/data`` (a tracked folder with a subfolder) and ``models/model.bin`` (a
    tracked file), committed and pushed to the default remote."""
    files = {
        "ds/data/a.bin": os.urandom(3000),
        "ds/data/sub/b.bin": os.urandom(2000),
        "ds/data/sub/c.bin": os.urandom(1000),
        "models/model.bin": os.urandom(100_000),
    }
    for rel, data in files.items():
        write(root / rel, data)
    assert cli("remote", "add", "storage", str(tmp_path / "remote"), "--default", cwd=root).code == 0
    r = cli("add", "-q", "ds/data", "models/model.bin", cwd=root)
    assert r.code == 0, r.err
    assert cli("push", "-q", cwd=root).code == 0
    git_commit(root, "data")
    return files


# (what is removed from the workspace, the folder made read-only, the path that must
# be named): every case needs a write into the read-only folder.
UNWRITABLE_CASES = {
    "file-in-tracked-subfolder": ("ds/data/sub/b.bin", "ds/data/sub", "ds/data/sub/b.bin"),
    "tracked-file": ("models/model.bin", "models", "models/model.bin"),
    "tracked-folder-itself": ("ds/data", "ds", "ds/data"),
}


@pytest.mark.parametrize("command", ["checkout", "pull"])
@pytest.mark.parametrize("case", list(UNWRITABLE_CASES))
def test_checkout_into_unwritable_folder_names_the_path(repo_dir, tmp_path, cli, chmod, command, case):
    files = _tracked_project(repo_dir, cli, tmp_path)
    removed, folder, named = UNWRITABLE_CASES[case]
    target = repo_dir / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    if command == "pull":  # the fetch has to write the cache (writable) first
        shutil.rmtree(repo_dir / ".dataver" / "cache")
    before = {rel: (repo_dir / rel).read_bytes() for rel in files if (repo_dir / rel).exists()}
    chmod(repo_dir / folder, 0o555)
    p = dv(command, cwd=repo_dir)
    assert_fails_cleanly(p, EXIT_CANNOT_WRITE, named)
    # Everything else is as it was: no partial file, no temporary left behind.
    assert {rel: (repo_dir / rel).read_bytes() for rel in files if (repo_dir / rel).exists()} == before
    assert no_temporaries(repo_dir) == []
    assert_cache_sound(repo_dir / ".dataver" / "cache")
    # Writable again: the same command finishes the job.
    os.chmod(repo_dir / folder, 0o755)
    p = dv(command, cwd=repo_dir)
    assert p.returncode == 0, p.stderr
    for rel, data in files.items():
        assert (repo_dir / rel).read_bytes() == data
    assert dv("verify", cwd=repo_dir).returncode == 0


def test_checkout_with_read_only_tracked_folder_and_emptied_subfolder(repo_dir, tmp_path, cli, chmod):
    """The subfolder still exists and is writable, so the files can go back into it;
    only the tracked folder is read-only. Checkout must not crash on it: it either
    restores the files or stops with exit 11 naming what it could not write."""
    files = _tracked_project(repo_dir, cli, tmp_path)
    for rel in ("ds/data/sub/b.bin", "ds/data/sub/c.bin"):
        (repo_dir / rel).unlink()
    chmod(repo_dir / "ds" / "data", 0o555)
    p = dv("checkout", cwd=repo_dir)
    assert "Traceback" not in p.stderr, p.stderr
    if p.returncode == 0:
        for rel, data in files.items():
            assert (repo_dir / rel).read_bytes() == data
    else:
        assert_fails_cleanly(p, EXIT_CANNOT_WRITE, "ds/data")
    assert no_temporaries(repo_dir) == []


# -- a cache that is not writable ------------------------------------------------------


@pytest.mark.parametrize("lock", ["lock-writable", "all-read-only"])
@pytest.mark.parametrize("command", ["add", "pull"])
def test_unwritable_cache_is_named(repo_dir, tmp_path, cli, chmod, command, lock):
    """The cache's folders are read-only (and, for "all-read-only", its lock file too:
    a shared cache owned by someone else): exit 11 naming the cache; nothing written."""
    _tracked_project(repo_dir, cli, tmp_path)
    if command == "add":
        work = repo_dir
        cache = repo_dir / ".dataver" / "cache"
        write(work / "new.bin", b"new data" * 1000)
        args = ("add", "new.bin")
    else:  # a clone whose cache.dir is another, read-only, cache
        work = tmp_path / "clone"
        subprocess.run(["git", "clone", "-q", str(repo_dir), str(work)], check=True)
        cache = tmp_path / "shared-cache"
        assert cli("config", "cache.dir", str(cache), cwd=work).code == 0
        assert cli("fetch", "-q", "models/model.bin", cwd=work).code == 0  # cache exists, partly filled
        args = ("pull",)
    held = cache_objects(cache)
    for d in [cache, *[p for p in cache.rglob("*") if p.is_dir()]]:
        chmod(d, 0o555)
    if lock == "all-read-only":
        chmod(cache / "lock", 0o444)
    p = dv(*args, cwd=work)
    assert_fails_cleanly(p, EXIT_CANNOT_WRITE, str(cache))
    assert cache_objects(cache) == held
    assert_cache_sound(cache)
    if command == "add":
        assert not (work / "new.bin.dv").exists()
        assert (work / "new.bin").read_bytes() == b"new data" * 1000
    else:
        assert not (work / "ds" / "data").exists() and not (work / "models" / "model.bin").exists()
        assert no_temporaries(work) == []


def test_unwritable_dataver_folder_does_not_crash(repo_dir, chmod):
    """``.dataver/`` itself read-only (the stat cache cannot be written): dataver either
    works without it or stops with exit 11 naming it, never with a traceback."""
    write(repo_dir / "first.bin", b"first" * 100)
    assert dv("add", "first.bin", cwd=repo_dir).returncode == 0  # creates the lock file and state.db
    write(repo_dir / "w.bin", b"weights" * 100)
    chmod(repo_dir / ".dataver", 0o555)
    p = dv("add", "w.bin", cwd=repo_dir)
    assert "Traceback" not in p.stderr, p.stderr
    if p.returncode == 0:
        assert (repo_dir / "w.bin.dv").exists()
    else:
        assert_fails_cleanly(p, EXIT_CANNOT_WRITE, ".dataver")
        assert not (repo_dir / "w.bin.dv").exists()


def test_read_only_shared_cache_still_serves_readers(repo_dir, tmp_path, cli, chmod):
    """A team cache another user owns, read-only to us (lock file included): commands
    that only read it (status, ls, checkout out of it) work; a write is refused with
    exit 11 naming the cache."""
    files = _tracked_project(repo_dir, cli, tmp_path)
    work = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(work)], check=True)
    cache = tmp_path / "team-cache"
    assert cli("config", "cache.dir", str(cache), cwd=work).code == 0
    assert cli("pull", "-q", cwd=work).code == 0
    shutil.rmtree(work / "ds" / "data")
    for d in [cache, *[p for p in cache.rglob("*") if p.is_dir()]]:
        chmod(d, 0o555)
    chmod(cache / "lock", 0o444)
    p = dv("checkout", cwd=work)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    for rel, data in files.items():
        assert (work / rel).read_bytes() == data
    p = dv("status", cwd=work)
    assert p.returncode == 0 and "everything matches" in p.stderr, p.stderr
    p = dv("ls", "ds/data", cwd=work)
    assert p.returncode == 0 and "sub/b.bin" in p.stdout, (p.stdout, p.stderr)
    write(work / "new.bin", b"more")
    assert_fails_cleanly(dv("add", "new.bin", cwd=work), EXIT_CANNOT_WRITE, str(cache))
