"""Smoke test of the benchmark harness: `benchmarks/run.py --quick --files 100 --no-dvc`
runs every dataver step on tiny data and writes results JSON. It asserts nothing about
time. (100 small files rather than --quick's 500: the same steps in half the time.) The
report's S3 table is checked on made-up results, without running anything; so is --scaling's
targets table, after a --scaling run on 40 files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_fsmonitor import WATCHMAN, Server

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"
sys.path.insert(0, str(ROOT / "benchmarks"))

from dvbench.report import markdown, s3_summary  # noqa: E402
from dvbench.scaling_report import scaling_growth, scaling_markdown, scaling_targets  # noqa: E402

DATAVER_STEPS = {
    "add_big",
    "hash_big",
    "hash_empty",
    "add_many",
    "status_clean",
    "readd_one",
    "push_local",
    "push_again_local",
    "clone_pull",
}
REF_STEPS = {"ref_cat_big", "ref_md5sum_big", "ref_cp_big", "ref_cp_r_many"}


def test_quick_benchmark_produces_every_dataver_step(tmp_path):
    out, doc = tmp_path / "out", tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--files",
            "100",
            "--no-dvc",
            "--no-chart",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
            "--doc",
            str(doc),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads((out / "results.json").read_text())
    assert result["config"]["quick"] is True and result["config"]["nfiles"] == 100
    assert result["errors"] == []
    keys = {s["key"] for s in result["steps"]}
    assert DATAVER_STEPS <= keys
    for key in DATAVER_STEPS:
        row = result["summary"][key]["dataver"]
        assert row["n"] >= 1 and row["median_s"] > 0 and row["peak_rss_mib"] > 0, (key, row)
        assert "dvc" not in result["summary"][key]
    for key in REF_STEPS & keys:
        assert result["summary"][key]["ref"]["n"] >= 1
    # The clone got every file back and the push sent every object.
    assert result["checks"]["clone_pull_files"]["dataver"] == result["config"]["nfiles"]
    assert result["checks"]["push_local_objects"]["dataver"] > result["config"]["nfiles"]
    # The one-file pull either ran and brought that file back, or was refused (no traceback).
    assert "pull_one_local" in keys
    pulled = "dataver" in result["summary"]["pull_one_local"]
    refused = result["checks"].get("pull_one_local_refused", {}).get("dataver")
    assert pulled != bool(refused), (pulled, refused)
    if pulled:
        assert result["checks"]["pull_one_local_files"]["dataver"] == 1

    text = doc.read_text()
    assert "| status, nothing changed |" in text
    assert "not run" in text  # the DVC column, with --no-dvc


MACHINE = {  # a made-up machine for the reports rendered from made-up results
    "nproc": 2,
    "cpu": "x",
    "memory": "1 GiB",
    "os": "Linux",
    "filesystem": "ext4",
    "python": "3",
    "git": "git",
    "versions": {},
    "date_utc": "now",
    "loadavg_start": [0, 0, 0],
}


def _sample(seconds: float) -> dict:
    return {"n": 1, "median_s": seconds, "min_s": seconds, "max_s": seconds, "peak_rss_mib": 50.0}


def test_the_s3_table_gives_requests_as_a_percentage_of_the_objects_and_the_bytes():
    steps = [
        {"key": "push_s3", "label": "push 500 files to S3", "tools": ["dataver", "dvc"]},
        {"key": "push_again_s3", "label": "push again (S3)", "tools": ["dataver", "dvc"]},
        {"key": "pull_one_s3", "label": "pull 1 file (S3)", "tools": ["dataver", "dvc"]},
    ]
    checks = {
        "push_s3_objects": {"dataver": 501, "dvc": 500},
        "push_s3_requests": {"dataver": [{"PUT": 501, "HEAD": 501}], "dvc": [{"PUT": 500, "GET": 10}]},
        "push_s3_bytes": {"dataver": [{"received": 16_000_000}], "dvc": [{"received": 16_000_100}]},
        "push_again_s3_requests": {"dataver": [{"GET": 2}, {"GET": 4}, {"GET": 3}], "dvc": [{"GET": 501}]},
        "push_again_s3_bytes": {"dataver": [{}, {}, {}], "dvc": [{"sent": 3_000}]},
        "pull_one_s3_requests": {"dvc": [{"GET": 5}]},
        "pull_one_s3_bytes": {"dvc": [{"sent": 40_000}]},
        "pull_one_s3_refused": {"dataver": "exit 4: error: not tracked"},
        "pull_one_target": {"path": "data/d001/f00250.bin", "bytes": 37_000},
    }
    result = {"steps": steps, "checks": checks}
    summary = s3_summary(result)
    assert summary["push_s3"]["dataver"]["requests_pct_of_objects"] == 200.0
    assert summary["push_again_s3"]["dataver"] == {
        "runs": 3,
        "requests": 3,  # the median over the runs
        "objects": 501,
        "bytes_up": 0,
        "bytes_down": 0,
        "requests_pct_of_objects": 0.6,
    }
    assert summary["pull_one_s3"]["dvc"]["bytes_down"] == 40_000 and "dataver" not in summary["pull_one_s3"]

    result.update(
        config={
            "seed": 1,
            "big_size": 1024,
            "nfiles": 500,
            "ndirs": 3,
            "min_size": 1024,
            "max_size": 65536,
            "many_bytes": 16_000_000,
            "runs": 3,
            "dvc_cmd": ["dvc"],
            "s3_server": "seaweedfs",
            "s3_server_label": "SeaweedFS 4.48",
        },
        machine=MACHINE,
        summary={"push_s3": {"dataver": _sample(2.0), "dvc": _sample(3.0)}, "pull_one_s3": {"dvc": _sample(1.0)}},
    )
    text = markdown(result)
    assert "| push again (S3) | 3 | 0.6 % | 0 B / 0 B | 501 | 100 % | 0 B / 3 kB |" in text
    assert "| pull 1 file (S3) | refused (exit 4) | **1.000** |" in text
    assert "dataver refused it (exit 4: error: not tracked)" in text


def test_a_scaling_run_fills_every_dataver_step_the_cache_and_the_targets(tmp_path):
    """`--scaling 40 --scaling-shape small --no-scaling-dvc`: issue 16's steps (add, status,
    re-add, checkout of the change), the git reference, the cache's sizes, the targets table.
    Its watchman step talks to a private watchman server, stopped by PID at the end: a
    plain `watchman watch-project` would start the machine's own server and leave it running."""
    out, doc = tmp_path / "out", tmp_path / "scaling.md"
    argv = ["--scaling", "40", "--scaling-shape", "small", "--no-scaling-dvc", "--out", str(out)]
    argv += ["--scratch", str(tmp_path / "scratch"), "--doc", str(doc)]
    server = Server(tmp_path / "watchman") if WATCHMAN else None
    env = {**os.environ, **({"WATCHMAN_SOCK": server.sock} if server else {})}
    try:
        proc = subprocess.run(
            [sys.executable, str(RUN), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
        )
    finally:
        if server:
            server.stop()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    result = json.loads((tmp_path / "scaling.json").read_text())
    assert result["config"]["shape"] == "small" and result["errors"] == []
    (count,) = result["counts"]
    assert count["nfiles"] == 40 and count["folders"] == 1 and 40 * 50 <= count["many_bytes"] <= 40 * 600
    for key in ("add_many", "status_clean", "status_again", "readd_one", "checkout_one"):
        row = count["summary"][key]["dataver"]
        assert row["median_s"] > 0 and row["peak_rss_mib"] > 0, (key, row)
    for key in ("ref_git_add", "ref_git_status"):
        assert count["summary"][key]["git"]["median_s"] > 0
    cache = count["cache"]["dataver"]
    assert 0 < cache["apparent_bytes"] and 0 < cache["allocated_bytes"] <= cache["tool_dir_allocated_bytes"]
    # The watchman step either ran or says why not.
    assert bool(count["watchman_skipped"]) != ("dataver" in count["summary"]["status_watchman"])

    text = doc.read_text()
    assert "## Targets (issue 16), dataver at 40 files" in text
    assert "| checkout of 1 changed file | < 5 s |" in text
    assert "| cache on disk after the add | ≤ 1.3× the data |" in text


def test_the_targets_table_is_filled_at_one_million_files():
    def count(n, add_s, rss, cache_bytes):
        summary = {
            "add_many": {"dataver": _sample(add_s), "dvc": _sample(add_s * 3)},
            "status_clean": {"dataver": _sample(4.5)},
            "status_again": {"dataver": _sample(2.5)},
            "readd_one": {"dataver": _sample(6.0)},
            "checkout_one": {"dataver": {**_sample(1.0), "peak_rss_mib": rss}},
            "ref_git_status": {"git": _sample(0.4)},
        }
        cache = {"dataver": {"allocated_bytes": cache_bytes, "apparent_bytes": 1, "tool_dir_allocated_bytes": 2}}
        return {"nfiles": n, "folders": n // 1000, "many_bytes": n * 325, "summary": summary, "cache": cache}

    counts = [count(20_000, 5.0, 60.0, 20_000 * 400), count(1_000_000, 290.0, 250.0, 1_000_000 * 325)]
    counts[1]["skipped"] = {"dvc": "not run above 200,000 files (--scaling-dvc-max)"}
    counts[1]["watchman_skipped"] = "watchman is not on PATH"
    result = {"counts": counts, "config": {"step_timeout_s": 1800}}
    t = scaling_targets(result)
    assert t["nfiles"] == 1_000_000 and t["at_target_count"]
    # add, status, re-add, checkout, peak RSS, cache, status with watchman (no goal)
    assert [r["met"] for r in t["rows"]] == [True, True, False, True, False, True, None]
    result.update(
        growth=scaling_growth(counts),
        doc="/tmp/x.md",
        config={
            "command": "python benchmarks/run.py --scaling 20k,1000k --scaling-shape small",
            "seed": 1,
            "min_size": 50,
            "max_size": 600,
            "files_per_dir": 1000,
            "shape": "small",
            "runs": 1,
            "step_timeout_s": 1800,
            "dvc_cmd": ["dvc"],
            "dvc_max_files": 200_000,
        },
        machine=MACHINE,
    )
    text = scaling_markdown(result)
    assert "| peak RSS, every step | < 200 MB | 262 MB (250 MiB), in checkout_one | **not met** |" in text
    assert "| add (add + `git add -A` + `git commit`, fresh repository) | < 5 min | 290.0 s | met |" in text
    assert "| 1,000,000 (50×) | 1,000 | DVC | not run above 200,000 files (--scaling-dvc-max) |" in text
    assert "Not run: watchman is not on PATH." in text
    assert "| 1,000,000 | dataver | 325.0 MB | 0.0 MB | 0.0 MB | 325.0 MB | – | **1.00×** | 0.00× |" in text
