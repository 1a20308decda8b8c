#!/usr/bin/env python3
"""Three versions of a CSV through dataver and DVC, end to end (issue 13's targets).

The data is ``benchmarks/chunking.py``'s seeded CSV (``csv_versions``: v2 = v1 with 1 % of
its rows edited in place in the middle plus 1 % appended; v3 = v2 with 1 % inserted at
~5 % and 1 % deleted at ~95 %), written once to ``--scratch/data-SIZE-seedN/`` and kept.
Per remote kind (a local folder; S3 on SeaweedFS, ``--s3``, the default) and per tool
(dataver, DVC with ``--dvc``), the tool going first alternating from kind to kind, in a
fresh git repository:

1. ``TOOL init``, a default remote; then for v1, v2, v3 in turn: the file written as
   ``table.csv`` (untimed: the old one unlinked first, so a linked cache file is never
   written through), ``TOOL add table.csv && git add -A && git commit`` (timed: "add"),
   ``TOOL push`` (timed: wall, CPU, peak RSS from ``/usr/bin/time``; bytes up: the
   S3 server's ``received`` delta, or the growth of the local remote folder, ``du -sb``;
   S3 requests by type).
2. The remote after the three pushes: its bytes (``du -sb``; S3: the object sizes under the
   tool's prefix) and, for dataver, the index's figures: the chunk bytes it names
   uncompressed (``entry.size`` of every chunk record: the "uncompressed-equivalent"
   store) and stored, and the maps.
3. The tool's local cache (``du -sb .dataver/cache`` / ``.dvc/cache``).
4. ``git clone``; ``git checkout`` the v2 commit and ``TOOL pull`` (timed); then the v3
   commit and ``TOOL pull`` again (timed): bytes down from the S3 server's ``sent``
   delta (for the local folder no transfer figure: reads of the remote cannot be told
   from reads of the clone's own cache); the pulled ``table.csv`` compared byte for byte
   with v2, then v3; the clone's cache size.

Ratios: the store against one version (v1's size); a push against the version pushed;
a pull against the version pulled. Issue 13's targets: store <= 1.15x uncompressed-
equivalent, push of v2 <= 5 %, pull of v3 into a clone with v2 <= 5 %, store with
(dataver's default) compression <= 0.5x; the same at 64 MiB.

    source /tmp/venv/bin/activate
    python benchmarks/versions.py --size 64M --dvc /path/to/dvc          # ~2-4 min on 2 cores
    python benchmarks/versions.py --size 1G --dvc /path/to/dvc --json out.json
    python benchmarks/versions.py --size 64M --no-s3                       # dataver, local folder only

dataver is ``python -m dataver`` of this interpreter with this checkout first on
PYTHONPATH (it checks the subprocess imports this checkout's ``dataver``). --s3 needs
boto3 and SeaweedFS's ``weed`` (the test extras), s3fs beside dataver, dvc-s3 beside DVC.
Every command goes to ``--scratch/commands.log``; the repositories are removed after each
tool and kind (``--keep`` keeps them); the data is kept for the next run (remove
``--scratch`` yourself).
"""

from __future__ import annotations

import argparse
import datetime
import filecmp
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from chunking import TARGETS, csv_versions, human, parse_size  # noqa: E402
from dvbench.config import GIT_ENV  # noqa: E402
from dvbench.runner import Runner, Sample  # noqa: E402
from dvbench.tools import Dataver, Dvc, Tool  # noqa: E402

MIB = 1 << 20
FILE = "table.csv"
BUCKET = "bench"


