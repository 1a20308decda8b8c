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


def files_cfg(base: dict, nfiles: int | None, ndirs: int | None) -> dict:
    """base with --files / --dirs applied: --files alone spreads the files one folder per
    FILES_PER_DIR, rounded up (at most one folder per file)."""
    cfg = dict(base)
    if nfiles is not None:
        cfg["nfiles"] = nfiles
        cfg["ndirs"] = ndirs or -(-nfiles // FILES_PER_DIR)
    elif ndirs is not None:
        cfg["ndirs"] = ndirs
    cfg["ndirs"] = min(cfg["ndirs"], cfg["nfiles"])
    return cfg
