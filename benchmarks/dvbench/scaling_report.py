"""--scaling's report: the growth rows, the cache sizes, issue 16's targets, the markdown."""

from __future__ import annotations

import os
from pathlib import Path

from .config import REPO_ROOT, human_size
from .report import fmt_load, fmt_s

SCALING_KEYS = (
    "add_many",
    "status_clean",
    "status_again",
    "status_watchman",
    "readd_one",
    "checkout_one",
    "ref_cp_r_many",
    "ref_git_add",
    "ref_git_status",
)
SCALING_LABELS = {
    "add_many": "add+commit the files (fresh repository)",
    "status_clean": "status, nothing changed, the first after the add",
    "status_again": "status, nothing changed, again (the steady state: what the next status costs)",
    "status_watchman": "status, nothing changed, with watchman (`DATAVER_FSMONITOR=1`; the second of two runs)",
    "readd_one": "re-add+commit after changing 1 file",
    "checkout_one": "checkout of 1 changed file (`git checkout HEAD~1 -- data.dv`, then `TOOL checkout`)",
    "ref_cp_r_many": "`cp -r` the files into the repository (the setup copy; machine reference)",
    "ref_git_add": "`git add -A && git commit` of the same files in a plain git repository (reference)",
    "ref_git_status": "`git status`, nothing changed, in that git repository (reference)",
}
# Which tools run each step: "ref" and "git" are the machine references.
SCALING_TOOLS = {
    "status_watchman": ("dataver",),
    "ref_cp_r_many": ("ref",),
    "ref_git_add": ("git",),
    "ref_git_status": ("git",),
}
TOOL_NAMES = {"dataver": "dataver", "dvc": "DVC", "ref": "`cp -r`", "git": "git"}

# Issue 16's targets, for dataver at 1,000,000 files: (step, what, goal, limit in seconds).
TARGET_FILES = 1_000_000
TIME_TARGETS = (
    ("add_many", "add (add + `git add -A` + `git commit`, fresh repository)", "< 5 min", 300.0),
    ("status_again", "status, nothing changed (the second), no file-system monitor", "< 3 s", 3.0),
    ("readd_one", "re-add+commit after changing 1 file", "< 5 s", 5.0),
    ("checkout_one", "checkout of 1 changed file", "< 5 s", 5.0),
)
RSS_TARGET_MB = 200  # peak RSS of every step, in MB (10^6 bytes)
CACHE_TARGET = 1.3  # the cache's allocated blocks over the data's apparent size


def step_tools(key: str) -> tuple[str, ...]:
    return SCALING_TOOLS.get(key, ("dataver", "dvc"))


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


