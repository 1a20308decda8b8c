"""A bad object does not stop the rest.

When pull, fetch or checkout meets an object that is missing or corrupt (on the remote
or in the cache), every other file is still restored; then one error lists every file
that was not, with the reason, and exits 8 if any object is corrupt, else 7. Nothing
corrupt gets a name in the cache, and a file that could not be written is left as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import git_commit, make_tree, write
from s3servers import SEAWEED_SLOW
from test_remotes import REMOTE, LocalSide, S3Side, blob_key, cache_path, clone, manifest_key, snapshot

from dataver.errors import IntegrityError, ObjectsMissing
from dataver.hashing import CHUNK_SIZE, digest_bytes

CORRUPT = "data/sub0/f3.bin"  # a file in a subfolder of the tracked folder
LOST = "notes.txt"  # a tracked single file


def pushed(repo_dir: Path, cli, side, big: bool = True) -> dict[str, bytes]:
    """A folder of 10 files and 2 single files (one larger than a hashing chunk unless
    not ``big``), added, pushed to ``side``; returns workspace path -> bytes."""
    files = {f"data/{rel}": data for rel, data in make_tree(repo_dir / "data", 10, seed=11, max_size=3000).items()}
    files["model.bin"] = os.urandom(CHUNK_SIZE + 4096 if big else 30_000)
    files[LOST] = b"some notes\n"
    for rel, data in files.items():
        write(repo_dir / rel, data)
    assert len(set(files.values())) == len(files)  # one object per file
    assert cli("add", "data", "model.bin", LOST, cwd=repo_dir).code == 0
    r = cli("push", cwd=repo_dir)
    assert r.code == 0, r.err
    return files


def local_remote(repo_dir: Path, tmp_path: Path, cli) -> LocalSide:
    side = LocalSide(tmp_path / "remote")
    assert cli("remote", "add", REMOTE, side.url, "--default", cwd=repo_dir).code == 0
    return side


def corrupt_on(side, data: bytes) -> None:
    """Other bytes of the same size under the object's name."""
    side.write(blob_key(data), bytes(b ^ 0x5A for b in data) or b"x")


def the_error(err: str) -> tuple[str, dict[str, str], str]:
    """The one error: its first line, the files it lists (path -> line), its hint."""
    lines = err.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, err
    listed = {}
    for line in lines[starts[0] + 1 :]:
        if not line.startswith("  "):
            break
        listed[line.split()[0]] = line
    hints = [line for line in lines if line.startswith("hint:")]
    return lines[starts[0]], listed, hints[0] if hints else ""


def restored_except(workdir: Path, files: dict[str, bytes], bad: set[str]) -> None:
    for rel, data in files.items():
        if rel in bad:
            assert not (workdir / rel).exists(), rel
        else:
            assert (workdir / rel).read_bytes() == data, rel


def no_bad_object_kept(workdir: Path, files: dict[str, bytes], bad: set[str]) -> None:
    for rel in bad:
        assert not cache_path(workdir, blob_key(files[rel])).exists(), rel
    tmp = workdir / ".dataver" / "cache" / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())


# -- (1) a corrupt remote object: pull restores every other file -------------------------
@pytest.mark.parametrize("kind", ["local", "moto", SEAWEED_SLOW])
def test_pull_restores_everything_but_a_file_corrupt_on_the_remote(kind, request, repo_dir, tmp_path, cli):
    if kind == "local":
        side = local_remote(repo_dir, tmp_path, cli)
    else:
        bucket = request.getfixturevalue("s3_bucket" if kind == "moto" else "seaweed_bucket")
        side = S3Side(bucket, "team/data")
        assert cli("remote", "add", REMOTE, side.url, "--default", cwd=repo_dir).code == 0
        assert cli("remote", "modify", REMOTE, "endpoint_url", bucket.endpoint, cwd=repo_dir).code == 0
    files = pushed(repo_dir, cli, side, big=kind == "local")
    workdir = clone(repo_dir, tmp_path / "clone")
    corrupt_on(side, files[CORRUPT])

    r = cli("pull", cwd=workdir)
    assert r.code == IntegrityError.exit_code == 8, r.err
    first, listed, hint = the_error(r.err)
    assert first == "error: 1 file(s) not restored (1 corrupt):"
    assert list(listed) == [CORRUPT]
    line = listed[CORRUPT]
    assert str(digest_bytes(files[CORRUPT])) in line and "corrupt" in line
    assert f"remote '{REMOTE}' ({side.url})" in line, line
    assert "dataver push" in hint
    restored_except(workdir, files, {CORRUPT})
    no_bad_object_kept(workdir, files, {CORRUPT})

    # Once the remote holds a good copy again, the same pull finishes the job.
    side.write(blob_key(files[CORRUPT]), files[CORRUPT])
    assert cli("pull", cwd=workdir).code == 0
    assert snapshot(workdir) == snapshot(repo_dir)


