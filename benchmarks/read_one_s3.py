#!/usr/bin/env python3
"""S3 requests and bytes of reading one small file out of a pushed tracked folder, in a
fresh clone: dataver through ``dataver.api.read`` (``dataver pull PATH/file`` refuses a
file inside a tracked folder), DVC through ``dvc pull PATH/file`` and ``dvc.api.read``.

Per tool: a git repository with the full run's small files (``--data``, the ``many`` folder
the benchmark generated) added, committed and pushed to ``s3://bench/TOOL`` on a fresh
server (SeaweedFS or moto, from tests/s3servers.py via benchmarks/dvbench/s3.py); then, in
a fresh ``git clone``, the read of the benchmark's one-file target, counted on the server
side as in the benchmark (requests per type, object bytes down). Then the next file of the
same folder in that clone (a new process), and both files in one process in another fresh
clone: what a read pays once, per process, or per file. Untimed set-up; the read's requests
are compared with the folder's file count (the issue's target: <= 2 %).

    python benchmarks/read_one_s3.py --data /tmp/dataver-bench/data-.../many --dvc PATH/TO/dvc
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dvbench.config import GIT_ENV  # noqa: E402
from dvbench.data import count_files, one_file  # noqa: E402
from dvbench.s3 import BUCKET, BenchS3  # noqa: E402
from dvbench.tools import Dataver, Dvc, find_dataver, tool_python  # noqa: E402

READ = "import sys, {mod}; sys.stdout.buffer.write(b''.join({mod}.read(p, mode='rb') for p in sys.argv[1:]))"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the benchmark's folder of small files (…/many)")
    ap.add_argument("--dvc", help="dvc executable (default: none, dataver only)")
    ap.add_argument("--server", choices=("seaweedfs", "moto"), default="seaweedfs")
    ap.add_argument("--work", help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    data = Path(args.data).resolve()
    ndirs = sum(1 for p in data.iterdir() if p.is_dir())
    cfg = {"nfiles": count_files(data), "ndirs": ndirs}
    target = one_file(cfg)
    head, name = target.rsplit("/", 1)
    second = f"{head}/f{int(name[1:6]) + 1:05d}.bin"  # the next file, same folder
    work = Path(args.work or tempfile.mkdtemp(prefix="read-one-"))
    work.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(dataver=None)
    tools = [Dataver(find_dataver(ns))]
    if args.dvc:
        tools.append(Dvc([args.dvc], work / "dvc-site-cache"))
    s3 = BenchS3(args.server)
    files = cfg["nfiles"]
    results: dict = {"server": s3.label, "target": target, "second": second, "files": files, "reads": []}
    results["objects_on_remote"] = {}

    def run(cmd, cwd, env=None, capture=False):
        e = dict(os.environ, **GIT_ENV, **(env or {}))
        return subprocess.run(cmd, cwd=cwd, env=e, check=True, capture_output=capture)

    def counted(label, tool, cmd, cwd, env, expect: bytes | None, objects):
        c0, b0, t0 = s3.counts(), s3.traffic(), time.perf_counter()
        out = run(cmd, cwd, env, capture=True)
        wall = time.perf_counter() - t0
        c1, b1 = s3.counts(), s3.traffic()
        req = {k: n - c0.get(k, 0) for k, n in c1.items() if n - c0.get(k, 0)}
        down = b1.get("sent", 0) - b0.get("sent", 0)
        if expect is not None and out.stdout != expect:
            raise SystemExit(f"{label}: read bytes differ from the committed file")
        n = sum(req.values())
        results["reads"].append(dict(tool=tool, read=label, requests=n, by_type=req, bytes_down=down, wall_s=wall))
        results["objects_on_remote"][tool] = objects
        print(f"{tool:8} {label:38} {n:3} requests {req} ({n / files:.3%} of {files} files), {down:,} B down")

    try:
        for t in tools:
            repo = work / t.name
            repo.mkdir()
            run(["git", "init", "-q"], repo)
            for c in t.init_cmds():
                run(c, repo, t.env)
            run(["cp", "-r", str(data), str(repo / "data")], repo)
            run(t.add("data"), repo, t.env)
            for c in [*t.remote_add("s3store", f"s3://{BUCKET}/{t.name}"), *t.remote_endpoint("s3store", s3.endpoint)]:
                run(c, repo, t.env)
            run(["git", "add", "-A"], repo)
            run(["git", "commit", "-q", "-m", "data"], repo)
            run(t.push("s3store"), repo, {**t.env, **s3.env})
            objects = s3.object_count(f"{t.name}/")
            env = {**t.env, **s3.env}
            py = tool_python(t.argv0)
            mod = "dataver.api" if t.name == "dataver" else "dvc.api"
            # (label, files read by one process, clone: a fresh one per letter)
            for label, paths, letter in [
                ("1 file", [target], "a"),
                ("2nd file, same clone", [second], "a"),
                ("2 files, one process", [target, second], "b"),
            ]:
                clone = work / f"{t.name}-clone-{letter}"
                if not clone.exists():
                    run(["git", "clone", "-q", str(repo), str(clone)], work)
                expect = b"".join((repo / p).read_bytes() for p in paths)
                cmd = [py, "-c", READ.format(mod=mod), *paths]
                counted(f"{mod}.read({label})", t.name, cmd, clone, env, expect, objects)
            if t.name == "dvc":
                clone = work / "dvc-clone-pull"
                run(["git", "clone", "-q", str(repo), str(clone)], work)
                counted("dvc pull data/dNNN/fNNNNN.bin", t.name, t.pull("s3store", target), clone, env, None, objects)
                if (clone / target).read_bytes() != (repo / target).read_bytes():
                    raise SystemExit("dvc pull: the file differs from the committed one")
            shutil.rmtree(repo)
    finally:
        s3.stop()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
