"""Remotes end to end: push, git clone, pull, against a local folder and two S3
endpoints on 127.0.0.1 (moto's server, and SeaweedFS, which checks signatures like a
real S3). One matrix: every test taking ``remote`` runs once per kind of remote, on
SeaweedFS only under ``-m slow`` (the store contract runs on it by default)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import git_commit, make_tree, write
from remote_view import FolderView, ObjectView
from s3servers import SEAWEED_SLOW, Bucket

from dataver import remotes
from dataver.hashing import digest_bytes, digest_manifest

REMOTE = "store"
OBJECT_KEY = re.compile(r"xxh3-128/([0-9a-f]{2})/([0-9a-f]{30})(\.manifest)?")


# -- the two kinds of remote, seen from outside dataver -------------------------------
class LocalSide(FolderView):
    kind = "local"

    def __init__(self, root: Path):
        super().__init__(root)
        self.url = str(root)


class S3Side(ObjectView):
    kind = "s3"

    def __init__(self, bucket: Bucket, prefix: str):
        self.bucket, self.prefix = bucket, prefix
        self.url = f"s3://{bucket.name}/{prefix}"

    def raw_keys(self) -> list[str]:
        return [k[len(self.prefix) + 1 :] for k in self.bucket.keys(self.prefix + "/")]

    def raw_read(self, key: str) -> bytes:
        return self.bucket.client.get_object(Bucket=self.bucket.name, Key=f"{self.prefix}/{key}")["Body"].read()

    def raw_write(self, key: str, data: bytes) -> None:
        self.bucket.client.put_object(Bucket=self.bucket.name, Key=f"{self.prefix}/{key}", Body=data)

    def raw_delete(self, key: str) -> None:
        self.bucket.client.delete_object(Bucket=self.bucket.name, Key=f"{self.prefix}/{key}")


def add_s3_remote(cli, repo_dir: Path, bucket: Bucket) -> S3Side:
    side = S3Side(bucket, "team/data")
    assert cli("remote", "add", REMOTE, side.url, "--default", cwd=repo_dir).code == 0
    assert cli("remote", "modify", REMOTE, "endpoint_url", bucket.endpoint, cwd=repo_dir).code == 0
    return side


@pytest.fixture(params=["local", "moto", SEAWEED_SLOW])
def remote(request, repo_dir, tmp_path, cli):
    """The repo's default remote ``store``: a folder, or a prefix in a fresh S3 bucket on
    moto, or (under ``-m slow``: the store contract runs on both servers by default) on
    SeaweedFS."""
    if request.param == "local":
        side = LocalSide(tmp_path / "remote-folder")
        assert cli("remote", "add", REMOTE, side.url, "--default", cwd=repo_dir).code == 0
        return side
    return add_s3_remote(
        cli, repo_dir, request.getfixturevalue("s3_bucket" if request.param == "moto" else "seaweed_bucket")
    )


# -- data and expectations --------------------------------------------------------------
def key_of(digest_hex: str, manifest: bool = False) -> str:
    return f"xxh3-128/{digest_hex[:2]}/{digest_hex[2:]}" + (".manifest" if manifest else "")


def blob_key(data: bytes) -> str:
    return key_of(digest_bytes(data).hex)


def pointer_field(pointer: Path, name: str) -> str:
    for line in pointer.read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{pointer} has no {name}")


def manifest_key(root: Path, tracked: str) -> str:
    pointer = root / f"{tracked}.dv"
    assert pointer_field(pointer, "kind") == "dir"
    return key_of(pointer_field(pointer, "digest"), manifest=True)


@dataclass
class Dataset:
    files: dict[str, bytes]  # workspace path -> bytes, for every tracked file
    keys: set[str]  # every object the pointers need, as remote keys


def populate(root: Path, cli, big: bool = False) -> Dataset:
    """A tracked folder with subfolders, an empty file and an executable; a file of a
    few MB (``big``; else some KB: moto is slow); a small file. ``dataver add`` of all three."""
    files = {f"data/{rel}": data for rel, data in make_tree(root / "data", 12, seed=7, max_size=3000).items()}
    files["data/sub1/deeper/empty.txt"] = b""
    files["data/tools/run.sh"] = b"#!/bin/sh\necho run\n"
    files["model.bin"] = os.urandom(3 * 1024 * 1024 + 17 if big else 40_000)
    files["notes.txt"] = b"notes\n"
    for rel, data in files.items():
        write(root / rel, data)
    (root / "data/tools/run.sh").chmod(0o755)
    r = cli("add", "data", "model.bin", "notes.txt", cwd=root)
    assert r.code == 0, r.err
    keys = {blob_key(d) for d in files.values()} | {manifest_key(root, "data")}
    return Dataset(files, keys)


def snapshot(root: Path) -> dict[str, tuple[bytes, bool]]:
    """Every file outside .git and .dataver: bytes and owner-execute bit."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) == root and d in (".git", ".dataver"))]
        for name in filenames:
            p = Path(dirpath, name)
            out[p.relative_to(root).as_posix()] = (p.read_bytes(), bool(p.stat().st_mode & stat.S_IXUSR))
    return out