def scaling_targets(result: dict) -> dict | None:
    """Issue 16's targets against dataver's figures at 1,000,000 files, or at the largest
    count when the run has no 1,000,000 (then `at_target_count` is False). Each row: what,
    goal, figure (text), met (True, False, or None when there is no figure)."""
    counts = result["counts"]
    if not counts:
        return None
    c = next((c for c in counts if c["nfiles"] == TARGET_FILES), counts[-1])
    summary = c["summary"]
    rows = []
    for key, what, goal, limit in TIME_TARGETS:
        x = summary.get(key, {}).get("dataver")
        if x:
            rows.append(
                {"what": what, "goal": goal, "figure": f"{fmt_s(x['median_s'])} s", "met": x["median_s"] < limit}
            )
        else:
            rows.append({"what": what, "goal": goal, "figure": _missing(c, key, "dataver", result), "met": None})
    rss = [(x["peak_rss_mib"], key) for key in SCALING_KEYS if (x := summary.get(key, {}).get("dataver"))]
    goal = f"< {RSS_TARGET_MB} MB"
    if rss:
        mib, key = max(rss)
        mb = mib * 1024 * 1024 / 1e6
        figure = f"{mb:.0f} MB ({mib:.0f} MiB), in {key}"
        rows.append({"what": "peak RSS, every step", "goal": goal, "figure": figure, "met": mb < RSS_TARGET_MB})
    else:
        rows.append({"what": "peak RSS, every step", "goal": goal, "figure": "no step ran", "met": None})
    cache = c.get("cache", {}).get("dataver")
    goal = f"≤ {CACHE_TARGET:g}× the data"
    if cache:
        ratio = cache["allocated_bytes"] / c["many_bytes"]
        figure = f"{ratio:.2f}× ({_mb(cache['allocated_bytes'])} on disk for {_mb(c['many_bytes'])} of data)"
        rows.append(
            {"what": "cache on disk after the add", "goal": goal, "figure": figure, "met": ratio <= CACHE_TARGET}
        )
    else:
        rows.append({"what": "cache on disk after the add", "goal": goal, "figure": "not measured", "met": None})
    x = summary.get("status_watchman", {}).get("dataver")
    figure = f"{fmt_s(x['median_s'])} s" if x else _missing(c, "status_watchman", "dataver", result)
    rows.append(
        {"what": "status, nothing changed, with watchman (optional)", "goal": "–", "figure": figure, "met": None}
    )
    return {"nfiles": c["nfiles"], "at_target_count": c["nfiles"] == TARGET_FILES, "rows": rows}


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _missing(c: dict, key: str, tool: str, result: dict) -> str:
    """Why a count has no figure for (step, tool)."""
    if key == "status_watchman" and c.get("watchman_skipped"):
        return f"not run: {c['watchman_skipped']}"
    if c.get("skipped", {}).get(tool):
        return c["skipped"][tool]
    if tool in c.get("timed_out", []):
        return f"timed out (> {result['config']['step_timeout_s']:g} s)"
    return "failed"