# -- data ---------------------------------------------------------------------------------------
def make_data(scratch: Path, size: int, seed: int) -> dict[str, Path]:
    """v1, v2, v3 of chunking.py's CSV, generated once per (size, seed) and kept."""
    folder = scratch / f"data-{human(size)}-seed{seed}"
    done = folder / "COMPLETE"
    names = ("v1", "v2", "v3")
    paths = {v: folder / f"{v}.csv" for v in names}
    if done.exists() and json.loads(done.read_text()) == {"seed": seed, "size": size}:
        return paths
    t = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    versions = csv_versions(size, seed)
    for v in names:
        paths[v].write_bytes(versions[v])
    del versions
    done.write_text(json.dumps({"seed": seed, "size": size}))
    print(f"# generated {folder} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return paths


def du(path: Path) -> int:
    if not path.exists():
        return 0
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


# -- the remote's index (dataver) ----------------------------------------------------------------
class S3Files:
    """What ``dataver.packstore.PackIndex`` needs of a remote (``Files``), over boto3."""

    def __init__(self, client, bucket: str, prefix: str):
        self.client, self.bucket, self.prefix = client, bucket, prefix.rstrip("/")
        self.where = f"s3://{bucket}/{self.prefix}"

    def read_file(self, rel: str, start: int = 0, end: int | None = None) -> bytes:
        kw = {}
        if start or end is not None:
            kw["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        return self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}", **kw)["Body"].read()

    def list_files(self, rel_dir: str) -> list[tuple[str, int, float]]:
        out = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/{rel_dir}/"
        )
        for page in pages:
            for o in page.get("Contents", []):
                out.append((o["Key"].rsplit("/", 1)[1], o["Size"], o["LastModified"].timestamp()))
        return out


def index_figures(files) -> dict:
    """Chunk and map records of a packed remote's merged index: counts, bytes as named
    (``size``) and as stored (``stored``)."""
    from dataver import packfmt
    from dataver.packstore import PackIndex

    out = {
        "chunks": 0,
        "chunk_bytes": 0,
        "chunk_stored": 0,
        "chunks_zstd": 0,
        "maps": 0,
        "map_bytes": 0,
        "map_stored": 0,
        "other": 0,
        "other_stored": 0,
        "index_files": 0,
    }
    index = PackIndex(files)
    for r in index.all_records():
        e = r.entry
        if e.kind == packfmt.KIND_CHUNK:
            out["chunks"] += 1
            out["chunk_bytes"] += e.size
            out["chunk_stored"] += e.stored
            out["chunks_zstd"] += e.codec == packfmt.CODEC_ZSTD
        elif e.kind == packfmt.KIND_MAP:
            out["maps"] += 1
            out["map_bytes"] += e.size
            out["map_stored"] += e.stored
        else:
            out["other"] += 1
            out["other_stored"] += e.stored
    out["index_files"] = len(index.index_ids)
    return out


# -- S3 ------------------------------------------------------------------------------------------
class S3:
    def __init__(self):
        from dvbench.s3 import BenchS3

        self.b = BenchS3("seaweedfs")
        self.endpoint, self.env, self.label, self.client = self.b.endpoint, self.b.env, self.b.label, self.b.client

    def snapshot(self) -> tuple[dict, dict]:
        return self.b.counts(), self.b.traffic()

    def usage(self, prefix: str) -> tuple[int, int]:
        """(objects, bytes) under ``prefix/``."""
        n = total = 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{prefix}/"):
            for o in page.get("Contents", []):
                n += 1
                total += o["Size"]
        return n, total

    def stop(self):
        self.b.stop()


def delta(a: dict, b: dict) -> dict:
    return {k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0)}


