"""The pointer's ``lineage.*`` block: round trip, what older readers see, and hostile
blocks (they arrive through git) rejected like any bad pointer, naming the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git_commit, write

from dataver import lineagefmt, pointer
from dataver.digest import Digest
from dataver.errors import PointerError
from dataver.lineagefmt import Code, Env, Item, Lineage, Param, Stored

D = Digest("xxh3-128", "0123456789abcdef0123456789abcdef")


def sample(**over) -> Lineage:
    base = dict(
        id="a" * 32,
        cmd=("python", "train.py", "--lr", "0.1"),
        wdir=".",
        inputs=(Item("data", "dir", D), Item("train.py", "git", D)),
        outputs=(Item("model.bin", "file", D),),
        params=(Param("params.yaml", D, {"seed": 42, "opt": {"lr": 0.1}}),),
        code=Code("c" * 40, True, Stored(D, 120)),
        env=Env("3.11.7", "Linux-6", "AMD EPYC", "pip-freeze", Stored(D, 2000), {"PYTHONHASHSEED": "0", "X": None}),
        start="2024-06-01T12:00:00.000001Z",
        end="2024-06-01T12:00:09.5Z",
    )
    base.update(over)
    return Lineage(**base)


def dumped(lin: Lineage, extra=()) -> bytes:
    return pointer.dumps(pointer.new_pointer("file", D, 10).with_lineage(lin))


def test_round_trip_and_unknown_keys_kept():
    lin = sample()
    ptr = pointer.loads(dumped(lin))
    assert ptr.lineage == lin
    # every block line is an ordinary `key: value` line: a reader that knows nothing of
    # lineage keeps them, in order, and writes them back (pointer format 1, unknown keys)
    keys = [k for k, _ in ptr.extra]
    assert keys[0] == "lineage.version" and all(k.startswith("lineage.") for k in keys)
    again = pointer.Pointer(ptr.kind, ptr.digest, ptr.size, ptr.files, ptr.extra)
    assert pointer.dumps(again) == dumped(lin)
    assert lin.output_for("model.bin", D) is not None
    assert lin.output_for("model.bin", Digest("xxh3-128", "f" * 32)) is None  # stale: content changed


def test_new_content_drops_the_block_a_newer_version_is_kept():
    ptr = pointer.loads(dumped(sample()))
    assert ptr.with_content(D, 10, None).lineage is not None
    assert ptr.with_content(Digest("xxh3-128", "f" * 32), 11, None).lineage is None
    newer = dumped(sample()).replace(b"lineage.version: 1", b"lineage.version: 2").replace(b'"cmd"', b'"zz"')
    assert pointer.loads(newer).lineage is None  # kept as unknown keys, not read, not rejected


def _with(key: str, value: str) -> bytes:
    lines = dumped(sample()).decode().splitlines()
    out = [f"{key}: {value}" if line.startswith(key + ":") else line for line in lines]
    if not any(line.startswith(key + ":") for line in lines):
        out.append(f"{key}: {value}")
    return ("\n".join(out) + "\n").encode()


def j(**fields) -> str:
    return json.dumps(fields, separators=(",", ":"))


DS = str(D)
ENV = {"python": "3", "platform": "", "cpu": "", "lock_kind": None, "lock": None, "vars": {}}
HOSTILE = [
    ("lineage.in.1", j(path="../../etc/passwd", kind="file", digest=DS), "unsafe or invalid path"),
    ("lineage.out.1", j(path="x/.git/hooks/post-checkout", kind="file", digest=DS), ".git"),
    ("lineage.wdir", '"/abs/path"', "unsafe or invalid path"),
    ("lineage.wdir", '"a/../../b"', "unsafe or invalid path"),
    ("lineage.cmd", json.dumps(["x" * 20000]), "longer than"),
    ("lineage.cmd", "[]", "list of 1 to"),
    ("lineage.cmd", '"rm -rf /"', "list of 1 to"),
    ("lineage.cmd", "[1]", "must be a string"),
    ("lineage.code", '{"commit":"HEAD","dirty":false,"diff":null}', "full commit id"),
    ("lineage.code", '{"commit":null,"dirty":"no","diff":null}', "true or false"),
    ("lineage.code", '{"commit":null,"dirty":false,"diff":null,"run":"x"}', "unknown field"),
    (
        "lineage.env",
        '{"python":"3","platform":"","cpu":"","lock_kind":null,"lock":null,"vars":{"A B":"1"}}',
        "variable",
    ),
    (
        "lineage.env",
        j(**{**ENV, "python": "9" * 2000}),
        "longer",
    ),
    ("lineage.in.1", '{"path":"data","kind":"file","digest":"xxh3-128:ZZ"}', "invalid xxh3-128 digest"),
    ("lineage.in.1", j(path="data", kind="exe", digest=DS), "kind must be one of"),
    ("lineage.in.4", j(path="other", kind="file", digest=DS), "without gaps"),
    ("lineage.evil", "1", "unknown key"),
    ("lineage.exit", "NaN", "valid JSON"),
    ("lineage.exit", "1e999", "integer"),
    ("lineage.start", '"yesterday"', "UTC time"),
    (
        "lineage.param.1",
        '{"path":"p.yaml","digest":"' + DS + '","values":' + "[" * 5000 + "]" * 5000 + "}",
        "valid JSON",
    ),
    ("lineage.param.1", '{"path":"p.yaml","digest":"' + DS + '","values":{"a":1,"a":2}}', "appears twice"),
    (
        "lineage.env",
        j(**{**ENV, "lock": {"digest": DS, "size": -1}}),
        "size",
    ),
    ("lineage.version", '"1"', "must be 1"),
]


@pytest.mark.parametrize("key,value,why", HOSTILE, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(HOSTILE)])
def test_hostile_block_is_rejected(key, value, why):
    with pytest.raises(PointerError) as e:
        pointer.loads(_with(key, value), "model.bin.dv")
    assert e.value.message.startswith("model.bin.dv:") and why in e.value.message


def test_deep_json_and_missing_version():
    deep = "[" * 100_000
    with pytest.raises(PointerError):
        lineagefmt.from_items([("lineage.version", "1"), ("lineage.cmd", deep)], "p.dv")
    with pytest.raises(PointerError, match="lineage.version is missing"):
        lineagefmt.from_items([("lineage.cmd", '["x"]')], "p.dv")


def test_hostile_block_through_git_is_reported_not_run(repo_dir: Path, cli, tmp_path: Path):
    """A committed pointer whose block names a command is only data: lineage and status
    reject the bad block (exit 5, naming the file); nothing it names runs."""
    write(repo_dir / "model.bin", "m")
    assert cli("add", "model.bin").code == 0
    canary = tmp_path / "canary"
    bad = _with("lineage.in.1", j(path="../outside", kind="file", digest=DS)).decode()
    bad = bad.replace('"cmd":', '"cmd":').replace(
        '["python","train.py","--lr","0.1"]', json.dumps(["touch", str(canary)])
    )
    (repo_dir / "model.bin.dv").write_text(bad)
    git_commit(repo_dir, "hostile")
    for args in (
        ("lineage", "model.bin"),
        ("status",),
        ("reproduce", "model.bin"),
        ("lineage", "model.bin", "--rev", "HEAD"),
    ):
        r = cli(*args)
        assert r.code == 5, (args, r.out, r.err)
        assert "model.bin.dv" in r.err and "unsafe or invalid path" in r.err and "Traceback" not in r.err
    assert not canary.exists()


def test_killed_run_leaves_no_half_written_pointer(repo_dir: Path, cli):
    """SIGKILL ``dataver run`` at several moments (while its command runs, while it adds
    and records): every pointer is old, or new without a block, or new with the whole
    block: never a torn file."""
    write(repo_dir / "data" / "a.csv", "1,2\n")
    write(repo_dir / "make.py", "import sys, time\nopen('out.bin','w').write(sys.argv[1] * 200000)\n")
    assert cli("add", "data").code == 0
    git_commit(repo_dir, "script")
    cmd = [sys.executable, "-m", "dataver", "run", "-q", "-i", "data", "-o", "out.bin", "--"]
    seen = set()
    for n, delay in enumerate((0.4, 0.9, 1.4)):
        proc = subprocess.Popen([*cmd, sys.executable, "make.py", str(n)], cwd=repo_dir)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ptr_path = repo_dir / "out.bin.dv"
        if ptr_path.exists():
            ptr = pointer.loads(ptr_path.read_bytes(), "out.bin.dv")  # never torn
            lin = ptr.lineage
            state = "block" if lin is not None and lin.output_for("out.bin", ptr.digest) else "no block"
            seen.add(state)
        assert not [p for p in os.listdir(repo_dir) if p.startswith("out.bin.dv.")]  # no temporaries left named as one
    r = cli("run", "-i", "data", "-o", "out.bin", "--", sys.executable, "make.py", "z")
    assert r.code == 0, r.err
    assert pointer.loads((repo_dir / "out.bin.dv").read_bytes()).lineage is not None


def test_formats_md_example_parses():
    """The example in docs/formats.md's lineage section is a valid pointer whose block applies."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "formats.md").read_text()
    example = text[text.index("Example (`model.bin.dv`)") :].split("```")[1].lstrip("\n")
    ptr = pointer.loads(example.encode(), "formats.md example")
    assert ptr.lineage is not None and ptr.lineage.output_for("model.bin", ptr.digest) is not None
