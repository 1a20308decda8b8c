"""Constants and the data configuration: sizes of the full and quick data sets, the
git identity of the throwaway repositories, --files/--dirs."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
KIB, MIB, GIB = 1024, 1024**2, 1024**3

FULL = dict(big_size=2 * GIB, nfiles=20_000, ndirs=100, min_size=1 * KIB, max_size=64 * KIB, runs=3)
QUICK = dict(big_size=64 * MIB, nfiles=500, ndirs=10, min_size=1 * KIB, max_size=64 * KIB, runs=1)
# --files N without --dirs, and every count of --scaling: one folder per FILES_PER_DIR files,
# rounded up (the full run's 20,000 files in 100 folders).
FILES_PER_DIR = 200
# --scaling: default per-command limit, seconds (DVC on 200,000 files takes minutes).
SCALING_STEP_TIMEOUT = 1800
# --scaling-shape: the small files' sizes and how many go in a folder. "default" is the full
# run's (1-64 KiB, 200 a folder); "small" is issue 16's million files (50-600 bytes, ~310 MiB
# for 1,000,000 files in 1,000 folders of 1,000).
SCALING_SHAPES = {
    "default": dict(min_size=1 * KIB, max_size=64 * KIB, files_per_dir=FILES_PER_DIR),
    "small": dict(min_size=50, max_size=600, files_per_dir=1000),
}
# --scaling: DVC is not run above this many files unless --scaling-dvc-max says otherwise
# (DVC's add of 1,000,000 files takes hours).
SCALING_DVC_MAX = 200_000

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def human_size(n: int) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def files_cfg(base: dict, nfiles: int | None, ndirs: int | None, per_dir: int = FILES_PER_DIR) -> dict:
    """base with --files / --dirs applied: --files alone spreads the files one folder per
    per_dir (FILES_PER_DIR), rounded up (at most one folder per file)."""
    cfg = dict(base)
    if nfiles is not None:
        cfg["nfiles"] = nfiles
        cfg["ndirs"] = ndirs or -(-nfiles // per_dir)
    elif ndirs is not None:
        cfg["ndirs"] = ndirs
    cfg["ndirs"] = min(cfg["ndirs"], cfg["nfiles"])
    return cfg
