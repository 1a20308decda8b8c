"""What the environment of a run was, and how two environments differ.

``capture`` reads the interpreter, platform, CPU model, a package lock and the named
environment variables; ``package_lock`` asks conda (``conda list --explicit``, under an
active conda environment) or pip (``pip freeze``) of the interpreter dataver runs in,
falling back to the distributions that interpreter can import. ``diff`` compares two
captures and their locks; it is pure, so it works on a record made on another machine.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

LOCK_TIMEOUT_S = 120


@dataclass
class Captured:
    python: str
    platform: str
    cpu: str
    lock_kind: str | None
    lock_text: str | None
    vars: dict[str, str | None] = field(default_factory=dict)
    pending: Any = field(default=None, repr=False, compare=False)  # a package lock still being listed

    def finish(self) -> Captured:
        """Wait for the package lock ``capture(wait=False)`` started listing."""
        if self.pending is not None:
            self.lock_kind, self.lock_text = self.pending()
            self.pending = None
        return self


def capture(var_names: list[str], wait: bool = True) -> Captured:
    """The environment now. ``wait=False`` lists the packages in a child process while
    the caller goes on (a run's command): ``finish()`` collects them."""
    pending = package_lock_started()
    found = Captured(
        platform.python_version(),
        platform.platform(),
        cpu_model(),
        None,
        None,
        {name: os.environ.get(name) for name in var_names},
        pending,
    )
    return found.finish() if wait else found


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, sysctl on macOS), else the machine type."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.machine() or platform.processor() or "unknown"


def package_lock() -> tuple[str | None, str | None]:
    """``(kind, text)``: the exact packages of this interpreter's environment."""
    return package_lock_started()()


def package_lock_started() -> Callable[[], tuple[str | None, str | None]]:
    """Start listing the packages (conda under an active conda environment, else pip
    freeze, else the importable distributions); the returned call waits for the list."""
    conda = shutil.which("conda")
    tries = []
    if os.environ.get("CONDA_PREFIX") and conda:
        tries.append(("conda-explicit", [conda, "list", "--explicit", "--prefix", os.environ["CONDA_PREFIX"]]))
    tries.append(("pip-freeze", [sys.executable, "-m", "pip", "freeze", "--all", "--disable-pip-version-check"]))
    procs = [(kind, _start(argv)) for kind, argv in tries[:1]]

    def result() -> tuple[str | None, str | None]:
        for kind, proc in procs:
            text = _collect(proc)
            if text is not None:
                return kind, text
        for kind, argv in tries[1:]:
            text = _collect(_start(argv))
            if text is not None:
                return kind, text
        return "python-dists", _distributions()

    return result


def _start(argv: list[str]) -> subprocess.Popen | None:
    try:
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True
        )
    except OSError:
        return None


def _collect(proc: subprocess.Popen | None) -> str | None:
    if proc is None:
        return None
    try:
        out, _ = proc.communicate(timeout=LOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return out if proc.returncode == 0 else None


def _distributions() -> str:
    from importlib import metadata

    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[_norm(name)] = f"{name}=={dist.version}"
    return "".join(line + "\n" for _, line in sorted(found.items()))


# -- differences ---------------------------------------------------------------------------
@dataclass
class EnvDiff:
    changed: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # python/platform/cpu/$VAR
    added: dict[str, str] = field(default_factory=dict)  # package -> version now
    removed: dict[str, str] = field(default_factory=dict)  # package -> version then
    upgraded: dict[str, tuple[str, str]] = field(default_factory=dict)  # package -> (then, now)
    lock_unknown: bool = False  # one side has no lock to compare

    @property
    def empty(self) -> bool:
        return not (self.changed or self.added or self.removed or self.upgraded)

    def lines(self) -> list[str]:
        """The difference for a person, one line each."""
        out = [f"{k}: {_show(a)} -> {_show(b)}" for k, (a, b) in self.changed.items()]
        out += [f"package added: {k} {v}" for k, v in self.added.items()]
        out += [f"package removed: {k} {v}" for k, v in self.removed.items()]
        out += [f"package changed: {k} {a} -> {b}" for k, (a, b) in self.upgraded.items()]
        if self.lock_unknown:
            out.append("packages: not compared (the record or this machine has no package lock)")
        return out


def diff(then: Captured, now: Captured) -> EnvDiff:
    d = EnvDiff()
    for key in ("python", "platform", "cpu"):
        a, b = getattr(then, key), getattr(now, key)
        if a != b:
            d.changed[key] = (a, b)
    for name in sorted(set(then.vars) | set(now.vars)):
        a, b = then.vars.get(name), now.vars.get(name)
        if a != b:
            d.changed["$" + name] = (a, b)
    if then.lock_text is None or now.lock_text is None:
        d.lock_unknown = True
        return d
    old, new = parse_lock(then.lock_text), parse_lock(now.lock_text)
    for name in sorted(set(old) | set(new)):
        if name not in old:
            d.added[name] = new[name]
        elif name not in new:
            d.removed[name] = old[name]
        elif old[name] != new[name]:
            d.upgraded[name] = (old[name], new[name])
    return d


_CONDA_URL = re.compile(r"/([^/]+)-([^-/]+)-([^-/]+)\.(?:conda|tar\.bz2)(?:#.*)?$")


def parse_lock(text: str) -> dict[str, str]:
    """Package -> version (or what pins it) from ``pip freeze``, ``conda list --explicit``
    or the ``name==version`` list; names normalised as pip does (PEP 503)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "@", "-")):
            continue
        m = _CONDA_URL.search(line)
        if m:
            out[_norm(m.group(1))] = f"{m.group(2)}-{m.group(3)}"
        elif "==" in line:
            name, _, version = line.partition("==")
            out[_norm(name)] = version.strip()
        elif " @ " in line:  # name @ file:///... or a VCS URL
            name, _, where = line.partition(" @ ")
            out[_norm(name)] = "@ " + where.strip()
        else:
            out[_norm(line)] = line
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0].strip()).lower()


def _show(value: str | None) -> str:
    return "(unset)" if value is None else repr(value) if value == "" or value != value.strip() else value