def clone(repo_dir: Path, dest: Path) -> Path:
    git_commit(repo_dir, "data pointers and remote config")
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(dest)], check=True, capture_output=True)
    return dest


def cache_path(root: Path, key: str) -> Path:
    return root / ".dataver" / "cache" / key


def check_remote_layout(side, expected: set[str]) -> None:
    """Exactly the expected objects, each under the name its bytes hash to; no temporaries."""
    keys = side.keys()
    assert set(keys) == expected, f"unexpected: {set(keys) - expected}, absent: {expected - set(keys)}"
    assert len(keys) == len(expected)
    for key in keys:
        m = OBJECT_KEY.fullmatch(key)
        assert m, f"{key} is not in the object layout"
        data = side.read(key)
        actual = digest_manifest(data) if m.group(3) else digest_bytes(data)
        assert actual.hex == m.group(1) + m.group(2), f"{key} holds bytes that hash to {actual.hex}"


def out_json(r) -> dict:
    assert r.code == 0, r.err
    return json.loads(r.out)


# -- the matrix ---------------------------------------------------------------------------
def test_push_clone_pull_round_trip(remote, repo_dir, tmp_path, cli):
    ds = populate(repo_dir, cli, big=True)
    first = out_json(cli("push", "--json", cwd=repo_dir))
    assert first["transferred"] == len(ds.keys) and first["present"] == 0 and first["missing"] == []
    manifest = repo_dir / ".dataver" / "cache" / manifest_key(repo_dir, "data")  # loose: 14 files are too few to pack
    blobs = sum(len(d) for d in set(ds.files.values()))
    assert first["bytes"] == blobs + manifest.stat().st_size  # the manifest's bytes count too (issue 14, defect 8)
    check_remote_layout(remote, ds.keys)
    if remote.kind == "local":
        assert not [p for p in (remote.root / "tmp").rglob("*") if not p.is_dir()]

    second = out_json(cli("push", "--json", cwd=repo_dir))
    assert second["transferred"] == 0 and second["present"] == len(ds.keys) and second["bytes"] == 0
    assert set(remote.keys()) == ds.keys

    workdir = clone(repo_dir, tmp_path / "clone")
    assert not (workdir / "model.bin").exists()
    pulled = out_json(cli("pull", "--json", cwd=workdir))
    assert pulled["missing"] == [] and pulled["created"] == len(ds.files)
    assert pulled["transferred"] == len(ds.keys) and pulled["present"] == 0
    assert snapshot(workdir) == snapshot(repo_dir)
    for rel, data in ds.files.items():
        assert (workdir / rel).read_bytes() == data
    assert os.stat(workdir / "data/tools/run.sh").st_mode & stat.S_IXUSR
    assert (workdir / "data/sub1/deeper/empty.txt").stat().st_size == 0
    assert cli("verify", cwd=workdir).code == 0
    assert cli("status", cwd=workdir).out == ""


