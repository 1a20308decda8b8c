"""dataver run / lineage / reproduce / status (stale), end to end: real git repositories,
real child processes (the recorded commands), real ``pip freeze``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pygit2
import pytest
from conftest import git_commit, write

from dataver import pointer
from dataver.environment import Captured, diff, parse_lock
from dataver.errors import PathError

PREP = """\
import os, sys
os.makedirs("data", exist_ok=True)
for name in sorted(os.listdir("raw")):
    rows = [line.strip() for line in open(os.path.join("raw", name)) if line.strip()]
    open(os.path.join("data", name), "w").write("".join(r + "\\n" for r in sorted(rows)))
"""

# A training-like script: a seeded "fit" of y = w*x over the data, reads its seed from params.yaml.
TRAIN = """\
import json, os, random
params = dict(line.split(": ", 1) for line in open("params.yaml").read().splitlines() if line)
rng = random.Random(int(params["seed"]))
pts = [tuple(map(float, l.split(","))) for f in sorted(os.listdir("data")) for l in open(os.path.join("data", f))]
w = 0.0
for _ in range(200):
    x, y = rng.choice(pts)
    w += float(params["lr"]) * (y - w * x) * x
open("model.bin", "w").write(json.dumps({"w": round(w, 12), "n": len(pts)}))
"""

NOISY = """\
import time
open("model.bin", "w").write(repr(time.time_ns()))
"""


@pytest.fixture
def project(repo_dir: Path, cli) -> Path:
    write(repo_dir / "raw" / "a.csv", "3,6.1\n1,2.0\n")
    write(repo_dir / "raw" / "b.csv", "2,3.9\n")
    write(repo_dir / "prep.py", PREP)
    write(repo_dir / "train.py", TRAIN)
    write(repo_dir / "params.yaml", "seed: 7\nlr: 0.05\n")
    assert cli("add", "raw").code == 0
    git_commit(repo_dir, "code and raw data")
    return repo_dir


def run_pipeline(cli) -> None:
    r = cli("run", "-i", "raw", "-i", "prep.py", "-o", "data", "--", sys.executable, "prep.py")
    assert r.code == 0, r.err
    r = cli(
        "run",
        "-i",
        "data",
        "-i",
        "train.py",
        "-p",
        "params.yaml:seed,lr",
        "-o",
        "model.bin",
        "--",
        sys.executable,
        "train.py",
    )
    assert r.code == 0, r.err


def tag(root: Path, name: str) -> None:
    repo = pygit2.Repository(str(root))
    repo.create_tag(name, repo.head.target, pygit2.enums.ObjectType.COMMIT, repo.default_signature, name)


def test_run_records_lineage_and_reproduces(project: Path, cli, tmp_path: Path):
    run_pipeline(cli)
    ptr = pointer.loads((project / "model.bin.dv").read_bytes())
    lin = ptr.lineage
    assert lin is not None and lin.cmd == (sys.executable, "train.py") and lin.wdir == "."
    assert [(i.path, i.kind) for i in lin.inputs] == [("data", "dir"), ("train.py", "git")]
    assert lin.params[0].path == "params.yaml" and lin.params[0].values == {"seed": 7, "lr": 0.05}
    assert lin.code.commit == str(pygit2.Repository(str(project)).head.target) and not lin.code.dirty
    assert lin.env.lock_kind == "pip-freeze" and lin.env.python and lin.env.cpu
    assert lin.outputs[0].digest == ptr.digest
    git_commit(project, "model v1")
    tag(project, "v1")
    v1_model = (project / "model.bin").read_bytes()

    # new raw data: both steps re-run; status first says what is stale
    write(project / "raw" / "c.csv", "4,8.2\n")
    assert cli("add", "raw").code == 0
    r = cli("status")
    assert "stale:      data  (raw/ changed)" in r.out
    run_pipeline(cli)
    git_commit(project, "model v2")
    assert (project / "model.bin").read_bytes() != v1_model
    assert "stale" not in cli("status").out

    # the chain back: model <- data <- raw, at both versions
    for rev in ("v1", "HEAD"):
        r = cli("lineage", "model.bin", "--rev", rev, "--json")
        assert r.code == 0, r.err
        g = json.loads(r.out)
        nodes = {n["path"]: n for n in g["nodes"]}
        assert set(nodes) == {"model.bin", "data", "raw", "train.py", "prep.py", "params.yaml"}
        assert nodes["data"]["command"] == [sys.executable, "prep.py"] and nodes["data"]["commit"]
        assert nodes["raw"]["command"] is None
    human = cli("lineage", "model.bin").out
    assert "data " in human and "$ " in human and "raw " in human
    used = json.loads(cli("lineage", "--used-by", "raw/", "--json").out)
    assert [u["output"] for u in used] == ["data"]

    # reproduce the old version: bit-identical, and the work tree is untouched
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git" not in p.parts}
    r = cli("reproduce", "model.bin", "--rev", "v1")
    assert r.code == 0, r.err
    assert "reproduced: bit-identical" in r.out and "train.py" in r.err  # the command is shown first
    after = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".git" not in p.parts}
    assert before == after
    assert (
        subprocess.run(["git", "worktree", "list"], cwd=project, capture_output=True, text=True).stdout.count("\n") == 1
    )

    # --dot: a well-formed graph; rendered to PNG where Graphviz is installed
    dot = cli("lineage", "model.bin", "--dot").out
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    assert dot.count(" -> ") == 5  # data, train.py, params.yaml -> model; raw, prep.py -> data
    if shutil.which("dot"):
        png = tmp_path / "lineage.png"
        subprocess.run(["dot", "-Tpng", "-o", str(png)], input=dot, text=True, check=True)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    import dataver.api

    assert dataver.api.lineage("model.bin", rev="v1").outputs[0].digest.hex in cli("ls", "--rev", "v1", "--json").out


def test_failed_command_records_nothing(project: Path, cli):
    run_pipeline(cli)
    before = (project / "model.bin.dv").read_bytes()
    r = cli(
        "run", "-i", "data", "-o", "model.bin", "--", sys.executable, "-c", "open('model.bin','w').write('x'); exit(3)"
    )
    assert r.code == 3 and "nothing recorded" in r.err and "Traceback" not in r.err
    assert (project / "model.bin.dv").read_bytes() == before
    r = cli("run", "-i", "data", "-o", "model.bin", "--", "no-such-command-xyz")
    assert r.code == 127 and "command not found" in r.err
    r = cli("run", "-i", "data", "-o", "new.bin", "--", sys.executable, "-c", "pass")
    assert r.code == 4 and "did not write the output new.bin" in r.err
    assert not (project / "new.bin.dv").exists()


def test_dirty_code_is_recorded_and_replayed(project: Path, cli):
    run_pipeline(cli)
    git_commit(project, "v1")
    write(project / "train.py", TRAIN.replace("range(200)", "range(300)"))  # not committed
    r = cli(
        "run", "-i", "data", "-i", "train.py", "-p", "params.yaml", "-o", "model.bin", "--", sys.executable, "train.py"
    )
    assert r.code == 0 and "uncommitted changes" in r.err
    lin = pointer.loads((project / "model.bin.dv").read_bytes()).lineage
    assert lin.code.dirty and lin.code.diff is not None
    from dataver.repo import Repo
    from dataver.store import ObjRef

    text = Repo.find().cache.read(ObjRef(lin.code.diff.digest)).decode()
    assert "+for _ in range(300):" in text
    git_commit(project, "model from dirty code")
    write(project / "train.py", TRAIN)  # the user's tree moves on; reproduce must not care
    r = cli("reproduce", "model.bin")
    assert r.code == 0 and "bit-identical" in r.out, r.out + r.err
    assert (project / "train.py").read_text() == TRAIN


def test_differs_explains_the_environment(project: Path, cli, tmp_path: Path, monkeypatch):
    """A time-seeded script cannot reproduce; the diff names a package whose version
    changed (a real distribution on PYTHONPATH, seen by the real pip freeze) and the
    named environment variable."""
    site = tmp_path / "site"
    dist = site / "tinypkg-1.0.dist-info"
    write(dist / "METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n")
    write(dist / "RECORD", "")
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("SEED_MODE", "clock")
    write(project / "noisy.py", NOISY)
    git_commit(project, "noisy")
    r = cli("run", "-i", "noisy.py", "-o", "model.bin", "--env", "SEED_MODE", "--", sys.executable, "noisy.py")
    assert r.code == 0, r.err
    git_commit(project, "noisy model")
    new = site / "tinypkg-2.0.dist-info"
    dist.rename(new)
    write(new / "METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 2.0\n")
    monkeypatch.setenv("SEED_MODE", "other")
    r = cli("reproduce", "model.bin")
    assert r.code == 1, r.out + r.err
    assert "differs: model.bin" in r.out
    assert "package changed: tinypkg 1.0 -> 2.0" in r.out
    assert "$SEED_MODE: clock -> other" in r.out
    assert "error: model.bin: the re-run gave different bytes" in r.err
    js = json.loads(cli("reproduce", "model.bin", "--json").out)
    assert js["identical"] is False and js["env"]["upgraded"]["tinypkg"] == ["1.0", "2.0"]


def test_env_diff_of_two_lock_texts():
    then = Captured("3.11.7", "Linux-x", "AMD EPYC", "pip-freeze", "numpy==1.26.4\nPyYAML==6.0.1\nold-pkg==1\n", {})
    now = Captured(
        "3.12.1", "Linux-x", "AMD EPYC", "pip-freeze", "numpy==2.0.0\npyyaml==6.0.1\nnew_pkg @ file:///x\n", {}
    )
    d = diff(then, now)
    assert d.changed == {"python": ("3.11.7", "3.12.1")}
    assert d.upgraded == {"numpy": ("1.26.4", "2.0.0")} and d.removed == {"old-pkg": "1"}
    assert d.added == {"new-pkg": "@ file:///x"}
    conda = "@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/linux-64/numpy-1.26.4-py311h64a7726_0.conda\n"
    assert parse_lock(conda) == {"numpy": "1.26.4-py311h64a7726_0"}


def test_lineage_objects_travel_with_push(project: Path, cli, tmp_path: Path):
    run_pipeline(cli)
    lin = pointer.loads((project / "model.bin.dv").read_bytes()).lineage
    remote = tmp_path / "remote"
    assert cli("remote", "add", "-d", "store", str(remote)).code == 0
    assert cli("push").code == 0
    lock = lin.env.lock.digest
    from dataver.remotes import open_remote
    from dataver.repo import Repo
    from dataver.store import ObjRef

    assert open_remote(Repo.find().config, None, str(project)).has(ObjRef(lock))  # loose or packed

    os.chmod(Repo.find().cache.blob_path(lock), 0o644)
    os.unlink(Repo.find().cache.blob_path(lock))
    r = cli("fetch")
    assert r.code == 0, r.err
    assert os.path.exists(Repo.find().cache.blob_path(lock))


def test_api_record_and_interactive_reproduce(project: Path, cli):
    import dataver.api

    run_pipeline(cli)
    git_commit(project, "v1")
    with dataver.api.record(outputs=["summary.txt"], params=["params.yaml:seed"], command=None) as rec:
        text = dataver.api.read("data/a.csv", mode="r")
        (project / "summary.txt").write_text(str(len(text)))
    lin = rec.lineage
    assert [(i.path, i.kind) for i in lin.inputs] == [("data/a.csv", "file")]
    assert lin.params[0].values == {"seed": 7}
    assert dataver.api.lineage("summary.txt").id == lin.id
    r = cli("reproduce", "summary.txt")
    assert r.code in (1, 3) and "interactive session" in r.err


def test_mlflow_datasets_and_tags(project: Path, cli, tmp_path: Path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("numpy")
    import dataver.api

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    run_pipeline(cli)
    git_commit(project, "v1")
    try:
        with mlflow.start_run() as active:
            with dataver.api.record(outputs=["summary.txt"]):
                (project / "summary.txt").write_text(dataver.api.read("data/a.csv", mode="r"))
        # the CLI logs into the run MLFLOW_RUN_ID names (as `mlflow run` sets it)
        monkeypatch.setenv("MLFLOW_RUN_ID", active.info.run_id)
        r = cli(
            "run",
            "-i",
            "data",
            "-o",
            "copy",
            "--",
            sys.executable,
            "-c",
            "import shutil; shutil.copytree('data','copy')",
        )
        assert r.code == 0 and active.info.run_id in r.err, r.err
        got = mlflow.MlflowClient().get_run(active.info.run_id)
    finally:
        mlflow.set_tracking_uri("")
    inputs = {d.dataset.name: d.dataset for d in got.inputs.dataset_inputs}
    data_digest = pointer.loads((project / "data.dv").read_bytes()).digest
    assert inputs["data"].digest == str(data_digest) and inputs["data"].source_type == "dataver"
    assert json.loads(inputs["data"].source)["url"].startswith("dataver://data?repo=")
    assert "data/a.csv" in inputs
    assert got.data.tags["dataver.output.summary.txt"].startswith("xxh3-128:")
    assert got.data.tags["dataver.output.copy"] == str(pointer.loads((project / "copy.dv").read_bytes()).digest)


def test_gc_keeps_the_lineage_objects_of_committed_outputs_no_remote_holds(project: Path, cli):
    """The stored package lock (and diff) of an output committed in an older commit is
    kept by the cache gc like the output itself while no remote holds it."""
    write(project / "train.py", TRAIN + "# tried by hand, not committed yet\n")
    run_pipeline(cli)  # recorded dirty: the diff is stored as an object
    git_commit(project, "v1")
    old = pointer.loads((project / "model.bin.dv").read_bytes()).lineage
    write(project / "params.yaml", "seed: 8\nlr: 0.05\n")
    run_pipeline(cli)
    git_commit(project, "v2")
    new = pointer.loads((project / "model.bin.dv").read_bytes()).lineage
    gone = [s for s in old.stored() if s.digest not in {n.digest for n in new.stored()}]
    assert gone, "v1 needs an object v2 does not (its diff)"
    cache = project / ".dataver" / "cache"
    r = cli("gc", "--yes")
    assert r.code == 0, r.err
    for s in old.stored():  # v1's diff, which only the v1 commit needs, is still there
        assert (cache / s.digest.relpath()).exists(), s
    assert cli("gc", "--yes", "--not-pushed-too").code == 0
    for s in gone:
        assert not (cache / s.digest.relpath()).exists(), s


def test_reproduce_never_writes_through_a_link_in_the_recorded_commit(repo_dir: Path, cli, tmp_path: Path):
    """A record's input path is checked when it is read, but the recorded commit itself can
    hold a symbolic link where the path has a folder: reproduce refuses (a path error, exit
    4) and writes nothing where the link points."""
    import dataclasses

    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(str(outside), repo_dir / "link")
    write(repo_dir / "copy.py", "import shutil; shutil.copy('in.txt', 'out.txt')\n")
    git_commit(repo_dir, "a link and a script")
    write(repo_dir / "in.txt", "input\n")
    r = cli("run", "-i", "in.txt", "-i", "copy.py", "-o", "out.txt", "--", sys.executable, "copy.py")
    assert r.code == 0, r.err
    ptr_path = repo_dir / "out.txt.dv"
    ptr = pointer.loads(ptr_path.read_bytes())
    lin = ptr.lineage
    moved = tuple(dataclasses.replace(i, path="link/in.txt") if i.path == "in.txt" else i for i in lin.inputs)
    ptr_path.write_bytes(pointer.dumps(ptr.with_lineage(dataclasses.replace(lin, inputs=moved))))
    r = cli("reproduce", "out.txt")
    assert r.code == PathError.exit_code == 4, r.err
    assert "symbolic link" in r.err and "Traceback" not in r.err
    assert list(outside.iterdir()) == []
