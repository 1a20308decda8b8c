"""The SeaweedFS test server itself: it stays on loopback with its telemetry off, it
checks signatures (a wrong secret is refused, which moto's server never does), it fails
loudly when it cannot start, and a test session leaves no ``weed`` process or file behind.
The S3 behaviour of dataver against it is tested in test_remotes.py and friends."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import write
from s3servers import FAKE_KEY_ID, WEED_ENV_VAR, SeaweedServer, SeaweedStartError, find_weed

from dataver.errors import RemoteError

TESTS = Path(__file__).resolve().parent
# /proc/net addresses: IPv4 127.0.0.0/8 (little-endian hex, first byte last), IPv6 ::1,
# IPv4-mapped 127.x, and the all-zero remote address of a listening socket.
_LOOPBACK_V6 = "00000000000000000000000001000000"
_MAPPED_127 = "0000000000000000FFFF0000"


def _is_loopback(hex_addr: str) -> bool:
    if len(hex_addr) == 8:
        return hex_addr.endswith("7F") or hex_addr == "00000000"
    return hex_addr in (_LOOPBACK_V6, "0" * 32) or (hex_addr.startswith(_MAPPED_127) and hex_addr.endswith("7F"))


def _inet_sockets(pid: int) -> list[tuple[str, str, str]]:
    """(table, local address, remote address) of every TCP/UDP socket the process holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    out.append((table, fields[1], fields[2]))
    return out


def test_seaweedfs_stays_on_loopback_with_telemetry_off(seaweed_server):
    assert "-master.telemetry=false" in seaweed_server.command
    # With telemetry on, weed logs at start that it will report to telemetry.seaweedfs.com
    # ("Reporting anonymous cluster statistics to ..."); with it off, nothing.
    log = Path(seaweed_server.log_path).read_text(errors="replace")
    port = str(seaweed_server.ports["s3"])
    assert any("S3" in line and port in line for line in log.splitlines())  # this server's log
    assert "anonymous cluster statistics" not in log and "telemetry.seaweedfs.com" not in log
    sockets = _inet_sockets(seaweed_server.pid)
    s3_port = f"{seaweed_server.ports['s3']:04X}"
    assert any(local.endswith(f":{s3_port}") for _, local, _ in sockets), sockets
    outside = [(t, lo, rem) for t, lo, rem in sockets if not (_is_loopback(lo[:-5]) and _is_loopback(rem[:-5]))]
    assert outside == [], f"weed holds sockets beyond 127.0.0.1: {outside}"
    assert os.getpgid(seaweed_server.pid) == seaweed_server.pid != os.getpgid(0)  # its own group


def test_a_wrong_secret_is_denied(seaweed_bucket, repo_dir, cli):
    """SeaweedFS checks each request's SigV4 signature against its identity file: the
    right key with a wrong secret, or an unknown key, is refused, and dataver says so in
    one line (exit 9) naming the remote, without printing the secret."""
    url = f"s3://{seaweed_bucket.name}/data"
    assert cli("remote", "add", "sw", url, "--default", cwd=repo_dir).code == 0
    assert cli("remote", "modify", "sw", "endpoint_url", seaweed_bucket.endpoint).code == 0
    write(repo_dir / "a.txt", b"first\n")
    assert cli("add", "a.txt").code == 0
    r = cli("push", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["transferred"] == 1  # the environment's credentials are right
    after_first = sorted(seaweed_bucket.keys())

    wrong = "wrong-secret-0123456789abcdef"
    write(repo_dir / "b.txt", b"second\n")
    assert cli("add", "b.txt").code == 0
    for key_id, secret in ((FAKE_KEY_ID, wrong), ("AKIDNOSUCHKEY0000000", wrong)):
        assert cli("remote", "modify", "sw", "access_key_id", key_id, "--local").code == 0
        assert cli("remote", "modify", "sw", "secret_access_key", secret, "--local").code == 0
        for args in (("push",), ("status", "--remote", "sw")):
            r = cli(*args)
            assert r.code == RemoteError.exit_code, (args, r.out, r.err)
            errors = [line for line in r.err.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and "Traceback" not in r.err, r.err
            assert "access to remote 'sw'" in errors[0] and url in errors[0] and "denied" in errors[0], errors[0]
            assert secret not in r.out + r.err and key_id not in r.out + r.err
    assert sorted(seaweed_bucket.keys()) == after_first  # b.txt never arrived


def test_a_weed_that_cannot_start_is_an_error_with_its_log(tmp_path, monkeypatch):
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'flag provided but not defined: -mini-thing' >&2\nexit 2\n")
    fake.chmod(0o755)
    with pytest.raises(SeaweedStartError) as caught:
        SeaweedServer(weed=str(fake)).start()
    message = str(caught.value)
    assert "exited with code 2" in message and "flag provided but not defined" in message
    assert f"command: {fake} -logtostderr mini " in message

    garbage = tmp_path / "not-a-program"
    garbage.write_bytes(b"\x00\x01 not an executable format")
    garbage.chmod(0o755)
    with pytest.raises(SeaweedStartError, match="could not run .*not-a-program"):
        SeaweedServer(weed=str(garbage)).start()

    monkeypatch.setenv(WEED_ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(SeaweedStartError, match=f"{WEED_ENV_VAR}=.*absent is not an executable file"):
        find_weed()


def test_stop_cleans_up_after_a_killed_weed():
    """A weed that died by SIGKILL leaves its unix sockets in /tmp; stop() removes them with
    its data folder."""
    server = SeaweedServer().start()
    sockets = server.tmp_sockets()
    assert sockets and all(os.path.exists(p) for p in sockets)
    os.killpg(server.pid, signal.SIGKILL)
    server.stop()
    assert [p for p in sockets if os.path.exists(p)] == []
    assert not os.path.exists(server.data_dir)
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)


_INNER_SESSION = """
import json, os
from s3servers import seaweed_server  # noqa: F401

def test_it_runs(seaweed_server):
    assert os.getpgid(seaweed_server.pid) == seaweed_server.pid
    with open({out!r}, "w") as f:
        json.dump({{"pid": seaweed_server.pid, "dir": seaweed_server.data_dir,
                   "ports": seaweed_server.port_numbers(), "sockets": seaweed_server.tmp_sockets()}}, f)
"""


def test_a_session_leaves_no_weed_process_or_file(tmp_path):
    """A whole pytest session that used the ``seaweed_server`` fixture: once it has
    ended, its weed process and every process of its group are gone, and so are its data
    folder, its unix sockets in /tmp and any glog file there."""
    out = tmp_path / "server.json"
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(_INNER_SESSION.format(out=str(out)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    started = time.time()
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    info = json.loads(out.read_text())
    pid, data_dir = info["pid"], info["dir"]

    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process left in its process group
    survivors = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if data_dir.encode() in f.read():
                        survivors.append(entry)
            except OSError:
                pass
    assert survivors == [], f"processes still running on {data_dir}: {survivors}"
    assert not os.path.exists(data_dir)
    assert info["sockets"], "weed made no socket in /tmp: this check would check nothing"
    left = [p for port in info["ports"] for p in glob.glob(f"/tmp/seaweedfs-*-{port}.sock")]
    assert left == []
    glog_files = [p for p in glob.glob(os.path.join(tempfile.gettempdir(), "weed.*")) if os.stat(p).st_mtime >= started]
    assert glog_files == []