# -- one tool, one remote kind -------------------------------------------------------------------
class Case:
    def __init__(self, tool: Tool, kind: str, data: dict[str, Path], work: Path, runner: Runner, s3: S3 | None):
        self.t, self.kind, self.data, self.work, self.r, self.s3 = tool, kind, data, work, runner, s3
        self.repo, self.clone = work / "repo", work / "clone"
        self.remote = work / "remote"
        self.prefix = f"{tool.name}-{kind}"
        self.env = dict(tool.env, **(s3.env if s3 else {}))
        self.res: dict = {"tool": tool.name, "remote": kind, "pushes": {}, "pulls": {}}

    def sh(self, *argv: str, cwd: Path | None = None) -> str:
        return self.r.run(list(argv), cwd or self.repo, self.env)[1]

    def timed(self, cmds: list[list[str]], cwd: Path) -> dict:
        os.sync()
        before = self.s3.snapshot() if self.s3 else None
        remote0 = du(self.remote) if self.kind == "local" else 0
        sample: Sample
        sample, _ = self.r.measure([(c, cwd) for c in cmds], self.env)
        row = {
            "seconds": round(sample.seconds, 3),
            "cpu_s": round(sample.cpu_s, 3),
            "max_rss_mib": round(sample.max_rss_kib / 1024, 1),
        }
        if self.s3:
            counts, traffic = self.s3.snapshot()
            row["requests"] = delta(before[0], counts)
            t = delta(before[1], traffic)
            row["bytes_up"], row["bytes_down"] = t.get("received", 0), t.get("sent", 0)
        else:
            row["bytes_up"] = du(self.remote) - remote0  # the remote folder's growth
        os.sync()
        return row

    def run(self) -> dict:
        t, repo = self.t, self.repo
        self.work.mkdir(parents=True)
        repo.mkdir()
        self.sh("git", "init", "-q")
        for c in t.init_cmds():
            self.sh(*c)
        url = str(self.remote) if self.kind == "local" else f"s3://{BUCKET}/{self.prefix}"
        for c in t.remote_add("store", url):
            self.sh(*c)
        if self.s3:
            for c in t.remote_endpoint("store", self.s3.endpoint):
                self.sh(*c)
        self.sh("git", "add", "-A")
        self.sh("git", "commit", "-q", "-m", "init")
        commits = {}
        for v, src in self.data.items():
            target = repo / FILE
            if target.exists():
                target.unlink()
            shutil.copyfile(src, target)
            add = self.timed([t.add(FILE), ["git", "add", "-A"], ["git", "commit", "-q", "-m", v]], repo)
            push = self.timed([t.push()], repo)
            size = src.stat().st_size
            push["size"] = size
            push["up_pct"] = round(100 * push["bytes_up"] / size, 3)
            push["add_seconds"], push["add_cpu_s"], push["add_max_rss_mib"] = (
                add["seconds"],
                add["cpu_s"],
                add["max_rss_mib"],
            )
            if t.name == "dataver":  # the chunk bytes this push added, uncompressed (untimed: the index)
                chunk_bytes = index_figures(self.files())["chunk_bytes"]
                push["new_chunk_bytes"] = chunk_bytes - sum(p["new_chunk_bytes"] for p in self.res["pushes"].values())
                push["new_chunk_pct"] = round(100 * push["new_chunk_bytes"] / size, 3)
            self.res["pushes"][v] = push
            commits[v] = self.sh("git", "rev-parse", "HEAD").strip()
            self.log(f"add+push {v}", push)
        one = self.data["v1"].stat().st_size
        if self.kind == "local":
            store = {"bytes": du(self.remote)}
            store["files"] = sum(len(f) for _, _, f in os.walk(self.remote))
        else:
            n, b = self.s3.usage(self.prefix)
            store = {"bytes": b, "objects": n}
        store["x_one_version"] = round(store["bytes"] / one, 4)
        if t.name == "dataver":
            idx = index_figures(self.files())
            store["index"] = idx
            store["uncompressed_equivalent"] = idx["chunk_bytes"]
            store["uncompressed_x_one_version"] = round(idx["chunk_bytes"] / one, 4)
        else:  # DVC stores whole files, uncompressed
            store["uncompressed_equivalent"] = store["bytes"]
            store["uncompressed_x_one_version"] = store["x_one_version"]
        cache = du(repo / t.cache_dir)
        store["cache_bytes"], store["cache_x_one_version"] = cache, round(cache / one, 4)
        self.res["store"] = store
        self.res["one_version"] = one
        self.log("store", store)

        # the clone: v2, then v3
        self.sh("git", "clone", "-q", str(repo), str(self.clone), cwd=self.work)
        maps: dict[str, list] = {}
        for v in ("v2", "v3"):
            self.sh("git", "checkout", "-q", commits[v], cwd=self.clone)
            pull = self.timed([t.pull()], self.clone)
            size = self.data[v].stat().st_size
            pull["size"] = size
            if self.s3:
                pull["down_pct"] = round(100 * pull["bytes_down"] / size, 3)
            else:
                del pull["bytes_up"]  # the remote folder does not grow on a pull
            pull["identical"] = filecmp.cmp(self.clone / FILE, self.data[v], shallow=False)
            pull["clone_cache_bytes"] = du(self.clone / t.cache_dir)
            if t.name == "dataver":  # the chunks the new version needed that the clone lacked, uncompressed
                maps[v] = self.new_map(maps)
                if v == "v3" and maps["v2"] is not None and maps["v3"] is not None:
                    have = {d for d, _ in maps["v2"]}
                    need = {d: n for d, n in maps["v3"] if d not in have}
                    pull["new_chunk_bytes"] = sum(need.values())
                    pull["new_chunk_pct"] = round(100 * pull["new_chunk_bytes"] / size, 3)
            self.res["pulls"][v] = pull
            self.log(f"pull {v}", pull)
            if not pull["identical"]:
                self.res.setdefault("errors", []).append(f"pulled {FILE} at {v} differs from {v}")
        return self.res

    def new_map(self, seen: dict[str, list]) -> list | None:
        """The chunk list of the one map in the clone's cache (``maps/``, kept by dataver for each
        chunked file it rebuilt) that is not among ``seen``'s; None if not exactly one."""
        from dataver import packfmt

        root = self.clone / self.t.cache_dir / "maps"
        lists = [packfmt.parse_map(p.read_bytes(), str(p))[1] for p in sorted(root.glob("*/*")) if p.is_file()]
        new = [m for m in lists if m not in seen.values()]
        return new[0] if len(new) == 1 else None

    def files(self):
        """The remote's files, for ``PackIndex``."""
        if self.kind == "local":
            from dataver.remotes import LocalRemoteStore

            return LocalRemoteStore("store", str(self.remote), {})
        return S3Files(self.s3.client, BUCKET, self.prefix)

    def log(self, what: str, row: dict) -> None:
        print(f"  {self.t.name:7} {self.kind:5} {what:12} {json.dumps(row)}", file=sys.stderr)


