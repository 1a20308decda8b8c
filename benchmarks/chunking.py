"""Content-defined chunking: dedup against index size, for choosing the chunker's parameters (issue 13).

Generates, from --seed, under --scratch (default: a temporary folder, removed at the end;
a folder you name is kept, and its data reused by the next run with the same seed):

- **CSV** (``id,timestamp,user,amount,category,comment``, 60-120 bytes a row) at each of
  --sizes (default 64 MiB and 1 GiB), in three versions: v2 = v1 with 1 % of its rows
  edited in place (one run of rows in the middle) plus 1 % appended; v3 = v2 with 1 % of
  rows inserted at ~5 % and 1 % deleted at ~95 %. The "scattered" variant edits the same
  1 % as 20 runs spread over the file (v2s), then makes v3s from v2s the same way.
- **checkpoint**: --ckpt-mib (256) of float32 tensors, 40 of them, each after a 64-byte
  header; v2 rewrites the last 10 % of the tensors (a fine-tuned head) and appends one.
- **random**: 256 MiB of random bytes (chunking and zstd throughput, zstd on random chunks).

For each parameter set (min / avg / max), cut with ``pyfastcdc.FastCDC(avg - min, min_size,
max_size, normalized_chunking=1, seed=0)`` (pyfastcdc's chunks average about its avg_size
plus min_size) and name each chunk by its XXH3-128, then report: chunks per version, the
mean chunk size, the unique bytes of all versions (against v1's size), what a push of v2
after v1 uploads (v2's chunks not in v1, % of v2), what a pull of v3 into a clone with v2
downloads (% of v3), the file map per version at 36 bytes a chunk, the index per TB
(10^12 bytes) of unique data at 64 bytes a record (and the maps at 36 bytes a chunk), the
store with per-chunk zstd level 3 kept where it is <= 90 % of the chunk, and the
throughputs: cut_buf + XXH3-128 of each chunk, cut_buf alone, zstd of CSV and random chunks.
The CSV sizes up to --extra-max (64M) are also generated from each of --extra-seeds
(1-8): one seed's edits can fall luckily near existing boundaries, so the targets (issue
13) are checked on the worst figure over all seeds, per parameter set, and the pick is
the set that meets them all with the smallest index.

    python benchmarks/chunking.py                                   # ~7-10 min, ~5 GiB of scratch
    python benchmarks/chunking.py --sizes 64M --scratch /tmp/cb     # 2-3 min; data kept for the next run
    python benchmarks/chunking.py --json /tmp/chunking.json         # every figure as JSON too

Needs pyfastcdc, xxhash, zstandard (dataver's dependencies) and numpy (the test extras).
Writes nothing into the repository unless --json names a path there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xxhash
import zstandard
from pyfastcdc import FastCDC

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
PARAMS = {  # name: (min, avg, max)
    "8K/32K/128K": (8 * KIB, 32 * KIB, 128 * KIB),
    "16K/64K/256K": (16 * KIB, 64 * KIB, 256 * KIB),
    "32K/128K/512K": (32 * KIB, 128 * KIB, 512 * KIB),
    "64K/256K/1M": (64 * KIB, 256 * KIB, 1 * MIB),
    "512K/1M/8M": (512 * KIB, 1 * MIB, 8 * MIB),
}
MAP_ENTRY = 36  # bytes per chunk in a file's chunk map
INDEX_RECORD = 64  # bytes per record in a packed remote's index
TB = 10**12
ZSTD_LEVEL = 3
KEEP_COMPRESSED = 0.90  # keep the zstd form of a chunk only when it is at most this share of the raw one
TARGETS = {"store": 1.15, "push_pct": 5.0, "pull_pct": 5.0, "store_zstd": 0.5}

# -- data -----------------------------------------------------------------------------------
VOCAB = (
    "the a of to and in refund order late shipped customer account card fee monthly service premium basic "
    "upgrade cancel renewal invoice paid pending error duplicate charge credit debit transfer store online "
    "mobile app web discount coupon gift travel food fuel grocery rent utility phone internet insurance "
    "medical school books music video games sport hotel flight taxi train bus parking toll repair tools "
    "garden pets baby clothes shoes beauty"
).split()
CATEGORIES = (
    "groceries dining travel utilities rent salary refund transfer fees shopping health education "
    "entertainment insurance gifts other"
).split()
TIME_OF_DAY = [f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(86400)]
EPOCH = datetime.date(2026, 1, 1)


class CsvRows:
    """Rows ``id,timestamp,user,amount,category,comment``: the id gives the timestamp (about
    3 s apart); the rest comes from one 64-bit draw of ``rng`` per row. Comments are drawn from
    a pool of 65,536 phrases of 2-9 words."""

    def __init__(self, seed: int):
        pool_rng = random.Random(seed)
        self.pool = [" ".join(pool_rng.choice(VOCAB) for _ in range(pool_rng.randint(2, 9))) for _ in range(1 << 16)]
        self.days: dict[int, str] = {}

    def make(self, rng: random.Random, ids) -> bytes:
        out = []
        draw = rng.getrandbits
        pool, days = self.pool, self.days
        for i in ids:
            a = draw(64)
            s = i * 3 + (a & 3)
            day = days.get(s // 86400)
            if day is None:
                day = days[s // 86400] = (EPOCH + datetime.timedelta(days=s // 86400)).isoformat()
            out.append(
                f"{i},{day}{TIME_OF_DAY[s % 86400]},user{(a >> 2) % 50000:05d},{(a >> 18) % 100000}."
                f"{(a >> 35) % 100:02d},{CATEGORIES[(a >> 42) & 15]},{pool[a >> 48]}\n"
            )
        return "".join(out).encode()


def line_starts(data: bytes) -> np.ndarray:
    """Offsets of each row's first byte, and len(data) last."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    return np.concatenate(([0], ends)).astype(np.int64)


