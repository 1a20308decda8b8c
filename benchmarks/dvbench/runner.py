"""Running and timing commands: wall clock, CPU (os.wait4) and peak RSS (/usr/bin/time)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


class StepFailed(Exception):
    """A step failed; ``returncode`` and ``output`` are the failing command's, when one did."""

    def __init__(self, message: str, returncode: int | None = None, output: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.output = output


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
            raise StepFailed(f"{' '.join(argv)} (in {cwd}) exited {p.returncode}:\n{text[-2000:]}", p.returncode, text)
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