# -- report --------------------------------------------------------------------------------------
def mib(n: int) -> str:
    return f"{n / MIB:,.2f} MiB"


ORDER = [
    "store, uncompressed-equivalent",
    "push of v2 after v1",
    "push of v2 after v1, new chunks uncompressed",
    "pull of v3 into a clone with v2",
    "pull of v3 into a clone with v2, new chunks uncompressed",
    "store as stored (compressed)",
]


def targets(cases: list[dict]) -> list[dict]:
    """Issue 13's targets per (tool, remote kind)."""
    out = []
    for c in cases:
        s = c["store"]
        rows = [
            ("store, uncompressed-equivalent", s["uncompressed_x_one_version"], TARGETS["store"], "x"),
            ("push of v2 after v1", c["pushes"]["v2"]["up_pct"], TARGETS["push_pct"], "%"),
            ("store as stored (compressed)", s["x_one_version"], TARGETS["store_zstd"], "x"),
        ]
        if "new_chunk_pct" in c["pushes"]["v2"]:
            rows.insert(2, (ORDER[2], c["pushes"]["v2"]["new_chunk_pct"], TARGETS["push_pct"], "%"))
        if "new_chunk_pct" in c["pulls"].get("v3", {}):
            rows.append((ORDER[4], c["pulls"]["v3"]["new_chunk_pct"], TARGETS["pull_pct"], "%"))
        if "down_pct" in c["pulls"].get("v3", {}):
            rows.insert(2, ("pull of v3 into a clone with v2", c["pulls"]["v3"]["down_pct"], TARGETS["pull_pct"], "%"))
        for name, value, limit, unit in rows:
            out.append(
                {
                    "tool": c["tool"],
                    "remote": c["remote"],
                    "target": name,
                    "value": value,
                    "limit": limit,
                    "unit": unit,
                    "met": value <= limit,
                }
            )
    return out


