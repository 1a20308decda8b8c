"""Smoke test of the benchmark harness: `benchmarks/run.py --quick --files 100 --no-dvc`
runs every dataver step on tiny data and writes results JSON. It asserts nothing about
time. (100 small files rather than --quick's 500: the same steps in half the time.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"

DATAVER_STEPS = {
    "add_big",
    "hash_big",
    "hash_empty",
    "add_many",
    "status_clean",
    "readd_one",
    "push_local",
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

    text = doc.read_text()
    assert "| status, nothing changed |" in text
    assert "not run" in text  # the DVC column, with --no-dvc
