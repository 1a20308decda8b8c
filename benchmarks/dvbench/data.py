"""The generated data (from a seed, in the scratch folder) and helpers on it."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path

from .config import MIB, REPO_ROOT


def _stream(seed: int, label: str, index: int, size: int) -> bytes:
    """Deterministic incompressible bytes for (seed, label, index)."""
    return hashlib.shake_128(f"dataver-bench/{seed}/{label}/{index}".encode()).digest(size)


def generate_data(scratch: Path, cfg: dict, seed: int) -> Path:
    """Generate (once; reused while the seed and sizes match) big.bin, empty.bin, many/."""
    tag = f"data-s{seed}-b{cfg['big_size']}-n{cfg['nfiles']}x{cfg['ndirs']}-{cfg['min_size']}-{cfg['max_size']}"
    final = scratch / tag
    if (final / "COMPLETE").exists():
        return final
    tmp = scratch / (tag + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    print(f"generating data in {final} (seed {seed}) ...", file=sys.stderr)
    block = 16 * MIB
    with open(tmp / "big.bin", "wb") as f:
        left, i = cfg["big_size"], 0
        while left:
            n = min(block, left)
            f.write(_stream(seed, "big", i, n))
            left -= n
            i += 1
    (tmp / "empty.bin").touch()
    total = _write_many(tmp / "many", cfg, seed)
    (tmp / "COMPLETE").write_text(json.dumps({"many_bytes": total, **cfg}))
    os.sync()
    tmp.rename(final)
    print(f"generated in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return final


def _write_many(many: Path, cfg: dict, seed: int) -> int:
    """cfg's small files under many/ (dNNN/fNNNNN.bin, sizes and bytes from the seed);
    returns their total bytes. A tight os.open/os.write loop relative to each folder's
    descriptor: a million files take about a minute, most of it the file system's."""
    rng = random.Random(seed)
    per_dir = -(-cfg["nfiles"] // cfg["ndirs"])
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    total, dfd = 0, None
    try:
        for i in range(cfg["nfiles"]):
            if i % per_dir == 0:
                d = many / f"d{i // per_dir:03d}"
                d.mkdir(parents=True)
                if dfd is not None:
                    os.close(dfd)
                dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            size = rng.randint(cfg["min_size"], cfg["max_size"])
            total += size
            fd = os.open(f"f{i:05d}.bin", flags, 0o644, dir_fd=dfd)
            try:
                os.write(fd, _stream(seed, "many", i, size))
            finally:
                os.close(fd)
    finally:
        if dfd is not None:
            os.close(dfd)
    return total


def generate_many(scratch: Path, cfg: dict, seed: int) -> Path:
    """A data set with cfg's small files (many/): a cached one generated with any big-file
    size (many/ depends only on the seed, counts and sizes), else a new one with an empty
    big.bin. For --scaling, which times only the small files."""
    tag = f"-n{cfg['nfiles']}x{cfg['ndirs']}-{cfg['min_size']}-{cfg['max_size']}"
    for found in sorted(scratch.glob(f"data-s{seed}-b*{tag}")):
        if re.fullmatch(rf"data-s{seed}-b\d+{re.escape(tag)}", found.name) and (found / "COMPLETE").exists():
            return found
    return generate_data(scratch, {**cfg, "big_size": 0}, seed)


def warm(path: Path) -> None:
    """Read a file or tree once so it sits in the page cache."""
    files = [path] if path.is_file() else [Path(r) / f for r, _, fs in os.walk(path) for f in fs]
    buf = bytearray(8 * MIB)
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def count_files(path: Path) -> int:
    return sum(len(fs) for _, _, fs in os.walk(path))


def one_file(cfg: dict) -> str:
    """The file the one-file pulls ask for, relative to the repository root: the middle one
    of the small files (not the one readd_one rewrites)."""
    per_dir = -(-cfg["nfiles"] // cfg["ndirs"])
    i = cfg["nfiles"] // 2
    return f"data/d{i // per_dir:03d}/f{i:05d}.bin"


def cache_usage(cache: Path) -> dict[str, int]:
    """Objects (files) and their bytes in a tool's cache, leaving out its tmp/ folder and lock."""
    files = nbytes = 0
    for root, dirs, names in os.walk(cache):
        dirs[:] = [d for d in dirs if not (Path(root) == cache and d == "tmp")]
        for name in names:
            if Path(root) == cache and name == "lock":
                continue
            files += 1
            nbytes += os.lstat(os.path.join(root, name)).st_size
    return {"objects": files, "bytes": nbytes}


def scratch_dir(args) -> Path | None:
    """--scratch, created; None (after saying why) when it is inside the repository."""
    scratch = Path(args.scratch).resolve()
    if scratch == REPO_ROOT or REPO_ROOT in scratch.parents:
        print(f"--scratch must be outside the repository ({REPO_ROOT})", file=sys.stderr)
        return None
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch
