"""xxh3-128 vs blake3: ``Hasher.hash_file`` on one warm file, in one run.

For each thread count, both algorithms hash the same file (alternating which goes
first), plus each algorithm over bytes already in memory on one thread (the hash's
own speed, no reads). Medians and bests of --runs.

    python benchmarks/hash_algorithms.py --size-gib 1 --threads 1,2

Needs xxhash and blake3 (dataver's dependencies) and this repository on sys.path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dataver.hashing import CHUNK_SIZE, Hasher, digest_bytes  # noqa: E402

ALGORITHMS = ("xxh3-128", "blake3")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=1.0)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--file", help="hash this file instead of a generated one")
    args = ap.parse_args()
    size = int(args.size_gib * 2**30)
    tmp = None
    path = args.file
    if path is None:
        fd, path = tempfile.mkstemp(prefix="dataver-bench-")
        tmp = path
        with os.fdopen(fd, "wb") as f:
            for _ in range(0, size, CHUNK_SIZE):
                f.write(os.urandom(CHUNK_SIZE))
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:  # warm the page cache
            while f.read(CHUNK_SIZE):
                pass
        print(f"{size / 2**30:.2f} GiB file, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        data = os.urandom(256 * 2**20)
        for algo in ALGORITHMS:
            ts = [timed(lambda a=algo: digest_bytes(data, len(data), a)) for _ in range(args.runs)]
            print(f"{algo:9s} in memory, 1 thread: {len(data) / min(ts) / 2**30:.2f} GiB/s best")
        for threads in (int(t) for t in args.threads.split(",")):
            times: dict[str, list[float]] = {a: [] for a in ALGORITHMS}
            for run in range(args.runs):
                order = ALGORITHMS if run % 2 == 0 else ALGORITHMS[::-1]
                for algo in order:
                    with Hasher(threads, algorithm=algo) as h:
                        times[algo].append(timed(lambda h=h: h.hash_file(path)))
            for algo, ts in times.items():
                print(
                    f"{algo:9s} hash_file, {threads} thread(s): median {statistics.median(ts):.2f} s, "
                    f"best {min(ts):.2f} s ({size / min(ts) / 2**30:.2f} GiB/s)"
                )
    finally:
        if tmp is not None:
            os.unlink(tmp)


if __name__ == "__main__":
    main()