def _cache_table(counts: list[dict]) -> list[str]:
    rows = []
    for c in counts:
        for tool, x in c.get("cache", {}).items():
            data = c["many_bytes"]
            rows.append(
                f"| {c['nfiles']:,} | {TOOL_NAMES.get(tool, tool)} | {_mb(x['allocated_bytes'])} "
                f"| {_mb(x['apparent_bytes'])} | {_mb(x['tool_dir_allocated_bytes'])} | {_mb(data)} "
                f"| {_mb(c['data_allocated_bytes']) if c.get('data_allocated_bytes') else '–'} "
                f"| **{x['allocated_bytes'] / data:.2f}×** | {x['apparent_bytes'] / data:.2f}× |"
            )
    if not rows:
        return []
    return [
        "## The cache on disk after the add",
        "",
        "`du -sk` (allocated blocks) and `du -sb` (apparent size) of the cache folder (`.dataver/cache`, "
        "`.dvc/cache`) right after the add, and `du -sk` of the whole tool folder (`.dataver`, `.dvc`: "
        "the cache plus state/index files), against the data: the sum of the files' sizes (apparent) "
        "and `du -sk` of the data set.",
        "",
        "| files | tool | cache on disk | cache apparent | tool folder on disk | data apparent | data on disk "
        "| cache on disk / data | cache apparent / data |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _targets_table(result: dict) -> list[str]:
    t = scaling_targets(result)
    if t is None:
        return []
    marks = {True: "met", False: "**not met**", None: "–"}
    head = f"## Targets (issue 16), dataver at {t['nfiles']:,} files"
    lines = [head, ""]
    if not t["at_target_count"]:
        lines += [
            f"The targets are set for {TARGET_FILES:,} files; this run's largest count is {t['nfiles']:,}, "
            "so these figures say nothing yet about the targets.",
            "",
        ]
    lines += ["| target | goal | dataver | |", "|---|---:|---:|---|"]
    lines += [f"| {r['what']} | {r['goal']} | {r['figure']} | {marks[r['met']]} |" for r in t["rows"]]
    return lines + [""]


def scaling_markdown(result: dict) -> str:
    cfg, meta, counts = result["config"], result["machine"], result["counts"]
    if not counts:
        return "No file count finished.\n"
    n0 = counts[0]["nfiles"]
    folders = {c["nfiles"]: c["folders"] for c in counts}
    title = " → ".join(f"{c['nfiles']:,}" for c in counts)
    doc_dir = Path(result["doc"]).parent
    inside = doc_dir == REPO_ROOT or REPO_ROOT in doc_dir.parents
    readme = os.path.relpath(REPO_ROOT / "benchmarks" / "README.md", doc_dir) if inside else "benchmarks/README.md"
    per_dir = cfg.get("files_per_dir") or 200
    dirs = f"{cfg['dirs']:,} folders" if cfg.get("dirs") else f"⌈N / {per_dir:,}⌉ folders"
    dvc_max = cfg.get("dvc_max_files")
    lines = [
        f"# Scaling: add, status, re-add, checkout, {title} files",
        "",
        f"Produced by `{cfg['command']}` (see [benchmarks/README.md]({readme})). "
        f"Each count N is its own data set of N files in {dirs}, "
        f"{human_size(cfg['min_size'])}–{human_size(cfg['max_size'])} each "
        f"(shape `{cfg.get('shape', 'default')}`), generated from seed {cfg['seed']}; "
        "each tool runs in its own fresh git repository, one tool at a time (its repository is deleted "
        "before the next starts); warm page cache, `sync` between timed steps; median of "
        f"{cfg['runs']} run(s). **growth** is the median at that count over the median at {n0:,} files "
        "(linear growth equals the files ratio in the first column); **per-file µs** is the median over "
        f"the file count; **marginal µs/file** is (t(N) − t({n0:,})) / (N − {n0:,}), which leaves out "
        "fixed costs such as interpreter start-up. The git reference is a separate git repository "
        "(its own `GIT_DIR`) whose work tree is the data set itself, so its index tracks the same files."
        + (f" DVC is not run above {dvc_max:,} files (`--scaling-dvc-max`)." if dvc_max and cfg.get("dvc_cmd") else ""),
        "",
        *_targets_table(result),
    ]
    for key in SCALING_KEYS:
        per_tool = result["growth"].get(key)
        skipped = {c.get("watchman_skipped") for c in counts} - {None} if key == "status_watchman" else set()
        if not per_tool:
            if skipped:  # the optional step: one line saying why it did not run
                lines += [f"## {SCALING_LABELS[key]}", "", f"Not run: {'; '.join(sorted(skipped))}.", ""]
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
            for tool in step_tools(key):
                row = next((r for r in per_tool.get(tool, []) if r["nfiles"] == n), None)
                if row is None:
                    ran = tool == "dataver" or (tool == "dvc" and cfg.get("dvc_cmd"))
                    if ran:
                        why = _missing(c, key, tool, result)
                        lines.append(
                            f"| {n:,} ({n / n0:.3g}×) | {folders[n]:,} | {TOOL_NAMES[tool]} | {why} | | | | | |"
                        )
                    continue
                rng = f" ({fmt_s(row['min_s'])}–{fmt_s(row['max_s'])})" if row["n"] > 1 else ""
                g = f"{row['growth']:.2f}×" if row["growth"] is not None else "–"
                mu = f"{row['marginal_us_per_file']:.0f}" if row["marginal_us_per_file"] is not None else "–"
                ratio = f"{row['ratio_dvc_over_dataver']:.2f}×" if row.get("ratio_dvc_over_dataver") else "–"
                lines.append(
                    f"| {n:,} ({n / n0:.3g}×) | {folders[n]:,} | {TOOL_NAMES[tool]} "
                    f"| **{fmt_s(row['median_s'])}**{rng} | {g} | {row['per_file_us']:.1f} | {mu} "
                    f"| {row['peak_rss_mib']:.0f} MiB | {ratio} |"
                )
        lines.append("")
    lines += _cache_table(counts)
    v = ", ".join(meta["versions"].values())
    data = "; ".join(
        f"{c['nfiles']:,} files in {c['folders']:,} folders ({c['many_bytes'] / 1e6:,.1f} MB)" for c in counts
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
