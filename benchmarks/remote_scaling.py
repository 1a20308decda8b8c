#!/usr/bin/env python3
"""Push and pull of many small files through packed remotes (issue 12: "200,000 files:
push and pull times and requests reported, memory <= 200 MB").

What it does, in a scratch folder outside the repository (``--work``, default a new
``/tmp/remote-scaling-*``, removed at the end unless ``--keep``):

1. generates ``--files`` N files (seeded, deterministic, incompressible; 200-2000 bytes
   each) in N/200 folders of one level: ``data/d0000/f000000.bin`` ...;
2. ``git init``, ``dataver init``, ``dataver add data`` (timed), ``git commit``;
3. per remote kind, ``local`` (a folder) and ``s3`` (``s3://bench/run1`` on a SeaweedFS
   server on loopback, from ``benchmarks/dvbench/s3.py``): ``dataver remote add`` (and
   ``modify endpoint_url``), commit, then, each step timed:
   - ``dataver push -r NAME``: the first push of everything;
   - ``dataver push -r NAME`` again: nothing new;
   - ``git clone`` into a fresh folder, ``dataver pull -r NAME`` there; then (untimed)
     the file count and every file's bytes checked against the source;
   - S3 only: ``dataver.api.read("data/d0005/f001000.bin")`` in another fresh clone, its
     bytes checked.

Each dataver step runs under ``/usr/bin/time`` (wall, user + system CPU, peak RSS) in a
small Python wrapper (``python -c``, then ``runpy`` of ``dataver``) that adds, at exit,
the process's ``/proc/self/io`` (bytes read and written, all files) and, for a local
folder remote, counts of the file operations on the remote (opens for reading / for
writing, folder listings, renames, removals, through ``sys.addaudithook``: the local
counterpart of requests). S3 steps have the server-side request counts per type and the
object bytes up and down (``BenchS3``), and the server's CPU seconds. After each push the
objects on the remote are counted per top-level prefix (packs/, index/, dataver.json).
The load average is recorded before and after every step (the machine may be shared).

    python benchmarks/remote_scaling.py --files 200000 --json /tmp/rs-200k.json

Prints a markdown table; ``--json`` writes every number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dvbench.config import GIT_ENV, REPO_ROOT  # noqa: E402

FILES_PER_DIR = 200
MIN_SIZE, MAX_SIZE = 200, 2000
API_TARGET = "data/d0005/f001000.bin"
RSS_LIMIT_BYTES = 200 * 10**6  # issue 12: 200 MB (decimal; 190.7 MiB)
TIME_FMT = "%e %U %S %M"

# Runs dataver as `python -m dataver` would, plus an audit hook counting file operations
# under $RS_COUNT_ROOT (the local remote) and, at exit, /proc/self/io, written as JSON to
# $RS_STATS.
WRAPPER = r"""
import atexit, json, os, runpy, sys
root = os.environ.get("RS_COUNT_ROOT") or None
ops = {"open_read": 0, "open_write": 0, "listdir": 0, "rename": 0, "remove": 0, "mkdir": 0}
if root:
    root = os.path.realpath(root)
    W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
    def under(p):
        try:
            p = os.fsdecode(os.fspath(p))
        except TypeError:
            return False
        return p.startswith(root)  # the remote's URL is absolute; no syscalls here
    def hook(ev, args):
        if ev == "open":
            if under(args[0]):
                mode, flags = args[1], args[2]
                w = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & W)
                ops["open_write" if w else "open_read"] += 1
        elif ev in ("os.listdir", "os.scandir"):
            if args and args[0] is not None and under(args[0]):
                ops["listdir"] += 1
        elif ev == "os.rename":
            if under(args[1]):
                ops["rename"] += 1
        elif ev in ("os.remove", "os.rmdir"):
            if under(args[0]):
                ops["remove"] += 1
        elif ev == "os.mkdir":
            if under(args[0]):
                ops["mkdir"] += 1
    sys.addaudithook(hook)
def dump():
    io = {}
    try:
        for line in open("/proc/self/io"):
            k, v = line.split(":")
            io[k] = int(v)
    except OSError:
        pass
    with open(os.environ["RS_STATS"], "w") as f:
        json.dump({"io": io, "ops": ops if root else None}, f)