def test_fetch_fills_cache_and_leaves_workspace(remote, repo_dir, tmp_path, cli):
    ds = populate(repo_dir, cli)
    assert cli("push", cwd=repo_dir).code == 0
    workdir = clone(repo_dir, tmp_path / "clone")
    before = snapshot(workdir)
    r = cli("fetch", "--json", cwd=workdir)
    fetched = out_json(r)
    assert fetched["missing"] == [] and fetched["transferred"] == len(ds.keys) and fetched["present"] == 0
    assert snapshot(workdir) == before, "fetch must not touch the workspace"
    for key in ds.keys:
        assert cache_path(workdir, key).is_file(), key
    # The cache alone now restores the data (checkout never talks to a remote).
    for key in remote.keys():
        remote.delete(key)
    assert cli("checkout", cwd=workdir).code == 0
    assert snapshot(workdir) == snapshot(repo_dir)


def test_status_remote_reports_each_state(remote, repo_dir, cli):
    contents = {name: f"content of {name}\n".encode() for name in ("both.txt", "local.txt", "remote.txt", "gone.txt")}
    for name, data in contents.items():
        write(repo_dir / name, data)
    assert cli("add", *contents, cwd=repo_dir).code == 0
    r = cli("push", "--json", "both.txt", "remote.txt", cwd=repo_dir)
    assert out_json(r)["transferred"] == 2
    assert set(remote.keys()) == {blob_key(contents["both.txt"]), blob_key(contents["remote.txt"])}
    cache_path(repo_dir, blob_key(contents["remote.txt"])).unlink()  # now only on the remote
    cache_path(repo_dir, blob_key(contents["gone.txt"])).unlink()  # now nowhere

    r = cli("status", "--remote", REMOTE, cwd=repo_dir)
    assert r.code == 0, r.err
    rows = {line.split()[-1]: line.rsplit(" ", 1)[0].strip() for line in r.out.splitlines()}
    assert rows == {"local.txt": "only local:", "remote.txt": "only remote:", "gone.txt": "missing:"}

    r = cli("status", "--remote", REMOTE, "--json", cwd=repo_dir)
    records = {rec["path"]: (rec["local"], rec["remote"]) for rec in out_json(r)}
    assert records == {
        "both.txt": (True, True),
        "local.txt": (True, False),
        "remote.txt": (False, True),
        "gone.txt": (False, False),
    }
    digests = {rec["path"]: rec["digest"] for rec in json.loads(r.out)}
    assert digests["gone.txt"].endswith(digest_bytes(contents["gone.txt"]).hex)


def test_push_some_paths_and_verify_remote(remote, repo_dir, cli):
    ds = populate(repo_dir, cli)
    folder_keys = {blob_key(d) for rel, d in ds.files.items() if rel.startswith("data/")}
    folder_keys.add(manifest_key(repo_dir, "data"))
    r = out_json(cli("push", "--json", "data", cwd=repo_dir))
    assert r["transferred"] == len(folder_keys)
    assert set(remote.keys()) == folder_keys
    git_commit(repo_dir)

    # verify --remote: what was not pushed is named, with its digest
    r = cli("verify", "--remote", REMOTE, cwd=repo_dir)
    assert r.code == 1
    problems = sorted(line for line in r.out.splitlines() if line.strip())
    assert problems == [
        f"{rel}: object xxh3-128:{digest_bytes(ds.files[rel]).hex} is not on remote {REMOTE!r}"
        for rel in ("model.bin", "notes.txt")
    ]
    assert "Traceback" not in r.err

    r = out_json(cli("push", "--json", "model.bin", cwd=repo_dir))
    assert r["transferred"] == 1 and r["bytes"] == len(ds.files["model.bin"])
    assert set(remote.keys()) == folder_keys | {blob_key(ds.files["model.bin"])}
    r = out_json(cli("push", "--json", cwd=repo_dir))
    assert r["transferred"] == 1 and r["present"] == len(ds.keys) - 1
    check_remote_layout(remote, ds.keys)
    r = cli("verify", "--remote", REMOTE, cwd=repo_dir)
    assert r.code == 0, r.out + r.err

    # an object lost on the remote: verify names it (the empty file: a real object too)
    victim = "data/sub1/deeper/empty.txt"
    remote.delete(blob_key(ds.files[victim]))
    r = cli("verify", "--remote", REMOTE, cwd=repo_dir)
    assert r.code == 1
    assert [line for line in r.out.splitlines() if line.strip()] == [
        f"{victim}: object xxh3-128:{digest_bytes(b'').hex} is not on remote {REMOTE!r}"
    ]


