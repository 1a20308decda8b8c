"""gc keeps exactly what each retention option promises, on the cache and on a remote.

History (``data/`` a tracked folder, ``model.bin`` a tracked file from m2 on)::

    m1 (tag v1) - m2 - m3 (annotated tag v2) - m4   <- main
                         \\- f1                    <- feature

plus uncommitted workspace pointers (w) and an orphan (o): a version that was added
and pushed but never committed. Each commit has a blob of its own, so each option's
keep set differs. After gc, every kept revision must still check out byte for byte,
and every other one must fail with exit 7 naming an object gc removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import cli_proc, git_commit, write
from history_helpers import blob, dv, dv_ok, git, git_identity, object_files, pointer_fields, snapshot

COMMON = b"shared by every version\n" * 20
MODEL2, MODEL4 = b"model v2 " * 100, b"model v4 " * 120


@dataclass
class Version:
    name: str
    rev: str  # how to name it (sha, or None for the workspace)
    files: dict[str, bytes]
    objects: set[tuple[str, bool]]


@dataclass
class Base:
    path: Path  # holds repo/ and store/ (the remote is ../store, relative)
    versions: dict[str, Version]  # m1..m4, f1, w (workspace), o (orphan)


def _set_data(root: Path, files: dict[str, bytes]) -> None:
    shutil.rmtree(root / "data", ignore_errors=True)
    for rel, data in files.items():
        write(root / rel, data)


def _record(root: Path, name: str, rev: str) -> Version:
    """The workspace's tracked files and the objects its pointers need (blobs, manifests)."""
    files = snapshot(root)
    objs = {blob(v) for v in files.values()}
    for p in root.glob("*.dv"):
        fields = pointer_fields(p.read_bytes())
        if fields["kind"] == "dir":
            objs.add((fields["digest"], True))
    return Version(name, rev, files, objs)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    with git_identity(tmp_path_factory):
        path = tmp_path_factory.mktemp("gc-base")
        root = path / "repo"
        root.mkdir()
        git("init", "--quiet", "--initial-branch=main", cwd=root)
        dv_ok("init", cwd=root)
        dv_ok("remote", "add", "storage", "../store", "--default", cwd=root)
        versions: dict[str, Version] = {}

        def commit(name: str, model: bytes | None, tag: str | None = None, annotated: bool = False) -> None:
            files = {"data/common.txt": COMMON, f"data/{name}.bin": f"only in {name}\n".encode() * 10}
            _set_data(root, files)
            if model is not None:
                write(root / "model.bin", model)
            dv_ok("add", "data", *(["model.bin"] if model is not None else []), cwd=root)
            sha = git_commit(root, name)
            if tag:
                git("tag", *(["-a", "-m", tag] if annotated else []), tag, sha, cwd=root)
            versions[name] = _record(root, name, sha)

        commit("m1", None, "v1")
        commit("m2", MODEL2)
        commit("m3", MODEL2, "v2", annotated=True)
        git("checkout", "--quiet", "-b", "feature", cwd=root)
        commit("f1", MODEL2)
        git("checkout", "--quiet", "main", cwd=root)
        commit("m4", MODEL4)
        for v in list(versions.values()):
            dv_ok("push", "--rev", v.rev, cwd=root)
        # an orphan: added and pushed, never committed
        _set_data(root, {"data/common.txt": COMMON, "data/orphan.bin": b"orphan\n" * 30})
        dv_ok("add", "data", cwd=root)
        dv_ok("push", cwd=root)
        versions["o"] = _record(root, "o", "")
        # the workspace: HEAD (m4) plus an uncommitted change, added but not committed
        _set_data(root, {**{k: v for k, v in versions["m4"].files.items() if k.startswith("data/")}})
        write(root / "data/w.bin", b"workspace only\n" * 7)
        dv_ok("add", "data", cwd=root)
        dv_ok("push", cwd=root)
        versions["w"] = _record(root, "w", "")
        all_objects = set().union(*(v.objects for v in versions.values()))
        assert object_files(root / ".dataver/cache") == all_objects
        assert object_files(path / "store") == all_objects
        yield Base(path, versions)