# -- (2) a missing remote object -----------------------------------------------------------
def test_pull_restores_everything_but_a_file_missing_from_the_remote(repo_dir, tmp_path, cli):
    side = local_remote(repo_dir, tmp_path, cli)
    files = pushed(repo_dir, cli, side)
    side.delete(blob_key(files[LOST]))
    workdir = clone(repo_dir, tmp_path / "clone")

    r = cli("pull", cwd=workdir)
    assert r.code == ObjectsMissing.exit_code == 7, r.err
    first, listed, hint = the_error(r.err)
    assert first == "error: 1 object(s) missing from the cache and the remote:"
    assert listed[LOST].split() == [LOST, f"({digest_bytes(files[LOST])})"]
    assert list(listed) == [LOST] and "dataver push" in hint
    restored_except(workdir, files, {LOST})


# -- (3) both at once: one message, the worse exit code ------------------------------------
def test_pull_lists_corrupt_and_missing_files_in_one_error(repo_dir, tmp_path, cli):
    side = local_remote(repo_dir, tmp_path, cli)
    files = pushed(repo_dir, cli, side)
    workdir = clone(repo_dir, tmp_path / "clone")
    corrupt_on(side, files["model.bin"])  # larger than a chunk: downloaded through a file
    corrupt_on(side, files[CORRUPT])  # small: verified in memory
    side.delete(blob_key(files[LOST]))

    r = cli("pull", cwd=workdir)
    assert r.code == 8, r.err
    first, listed, hint = the_error(r.err)
    assert first == "error: 3 file(s) not restored (2 corrupt, 1 missing):"
    assert sorted(listed) == sorted([CORRUPT, "model.bin", LOST])
    for rel in (CORRUPT, "model.bin"):
        assert f"corrupt on remote '{REMOTE}'" in listed[rel], listed[rel]
    assert listed[LOST].endswith("missing from the cache and the remote"), listed[LOST]
    assert "dataver push" in hint and "delete each damaged copy on the remote" in hint
    restored_except(workdir, files, {CORRUPT, "model.bin", LOST})
    no_bad_object_kept(workdir, files, {CORRUPT, "model.bin", LOST})


def test_pull_lists_every_file_of_a_shared_corrupt_object(repo_dir, tmp_path, cli):
    """Two files with the same bytes are one object: both are listed, not one."""
    side = local_remote(repo_dir, tmp_path, cli)
    files = pushed(repo_dir, cli, side)
    write(repo_dir / "copy.txt", files[LOST])
    assert cli("add", "copy.txt").code == 0
    workdir = clone(repo_dir, tmp_path / "clone")
    corrupt_on(side, files[LOST])

    r = cli("pull", cwd=workdir)
    assert r.code == 8, r.err
    _, listed, _ = the_error(r.err)
    assert sorted(listed) == ["copy.txt", LOST]
    assert all("corrupt on remote" in line for line in listed.values())
    restored_except(workdir, files, {LOST})


def test_pull_restores_the_rest_when_a_folder_manifest_is_corrupt(repo_dir, tmp_path, cli):
    side = local_remote(repo_dir, tmp_path, cli)
    files = pushed(repo_dir, cli, side)
    workdir = clone(repo_dir, tmp_path / "clone")
    key = manifest_key(repo_dir, "data")
    side.write(key, b"not a manifest\n")

    r = cli("pull", cwd=workdir)
    assert r.code == 8, r.err
    _, listed, _ = the_error(r.err)
    assert list(listed) == ["data"] and "corrupt on remote" in listed["data"]
    restored_except(workdir, files, {rel for rel in files if rel.startswith("data/")})
    assert not cache_path(workdir, key).exists()