def req(r: dict | None) -> str:
    if not r:
        return "—"
    return " ".join(f"{k} {v}" for k, v in sorted(r.items()))


def markdown(res: dict) -> str:
    sizes = res["sizes"]
    lines = [
        f"**{res['size_label']} CSV** (v1 {sizes['v1']:,} B, v2 {sizes['v2']:,} B, v3 {sizes['v3']:,} B; seed "
        f"{res['seed']}); {res['machine']}; {res['date']}; S3: {res.get('s3_server') or 'not run'}.",
        "",
        "Pushes (each after the `add` + `git commit` of that version; bytes up: the S3 server's object bytes "
        "received, or the local remote folder's growth):",
        "",
        "| tool | remote | version | add s | push s | push CPU s | push peak RSS | bytes up | % of the file "
        "| new chunks, uncompressed | S3 requests |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in res["cases"]:
        for v, p in c["pushes"].items():
            new = f"{p['new_chunk_bytes']:,} ({p['new_chunk_pct']:.2f} %)" if "new_chunk_bytes" in p else "—"
            lines.append(
                f"| {c['tool']} | {c['remote']} | {v} | {p['add_seconds']:.2f} | {p['seconds']:.2f} | {p['cpu_s']:.2f} "
                f"| {p['max_rss_mib']:.0f} MiB | {p['bytes_up']:,} | {p['up_pct']:.2f} % | {new} "
                f"| {req(p.get('requests'))} |"
            )
    lines += [
        "",
        "The remote and the cache after v1, v2, v3 (× = against one version, v1):",
        "",
        "| tool | remote | store bytes | × | uncompressed-equivalent | × | chunks (zstd) / maps / index files "
        "| local cache | × |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for c in res["cases"]:
        s = c["store"]
        i = s.get("index")
        parts = f"{i['chunks']} ({i['chunks_zstd']}) / {i['maps']} / {i['index_files']}" if i else "whole files"
        lines.append(
            f"| {c['tool']} | {c['remote']} | {s['bytes']:,} | {s['x_one_version']:.3f} | "
            f"{s['uncompressed_equivalent']:,} | {s['uncompressed_x_one_version']:.3f} | {parts} | "
            f"{s['cache_bytes']:,} | {s['cache_x_one_version']:.2f} |"
        )
    lines += [
        "",
        "Pulls in a `git clone` (checkout of the v2 commit, pull; then the v3 commit, pull; bytes down: "
        "the S3 server's object bytes sent, not measured for the local folder):",
        "",
        "| tool | remote | version | pull s | CPU s | peak RSS | bytes down | % of the file "
        "| new chunks, uncompressed | S3 requests | identical | clone's cache |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for c in res["cases"]:
        for v, p in c["pulls"].items():
            down = f"{p['bytes_down']:,}" if "bytes_down" in p else "—"
            pct = f"{p['down_pct']:.2f} %" if "down_pct" in p else "—"
            new = f"{p['new_chunk_bytes']:,} ({p['new_chunk_pct']:.2f} %)" if "new_chunk_bytes" in p else "—"
            lines.append(
                f"| {c['tool']} | {c['remote']} | {v} | {p['seconds']:.2f} | {p['cpu_s']:.2f} | "
                f"{p['max_rss_mib']:.0f} MiB | {down} | {pct} | {new} | {req(p.get('requests'))} | "
                f"{'yes' if p['identical'] else '**no**'} | {p['clone_cache_bytes']:,} |"
            )
    lines += [
        "",
        "Issue 13's targets:",
        "",
        "| target | limit | " + " | ".join(f"{c['tool']} {c['remote']}" for c in res["cases"]) + " |",
        "|---|---:|" + "---:|" * len(res["cases"]),
    ]
    by = {(t["tool"], t["remote"], t["target"]): t for t in res["targets"]}
    names = sorted(dict.fromkeys(t["target"] for t in res["targets"]), key=ORDER.index)
    for name in names:
        limit = next(t for t in res["targets"] if t["target"] == name)
        unit = limit["unit"]
        cells = []
        for c in res["cases"]:
            t = by.get((c["tool"], c["remote"], name))
            if t is None:
                cells.append("—")
            else:
                v = f"{t['value']:.2f} %" if unit == "%" else f"{t['value']:.3f}×"
                cells.append(f"{v} {'met' if t['met'] else 'missed'}")
        lim = f"≤ {limit['limit']:g} %" if unit == "%" else f"≤ {limit['limit']:g}×"
        lines.append(f"| {name} | {lim} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="64M", help="the CSV's size: 64M, 1G, ... (default 64M)")
    ap.add_argument("--seed", type=int, default=13, help="chunking.py's default seed")
    ap.add_argument("--scratch", default="/tmp/versions-bench")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--dvc", help="DVC executable (default: dataver only)")
    ap.add_argument("--s3", action=argparse.BooleanOptionalAction, default=True, help="also S3 on SeaweedFS")
    ap.add_argument("--keep", action="store_true", help="keep the repositories and remotes")
    args = ap.parse_args()

    scratch = Path(args.scratch).resolve()
    if scratch == REPO_ROOT or REPO_ROOT in scratch.parents:
        ap.error("--scratch must be outside the repository")
    scratch.mkdir(parents=True, exist_ok=True)
    size = parse_size(args.size)
    data = make_data(scratch, size, args.seed)

    dataver = Dataver([sys.executable, "-m", "dataver"])
    dataver.env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    where = subprocess.run(
        [sys.executable, "-c", "import dataver; print(dataver.__file__)"],
        env=dict(os.environ, **dataver.env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(REPO_ROOT):
        raise SystemExit(f"python -m dataver imports {where}, not this checkout's")
    tools: list[Tool] = [dataver]
    if args.dvc:
        tools.append(Dvc([args.dvc], scratch / "dvc-site-cache"))

    runs = scratch / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runner = Runner(scratch / "commands.log", base_env=GIT_ENV)
    s3 = S3() if args.s3 else None
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "dataver"], cwd=REPO_ROOT, capture_output=True, text=True)
    res = {
        "command": "python benchmarks/versions.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the start",
        "versions": {t.name: t.version() for t in tools}
        | {"dataver_commit": rev.stdout.strip(), "dataver_uncommitted_changes": bool(dirty.stdout.strip())},
        "size_label": human(size),
        "seed": args.seed,
        "sizes": {v: p.stat().st_size for v, p in data.items()},
        "s3_server": s3.label if s3 else None,
        "targets_limits": TARGETS,
        "cases": [],
    }
    try:
        kinds = ["local"] + (["s3"] if s3 else [])
        for k, kind in enumerate(kinds):
            order = tools if k % 2 == 0 else tools[::-1]
            for tool in order:
                t0 = time.perf_counter()
                case = Case(tool, kind, data, runs / f"{tool.name}-{kind}", runner, s3 if kind == "s3" else None)
                res["cases"].append(case.run())
                print(f"# {tool.name} {kind}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
                if not args.keep:
                    shutil.rmtree(case.work, ignore_errors=True)
    finally:
        if s3:
            s3.stop()
    res["cases"].sort(key=lambda c: (c["remote"], c["tool"] != "dataver"))
    res["targets"] = targets(res["cases"])
    text = markdown(res)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 1 if any(c.get("errors") for c in res["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
