"""Remote failures: each is one ``error:`` line and exit code 9 (remote error), never a
traceback; and an S3 endpoint that dies in the middle of a push."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import cli_proc, git_commit, write
from s3servers import MotoServer, s3_client

from dataver.errors import RemoteError
from dataver.hashing import digest_bytes, digest_manifest

OBJECT_KEY = re.compile(r"xxh3-128/([0-9a-f]{2})/([0-9a-f]{30})(\.manifest)?")


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def check_error(code: int, out: str, err: str, expected_code: int = RemoteError.exit_code) -> str:
    """Exactly one ``error:`` line, the documented exit code, no traceback; returns the line."""
    assert code == expected_code, f"exit {code}\n{out}\n{err}"
    assert "Traceback" not in out + err
    lines = error_lines(err)
    assert len(lines) == 1, err
    return lines[0]


def track_a_file(repo_dir, cli, name: str = "f.txt", data: bytes = b"some data\n") -> None:
    write(repo_dir / name, data)
    assert cli("add", name, cwd=repo_dir).code == 0


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wrong_credentials_are_denied(auth_s3_server, aws_env, repo_dir, cli):
    srv = auth_s3_server
    assert cli("remote", "add", "auth", f"s3://{srv.bucket}/p", "--default", cwd=repo_dir).code == 0
    assert cli("remote", "modify", "auth", "endpoint_url", srv.endpoint).code == 0
    track_a_file(repo_dir, cli)

    # The environment's credentials are not known to this server.
    p = cli_proc("push", cwd=repo_dir)
    line = check_error(p.returncode, p.stdout, p.stderr)
    assert "access to remote 'auth'" in line and "denied" in line, line

    # The real user's credentials, stored with --local: the same push now works (so the
    # server does check, and dataver sends what config.local holds).
    assert cli("remote", "modify", "auth", "access_key_id", srv.key_id, "--local").code == 0
    assert cli("remote", "modify", "auth", "secret_access_key", srv.secret, "--local").code == 0
    r = cli("push", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["transferred"] == 1
    assert srv.secret not in r.out + r.err and srv.key_id not in r.out + r.err

    # Right key id, wrong secret: the signature does not match.
    wrong = "wrong-secret-0123456789abcdef"
    assert cli("remote", "modify", "auth", "secret_access_key", wrong, "--local").code == 0
    for args in (("push",), ("status", "--remote", "auth")):
        r = cli(*args)
        line = check_error(r.code, r.out, r.err)
        assert "denied" in line and "'auth'" in line, line
        assert wrong not in r.out + r.err and srv.key_id not in r.out + r.err
        assert "remote modify auth access_key_id" in r.err  # the hint says what to do


def test_unknown_bucket(s3_each_bucket, repo_dir, cli):
    missing = f"{s3_each_bucket.name}-absent"
    assert cli("remote", "add", "s3", f"s3://{missing}/data", "--default", cwd=repo_dir).code == 0
    assert cli("remote", "modify", "s3", "endpoint_url", s3_each_bucket.endpoint).code == 0
    track_a_file(repo_dir, cli)
    git_commit(repo_dir, "track f.txt")  # verify --remote reads HEAD's pointers
    for args in (("push",), ("status", "--remote", "s3"), ("verify", "--remote", "s3"), ("fetch",), ("pull",)):
        r = cli(*args)
        line = check_error(r.code, r.out, r.err)
        assert missing in line and "does not exist" in line, line
    # nothing was created on the way
    assert missing not in [b["Name"] for b in s3_each_bucket.client.list_buckets()["Buckets"]]


def test_a_folder_remote_that_does_not_exist_is_exit_9_until_the_first_push(repo_dir, cli, tmp_path):
    """issue 14, defect 9: fetch and pull from a folder remote that does not exist exit 9
    with one error naming it (docs/remotes.md's exit-code table), as status -r and
    verify -r do; the first push creates it."""
    folder = tmp_path / "not-yet"
    assert cli("remote", "add", "later", str(folder), "--default").code == 0
    track_a_file(repo_dir, cli)
    git_commit(repo_dir, "track f.txt")
    for args in (("fetch",), ("pull",), ("status", "--remote", "later"), ("verify", "--remote", "later")):
        r = cli(*args)
        line = check_error(r.code, r.out, r.err)
        assert f"remote 'later' ({folder}) does not exist" in line, line
        assert "dataver push to create it" in r.err
        assert not folder.exists()
    assert cli("push", "-q").code == 0 and folder.is_dir()
    assert cli("fetch", "-q").code == 0
    assert cli("verify", "--remote", "later").code == 0


def test_unreachable_endpoint_fails_fast(aws_env, repo_dir, cli):
    port = free_port()
    assert cli("remote", "add", "s3", "s3://bucket/data", "--default", cwd=repo_dir).code == 0
    assert cli("remote", "modify", "s3", "endpoint_url", f"http://127.0.0.1:{port}").code == 0
    track_a_file(repo_dir, cli)
    start = time.monotonic()
    p = cli_proc("push", cwd=repo_dir, timeout=30)
    elapsed = time.monotonic() - start
    line = check_error(p.returncode, p.stdout, p.stderr)
    assert "cannot reach remote 's3'" in line, line
    assert elapsed < 15, f"took {elapsed:.1f} s to give up on a closed port"


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed")
def test_missing_fsspec_backend_names_the_package(repo_dir, cli):
    assert cli("remote", "add", "gcs", "gs://bucket/x", "--default", cwd=repo_dir).code == 0
    track_a_file(repo_dir, cli)
    for args in (("push",), ("status", "--remote", "gcs")):
        r = cli(*args)
        line = check_error(r.code, r.out, r.err)
        assert "gs://" in line and "gcsfs" in line, line
        assert "hint: install gcsfs" in r.err


def test_no_remote_configured(repo_dir, cli):
    track_a_file(repo_dir, cli)
    for args in (("push",), ("fetch",), ("pull",)):
        r = cli(*args, cwd=repo_dir)
        line = check_error(r.code, r.out, r.err)
        assert "no remote is configured" in line
        assert "hint: add one: dataver remote add NAME URL --default" in r.err


def test_unknown_remote_name(repo_dir, tmp_path, cli):
    assert cli("remote", "add", "origin", str(tmp_path / "r"), cwd=repo_dir).code == 0
    track_a_file(repo_dir, cli)
    for args in (("push", "-r", "nope"), ("fetch", "--remote", "nope"), ("status", "--remote", "nope")):
        r = cli(*args)
        line = check_error(r.code, r.out, r.err)
        assert "'nope' is not configured" in line, line
        assert "known remotes: origin" in r.err
    assert not (tmp_path / "r").exists()


def test_several_remotes_and_no_default(repo_dir, tmp_path, cli):
    for name in ("one", "two"):
        assert cli("remote", "add", name, str(tmp_path / name), cwd=repo_dir).code == 0
    track_a_file(repo_dir, cli)
    r = cli("push")
    line = check_error(r.code, r.out, r.err)
    assert "one, two" in line and "no default" in line
    assert "-r NAME" in r.err
    assert cli("push", "-r", "two").code == 0
    assert (tmp_path / "two").exists() and not (tmp_path / "one").exists()


# -- an endpoint that dies in the middle of a push -------------------------------------------
N_FILES = 200


def test_push_interrupted_by_server_death_resumes(aws_env, repo_dir, cli):
    """A dedicated moto server is stopped (listening socket and live connections cut)
    while a push of a few hundred objects runs; the push fails cleanly with exit 9;
    the server comes back on the same port with its data; a second push sends exactly
    what is still missing, and every object on the remote matches its name."""
    server = MotoServer().start()
    try:
        client = s3_client(server.endpoint)
        client.create_bucket(Bucket="fault")
        files = {f"many/d{i % 7}/f{i:03}.txt": f"object number {i}\n".encode() * (1 + i % 5) for i in range(N_FILES)}
        for rel, data in files.items():
            write(repo_dir / rel, data)
        assert cli("add", "many", cwd=repo_dir).code == 0
        assert cli("remote", "add", "fault", "s3://fault/objects", "--default").code == 0
        assert cli("remote", "modify", "fault", "endpoint_url", server.endpoint).code == 0
        # one object per request (the loose layout): a packed push of these is two PUTs
        assert cli("remote", "modify", "fault", "layout", "loose").code == 0
        total = N_FILES + 1  # blobs + the folder's manifest

        def count() -> int:
            return client.list_objects_v2(Bucket="fault", Prefix="objects/").get("KeyCount", 0)

        stopped_at: list[int] = []

        def kill_when_some_arrived() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                n = count()
                if n >= 20:
                    server.stop()
                    stopped_at.append(n)
                    return
                time.sleep(0.01)

        push = subprocess.Popen(
            [sys.executable, "-m", "dataver", "push"],
            cwd=repo_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killer = threading.Thread(target=kill_when_some_arrived, daemon=True)
        killer.start()
        try:
            out, err = push.communicate(timeout=60)
        finally:
            if push.poll() is None:
                push.kill()
        killer.join(timeout=5)
        assert stopped_at, "the push ended before the server could be stopped"
        assert stopped_at[0] < total, "the push had already sent everything"
        line = check_error(push.returncode, out, err)
        assert "remote 'fault'" in line and "cannot" in line, line

        server.start()  # same port; moto's state lives in this process
        assert server.endpoint.endswith(f":{server.port}")
        before = count()
        assert stopped_at[0] <= before < total

        r = cli("push", "--json", cwd=repo_dir)
        assert r.code == 0, r.err
        second = json.loads(r.out)
        assert second["transferred"] == total - before and second["present"] == before

        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="fault", Prefix="objects/"):
            keys += [o["Key"].removeprefix("objects/") for o in page.get("Contents", [])]
        expected = {f"xxh3-128/{d.hex[:2]}/{d.hex[2:]}" for d in map(digest_bytes, files.values())}
        assert len(keys) == total and len(expected) == N_FILES
        assert {k for k in keys if not k.endswith(".manifest")} == expected

        def damaged(key: str) -> str | None:
            m = OBJECT_KEY.fullmatch(key)
            if not m:
                return f"{key}: not in the object layout"
            body = client.get_object(Bucket="fault", Key=f"objects/{key}")["Body"].read()
            actual = digest_manifest(body) if m.group(3) else digest_bytes(body)
            return None if actual.hex == m.group(1) + m.group(2) else f"{key}: bytes hash to {actual.hex}"

        with ThreadPoolExecutor(8) as pool:
            assert [p for p in pool.map(damaged, keys) if p] == []
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["s3://bucket/data", "http://127.0.0.1:{port}/store"])
def test_a_closed_port_is_cannot_reach_for_every_protocol(aws_env, repo_dir, cli, url):
    """issue 14, defect 4: an HTTP remote on a closed port said "does not exist ... push to
    create it" where S3 said "cannot reach". One classification: every command that asks
    the remote says it cannot reach it, exit 9."""
    port = free_port()
    assert cli("remote", "add", "r", url.format(port=port), "--default", cwd=repo_dir).code == 0
    if url.startswith("s3"):
        assert cli("remote", "modify", "r", "endpoint_url", f"http://127.0.0.1:{port}").code == 0
    track_a_file(repo_dir, cli)
    for args in (("push",), ("fetch",), ("status", "--remote", "r")):
        r = cli(*args)
        line = check_error(r.code, r.out, r.err)
        assert r.code == 9 and "cannot reach remote 'r'" in line and "does not exist" not in r.err, (args, r.err)
