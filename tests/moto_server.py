"""A real S3 endpoint for the remote tests: moto's server on 127.0.0.1.

``s3_server`` (session): one in-process moto server on a free loopback port.
``s3_bucket`` (per test): a fresh bucket on it, with fake AWS credentials in the
environment, so tests never share state. ``MotoServer`` can also be stopped for
real in the middle of a transfer and started again on the same port (the fault
test); ``auth_s3_server`` is a separate moto process that enforces credentials.

moto keeps its state in the process (module-level backends), so every in-process
server sees the same buckets; each test uses its own bucket name.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass

import pytest

HOST = "127.0.0.1"
FAKE_KEY_ID = "testing-key-id"
FAKE_SECRET = "testing-secret"
REGION = "us-east-1"

for _name in ("werkzeug", "moto", "botocore", "s3fs", "aiobotocore"):
    logging.getLogger(_name).setLevel(logging.ERROR)


class MotoServer:
    """moto's ThreadedMotoServer that can be stopped like a crashed endpoint.

    ``ThreadedMotoServer.stop()`` only ends the accept loop: the listening socket
    stays open (new connections hang instead of being refused) and keep-alive
    connections go on being served by their threads. ``stop()`` here also closes
    the listening socket and cuts every accepted connection, so clients see what
    they would see if the server died. ``start()`` again reuses the same port.
    """

    def __init__(self, port: int = 0):
        self.port = port
        self._server = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> MotoServer:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        server.start()
        wsgi = server._server  # the werkzeug server; moto has no public accessor
        self.port = server.get_host_and_port()[1]
        accept = wsgi.get_request

        def get_request():
            conn, addr = accept()
            with self._lock:
                self._conns.add(conn)
            return conn, addr

        wsgi.get_request = get_request  # serve_forever looks it up per connection
        wsgi.handle_error = lambda request, client_address: None  # cut connections are expected
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stop()
        server._server.server_close()  # refuse new connections
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def s3_client(endpoint: str, key_id: str = FAKE_KEY_ID, secret: str = FAKE_SECRET):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=REGION,
    )


def new_bucket_name() -> str:
    return f"dv-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def s3_server():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials, nothing from the machine's AWS setup, no proxy for loopback."""
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@dataclass
class Bucket:
    name: str
    endpoint: str
    client: object

    def keys(self, prefix: str = "") -> list[str]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)


@pytest.fixture
def s3_bucket(s3_server, aws_env) -> Bucket:
    """A fresh, empty bucket on the shared server."""
    client = s3_client(s3_server.endpoint)
    name = new_bucket_name()
    client.create_bucket(Bucket=name)
    return Bucket(name, s3_server.endpoint, client)


_AUTH_SERVER_SCRIPT = r"""
import json, logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.core.authorization import disable_iam_authentication
from moto.server import ThreadedMotoServer
import boto3
from urllib.parse import quote, unquote
from moto.iam import access_control

# moto checks a signature against the URL werkzeug gives it, which werkzeug 3 has
# percent-decoded ("delimiter=%2F" arrives as "delimiter=/"), so every signed request
# with a "/" in its query (s3fs's listings) fails with SignatureDoesNotMatch even with
# the right key. Re-encode the query the way SigV4 canonicalises it.
_init = access_control.IAMRequestBase.__init__


def _init_with_encoded_query(self, account_id, method, path, *args, **kwargs):
    base, sep, query = path.partition("?")
    if sep:
        pairs = (pair.partition("=") for pair in query.split("&"))
        path = base + "?" + "&".join(
            quote(unquote(k), safe="-_.~") + "=" + quote(unquote(v), safe="-_.~") for k, _, v in pairs
        )
    _init(self, account_id, method, path, *args, **kwargs)


access_control.IAMRequestBase.__init__ = _init_with_encoded_query

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
endpoint = "http://127.0.0.1:%d" % server.get_host_and_port()[1]
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
          aws_secret_access_key="bootstrap")
with disable_iam_authentication():  # set up one real user, then enforce auth for everything
    iam = boto3.client("iam", **kw)
    iam.create_user(UserName="dataver")
    iam.put_user_policy(UserName="dataver", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="dataver")["AccessKey"]
    boto3.client("s3", **kw).create_bucket(Bucket="authbucket")
print(json.dumps({"endpoint": endpoint, "key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"],
                  "bucket": "authbucket"}), flush=True)
sys.stdin.read()  # serve until the test closes our stdin
server.stop()
"""


@dataclass
class AuthServer:
    endpoint: str
    key_id: str
    secret: str
    bucket: str


@pytest.fixture(scope="session")
def auth_s3_server(tmp_path_factory):
    """A moto server in its own process with INITIAL_NO_AUTH_ACTION_COUNT=0: it checks
    signatures and IAM policies. It has one user (``key_id``/``secret``) allowed s3:*."""
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="0", NO_PROXY="127.0.0.1,localhost")
    log = tmp_path_factory.mktemp("auth-moto") / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _AUTH_SERVER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"auth moto server did not start: {log.read_text()[-2000:]}")
        info = json.loads(line)
        yield AuthServer(info["endpoint"], info["key_id"], info["secret"], info["bucket"])
    finally:
        try:
            proc.stdin.close()
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
