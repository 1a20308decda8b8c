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


def _cell(step: dict, row: dict, tool: str, dvc_ran: bool, refused: dict | None = None) -> str:
    x = row.get(tool)
    if tool not in step["tools"]:
        return "–"
    if tool == "dvc" and not dvc_ran:
        return "not run"
    if not x and (refused or {}).get(tool):
        return f"refused ({refused[tool].split(':')[0]})"
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


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:,.0f} B"


# S3 steps -> the push whose objects on the remote their request counts are measured against.
S3_OBJECTS_OF = {"push_s3": "push_s3", "push_again_s3": "push_s3", "clone_pull_s3": "push_s3", "pull_one_s3": "push_s3"}


def s3_summary(result: dict) -> dict:
    """Per S3 step and tool, over the runs: the median of the step's requests (all kinds) and
    object bytes, the objects the tool's push left on the remote, and the requests as a
    percentage of those objects (the storage issue's target is <= 2 %)."""
    checks = result.get("checks", {})
    out: dict = {}
    for key in (s["key"] for s in result["steps"]):
        per_tool = checks.get(f"{key}_requests")
        if not per_tool:
            continue
        row = {}
        for tool, runs in per_tool.items():
            traffic = checks.get(f"{key}_bytes", {}).get(tool, [])
            objects = checks.get(f"{S3_OBJECTS_OF.get(key, key)}_objects", {}).get(tool)
            requests = statistics.median(sum(r.values()) for r in runs)
            x = {"runs": len(runs), "requests": requests, "objects": objects}
            if traffic:
                x["bytes_up"] = statistics.median(b.get("received", 0) for b in traffic)
                x["bytes_down"] = statistics.median(b.get("sent", 0) for b in traffic)
            if objects:
                x["requests_pct_of_objects"] = round(100 * requests / objects, 2)
            row[tool] = x
        out[key] = row
    return out


def _pct(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.0f} %" if x >= 10 else f"{x:.2g} %"


def s3_table(result: dict, label: str) -> list[str]:
    """The S3 requests, % of objects and bytes of each S3 step, as a markdown table."""
    summary = result.get("s3_summary") or s3_summary(result)
    labels = {s["key"]: s["label"] for s in result["steps"]}
    objects = {t: x.get("objects") for row in summary.values() for t, x in row.items() if x.get("objects")}
    on_remote = ", ".join(f"{'DVC' if t == 'dvc' else t} {n:,}" for t, n in objects.items())
    lines = [
        f"S3 requests the {label} server saw and the object bytes it moved (up: PUT payloads, down: GET "
        "bodies; no listing or header bytes), per step, median over the runs; **% of objects** is the "
        f"requests over the objects the tool's push left on the remote ({on_remote or 'not counted'}); the "
        "target is ≤ 2 %:",
        "",
        "| step | dataver requests | % of objects | dataver bytes up / down | DVC requests | % of objects "
        "| DVC bytes up / down |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, row in summary.items():
        cells = []
        for tool in ("dataver", "dvc"):
            x = row.get(tool)
            if not x:
                cells += ["–", "–", "–"]
                continue
            moved = f"{fmt_bytes(x.get('bytes_up'))} / {fmt_bytes(x.get('bytes_down'))}" if "bytes_up" in x else "–"
            cells += [f"{x['requests']:,.0f}", _pct(x.get("requests_pct_of_objects")), moved]
        lines.append(f"| {labels.get(key, key)} | " + " | ".join(cells) + " |")
    return lines


def pull_one_lines(result: dict) -> list[str]:
    """What each tool did when asked for one file of the tracked folder in a fresh clone."""
    checks = result.get("checks", {})
    target = checks.get("pull_one_target")
    keys = [k for k in ("pull_one_local", "pull_one_s3") if any(s["key"] == k for s in result["steps"])]
    if not target or not keys:
        return []
    where = {"pull_one_local": "local folder", "pull_one_s3": "S3"}
    parts = []
    for key in keys:
        per_tool = []
        for tool in ("dataver", "dvc"):
            name = "DVC" if tool == "dvc" else tool
            refused = checks.get(f"{key}_refused", {}).get(tool)
            files = checks.get(f"{key}_files", {}).get(tool)
            cache = checks.get(f"{key}_cache", {}).get(tool)
            if refused:
                per_tool.append(f"{name} refused it ({refused})")
            elif files is not None and cache:
                per_tool.append(
                    f"{name} left {files:,} file(s) in data/ and {cache['objects']:,} object(s), "
                    f"{fmt_bytes(cache['bytes'])}, in its cache"
                )
        if per_tool:
            parts.append(f"{where[key]}: " + "; ".join(per_tool))
    if not parts:
        return []
    return [
        f"One-file pull: `pull PATH` of `{target['path']}` ({fmt_bytes(target['bytes'])}) in a fresh clone; "
        + ". ".join(parts)
        + ".",
        "",
    ]


def _s3_line(key: str, per_tool: dict, samples: dict, server_name: str = "moto", traffic: dict | None = None) -> str:
    """One step's S3 request counts per tool and run, with its object bytes and the S3
    server's CPU per run where recorded (the samples, request counts and bytes are
    appended run by run)."""
    parts = []
    for tool, runs in per_tool.items():
        server = [x.get("server_cpu_s") for x in samples.get(key, {}).get(tool, [])]
        moved = (traffic or {}).get(tool, [])
        cells = []
        for i, r in enumerate(runs):
            cell = ", ".join(f"{m} {n}" for m, n in sorted(r.items()))
            if i < len(moved):
                cell += f"; {fmt_bytes(moved[i].get('received', 0))} up, {fmt_bytes(moved[i].get('sent', 0))} down"
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
        refused = result.get("checks", {}).get(f"{s['key']}_refused")
        lines.append(
            f"| {s['label']} | {_cell(s, row, 'dataver', dvc_ran, refused)} | {_cell(s, row, 'dvc', dvc_ran, refused)}"
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
    lines += pull_one_lines(result)
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
        lines += s3_table(result, label)
        lines.append("")
        lines.append(f"Per step and run, by kind{' (a HEAD counts as a GET)' if server != 'moto' else ''}:")
        lines.append("")
        for k, per_tool in req.items():
            key = k.removesuffix("_requests")
            traffic = result.get("checks", {}).get(f"{key}_bytes")
            lines.append(_s3_line(key, per_tool, result.get("samples", {}), label, traffic))
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
