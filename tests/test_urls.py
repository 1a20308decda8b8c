"""``import-url``, ``get-url``, ``update`` of an import-url and ``api.get_url``
(issue 14): data from any fsspec URL with its version evidence, against a local folder
and a real S3 endpoint on loopback (moto's server)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import git_commit, write
from history_helpers import pointer_fields

import dataver.api
from dataver.errors import ObjectsMissing, PathError


@pytest.fixture
def upstream(tmp_path) -> Path:
    root = tmp_path / "upstream"
    write(root / "table.csv", b"a,b\n1,2\n")
    write(root / "images/cat.png", b"cat" * 1000)
    write(root / "images/dog.png", b"dog" * 1000)
    return root


def test_import_url_of_a_file_and_a_folder_and_update(repo_dir, cli, upstream):
    r = cli("import-url", f"file://{upstream}/table.csv", "-o", "table.csv", "--json")
    assert r.code == 0, r.err
    f = pointer_fields((repo_dir / "table.csv.dv").read_bytes())
    assert f["source.url"] == f"file://{upstream}/table.csv" and f["source.size"] == "8" and "source.mtime" in f
    assert (repo_dir / "table.csv").read_bytes() == b"a,b\n1,2\n"
    r = cli("import-url", str(upstream / "images"), "--json")  # a plain path is a URL too
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert (out["kind"], out["files"]) == ("dir", 2)
    f = pointer_fields((repo_dir / "images.dv").read_bytes())
    assert f["source.files"] == "2" and len(f["source.listing"]) == 64
    assert (repo_dir / "images/cat.png").read_bytes() == b"cat" * 1000
    assert cli("status").out == "" and cli("verify").code == 0
    assert "/images" in (repo_dir / ".gitignore").read_text()
    # nothing changed upstream: update downloads nothing and rewrites nothing
    before = (repo_dir / "images.dv").read_bytes()
    r = cli("update", "images.dv")
    assert r.code == 0 and "up to date: images" in r.err, r.err
    assert (repo_dir / "images.dv").read_bytes() == before
    # upstream changes: a new file, and a file rewritten
    write(upstream / "images/bird.png", b"bird" * 100)
    write(upstream / "table.csv", b"a,b\n1,2\n3,4\n")
    assert cli("update", "images").code == 0 and cli("update", "table.csv.dv").code == 0
    assert sorted(p.name for p in (repo_dir / "images").iterdir()) == ["bird.png", "cat.png", "dog.png"]
    assert (repo_dir / "table.csv").read_bytes() == b"a,b\n1,2\n3,4\n"
    assert pointer_fields((repo_dir / "images.dv").read_bytes())["source.files"] == "3"
    assert cli("status").out == ""
    # the tracked data is ordinary data: a re-add by hand is refused (it is imported)
    r = cli("add", "table.csv")
    assert r.code == PathError.exit_code and "imported" in r.err


def test_import_url_refuses_and_writes_nothing(repo_dir, cli, upstream):
    write(repo_dir / "taken.csv", b"mine\n")
    r = cli("import-url", f"file://{upstream}/table.csv", "-o", "taken.csv")
    assert r.code == PathError.exit_code and "already exists" in r.err
    r = cli("import-url", f"file://{upstream}/nothere.csv")
    assert r.code == PathError.exit_code and "does not exist" in r.err
    assert not (repo_dir / "nothere.csv").exists() and not (repo_dir / "nothere.csv.dv").exists()
    assert (repo_dir / "taken.csv").read_bytes() == b"mine\n"


def test_get_url_downloads_without_tracking(tmp_path, cli, upstream):
    out = tmp_path / "out"
    out.mkdir()
    r = cli("get-url", str(upstream / "images"), str(out / "imgs"), cwd=out)
    assert r.code == 0, r.err
    assert sorted(p.name for p in (out / "imgs").iterdir()) == ["cat.png", "dog.png"]
    r = cli("get-url", str(upstream / "images"), str(out / "imgs"), cwd=out)
    assert r.code == PathError.exit_code and "already exists" in r.err


def test_import_url_from_s3_and_update_by_etag(repo_dir, cli, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_bucket.endpoint)  # s3fs (botocore) reads it
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="raw/data.bin", Body=b"version 1\n" * 100)
    url = f"s3://{s3_bucket.name}/raw/data.bin"
    r = cli("import-url", url, "-o", "data.bin")
    assert r.code == 0, r.err
    f = pointer_fields((repo_dir / "data.bin.dv").read_bytes())
    etag = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="raw/data.bin")["ETag"].strip('"')
    assert f["source.etag"] == etag and f["source.size"] == "1000"
    assert cli("update", "data.bin.dv").code == 0
    assert (repo_dir / "data.bin").read_bytes() == b"version 1\n" * 100
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="raw/data.bin", Body=b"version 2\n" * 100)  # same size
    r = cli("update", "data.bin.dv")
    assert r.code == 0 and "updated data.bin" in r.err, r.err
    assert (repo_dir / "data.bin").read_bytes() == b"version 2\n" * 100


def test_api_get_url_of_an_object_on_the_remote(repo_dir, cli, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    assert cli("remote", "add", "-d", "loose", str(store)).code == 0
    assert cli("remote", "modify", "loose", "layout", "loose").code == 0
    write(repo_dir / "model.bin", os.urandom(50_000))
    assert cli("add", "model.bin", "-q").code == 0
    git_commit(repo_dir, "model")
    with pytest.raises(ObjectsMissing, match="not on remote 'loose'"):
        dataver.api.get_url("model.bin", repo=str(repo_dir))
    assert cli("push", "-q").code == 0
    url = dataver.api.get_url("model.bin", repo=str(repo_dir))
    assert Path(url).read_bytes() == (repo_dir / "model.bin").read_bytes()
    assert url.startswith(str(store))


def test_api_get_url_of_a_packed_small_object_says_why_there_is_none(repo_dir, cli, tmp_path):
    assert cli("remote", "add", "-d", "packed", str(tmp_path / "store")).code == 0
    write(repo_dir / "tiny.txt", b"tiny\n")
    assert cli("add", "tiny.txt", "-q").code == 0 and cli("push", "-q").code == 0
    with pytest.raises(PathError, match="stored inside a pack on remote 'packed'"):
        dataver.api.get_url("tiny.txt", repo=str(repo_dir))


def test_a_folder_url_whose_names_reach_git_is_refused(repo_dir, cli):
    """Keys of a bucket anyone can write are hostile input: each passes the path check
    before anything is written (fsspec's recursive get would write them as they are)."""
    import fsspec

    mem = fsspec.filesystem("memory")
    mem.pipe("/hostile/x/ok.bin", b"fine")
    mem.pipe("/hostile/x/sub/.git/hooks/post-checkout", b"#!/bin/sh\necho owned\n")
    try:
        r = cli("import-url", "memory://hostile/x", "-o", "x")
        assert r.code != 0 and ".git" in r.err and "Traceback" not in r.err, r.err
        assert not (repo_dir / "x").exists() and not (repo_dir / "x.dv").exists()
        assert [p.name for p in repo_dir.iterdir() if "dataver-tmp" in p.name] == []
    finally:
        mem.rm("/hostile", recursive=True)


def test_update_refuses_to_replace_local_edits(repo_dir, cli, upstream):
    assert cli("import-url", str(upstream / "images"), "-q").code == 0
    write(repo_dir / "images/cat.png", b"edited here")
    write(upstream / "images/dog.png", b"a new dog")
    r = cli("update", "images.dv")
    assert r.code == 6 and "images/cat.png" in r.err, r.err
    assert (repo_dir / "images/cat.png").read_bytes() == b"edited here"