def csv_versions(size: int, seed: int) -> dict[str, bytes]:
    """v1, v2, v3 and the scattered variant's v2s, v3s, as described in the docstring."""
    gen = CsvRows(seed)
    rng = random.Random(seed + 1)
    parts, total, next_id = [], 0, 0
    while total < size:  # blocks of rows until the size is reached, then cut at a row end
        block = gen.make(rng, range(next_id, next_id + 50_000))
        parts.append(block)
        total += len(block)
        next_id += 50_000
    v1 = b"".join(parts)
    del parts
    starts = line_starts(v1)
    n = int(np.searchsorted(starts, size, side="right")) - 1  # whole rows within `size`
    v1 = v1[: starts[n]]
    starts = starts[: n + 1]
    p = n // 100  # 1 % of the rows
    fresh = iter(range(n, 10 * n))  # ids for new rows
    edit_rng = random.Random(seed + 2)

    def edited(v: bytes, st: np.ndarray, runs: list[tuple[int, int]]) -> bytes:
        out, pos = [], 0
        for first, count in runs:  # the same ids, new field values
            out += [v[st[pos] : st[first]], gen.make(edit_rng, range(first, first + count))]
            pos = first + count
        out.append(v[st[pos] :])
        return b"".join(out)

    appended = gen.make(edit_rng, [next(fresh) for _ in range(p)])
    v2 = edited(v1, starts, [(n // 2 - p // 2, p)]) + appended
    per_run = p // 20
    v2s = edited(v1, starts, [(int((k + 0.5) * n / 20), per_run) for k in range(20)]) + appended

    inserted = gen.make(edit_rng, [next(fresh) for _ in range(p)])

    def v3_of(v: bytes) -> bytes:
        st = line_starts(v)
        m = len(st) - 1
        ins, dele = st[m * 5 // 100], st[m * 95 // 100]
        return v[:ins] + inserted + v[ins:dele] + v[st[m * 95 // 100 + p] :]

    return {"v1": v1, "v2": v2, "v3": v3_of(v2), "v2s": v2s, "v3s": v3_of(v2s)}


def checkpoint_versions(size: int, seed: int, tensors: int = 40) -> dict[str, bytes]:
    """float32 tensors of N(0, 0.02), each after a 64-byte header; v2 rewrites the last 10 %
    of them and appends one more."""
    rng = np.random.Generator(np.random.PCG64(seed))
    count = size // tensors // 4

    def tensor(k: int) -> bytes:
        header = f"TENSOR layers.{k}.weight f32 [{count}] {count * 4}".encode().ljust(63) + b"\n"
        return header + (rng.standard_normal(count, dtype=np.float32) * 0.02).tobytes()

    v1_parts = [tensor(k) for k in range(tensors)]
    head = tensors // 10
    v2_parts = v1_parts[: tensors - head] + [tensor(k) for k in range(tensors - head, tensors + 1)]
    return {"v1": b"".join(v1_parts), "v2": b"".join(v2_parts)}


def random_bytes(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(rng.randbytes(min(MIB, size - off)) for off in range(0, size, MIB))


def write_data(
    scratch: Path, sizes: list[int], ckpt_size: int, seed: int, extra: dict[int, list[int]]
) -> dict[str, dict[str, Path]]:
    """Every data set's versions as files under ``scratch``; kept data from a run with the
    same seed and sizes is reused."""
    sets: dict[str, dict[str, Path]] = {}

    def ensure(name: str, make, seed: int = seed) -> None:
        folder = scratch / name
        done = folder / "COMPLETE"
        if done.exists() and json.loads(done.read_text()) == {"seed": seed}:
            sets[name] = {p.stem: p for p in sorted(folder.glob("v*.bin"))}
            return
        t = time.perf_counter()
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        sets[name] = {}
        for version, data in make().items():
            (folder / f"{version}.bin").write_bytes(data)
            sets[name][version] = folder / f"{version}.bin"
        done.write_text(json.dumps({"seed": seed}))
        print(f"# generated {name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    for size in sizes:
        ensure(f"csv-{human(size)}", lambda size=size: csv_versions(size, seed))
        for s in extra.get(size, []):
            ensure(f"csv-{human(size)}-seed{s}", lambda size=size, s=s: csv_versions(size, s), s)
    ensure(f"checkpoint-{human(ckpt_size)}", lambda: checkpoint_versions(ckpt_size, seed))
    ensure("random-256M", lambda: {"v1": random_bytes(256 * MIB, seed)})
    return sets


def human(n: float) -> str:
    for unit, div in (("G", GIB), ("M", MIB), ("K", KIB)):
        if n >= div:
            return f"{n / div:g}{unit}"
    return f"{n:g}"


def parse_size(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": KIB, "M": MIB, "G": GIB}.get(s[-1:], 1)
    return int(float(s.rstrip("KMG")) * mult)


# -- measuring ------------------------------------------------------------------------------
def cutter(params: tuple[int, int, int]) -> FastCDC:
    mn, avg, mx = params
    return FastCDC(avg - mn, min_size=mn, max_size=mx, normalized_chunking=1, seed=0)


def chunk_list(data: bytes, cdc: FastCDC, zsizes: dict[bytes, int] | None, zc) -> list[tuple[bytes, int]]:
    """(XXH3-128, length) of each chunk; with ``zsizes``, also the zstd size of each chunk
    not in it yet."""
    out = []
    for c in cdc.cut_buf(data):
        d = xxhash.xxh3_128_digest(c.data)
        out.append((d, c.length))
        if zsizes is not None and d not in zsizes:
            zsizes[d] = len(zc.compress(c.data))
    return out


def new_bytes(chunks: list[tuple[bytes, int]], have: set[bytes]) -> int:
    """Bytes of the distinct chunks not in ``have`` (what a transfer moves)."""
    seen, total = set(have), 0
    for d, n in chunks:
        if d not in seen:
            seen.add(d)
            total += n
    return total


def measure_set(name: str, files: dict[str, Path], params: tuple[int, int, int], zc) -> dict:
    cdc = cutter(params)
    zsizes: dict[bytes, int] = {}
    sizes, lists = {}, {}
    for version, path in files.items():
        data = path.read_bytes()
        sizes[version] = len(data)
        lists[version] = chunk_list(data, cdc, zsizes, zc)
        del data
    lengths = {d: n for lst in lists.values() for d, n in lst}

    def stats(versions: list[str]) -> dict:
        unique = {d for v in versions for d, _ in lists[v]}
        raw = sum(lengths[d] for d in unique)
        stored = sum(z if z <= KEEP_COMPRESSED * lengths[d] else lengths[d] for d, z in zsizes.items() if d in unique)
        zraw = sum(zsizes[d] for d in unique)
        out = {
            "versions": versions,
            "chunks": {v: len(lists[v]) for v in versions},
            "mean_chunk": sizes["v1"] / len(lists["v1"]),
            "unique_bytes": raw,
            "store": raw / sizes["v1"],
            "store_zstd": stored / sizes["v1"],
            "zstd_ratio": zraw / raw,
            "map_bytes": {v: MAP_ENTRY * len(lists[v]) for v in versions},
        }
        # push of v2 after v1: v2's chunks not in v1; pull of v3 into a clone with v2: v3's not in v2
        for prev, cur, key in zip(versions, versions[1:], ("push_pct", "pull_pct"), strict=False):
            out[key] = 100 * new_bytes(lists[cur], {d for d, _ in lists[prev]}) / sizes[cur]
        return out

    result = {"sizes": sizes}
    if "v3" in files:
        result["contiguous"] = stats(["v1", "v2", "v3"])
        result["scattered"] = stats(["v1", "v2s", "v3s"])
    else:
        result["contiguous"] = stats(sorted(files))
    return result


def throughput(data: bytes, params: tuple[int, int, int], runs: int = 3) -> dict:
    """Best of ``runs``: MB/s of cut_buf + XXH3-128 of each chunk, and of cut_buf alone."""
    cdc = cutter(params)
    best_hash = best_cut = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        for c in cdc.cut_buf(data):
            xxhash.xxh3_128_digest(c.data)
        best_hash = min(best_hash, time.perf_counter() - t)
        t = time.perf_counter()
        for _c in cdc.cut_buf(data):
            pass
        best_cut = min(best_cut, time.perf_counter() - t)
    return {"cut_hash_mb_s": len(data) / best_hash / 1e6, "cut_mb_s": len(data) / best_cut / 1e6}


def zstd_speed(data: bytes, params: tuple[int, int, int], zc) -> dict:
    """Per-chunk zstd of ``data``'s chunks: compressed/raw and input MB/s."""
    chunks = [bytes(c.data) for c in cutter(params).cut_buf(data)]
    t = time.perf_counter()
    z = sum(len(zc.compress(c)) for c in chunks)
    dt = time.perf_counter() - t
    return {"ratio": z / len(data), "mb_s": len(data) / dt / 1e6}


# -- report ---------------------------------------------------------------------------------
def worst(result: dict, name: str, seeds: list[str]) -> dict:
    """The largest of each figure over the data set's seeds, per edit pattern."""
    runs = [result["data"][name]] + [result["data"][f"{name}-seed{s}"] for s in seeds]
    return {
        variant: {k: max(r[variant][k] for r in runs) for k in ("store", "push_pct", "pull_pct", "store_zstd")}
        for variant in ("contiguous", "scattered")
    }


def meets(result: dict) -> dict:
    """Per CSV size, whether the contiguous-edit case meets each target in its worst seed."""
    return {
        name: {k: w["contiguous"][k] <= limit for k, limit in TARGETS.items()} for name, w in result["worst"].items()
    }


def report(res: dict) -> str:
    lines = [
        f"`{res['command']}`, {res['date']}, {res['machine']}.",
        "",
    ]
    for ds in res["datasets"]:
        for variant in ("contiguous", "scattered"):
            first = res["params"][next(iter(res["params"]))]["data"][ds]
            if variant not in first:
                continue
            s0 = first[variant]
            vs = s0["versions"]
            lines += [
                f"**{ds}{' (scattered edits: 20 runs)' if variant == 'scattered' else ''}** "
                f"(v1 {first['sizes']['v1'] / MIB:.1f} MiB)",
                "",
                "| min/avg/max | chunks "
                + " / ".join(vs)
                + " | mean chunk | unique bytes / v1 | push v2 % "
                + ("| pull v3 % " if len(vs) > 2 else "")
                + "| map per version | with zstd / v1 | zstd ratio |",
                "|---|---:|---:|---:|---:|" + ("---:|" if len(vs) > 2 else "") + "---:|---:|---:|",
            ]
            for pname, pres in res["params"].items():
                s = pres["data"][ds][variant]
                lines.append(
                    f"| {pname} | "
                    + " / ".join(str(s["chunks"][v]) for v in vs)
                    + f" | {s['mean_chunk'] / KIB:.1f} KiB | {s['store']:.3f} | {s['push_pct']:.2f} "
                    + (f"| {s['pull_pct']:.2f} " if len(vs) > 2 else "")
                    + f"| {s['map_bytes']['v1'] / KIB:.1f} KiB | {s['store_zstd']:.3f} | {s['zstd_ratio']:.3f} |"
                )
            lines.append("")
    for name, seeds in res["extra_seeds"].items():
        lines += [
            f"**{name}, worst of {1 + len(seeds)} seeds** ({res['seed']} and {', '.join(map(str, seeds))}; "
            "each figure's largest value; the targets are judged on these)",
            "",
            "| min/avg/max | unique bytes / v1 | push v2 % | pull v3 % | with zstd / v1 "
            "| scattered: unique / v1 | scattered: push v2 % |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for pname, pres in res["params"].items():
            c, s = pres["worst"][name]["contiguous"], pres["worst"][name]["scattered"]
            lines.append(
                f"| {pname} | {c['store']:.3f} | {c['push_pct']:.2f} | {c['pull_pct']:.2f} | {c['store_zstd']:.3f} "
                f"| {s['store']:.3f} | {s['push_pct']:.2f} |"
            )
        lines.append("")
    lines += [
        "**Index size and speed** (index: 64 bytes a chunk record per TB of unique data, at the mean chunk "
        "of the random data; maps: 36 bytes a chunk per TB of file versions; speeds: best of 3, one core)",
        "",
        "| min/avg/max | mean chunk (random) | index per TB | maps per TB | cut + XXH3-128 | cut alone "
        "| zstd CSV chunks | zstd random chunks | meets targets |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for pname, pres in res["params"].items():
        ok = all(all(v.values()) for v in pres["meets"].values())
        misses = [f"{ds}: {k}" for ds, v in pres["meets"].items() for k, good in v.items() if not good]
        lines.append(
            f"| {pname} | {pres['mean_chunk_random'] / KIB:.1f} KiB | {pres['index_per_tb'] / 1e6:.0f} MB "
            f"| {pres['maps_per_tb'] / 1e6:.0f} MB | {pres['speed']['cut_hash_mb_s']:.0f} MB/s "
            f"| {pres['speed']['cut_mb_s']:.0f} MB/s | {pres['zstd_csv']['mb_s']:.0f} MB/s "
            f"(×{pres['zstd_csv']['ratio']:.3f}) | {pres['zstd_random']['mb_s']:.0f} MB/s "
            f"(×{pres['zstd_random']['ratio']:.4f}) | {'yes' if ok else 'no: ' + ', '.join(misses)} |"
        )
    lines += ["", f"Pick (meets every target with the smallest index): **{res['pick'] or 'none'}**"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scratch", help="folder for the generated data (default: a temporary one, removed)")
    ap.add_argument("--sizes", default="64M,1G", help="CSV sizes (default 64M,1G)")
    ap.add_argument("--ckpt-mib", type=int, default=256)
    ap.add_argument("--params", default=",".join(PARAMS), help="parameter sets, names as in PARAMS")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--extra-seeds", default="1,2,3,4,5,6,7,8", help="more seeds for the smaller CSVs ('' for none)")
    ap.add_argument("--extra-max", default="64M", help="the largest CSV size the extra seeds apply to")
    ap.add_argument("--json", help="write every figure here")
    args = ap.parse_args()

    sizes = [parse_size(s) for s in args.sizes.split(",")]
    own_scratch = args.scratch is None
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="dataver-chunking-"))
    scratch.mkdir(parents=True, exist_ok=True)
    zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    try:
        seeds = [int(s) for s in args.extra_seeds.split(",") if s.strip()]
        extra = {size: seeds for size in sizes if size <= parse_size(args.extra_max)}
        sets = write_data(scratch, sizes, args.ckpt_mib * MIB, args.seed, extra)
        csv_names = [f"csv-{human(s)}" for s in sizes]
        seeded = [f"csv-{human(size)}-seed{s}" for size, ss in extra.items() for s in ss]
        datasets = csv_names + [f"checkpoint-{human(args.ckpt_mib * MIB)}"]
        rnd = sets["random-256M"]["v1"].read_bytes()
        csv_sample = sets[csv_names[0]]["v1"].read_bytes()
        res = {
            "command": "python benchmarks/chunking.py " + " ".join(sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}",
            "datasets": datasets,
            "seed": args.seed,
            "extra_seeds": {f"csv-{human(size)}": ss for size, ss in extra.items()},
            "targets": TARGETS,
            "params": {},
        }
        for pname in args.params.split(","):
            params = PARAMS[pname]
            t = time.perf_counter()
            pres = {"min_avg_max": params, "data": {}}
            for ds in datasets + seeded:
                pres["data"][ds] = measure_set(ds, sets[ds], params, zc)
            pres["worst"] = {
                name: worst(pres, name, extra.get(size, [])) for name, size in zip(csv_names, sizes, strict=True)
            }
            mean_random = len(rnd) / sum(1 for _ in cutter(params).cut_buf(rnd))
            pres["mean_chunk_random"] = mean_random
            pres["index_per_tb"] = INDEX_RECORD * TB / mean_random
            pres["maps_per_tb"] = MAP_ENTRY * TB / mean_random
            pres["speed"] = throughput(rnd, params)
            pres["zstd_csv"] = zstd_speed(csv_sample, params, zc)
            pres["zstd_random"] = zstd_speed(rnd, params, zc)
            pres["meets"] = meets(pres)
            res["params"][pname] = pres
            print(f"# {pname}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
        good = [p for p, r in res["params"].items() if all(all(v.values()) for v in r["meets"].values())]
        res["pick"] = min(good, key=lambda p: res["params"][p]["index_per_tb"]) if good else None
        print(report(res))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
