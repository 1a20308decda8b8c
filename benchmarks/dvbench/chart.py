"""The PNG chart, drawn by `run.py --plot` in an interpreter that has matplotlib."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .config import REPO_ROOT

RUN_PY = REPO_ROOT / "benchmarks" / "run.py"


def plot(results_path: str, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    result = json.loads(Path(results_path).read_text())
    summary = result["summary"]
    rows = [s for s in result["steps"] if "ref" not in s["tools"] and summary.get(s["key"])]
    rows = [s for s in rows if s["key"] != "hash_empty"]
    labels = [s["label"].replace("`", "") for s in rows]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.6))
    ys = list(range(len(rows)))
    h = 0.38
    for i, (tool, color) in enumerate((("dataver", "#2a7ab9"), ("dvc", "#945ba8"))):
        present = [
            (y + (i - 0.5) * h, summary[s["key"]][tool]["median_s"], summary[s["key"]].get("ratio_dvc_over_dataver"))
            for y, s in zip(ys, rows, strict=True)
            if summary[s["key"]].get(tool)
        ]
        if not present:
            continue
        pos, vals, ratios = zip(*present, strict=True)
        bars = ax.barh(pos, vals, h, label="dataver" if tool == "dataver" else "DVC", color=color)
        for b, v, r in zip(bars, vals, ratios, strict=True):
            text = f"{v:.2f}s" + (f"  ({r:.2f}× dataver)" if r and tool == "dvc" else "")
            ax.text(b.get_width() * 1.05, b.get_y() + b.get_height() / 2, text, va="center", fontsize=8)
    ax.set_yticks(ys, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlim(right=ax.get_xlim()[1] * 1.6)
    ax.set_xlabel("median wall time, seconds (log scale; lower is better)")
    ax.set_title(
        f"dataver vs DVC — {result['machine']['date_utc']}, {result['machine']['nproc']} CPUs",
        fontsize=10,
        loc="left",
    )
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False, fontsize=9)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def draw_chart(results_path: Path, png: Path, dvc_venv: Path) -> str | None:
    """Draw with an interpreter that has matplotlib; return a note if none has."""
    candidates = [sys.executable, str(dvc_venv / "bin" / "python")]
    for py in candidates:
        if not Path(py).exists():
            continue
        ok = subprocess.run([py, "-c", "import matplotlib"], capture_output=True).returncode == 0
        if ok:
            r = subprocess.run([py, str(RUN_PY), "--plot", str(results_path), str(png)], capture_output=True, text=True)
            if r.returncode == 0:
                return None
            return f"chart failed: {r.stderr.strip()[-500:]}"
    return "chart skipped: matplotlib is not importable here nor in the DVC venv (pip install matplotlib)."
