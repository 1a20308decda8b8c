"""Summaries (medians, ratios), the machine description, and the markdown report."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from .config import human_size
from .runner import TIME
from .tools import Tool

if TYPE_CHECKING:
    from .bench import Bench


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
