"""The main run: per run, the big-file phase and the many-files phase, each tool in its
own fresh repository, the tool that goes first alternating from run to run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from .data import _stream, cache_usage, count_files, one_file
from .runner import Runner, Sample, StepFailed, StepTimeout
from .s3 import BUCKET, BenchS3
from .steps import step_list
from .tools import Tool


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
        s3 = self.s3 if self.s3 and key.endswith("_s3") else None
        if s3:
            server0, requests0, bytes0 = s3.cpu_seconds(), s3.counts(), s3.traffic()
        sample, text = self.r.measure(cmds, env, stdout)
        server_cpu = None
        if s3:
            server_cpu = s3.cpu_seconds() - server0
            self.s3_check(f"{key}_requests", name, _delta(requests0, s3.counts()))
            self.s3_check(f"{key}_bytes", name, _delta(bytes0, s3.traffic()))
        self.record(key, name, run, sample, server_cpu)
        os.sync()
        return text

    def s3_check(self, what: str, tool: str, value: dict) -> None:
        """One run's S3 figure for a step (its requests, or its object bytes), appended run by run."""
        self.checks.setdefault(what, {}).setdefault(tool, []).append(value)

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
            self.timed(key, t, run, [(t.push(remote_name), repo)], env=env)
            # Untimed, after the step: the objects the push had to send (those in the
            # tool's cache: what the request counts are measured against), and the files
            # they became on the remote (one each for DVC; packs and an index for a
            # packed dataver remote). Listing S3 makes requests, outside any step.
            objects = cache_usage(repo / t.cache_dir)["objects"]
            if endpoint:
                files = self.s3.object_count(url.removeprefix(f"s3://{BUCKET}/") + "/")
            else:
                files = count_files(Path(url))
            self.checks.setdefault(f"{key}_objects", {})[t.name] = objects
            self.checks.setdefault(f"{key}_remote_files", {})[t.name] = files

        def push_again(t: Tool, key="push_again_local", remote_name="store", s3=False):
            self.timed(key, t, run, [(t.push(remote_name), repos[t.name])], env=self.s3.env if s3 else None)

        def clone_pull(t: Tool, key="clone_pull", remote_name=None, s3=False):
            clone = base / f"{t.name}-clone{'-s3' if s3 else ''}"
            env = self.s3.env if s3 else None
            self.timed(
                key,
                t,
                run,
                [(self.git("clone", "-q", str(repos[t.name]), str(clone)), base), (t.pull(remote_name), clone)],
                env=env,
            )
            got = count_files(clone / "data")
            self.checks.setdefault(f"{key}_files", {})[t.name] = got
            if got != self.cfg["nfiles"]:
                raise StepFailed(f"{key}: clone has {got} files in data/, expected {self.cfg['nfiles']}")
            shutil.rmtree(clone)

        def pull_one(t: Tool, key="pull_one_local", remote_name="store", s3=False):
            """A fresh clone (untimed), then the timed pull of one file: what a tool fetches
            when asked for 1 file of a tracked folder. A tool that refuses the request (no
            traceback) is recorded as refusing, and its later steps still run."""
            clone = base / f"{t.name}-clone-one{'-s3' if s3 else ''}"
            path = one_file(self.cfg)
            self.checks["pull_one_target"] = {"path": path, "bytes": (repos[t.name] / path).stat().st_size}
            self.r.run(self.git("clone", "-q", str(repos[t.name]), str(clone)), base)
            try:
                self.timed(key, t, run, [(t.pull(remote_name, path), clone)], env=self.s3.env if s3 else None)
            except StepFailed as e:
                if isinstance(e, StepTimeout) or e.returncode is None or "Traceback" in e.output:
                    raise
                lines = [line for line in e.output.splitlines() if line.strip()]
                why = f"exit {e.returncode}: {lines[0] if lines else ''}".strip()
                self.checks.setdefault(f"{key}_refused", {})[t.name] = why
                print(f"  run {run}  {key:<14} {t.name:<8} refused ({why})", file=sys.stderr)
                shutil.rmtree(clone)
                return
            if (clone / path).read_bytes() != (repos[t.name] / path).read_bytes():
                raise StepFailed(f"{key}: {path} in the clone differs from the committed one")
            self.checks.setdefault(f"{key}_files", {})[t.name] = count_files(clone / "data")
            self.checks.setdefault(f"{key}_cache", {})[t.name] = cache_usage(clone / t.cache_dir)
            shutil.rmtree(clone)

        for fn in (add, status, readd, push, push_again, clone_pull, pull_one):
            self.each_tool(run, broken, fn)
        if self.s3 is not None:

            def push_s3(t: Tool):
                push(t, "push_s3", "s3store", f"s3://{BUCKET}/{t.name}-run{run}", self.s3.endpoint)

            self.each_tool(run, broken, push_s3)
            self.each_tool(run, broken, lambda t: push_again(t, "push_again_s3", "s3store", s3=True))
            self.each_tool(run, broken, lambda t: clone_pull(t, "clone_pull_s3", "s3store", s3=True))
            self.each_tool(run, broken, lambda t: pull_one(t, "pull_one_s3", "s3store", s3=True))
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


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """after - before, per kind, leaving out the kinds that did not change."""
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)}
