"""--scaling: add/status growth with the file count, and its report."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .bench import Bench
from .config import FILES_PER_DIR, FULL, GIT_ENV, REPO_ROOT, SCALING_STEP_TIMEOUT, files_cfg, human_size
from .data import _stream, generate_many, scratch_dir, warm
from .report import fmt_load, fmt_s, machine_info, summarize
from .runner import Runner, StepFailed, StepTimeout
from .steps import Step
from .tools import Dataver, Dvc, Tool, find_dataver, find_or_install_dvc

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