def test_corrupt_objects_on_remote_are_refused(remote, repo_dir, tmp_path, cli):
    ds = populate(repo_dir, cli)
    assert cli("push", cwd=repo_dir).code == 0
    workdir = clone(repo_dir, tmp_path / "clone")
    tmp_dir = workdir / ".dataver" / "cache" / "tmp"

    def corrupt(key: str) -> bytes:
        good = remote.read(key)
        remote.write(key, bytes(b ^ 0x5A for b in good))  # same size, other bytes
        return good

    def fetch_is_refused(key: str, *args: str) -> None:
        r = cli("fetch", *args, cwd=workdir)
        assert r.code == 8, r.err
        errors = [line for line in r.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, r.err
        hex_ = key.split("/", 1)[1].replace("/", "").removesuffix(".manifest")
        (listed,) = [line for line in r.err.splitlines() if hex_ in line]  # the one error lists it
        assert "corrupt" in listed and f"remote '{REMOTE}'" in listed and remote.url in listed, listed
        assert not cache_path(workdir, key).exists(), "a corrupt download must not enter the cache"
        assert not tmp_dir.exists() or not any(tmp_dir.iterdir())

    # A folder's manifest: the folder cannot even be expanded (the other files still arrive).
    key = manifest_key(repo_dir, "data")
    good = corrupt(key)
    fetch_is_refused(key)
    remote.write(key, good)
    notes = cache_path(workdir, blob_key(ds.files["notes.txt"]))
    assert notes.is_file()
    notes.unlink()

    # A file's blob, fetched alone, and through pull.
    key = blob_key(ds.files["notes.txt"])
    corrupt(key)
    fetch_is_refused(key, "notes.txt")
    r = cli("pull", cwd=workdir)
    assert r.code == 8, r.err
    assert not cache_path(workdir, key).exists() and not (workdir / "notes.txt").exists()


def test_objects_missing_on_remote_are_listed_and_the_rest_arrives(remote, repo_dir, tmp_path, cli):
    ds = populate(repo_dir, cli)
    assert cli("push", cwd=repo_dir).code == 0
    victim = "data/tools/run.sh"
    remote.delete(blob_key(ds.files[victim]))
    workdir = clone(repo_dir, tmp_path / "clone")
    digest = digest_bytes(ds.files[victim]).hex
    before = snapshot(workdir)

    r = cli("fetch", cwd=workdir)
    assert r.code == 7, r.err
    assert [line.split() for line in r.err.splitlines() if victim in line] == [[victim, f"(xxh3-128:{digest})"]]
    assert len([line for line in r.err.splitlines() if line.startswith("error:")]) == 1
    for key in ds.keys - {blob_key(ds.files[victim])}:
        assert cache_path(workdir, key).is_file(), key
    assert snapshot(workdir) == before  # fetch leaves the workspace alone

    r = cli("pull", cwd=workdir)
    assert r.code == 7
    assert [line.split() for line in r.err.splitlines() if victim in line] == [[victim, f"(xxh3-128:{digest})"]]
    for rel, data in ds.files.items():
        if rel != victim:
            assert (workdir / rel).read_bytes() == data, rel
    assert not (workdir / victim).exists()


def test_gc_remote_removes_what_no_pointer_needs(remote, repo_dir, cli):
    v1, v2 = b"version 1\n" * 100, b"version 2\n" * 100
    for data in (v1, v2):
        model = repo_dir / "model.bin"
        if model.exists():
            model.unlink()
        write(model, data)
        assert cli("add", "model.bin", cwd=repo_dir).code == 0
        git_commit(repo_dir, f"model of {len(data)} bytes")
        assert out_json(cli("push", "--json", cwd=repo_dir))["transferred"] == 1
    assert set(remote.keys()) == {blob_key(v1), blob_key(v2)}

    preview = out_json(cli("gc", "-r", REMOTE, "--dry-run", "--json", cwd=repo_dir))
    assert (preview["removed"], preview["kept"]) == (1, 1)
    assert set(remote.keys()) == {blob_key(v1), blob_key(v2)}
    assert cli("gc", "-r", REMOTE, "--yes", cwd=repo_dir).code == 0
    assert set(remote.keys()) == {blob_key(v2)}  # only the old commit needed v1


def test_large_file_goes_up_in_parts_and_comes_back(s3_any_bucket, repo_dir, tmp_path, cli, monkeypatch):
    """A file of two parts and a bit goes up as a multipart upload (the ETag of a
    multipart object ends in -PARTS) and is pulled back whole. (A loose remote: a packed
    one stores such a file as chunks, tests/test_chunked.py.)"""
    part = 5 * 1024 * 1024  # S3's smallest part; s3fs goes multipart at two parts
    monkeypatch.setattr(remotes, "UPLOAD_PART_SIZE", part)
    side = add_s3_remote(cli, repo_dir, s3_any_bucket)
    assert cli("remote", "modify", REMOTE, "layout", "loose", cwd=repo_dir).code == 0
    data = os.urandom(2 * part + 12345)
    write(repo_dir / "big.bin", data)
    assert cli("add", "big.bin", cwd=repo_dir).code == 0
    pushed = out_json(cli("push", "--json", cwd=repo_dir))
    assert pushed["transferred"] == 1 and pushed["bytes"] == len(data)
    head = s3_any_bucket.client.head_object(Bucket=s3_any_bucket.name, Key=f"{side.prefix}/{blob_key(data)}")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]

    workdir = clone(repo_dir, tmp_path / "clone")
    assert cli("pull", cwd=workdir).code == 0
    assert (workdir / "big.bin").read_bytes() == data