atexit.register(dump)
sys.argv = ["dataver", *sys.argv[1:]]
runpy.run_module("dataver", run_name="__main__", alter_sys=False)
"""


def load3() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def generate(data: Path, nfiles: int, seed: int) -> int:
    """N files in N/FILES_PER_DIR folders; returns their total bytes."""
    rng = random.Random(seed)
    total = 0
    for i in range(nfiles):
        d = data / f"d{i // FILES_PER_DIR:04d}"
        if i % FILES_PER_DIR == 0:
            d.mkdir(parents=True)
        size = rng.randint(MIN_SIZE, MAX_SIZE)
        total += size
        (d / f"f{i:06d}.bin").write_bytes(hashlib.shake_128(f"remote-scaling/{seed}/{i}".encode()).digest(size))
    return total


def tree_files(path: Path) -> dict[str, int]:
    """Relative path -> size of every file under path."""
    out = {}
    for root, _, names in os.walk(path):
        for n in names:
            p = os.path.join(root, n)
            out[os.path.relpath(p, path)] = os.lstat(p).st_size
    return out


def compare_trees(src: Path, dst: Path) -> dict:
    """Every file of src present in dst with the same bytes, and no extra file."""
    a, b = tree_files(src), tree_files(dst)
    if a.keys() != b.keys():
        raise SystemExit(f"file sets differ: {len(a)} vs {len(b)} files, e.g. {sorted(a.keys() ^ b.keys())[:5]}")
    for rel in a:
        if (src / rel).read_bytes() != (dst / rel).read_bytes():
            raise SystemExit(f"{dst / rel} differs from {src / rel}")
    return {"files": len(a), "bytes": sum(a.values()), "identical": True}


def remote_objects_local(root: Path) -> dict:
    per: dict[str, dict[str, int]] = {}
    for rel, size in tree_files(root).items():
        top = rel.split(os.sep, 1)[0] if os.sep in rel else rel
        row = per.setdefault(top, {"objects": 0, "bytes": 0})
        row["objects"] += 1
        row["bytes"] += size
    return per


def remote_objects_s3(client, bucket: str, prefix: str) -> dict:
    per: dict[str, dict[str, int]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            rel = o["Key"][len(prefix) :]
            top = rel.split("/", 1)[0]
            row = per.setdefault(top, {"objects": 0, "bytes": 0})
            row["objects"] += 1
            row["bytes"] += o["Size"]
    return per


class Runner:
    def __init__(self, work: Path, s3=None):
        self.work = work
        self.s3 = s3
        self.logs = work / "logs"
        self.logs.mkdir(exist_ok=True)
        self.steps: list[dict] = []

    def env(self, extra=None):
        e = dict(os.environ, **GIT_ENV)
        if self.s3 is not None:
            e.update(self.s3.env)
        e.update(extra or {})
        return e

    def plain(self, cmd, cwd):
        subprocess.run(cmd, cwd=cwd, env=self.env(), check=True, stdout=subprocess.DEVNULL)

    def step(self, remote: str, label: str, args: list[str], cwd: Path, count_root: Path | None = None, code=None):
        """One dataver process (``args`` for the CLI, or ``code`` for ``python -c``), timed
        and counted. Returns the step's record; its stdout is in record['stdout']."""
        n = len(self.steps)
        tfile, sfile = self.logs / f"{n:02d}.time", self.logs / f"{n:02d}.stats"
        sfile.unlink(missing_ok=True)
        extra = {"RS_STATS": str(sfile), "RS_COUNT_ROOT": str(count_root or "")}
        if code is not None:
            # the API read: the same wrapper's hook and io dump, then the code
            prog = WRAPPER.replace('runpy.run_module("dataver", run_name="__main__", alter_sys=False)', code)
        else:
            prog = WRAPPER
        cmd = ["/usr/bin/time", "-f", TIME_FMT, "-o", str(tfile), sys.executable, "-c", prog, *args]
        c0 = self.s3.counts() if self.s3 else {}
        b0 = self.s3.traffic() if self.s3 else {}
        cpu0 = self.s3.cpu_seconds() if self.s3 else 0.0
        la0 = load3()
        r = subprocess.run(cmd, cwd=cwd, env=self.env(extra), capture_output=True)
        la1 = load3()
        (self.logs / f"{n:02d}.out").write_bytes(r.stdout[:100_000] + b"\n--- stderr ---\n" + r.stderr[-100_000:])
        if r.returncode != 0:
            raise SystemExit(
                f"step {label} ({remote}) failed, exit {r.returncode}:\n{r.stderr.decode(errors='replace')[-3000:]}"
            )
        wall, user, sys_, rss_kb = tfile.read_text().strip().splitlines()[-1].split()
        rec = {
            "remote": remote,
            "step": label,
            "argv": args if code is None else ["python", "-c", code, *args],
            "wall_s": float(wall),
            "cpu_s": round(float(user) + float(sys_), 2),
            "user_s": float(user),
            "sys_s": float(sys_),
            "peak_rss_mib": round(int(rss_kb) / 1024, 1),  # GNU time %M: KiB
            "load_before": la0,
            "load_after": la1,
        }
        stats = json.loads(sfile.read_text()) if sfile.exists() else {}
        if stats.get("io"):
            io = stats["io"]
            rec["proc_io"] = {k: io.get(k) for k in ("rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes")}
        if stats.get("ops") is not None:
            rec["remote_file_ops"] = {k: v for k, v in stats["ops"].items() if v}
        if self.s3 is not None and remote == "s3":
            c1, b1 = self.s3.counts(), self.s3.traffic()
            req = {k: v - c0.get(k, 0) for k, v in c1.items() if v - c0.get(k, 0)}
            rec["requests"] = req
            rec["requests_total"] = sum(req.values())
            rec["bytes_up"] = b1.get("received", 0) - b0.get("received", 0)
            rec["bytes_down"] = b1.get("sent", 0) - b0.get("sent", 0)
            rec["server_cpu_s"] = round(self.s3.cpu_seconds() - cpu0, 2)
        rec["stdout"] = r.stdout
        if "--json" in args:
            try:  # push/pull's summary: objects transferred, present, ...
                rec["summary"] = {k: v for k, v in json.loads(r.stdout).items() if not isinstance(v, list) or v}
            except ValueError:
                pass
        self.steps.append(rec)
        print(
            f"  {remote:5} {label:14} {rec['wall_s']:7.2f} s wall {rec['cpu_s']:7.2f} s CPU "
            f"{rec['peak_rss_mib']:6.1f} MiB  {rec.get('requests') or rec.get('remote_file_ops') or ''}",
            flush=True,
        )
        return rec


