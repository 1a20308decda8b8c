"""Hasher scaling: throughput of dataver's chunked hasher at 1..N threads.

Compares, in one run and on one warm file: ``cat FILE > /dev/null``, a plain
aligned ``os.preadv`` read loop (the machine's read speed as Python sees it),
xxh3-128 over bytes already in memory, and ``Hasher.hash_file`` at each thread
count; then ``Hasher.hash_many`` over many small files. Medians of --runs.

    python benchmarks/hasher_scaling.py --size-gib 2 --threads 1,2,4,8,16

Needs only the xxhash package (and this repository on sys.path).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import xxhash  # noqa: E402

from dataver.hashing import CHUNK_SIZE, Hasher  # noqa: E402


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_file(path: str, size: int) -> None:
    block = os.urandom(CHUNK_SIZE)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def aligned_read(path: str) -> None:
    buf = mmap.mmap(-1, CHUNK_SIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while n := os.preadv(fd, [buf], offset):
            offset += n
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--threads", default="1,2,4,8,16")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--small-files", type=int, default=20000)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--json", default=None, help="write results here")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    scratch = args.dir or tempfile.mkdtemp(prefix="dataver-hasher-")
    os.makedirs(scratch, exist_ok=True)
    path = os.path.join(scratch, "big.bin")
    size = int(args.size_gib * 1024**3)
    make_file(path, size)
    aligned_read(path)  # warm the page cache
    gb = size / 1e9
    res: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "xxhash": xxhash.VERSION,
        },
        "size_bytes": size,
        "runs": args.runs,
    }
    cat = median_time(lambda: subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True), args.runs)
    res["cat_gbps"] = gb / cat
    res["aligned_read_gbps"] = gb / median_time(lambda: aligned_read(path), args.runs)
    data = os.urandom(256 * 1024 * 1024)
    in_memory = median_time(lambda: xxhash.xxh3_128_digest(data), args.runs)
    res["xxh3_in_memory_gbps"] = len(data) / 1e9 / in_memory
    data = b""
    res["hash_file_gbps"] = {}
    for n in threads:
        with Hasher(n) as h:
            h.hash_file(path)  # allocate each thread's buffer once
            res["hash_file_gbps"][n] = gb / median_time(lambda: h.hash_file(path), args.runs)
    small_dir = os.path.join(scratch, "small")
    os.makedirs(small_dir, exist_ok=True)
    payload = os.urandom(64 * 1024)
    paths = []
    total = 0
    for i in range(args.small_files):
        p = os.path.join(small_dir, f"{i % 100:02d}-{i}.bin")
        n = 1024 + (i * 7919) % (63 * 1024)
        with open(p, "wb") as f:
            f.write(payload[:n])
        paths.append(p)
        total += n
    res["small_files"] = {"count": len(paths), "bytes": total, "files_per_s": {}}
    for n in threads:
        with Hasher(n, small_jobs=n) as h:  # measure the raw scaling, past dataver's own cap
            list(h.hash_many(paths))
            t = median_time(lambda: list(h.hash_many(paths)), args.runs)
            res["small_files"]["files_per_s"][n] = len(paths) / t
    print(f"machine: {res['machine']}")
    print(f"file {size / 1024**3:.1f} GiB, warm; median of {args.runs}")
    print(
        f"cat: {res['cat_gbps']:.2f} GB/s   aligned preadv loop: {res['aligned_read_gbps']:.2f} GB/s   "
        f"xxh3 in memory (1 thread): {res['xxh3_in_memory_gbps']:.2f} GB/s"
    )
    print("| threads | hash_file GB/s | hash_many files/s |")
    print("|---:|---:|---:|")
    for n in threads:
        print(f"| {n} | {res['hash_file_gbps'][n]:.2f} | {res['small_files']['files_per_s'][n]:,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
