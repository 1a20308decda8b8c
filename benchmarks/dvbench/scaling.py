"""--scaling: add, status, re-add and checkout growth with the file count (issue 16's
million files with --scaling-shape small), the git reference, the cache on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .bench import Bench
from .config import FULL, GIT_ENV, REPO_ROOT, SCALING_SHAPES, SCALING_STEP_TIMEOUT, files_cfg
from .data import _stream, generate_many, scratch_dir, warm
from .report import machine_info, summarize
from .runner import Runner, StepFailed, StepTimeout
from .scaling_report import SCALING_KEYS, SCALING_LABELS, scaling_growth, scaling_markdown, step_tools
from .steps import Step
from .tools import Dataver, Dvc, Tool, find_dataver, find_or_install_dvc

FSMONITOR_ENV = {"DATAVER_FSMONITOR": "1"}


def watchman_argv(*args: str) -> list[str]:
    """A watchman command for the server dataver asks: the one ``WATCHMAN_SOCK`` names,
    if set (as dataver.fsmonitor does: given only the variable, the watchman 4.9 client
    still started the machine's own server, which outlived the command), else the machine's."""
    sock = os.environ.get("WATCHMAN_SOCK")
    return ["watchman", *([f"--sockname={sock}", "--no-spawn"] if sock else []), *args]


def du_bytes(path: Path, apparent: bool = False) -> int:
    """`du -sb` (apparent size) or `du -sk` × 1024 (allocated blocks) of a path; 0 if absent."""
    if not path.exists():
        return 0
    out = subprocess.run(["du", "-sb" if apparent else "-sk", str(path)], capture_output=True, text=True, check=True)
    n = int(out.stdout.split()[0])
    return n if apparent else n * 1024


def fsmonitor_unsupported(tool: Tool) -> str | None:
    """Why the optional "status with watchman" step can't run (None: it can): watchman must
    be on PATH, and dataver must know a file-system monitor (its `status --help` or
    `config --help` mentions "fsmonitor")."""
    if not shutil.which("watchman"):
        return "watchman is not on PATH"
    text = ""
    for args in (("status", "--help"), ("config", "--help")):
        try:
            out = subprocess.run(tool.cmd(*args), capture_output=True, text=True, timeout=120)
            text += out.stdout + out.stderr
        except (OSError, subprocess.SubprocessError):
            pass
    if "fsmonitor" not in text.lower():
        return "this dataver has no file-system monitor (`status --help` and `config --help` don't mention fsmonitor)"
    return None


class ScalingBench(Bench):
    """--scaling, one file count: the small-file steps only (add, status, re-add, checkout),
    one tool at a time, each tool's repository deleted before the next tool starts (so one
    copy of the data plus one cache is on disk at a time); then the git reference on the
    data set itself. Tools in `skip` (tool -> why: it ran past the time limit at a smaller
    count, or the count is above --scaling-dvc-max) are not run. `watchman_skipped`: why the
    optional status-with-watchman step is not run (None: it runs, for dataver)."""

    def __init__(self, args, cfg, tools, data, work, runner, skip: dict[str, str], watchman_skipped: str | None):
        super().__init__(args, cfg, tools, data, work, runner, None)
        self.steps = [
            Step(
                k, SCALING_LABELS[k], step_tools(k), "many" if k in ("add_many", "ref_cp_r_many", "ref_git_add") else ""
            )
            for k in SCALING_KEYS
        ]
        self.samples = {s.key: {} for s in self.steps}
        self.skip = dict(skip)
        self.watchman_skipped = watchman_skipped
        self.timed_out: set[str] = set()
        self.timeouts: list[str] = []  # not errors: the expected end of a slow tool's series
        self.cache: dict[str, dict[str, int]] = {}  # tool -> its cache's sizes after the add

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
                self.measure_cache(t, repo)
                self.step_status_clean(t, run, repo)
                self.step_status_again(t, run, repo)
                if t.name == "dataver" and self.watchman_skipped is None:
                    self.step_status_watchman(t, run, repo)
                self.step_readd_one(t, run, repo)
                self.step_checkout_one(t, run, repo)
            except StepTimeout as e:
                self.timed_out.add(t.name)
                msg = f"run {run}, {t.name}: {str(e).splitlines()[0]}"
                self.timeouts.append(msg)
                print("TIMEOUT " + msg, file=sys.stderr)
            finally:
                shutil.rmtree(repo, ignore_errors=True)
                os.sync()

        self.each_tool(run, set(self.skip) | self.timed_out, one)
        self.git_reference(run, base)
        shutil.rmtree(base, ignore_errors=True)

    def measure_cache(self, t: Tool, repo: Path) -> None:
        """Untimed, right after the add: the cache's allocated and apparent bytes, and the
        whole tool folder's (.dataver, .dvc) allocated bytes."""
        cache = repo / t.cache_dir
        self.cache[t.name] = {
            "allocated_bytes": du_bytes(cache),
            "apparent_bytes": du_bytes(cache, apparent=True),
            "tool_dir_allocated_bytes": du_bytes(repo / Path(t.cache_dir).parts[0]),
        }

    def step_status_again(self, t: Tool, run: int, repo: Path) -> None:
        """status once more, nothing changed: the first after an add may still re-check
        files modified within the racy window of the add's scan (and records what it
        found), so the second is what every later status costs."""
        out = self.timed("status_again", t, run, [(t.status(), repo)])
        if "modified" in out:
            raise StepFailed(f"the second status after add reports changes:\n{out[-1000:]}")

    def step_status_watchman(self, t: Tool, run: int, repo: Path) -> None:
        """The optional step: `watchman watch-project` the repository, `dataver status` twice
        with DATAVER_FSMONITOR=1, the second timed. A failure is an error, not the end of the
        tool's steps."""
        try:
            self.r.run(watchman_argv("watch-project", str(repo)), repo)
            self.r.run(t.status(), repo, {**t.env, **FSMONITOR_ENV})
            out = self.timed("status_watchman", t, run, [(t.status(), repo)], env=FSMONITOR_ENV)
            if "modified" in out:
                raise StepFailed(f"status with watchman after add reports changes:\n{out[-1000:]}")
        except StepTimeout:
            raise
        except StepFailed as e:
            msg = f"run {run}, {t.name}, status_watchman: {e}"
            self.errors.append(msg)
            print("ERROR " + msg, file=sys.stderr)
        finally:
            subprocess.run(watchman_argv("watch-del", str(repo)), capture_output=True, timeout=120, check=False)

    def step_checkout_one(self, t: Tool, run: int, repo: Path) -> None:
        """After step_readd_one's commit: the previous pointer back from git (untimed), then
        the timed `TOOL checkout`, which must restore the one changed file's old bytes."""
        victim = Path("data") / "d000" / "f00000.bin"
        self.r.run(self.git("checkout", "HEAD~1", "--", f"data{t.pointer_ext}"), repo)
        os.sync()
        self.timed("checkout_one", t, run, [(t.checkout(), repo)])
        if (repo / victim).read_bytes() != (self.data / "many" / victim.relative_to("data")).read_bytes():
            raise StepFailed(f"checkout_one: {victim} was not restored to its first version")

    def git_reference(self, run: int, base: Path) -> None:
        """A plain git repository (its own GIT_DIR under `base`) whose work tree is the data
        set: timed `git add -A && git commit`, then timed `git status`, nothing changed."""
        many = self.data / "many"
        env = {"GIT_DIR": str(base / "git-ref.git"), "GIT_WORK_TREE": str(many)}
        try:
            base.mkdir(parents=True, exist_ok=True)
            self.r.run(self.git("init", "-q"), many, env)
            self.r.run(self.git("config", "core.fsmonitor", "false"), many, env)
            self.timed("ref_git_add", "git", run, [(self.git("add", "-A"), many), *self.commit_cmds(many, "data")], env)
            out = self.timed("ref_git_status", "git", run, [(self.git("status"), many)], env)
            if "nothing to commit" not in out:
                raise StepFailed(f"git status after the commit reports changes:\n{out[-1000:]}")
        except StepFailed as e:
            msg = f"run {run}, git reference: {str(e).splitlines()[0]}"
            (self.timeouts if isinstance(e, StepTimeout) else self.errors).append(msg)
            print(("TIMEOUT " if isinstance(e, StepTimeout) else "ERROR ") + msg, file=sys.stderr)
        finally:
            shutil.rmtree(base / "git-ref.git", ignore_errors=True)


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
    shape = SCALING_SHAPES[args.scaling_shape]
    base_cfg = {k: v for k, v in FULL.items() if k != "runs"}
    base_cfg.update(min_size=shape["min_size"], max_size=shape["max_size"])
    watchman_skipped = fsmonitor_unsupported(tools[0])
    notes.append(
        f"Status with watchman not run: {watchman_skipped}."
        if watchman_skipped
        else "Status with watchman: `watchman watch-project`, then `dataver status` twice with DATAVER_FSMONITOR=1."
    )
    result = {
        "kind": "scaling",
        "config": {
            "command": " ".join(["python", "benchmarks/run.py", *(sys.argv[1:] if args.argv is None else args.argv)]),
            "counts": counts,
            "dirs": args.dirs,
            "files_per_dir": shape["files_per_dir"] if args.dirs is None else None,
            "shape": args.scaling_shape,
            "min_size": base_cfg["min_size"],
            "max_size": base_cfg["max_size"],
            "runs": args.runs,
            "seed": args.seed,
            "step_timeout_s": timeout,
            "dataver_cmd": tools[0].argv0,
            "dvc_cmd": dvc_argv,
            "dvc_max_files": args.scaling_dvc_max or None,
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
            cfg = files_cfg(base_cfg, n, args.dirs, shape["files_per_dir"])
            cfg["big_size"] = 0
            data = generate_many(scratch, cfg, args.seed)
            cfg["many_bytes"] = json.loads((data / "COMPLETE").read_text())["many_bytes"]
            # One repository copy + its cache, with slack; a small file takes a 4 KiB block.
            need = 2.2 * max(cfg["many_bytes"], 4096 * n)
            free = shutil.disk_usage(scratch).free
            if free < need:
                msg = f"{n:,} files: {free / 1e9:.1f} GB free in {scratch}, the steps need about {need / 1e9:.1f} GB."
                print("WARNING " + msg, file=sys.stderr)
                notes.append(msg)
            print(f"{n:,} files: warming the page cache ...", file=sys.stderr)
            warm(data / "many")
            skip = {t: f"skipped (timed out at {timed_out[t]:,} files)" for t in timed_out}
            if dvc_argv and args.scaling_dvc_max and n > args.scaling_dvc_max:
                skip.setdefault("dvc", f"not run above {args.scaling_dvc_max:,} files (--scaling-dvc-max)")
            bench = ScalingBench(args, cfg, tools, data, work, runner, skip, watchman_skipped)
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
                    "data_allocated_bytes": du_bytes(data / "many"),
                    "data": str(data),
                    "samples": bench.samples,
                    "summary": summarize(bench, cfg["many_bytes"]),
                    "skipped": bench.skip,
                    "watchman_skipped": watchman_skipped,
                    "cache": bench.cache,
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