def fmt_bytes(n) -> str:
    if n is None:
        return ""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def table(results: dict) -> str:
    rows = [
        "| remote | step | wall s | CPU s | peak RSS MiB | requests / file ops | bytes up | bytes down "
        "| load 1-min before→after |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for s in results["steps"]:
        if "requests" in s:
            req = f"{s['requests_total']}: " + ", ".join(f"{k} {v}" for k, v in sorted(s["requests"].items()))
            up, down = fmt_bytes(s["bytes_up"]), fmt_bytes(s["bytes_down"])
        elif "remote_file_ops" in s:
            req = ", ".join(f"{k} {v}" for k, v in s["remote_file_ops"].items()) or "0"
            up = fmt_bytes(s.get("remote_bytes_written"))
            down = ""
        else:
            req, up, down = "", "", ""
        rows.append(
            f"| {s['remote']} | {s['step']} | {s['wall_s']:.2f} | {s['cpu_s']:.2f} | {s['peak_rss_mib']:.0f} | {req} "
            f"| {up} | {down} | {s['load_before'][0]:.2f}→{s['load_after'][0]:.2f} |"
        )
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--work", help="scratch folder, outside the repository (default: a new /tmp/remote-scaling-*)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--remotes", default="local,s3", help="which remotes, comma-separated (local, s3)")
    args = ap.parse_args()
    kinds = [k for k in args.remotes.split(",") if k]
    work = Path(args.work or tempfile.mkdtemp(prefix="remote-scaling-", dir="/tmp")).resolve()
    if work == REPO_ROOT or REPO_ROOT in work.parents:
        raise SystemExit(f"--work must be outside the repository ({REPO_ROOT})")
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise SystemExit(f"--work {work} is not empty")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    results: dict = {
        "files": args.files,
        "seed": args.seed,
        "dataver_commit": head,
        "dirty": bool(
            subprocess.run(
                ["git", "status", "--porcelain", "dataver"], cwd=REPO_ROOT, capture_output=True, text=True
            ).stdout.strip()
        ),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_start": load3(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    print(f"work {work}; dataver {head[:10]}; load {results['load_start']}", flush=True)
    s3 = None
    try:
        if "s3" in kinds:
            from dvbench.s3 import BUCKET, BenchS3

            s3 = BenchS3("seaweedfs")
            results["server"] = s3.label
        run = Runner(work, s3)
        repo = work / "repo"
        repo.mkdir()
        t0 = time.perf_counter()
        results["data_bytes"] = generate(repo / "data", args.files, args.seed)
        results["generate_s"] = round(time.perf_counter() - t0, 2)
        size = fmt_bytes(results["data_bytes"])
        print(f"generated {args.files} files, {size}, in {results['generate_s']} s", flush=True)
        run.plain(["git", "init", "-q"], repo)
        run.plain([sys.executable, "-m", "dataver", "init"], repo)
        run.step("-", "add", ["add", "-q", "data"], repo)
        run.plain(["git", "add", "-A"], repo)
        run.plain(["git", "commit", "-q", "-m", "data"], repo)
        results["objects_on_remote"] = {}
        for kind in kinds:
            if kind == "local":
                url = str(work / "remote-local")
            else:
                url = f"s3://{BUCKET}/run1"
            run.plain([sys.executable, "-m", "dataver", "remote", "add", kind, url], repo)
            if kind == "s3":
                dv = [sys.executable, "-m", "dataver"]
                run.plain([*dv, "remote", "modify", kind, "endpoint_url", s3.endpoint], repo)
            run.plain(["git", "add", "-A"], repo)
            run.plain(["git", "commit", "-q", "-m", f"remote {kind}"], repo)
            root = Path(url) if kind == "local" else None

            def objects(kind=kind, root=root):
                if kind == "local":
                    return remote_objects_local(root)
                return remote_objects_s3(s3.client, BUCKET, "run1/")

            rec = run.step(kind, "push", ["push", "-r", kind, "--json"], repo, root)
            after = objects()
            results["objects_on_remote"][kind] = after
            if kind == "local":
                rec["remote_bytes_written"] = sum(r["bytes"] for r in after.values())
            rec = run.step(kind, "push again", ["push", "-r", kind, "--json"], repo, root)
            again = objects()
            if kind == "local":
                rec["remote_bytes_written"] = sum(r["bytes"] for r in again.values()) - sum(
                    r["bytes"] for r in after.values()
                )
            if again != after:
                print(f"  note: the second push changed the remote: {after} -> {again}")
            clone = work / f"clone-{kind}"
            run.plain(["git", "clone", "-q", str(repo), str(clone)], work)
            rec = run.step(kind, "clone + pull", ["pull", "-r", kind, "--json"], clone, root)
            rec["verified"] = compare_trees(repo / "data", clone / "data")
            print(f"  verified: {rec['verified']}", flush=True)
            if kind == "s3":
                clone = work / "clone-api"
                run.plain(["git", "clone", "-q", str(repo), str(clone)], work)
                # the API reads through the default remote; this clone's is s3 (untimed)
                run.plain([sys.executable, "-m", "dataver", "remote", "default", kind], clone)
                code = "import sys, dataver.api; sys.stdout.buffer.write(dataver.api.read(sys.argv[1]))"
                rec = run.step(kind, "api.read 1 file", [API_TARGET], clone, None, code=code)
                if rec["stdout"] != (repo / API_TARGET).read_bytes():
                    raise SystemExit(f"dataver.api.read({API_TARGET!r}) returned other bytes than the file's")
                rec["verified"] = {"files": 1, "bytes": len(rec["stdout"]), "identical": True}
        results["steps"] = run.steps
    finally:
        if s3 is not None:
            s3.stop()
    results["load_end"] = load3()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    results["max_peak_rss_mib"] = max(s["peak_rss_mib"] for s in results["steps"])
    results["all_within_rss_limit"] = results["max_peak_rss_mib"] * 2**20 <= RSS_LIMIT_BYTES
    results["over_rss_limit"] = [
        f"{s['remote']} {s['step']}" for s in results["steps"] if s["peak_rss_mib"] * 2**20 > RSS_LIMIT_BYTES
    ]
    for s in results["steps"]:
        s.pop("stdout", None)
    print()
    print(
        f"{args.files:,} files, {fmt_bytes(results['data_bytes'])}; dataver {head[:10]}; "
        f"load {results['load_start']} -> {results['load_end']}"
    )
    print(table(results))
    print()
    for kind, per in results["objects_on_remote"].items():
        print(
            f"objects on the {kind} remote after the push: "
            + ", ".join(f"{k}: {v['objects']} ({fmt_bytes(v['bytes'])})" for k, v in sorted(per.items()))
        )
    print(
        f"every step <= {RSS_LIMIT_BYTES // 10**6} MB ({RSS_LIMIT_BYTES / 2**20:.1f} MiB) peak RSS: "
        f"{results['all_within_rss_limit']} (max {results['max_peak_rss_mib']} MiB; over: "
        f"{', '.join(results['over_rss_limit']) or 'none'})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