# -- (4) a corrupt cache object: checkout writes the rest, leaves that file alone ---------
def test_checkout_goes_on_past_a_corrupt_cache_object(repo_dir, cli):
    assert cli("config", "cache.link", "copy").code == 0  # every placement verifies
    v1 = make_tree(repo_dir / "data", 10, seed=5)
    write(repo_dir / LOST, "v1 notes\n")
    assert cli("add", "data", LOST).code == 0
    old = git_commit(repo_dir, "v1")
    victim, other = "data/f0.bin", "data/f2.bin"
    write(repo_dir / victim, b"v2 of the victim")
    write(repo_dir / other, b"v2 of another file")
    write(repo_dir / LOST, "v2 notes\n")
    assert cli("add", "data", LOST).code == 0
    git_commit(repo_dir, "v2")
    obj = cache_path(repo_dir, blob_key(v1["f0.bin"]))
    obj.chmod(0o644)
    obj.write_bytes(bytes(b ^ 1 for b in v1["f0.bin"]) or b"x")
    os.unlink(repo_dir / "data" / "f4.bin")  # also to be written back

    r = cli("checkout", "--rev", old)
    assert r.code == 8, r.err
    first, listed, hint = the_error(r.err)
    assert first == "error: 1 file(s) not restored (1 corrupt):"
    assert list(listed) == [victim] and "corrupt in the cache" in listed[victim] and str(obj) in listed[victim]
    assert "dataver fetch --repair" in hint
    assert (repo_dir / victim).read_bytes() == b"v2 of the victim"  # untouched
    for rel, data in v1.items():
        if f"data/{rel}" != victim:
            assert (repo_dir / "data" / rel).read_bytes() == data, rel
    assert (repo_dir / LOST).read_text() == "v1 notes\n"
    assert not [p for p in (repo_dir / "data").rglob(".*dataver-tmp*")]
    assert obj.exists()  # kept, as any corrupt object is, until fetch --repair replaces it

    # The stat cache did not record the victim as holding v1's bytes: with v1's
    # pointers back in place, status still sees the file as modified.
    subprocess.run(["git", "checkout", "-q", old, "--", "data.dv", f"{LOST}.dv"], cwd=repo_dir, check=True)
    r = cli("status")
    assert r.out.splitlines() == [f"modified:   {victim}"], r.out

    # --json carries the failure too
    r = cli("checkout", "--json")
    assert r.code == 8
    out = json.loads(r.out)
    assert out["missing"] == []
    assert out["failed"] == [
        {"path": victim, "digest": str(digest_bytes(v1["f0.bin"])), "reason": "corrupt-cache", "where": str(obj)}
    ]


def test_checkout_goes_on_past_a_corrupt_cached_manifest(repo_dir, cli):
    """A folder whose manifest is damaged in the cache costs that folder only; the
    other targets are still written, and the folder's files are left as they are."""
    v1 = make_tree(repo_dir / "data", 6, seed=7)
    write(repo_dir / LOST, "notes\n")
    assert cli("add", "data", LOST).code == 0
    key = manifest_key(repo_dir, "data")
    obj = cache_path(repo_dir, key)
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes().replace(b"dataver-manifest", b"dataver-manifesT"))
    os.unlink(repo_dir / LOST)
    os.unlink(repo_dir / "data" / "f0.bin")

    r = cli("checkout")
    assert r.code == 8, r.err
    first, listed, hint = the_error(r.err)
    assert list(listed) == ["data"] and "corrupt in the cache" in listed["data"], r.err
    assert "dataver fetch --repair" in hint
    assert (repo_dir / LOST).read_text() == "notes\n"  # the other target was still written
    assert not (repo_dir / "data" / "f0.bin").exists()  # the folder was left as it was
    assert (repo_dir / "data" / "f2.bin").read_bytes() == v1["f2.bin"]


# -- (5) --json ------------------------------------------------------------------------------
def test_json_output_lists_each_failure_with_its_reason(repo_dir, tmp_path, cli):
    side = local_remote(repo_dir, tmp_path, cli)
    files = pushed(repo_dir, cli, side, big=False)
    workdir = clone(repo_dir, tmp_path / "clone")
    corrupt_on(side, files[CORRUPT])
    side.delete(blob_key(files[LOST]))
    where = f"remote '{REMOTE}' ({side.url})"
    expected = [
        {"path": CORRUPT, "digest": str(digest_bytes(files[CORRUPT])), "reason": "corrupt-remote", "where": where},
        {"path": LOST, "digest": str(digest_bytes(files[LOST])), "reason": "missing", "where": ""},
    ]

    for command in ("fetch", "pull"):
        r = cli(command, "--json", cwd=workdir)
        assert r.code == 8, r.err
        out = json.loads(r.out)
        assert out["failed"] == expected, out
        assert out["missing"] == [{"path": LOST, "digest": str(digest_bytes(files[LOST]))}]
    assert out["created"] == len(files) - 2
    restored_except(workdir, files, {CORRUPT, LOST})


# -- (6) fetch alone ---------------------------------------------------------------------------
def test_fetch_brings_every_other_object_into_the_cache(repo_dir, tmp_path, cli):
    side = local_remote(repo_dir, tmp_path, cli)
    files = pushed(repo_dir, cli, side)
    workdir = clone(repo_dir, tmp_path / "clone")
    corrupt_on(side, files[CORRUPT])
    side.delete(blob_key(files[LOST]))
    before = snapshot(workdir)

    r = cli("fetch", cwd=workdir)
    assert r.code == 8, r.err
    _, listed, _ = the_error(r.err)
    assert sorted(listed) == [CORRUPT, LOST]
    for rel, data in files.items():
        assert cache_path(workdir, blob_key(data)).is_file() == (rel not in (CORRUPT, LOST)), rel
    no_bad_object_kept(workdir, files, {CORRUPT, LOST})
    assert snapshot(workdir) == before  # the workspace is not touched

    # Only missing objects left: exit 7.
    side.write(blob_key(files[CORRUPT]), files[CORRUPT])
    r = cli("fetch", cwd=workdir)
    assert r.code == 7, r.err
    _, listed, _ = the_error(r.err)
    assert list(listed) == [LOST]