@pytest.fixture
def case(base, tmp_path) -> Path:
    """A private copy of the base repository and its remote; returns the repo root."""
    shutil.copytree(base.path, tmp_path / "case", symlinks=True)
    return tmp_path / "case" / "repo"


KEEPS = {
    "workspace": ([], []),
    "branches": (["--all-branches"], ["m4", "f1"]),
    "tags": (["--all-tags"], ["m1", "m3"]),
    "commits": (["--all-commits"], ["m1", "m2", "m3", "m4", "f1"]),
}
COMMITS = ["m1", "m2", "m3", "m4", "f1"]


def keep_for(base: Base, kept: list[str]) -> set[tuple[str, bool]]:
    return set().union(*(base.versions[n].objects for n in ["w", *kept]))


def everything(base: Base) -> set[tuple[str, bool]]:
    return set().union(*(v.objects for v in base.versions.values()))


def assert_checks_out(root: Path, v: Version, pull: bool) -> None:
    args = ("pull" if pull else "checkout", *(["--rev", v.rev] if v.rev else []))
    dv_ok(*args, cwd=root)
    got = snapshot(root, "data")
    assert got == {k: b for k, b in v.files.items() if k.startswith("data/")}, v.name
    if "model.bin" in v.files:
        assert (root / "model.bin").read_bytes() == v.files["model.bin"]


def assert_cannot_check_out(root: Path, v: Version, keep: set, pull: bool) -> None:
    lost = v.objects - keep
    assert lost, f"{v.name} should have lost something"
    r = dv("pull" if pull else "checkout", "--rev", v.rev, cwd=root)
    assert r.code == 7, (v.name, r.err)
    manifest = next(hex_ for hex_, is_manifest in v.objects if is_manifest)
    if (manifest, True) in lost:
        assert manifest in r.err, (v.name, r.err)
    else:
        assert any(hex_ in r.err for hex_, _ in lost), (v.name, r.err)
    if v.files.get("model.bin") and blob(v.files["model.bin"]) in lost:
        assert blob(v.files["model.bin"])[0] in r.err


@pytest.mark.parametrize("mode", list(KEEPS))
def test_gc_cache_keeps_exactly_what_the_option_promises(base, case, mode):
    opts, kept = KEEPS[mode]
    keep = keep_for(base, kept)
    cache = case / ".dataver/cache"
    before = object_files(cache)
    assert before == everything(base)
    preview = json.loads(dv_ok("gc", *opts, "--dry-run", "--json", cwd=case).out)
    assert (preview["removed"], preview["kept"]) == (len(before - keep), len(keep))
    assert object_files(cache) == before  # --dry-run removes nothing
    r = json.loads(dv_ok("gc", *opts, "--yes", "--json", cwd=case).out)
    assert (r["removed"], r["kept"]) == (len(before - keep), len(keep))
    assert object_files(cache) == keep  # nothing it promised is gone, nothing else is left
    assert object_files(case.parent / "store") == everything(base)  # the remote is untouched
    for name in kept:
        assert_checks_out(case, base.versions[name], pull=False)
    for name in sorted(set(COMMITS) - set(kept)):
        assert_cannot_check_out(case, base.versions[name], keep, pull=False)
    assert_checks_out(case, base.versions["w"], pull=False)  # the workspace pointers, always kept


@pytest.mark.parametrize("mode", list(KEEPS))
def test_gc_remote_keeps_exactly_what_the_option_promises(base, case, mode):
    opts, kept = KEEPS[mode]
    keep = keep_for(base, kept)
    store = case.parent / "store"
    cache = case / ".dataver/cache"
    preview = json.loads(dv_ok("gc", *opts, "--remote", "storage", "--dry-run", "--json", cwd=case).out)
    assert (preview["removed"], preview["kept"]) == (len(everything(base) - keep), len(keep))
    assert object_files(store) == everything(base)
    dv_ok("gc", *opts, "--remote", "storage", "--yes", cwd=case)
    assert object_files(store) == keep
    assert object_files(cache) == everything(base)  # gc --remote leaves the cache alone
    # from now on only the remote can serve: a fresh clone beside it (../store)
    fresh = case.parent / "clone"
    git("clone", "--quiet", str(case), str(fresh), cwd=case.parent)
    for name in kept:
        assert_checks_out(fresh, base.versions[name], pull=True)
    for name in sorted(set(COMMITS) - set(kept)):
        assert_cannot_check_out(fresh, base.versions[name], keep, pull=True)
    # and the uncommitted workspace pointers, pulled into an emptied workspace and cache
    shutil.rmtree(cache)
    shutil.rmtree(case / "data")
    (case / "model.bin").unlink()
    assert_checks_out(case, base.versions["w"], pull=True)


