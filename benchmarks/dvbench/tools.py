"""The tools under test (dataver, DVC): their commands, where to find them, installing DVC."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path


class Tool:
    name = ""
    label = ""
    pointer_ext = ""
    cache_dir = ""  # the default cache, relative to the repository root
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

    def checkout(self) -> list[str]:
        return self.cmd("checkout")

    def remote_add(self, name: str, url: str) -> list[list[str]]:
        raise NotImplementedError

    def remote_endpoint(self, name: str, endpoint: str) -> list[list[str]]:
        raise NotImplementedError

    def push(self, remote: str | None = None) -> list[str]:
        return self.cmd("push", *(["-r", remote] if remote else []))

    def pull(self, remote: str | None = None, *paths: str) -> list[str]:
        return self.cmd("pull", *(["-r", remote] if remote else []), *paths)

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
    cache_dir = ".dataver/cache"

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
    cache_dir = ".dvc/cache"

    def __init__(self, argv0, site_cache_dir: Path):
        super().__init__(argv0)
        self.env = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(site_cache_dir)}

    def init_cmds(self):
        return [self.cmd("init", "-q"), self.cmd("config", "core.analytics", "false")]

    def remote_add(self, name, url):
        return [self.cmd("remote", "add", "-d", name, url)]

    def remote_endpoint(self, name, endpoint):
        return [self.cmd("remote", "modify", name, "endpointurl", endpoint)]


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