# -- configuration -------------------------------------------------------------------------
def test_relative_local_remote_is_resolved_from_repo_root(repo_dir, tmp_path, cli):
    data = b"relative remote\n"
    write(repo_dir / "work" / "f.txt", data)
    sub = repo_dir / "work"
    assert cli("add", "f.txt", cwd=sub).code == 0
    assert cli("remote", "add", "rel", "../rel-remote", "--default", cwd=sub).code == 0
    r = cli("push", "--json", cwd=sub)
    assert out_json(r)["transferred"] == 1
    assert LocalSide(tmp_path / "rel-remote").read(blob_key(data)) == data
    assert not (repo_dir / "rel-remote").exists()  # not relative to the cwd

    (sub / "f.txt").unlink()
    for p in (repo_dir / ".dataver" / "cache").rglob("*"):
        if p.is_file():
            p.unlink()
    deeper = sub / "deeper"
    deeper.mkdir()
    r = cli("pull", cwd=deeper)
    assert r.code == 0, r.err
    assert (sub / "f.txt").read_bytes() == data


def test_credentials_stay_in_config_local_and_out_of_output(repo_dir, cli, s3_bucket):
    key_id, secret = "AKIDSECRETID0123456789", "SEKRIT-s3cr3t-value-9f8e7d"
    outputs = []

    def run(*args, cwd=repo_dir):
        r = cli(*args, cwd=cwd)
        outputs.append(r.out + r.err)
        return r

    assert run("remote", "add", REMOTE, f"s3://{s3_bucket.name}/p", "--default").code == 0
    assert run("remote", "modify", REMOTE, "endpoint_url", s3_bucket.endpoint).code == 0
    assert run("remote", "modify", REMOTE, "access_key_id", key_id, "--local").code == 0
    assert run("remote", "modify", REMOTE, "secret_access_key", secret, "--local").code == 0
    write(repo_dir / "d" / "x.bin", b"x" * 100)
    assert run("add", "d").code == 0
    assert run("push", "--json").code == 0
    listed = run("remote", "list")
    assert listed.code == 0 and "***" in listed.out
    as_json = json.loads(run("remote", "list", "--json").out)
    assert as_json[0]["secret_access_key"] == "***" and as_json[0]["access_key_id"] == "***"
    assert run("status", "--remote", REMOTE).code == 0
    git_commit(repo_dir)
    assert run("verify", "--remote", REMOTE).code == 0
    # Pull into an emptied workspace and cache.
    for p in sorted((repo_dir / ".dataver" / "cache").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (repo_dir / "d" / "x.bin").unlink()
    assert run("pull").code == 0
    assert (repo_dir / "d" / "x.bin").read_bytes() == b"x" * 100

    for text in outputs:
        assert secret not in text and key_id not in text
    shared = (repo_dir / ".dataver" / "config").read_text()
    local = (repo_dir / ".dataver" / "config.local").read_text()
    assert secret not in shared and key_id not in shared
    assert secret in local and key_id in local
    committed = subprocess.run(
        ["git", "grep", "-I", "-e", secret, "-e", key_id, "HEAD"], cwd=repo_dir, capture_output=True, text=True
    )
    assert committed.returncode == 1, committed.stdout  # no match anywhere in the commit
    tracked = subprocess.run(["git", "ls-files"], cwd=repo_dir, capture_output=True, text=True).stdout
    assert ".dataver/config.local" not in tracked.split()


@pytest.mark.parametrize("key", ["secret_access_key", "access_key_id", "session_token", "password"])
def test_credential_without_local_is_refused(repo_dir, tmp_path, cli, key):
    assert cli("remote", "add", REMOTE, str(tmp_path / "r"), cwd=repo_dir).code == 0
    shared_before = (repo_dir / ".dataver" / "config").read_text()
    r = cli("remote", "modify", REMOTE, key, "hunter2-value", cwd=repo_dir)
    assert r.code == 3
    assert [line for line in r.err.splitlines() if line.startswith("error:")] and "--local" in r.err
    assert "hunter2-value" not in r.err + r.out
    assert (repo_dir / ".dataver" / "config").read_text() == shared_before
    assert not (repo_dir / ".dataver" / "config.local").exists()


def test_remote_list_remove_default(repo_dir, tmp_path, cli):
    r = cli("remote", "list", cwd=repo_dir)
    assert r.code == 0 and r.out == ""
    assert cli("remote", "add", "alpha", str(tmp_path / "a"), "--default").code == 0
    assert cli("remote", "add", "beta", str(tmp_path / "b")).code == 0
    r = cli("remote", "add", "beta", str(tmp_path / "c"))
    assert r.code == 3 and "already exists" in r.err
    assert cli("remote", "add", "bad name!", str(tmp_path / "c")).code == 3

    r = cli("remote", "list")
    lines = r.out.splitlines()
    assert lines == [f"alpha (default)\t{tmp_path / 'a'}", f"beta\t{tmp_path / 'b'}"]
    rows = json.loads(cli("remote", "list", "--json").out)
    assert rows == [
        {"name": "alpha", "default": True, "url": str(tmp_path / "a")},
        {"name": "beta", "default": False, "url": str(tmp_path / "b")},
    ]
    assert cli("remote", "default").out.strip() == "alpha"
    assert cli("remote", "default", "beta").code == 0
    assert cli("remote", "default").out.strip() == "beta"
    assert cli("remote", "default", "gamma").code == 3

    # push goes to the default
    write(repo_dir / "f.txt", b"to beta\n")
    assert cli("add", "f.txt").code == 0
    assert cli("push").code == 0
    assert blob_key(b"to beta\n") in LocalSide(tmp_path / "b").keys() and not (tmp_path / "a").exists()

    assert cli("remote", "remove", "beta").code == 0
    assert "beta" not in cli("remote", "list").out
    assert blob_key(b"to beta\n") in LocalSide(tmp_path / "b").keys(), "remove must not touch stored objects"
    assert cli("remote", "default").out.strip() == "alpha"  # the only one left
    assert cli("remote", "remove", "beta").code == 3
    assert cli("remote", "remove", "alpha").code == 0
    r = cli("remote", "default")
    assert r.code == 9 and "remote add" in r.err
    assert '[remote "' not in (repo_dir / ".dataver" / "config").read_text()