@pytest.mark.parametrize("where", [[], ["--remote", "storage"]], ids=["cache", "remote"])
def test_gc_without_yes_and_no_tty_refuses(base, case, where):
    before = (object_files(case / ".dataver/cache"), object_files(case.parent / "store"))
    p = cli_proc("gc", "--all-tags", *where, cwd=case, stdin=subprocess.DEVNULL)
    assert p.returncode == 6, p.stderr
    assert "--yes" in p.stderr and "would remove" in p.stderr
    assert (object_files(case / ".dataver/cache"), object_files(case.parent / "store")) == before
    # with nothing to remove there is nothing to confirm
    dv_ok("gc", "--all-commits", *where, "--yes", cwd=case)
    p = cli_proc("gc", "--all-commits", *where, cwd=case, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr


def test_gc_all_commits_keeps_both_sides_of_a_merge(repo_dir, cli):
    """Every commit reachable through any parent of a merge is kept, whatever the
    order in which branches are walked and however commit times interleave."""
    root = repo_dir
    versions = {}

    def commit(name: str, folder: str, when: int) -> None:
        write(root / f"{folder}/{name}.bin", f"{name}\n".encode() * 40)
        assert cli("add", folder).code == 0
        git("add", "-A", cwd=root)
        env = {**os.environ, "GIT_AUTHOR_DATE": f"{when} +0000", "GIT_COMMITTER_DATE": f"{when} +0000"}
        git("commit", "--quiet", "-m", name, cwd=root, env=env)
        versions[name] = _record(root, name, git("rev-parse", "HEAD", cwd=root).stdout.strip())

    git("checkout", "--quiet", "-b", "main", cwd=root)
    write(root / "right/base.bin", b"right side\n")
    assert cli("add", "right").code == 0
    commit("a", "left", 1_000_000_000)
    commit("b", "left", 1_000_001_000)  # main moves on in left/ ...
    commit("c", "left", 1_000_002_000)
    git("checkout", "--quiet", "-b", "feature", versions["a"].rev, cwd=root)
    assert cli("checkout", "--force").code == 0
    commit("d", "right", 1_000_003_000)  # ... feature in right/, so the merge is clean
    commit("e", "right", 1_000_004_000)  # newer than c: a walk from the merge meets e before c
    git("checkout", "--quiet", "main", cwd=root)
    assert cli("checkout", "--force").code == 0
    env = {**os.environ, "GIT_AUTHOR_DATE": "1000005000 +0000", "GIT_COMMITTER_DATE": "1000005000 +0000"}
    git("merge", "--quiet", "--no-ff", "feature", "-m", "merge", cwd=root, env=env)
    assert cli("checkout").code == 0
    versions["m"] = _record(root, "m", git("rev-parse", "HEAD", cwd=root).stdout.strip())
    left = {k: v for k, v in versions["c"].files.items() if k.startswith("left/")}
    right = {k: v for k, v in versions["e"].files.items() if k.startswith("right/")}
    assert versions["m"].files == left | right
    # an orphan version, never committed, so gc has something to remove
    write(root / "left/orphan.bin", b"orphan")
    assert cli("add", "left").code == 0
    orphan = _record(root, "o", "")
    (root / "left/orphan.bin").unlink()
    assert cli("add", "left").code == 0
    keep = set().union(*(v.objects for v in versions.values()))
    assert orphan.objects - keep
    r = cli("gc", "--all-commits", "--yes", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["revisions"] == 6
    assert object_files(root / ".dataver/cache") == keep
    for v in versions.values():
        assert cli("checkout", "--rev", v.rev).code == 0, v.name
        assert snapshot(root) == v.files, v.name
