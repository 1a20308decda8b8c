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
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .bench import Bench
from .chart import draw_chart, plot
from .config import (
    FILES_PER_DIR,
    FULL,
    GIT_ENV,
    QUICK,
    REPO_ROOT,
    SCALING_DVC_MAX,
    SCALING_SHAPES,
    SCALING_STEP_TIMEOUT,
    files_cfg,
)
from .data import generate_data, scratch_dir, warm
from .report import machine_info, markdown, s3_summary, summarize, write_doc
from .runner import Runner
from .s3 import S3_SERVERS, BenchS3, check_s3_clients
from .scaling import run_scaling
from .scaling_report import scaling_markdown
from .tools import Dataver, Dvc, Tool, find_dataver, find_or_install_dvc


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
        help=f"the S3 server (implies --s3; default {S3_SERVERS[0]}): SeaweedFS (weed mini, from the test "
        "extras) or moto in this process",
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
        "--scratch), and only add, status (nothing changed), re-add (one file changed) and checkout "
        "(of that change), each tool in turn, the cache's size, and git add/status on the same files; "
        "writes --doc (default OUT/scaling.md) and the JSON beside it (OUT/scaling.json), "
        "never docs/benchmarks.md.",
    )
    g.add_argument("--scaling", metavar="COUNTS", help="comma-separated file counts, e.g. 20000,200000 (or 20k,200k)")
    g.add_argument(
        "--scaling-shape",
        choices=sorted(SCALING_SHAPES),
        default="default",
        help="the files: 'default' 1-64 KiB, 200 a folder (the full run's); 'small' 50-600 bytes, "
        "1,000 a folder (issue 16's million files)",
    )
    g.add_argument(
        "--scaling-dvc-max",
        type=int,
        default=SCALING_DVC_MAX,
        metavar="N",
        help=f"don't run DVC above N files (default {SCALING_DVC_MAX:,}; 0 for no limit)",
    )
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
    args.s3 = args.s3 or args.s3_server is not None  # naming a server asks for the S3 steps
    args.s3_server = args.s3_server or S3_SERVERS[0]
    if args.runs is None:
        args.runs = 1 if args.quick or args.scaling else FULL["runs"]
    if args.files is not None and args.files < 1 or args.dirs is not None and args.dirs < 1:
        p.error("--files and --dirs must be positive")
    if args.step_timeout is not None and args.step_timeout < 0:
        p.error("--step-timeout must be >= 0")
    return args


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
    if s3:
        result["s3_summary"] = s3_summary(result)
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
