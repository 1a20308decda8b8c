"""Push and fetch walk a million objects in bounded memory: references kept compact
(dataver.refbatch), spilled to unnamed temporary files, handed back in batches; a push
of several batches makes each batch's blobs visible before any manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import xxhash
from conftest import write
from remote_view import FolderView

from dataver import refbatch
from dataver.digest import Digest
from dataver.store import ObjRef


def ref(i: int, manifest: bool = False, algorithm: str = "xxh3-128") -> ObjRef:
    hex_ = xxhash.xxh3_128_hexdigest(str(i).encode())
    return ObjRef(Digest(algorithm, hex_ if algorithm == "xxh3-128" else hex_ * 2), manifest)


def test_every_reference_comes_back_once_in_fan_aligned_batches(tmp_path):
    refs = [ref(i) for i in range(3000)] + [ref(i, manifest=True) for i in range(50)] + [ref(7, algorithm="blake3")]
    with refbatch.RefBatches(str(tmp_path / "tmp"), memory_bytes=4096, batch=400) as rb:
        for i, r in enumerate(refs):
            rb.add(r, i)
        for i, r in enumerate(refs[:500]):  # repeats keep the first size
            rb.add(r, 10**9 + i)
        assert rb.count == len(refs) + 500
        # spilled: the records are in unnamed files (nothing to leave behind when killed)
        assert any(f is not None for f in rb._files)
        assert os.listdir(tmp_path / "tmp") == []
        batches = list(rb.batches())
    got = [(r, s) for b in batches for r, s in b.items()]
    assert sorted(got, key=lambda x: x[1]) == [(r, i) for i, r in enumerate(refs)]
    assert len(batches) > 5 and all(len(b) <= 400 for b in batches)
    # a digest's first byte decides its batch: no byte in two batches
    firsts = [{bytes.fromhex(r.digest.hex[:2]) for r in b} for b in batches]
    assert sum(len(f) for f in firsts) == len(set().union(*firsts))


def test_a_run_larger_than_a_batch_is_one_batch(tmp_path):
    same_byte = [ObjRef(Digest("xxh3-128", f"ab{i:030x}")) for i in range(50)]
    with refbatch.RefBatches(str(tmp_path), batch=10) as rb:
        for r in same_byte:
            rb.add(r, 1)
        assert [len(b) for b in rb.batches()] == [50]


def test_the_batch_size_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(refbatch.BATCH_ENV, "7")
    assert refbatch.RefBatches(str(tmp_path)).batch == 7
    monkeypatch.setenv(refbatch.BATCH_ENV, "not a number")
    assert refbatch.RefBatches(str(tmp_path)).batch == refbatch.BATCH


def dv(cwd: Path, *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "dataver", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("layout", ["packed", "loose"])
def test_a_push_and_a_pull_of_many_batches_give_the_exact_files(repo_dir, tmp_path, monkeypatch, layout):
    monkeypatch.setenv(refbatch.BATCH_ENV, "9")
    files = {f"data/d{i % 11}/f{i:03}.bin": os.urandom(1 + i % 700) for i in range(240)}
    files["model.bin"] = os.urandom(3000)
    for rel, data in files.items():
        write(repo_dir / rel, data)
    store = tmp_path / "store"
    if layout == "loose":  # a remote written by an older dataver: one file per object
        store.mkdir()
    dv(repo_dir, "add", "data", "model.bin")
    dv(repo_dir, "remote", "add", "origin", str(store), "--default")
    subprocess.run(["git", "add", "-A"], cwd=repo_dir, check=True)
    subprocess.run(["git", "commit", "-qm", "data"], cwd=repo_dir, check=True)
    pushed = json.loads(dv(repo_dir, "push", "--json"))
    assert pushed["transferred"] == 242 and pushed["failed"] == []
    if layout == "packed":
        indexes = list((store / "index").iterdir())
        assert len(indexes) > 3  # one per batch of blobs, then the manifest's
    assert json.loads(dv(repo_dir, "push", "--json"))["transferred"] == 0
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(clone)], check=True)
    pulled = json.loads(dv(clone, "pull", "--json"))
    assert pulled["failed"] == []
    for rel, data in files.items():
        assert (clone / rel).read_bytes() == data
    assert dv(clone, "status").strip() == ""
    assert os.listdir(clone / ".dataver" / "cache" / "tmp") == []


def test_failures_across_batches_are_named_by_path(repo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(refbatch.BATCH_ENV, "5")
    for i in range(60):
        write(repo_dir / f"data/f{i:02}.txt", f"file {i}\n")
    dv(repo_dir, "add", "data")
    dv(repo_dir, "remote", "add", "origin", str(tmp_path / "store"), "--default")
    subprocess.run(["git", "add", "-A"], cwd=repo_dir, check=True)
    subprocess.run(["git", "commit", "-qm", "data"], cwd=repo_dir, check=True)
    dv(repo_dir, "push")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_dir), str(clone)], check=True)
    # two objects gone from the remote: the pull names each file, and brings the rest
    lost = ["data/f07.txt", "data/f41.txt"]
    view = FolderView(tmp_path / "store")
    for rel in lost:
        digest = Digest("xxh3-128", dv(repo_dir, "hash", rel).split()[0])
        view.delete(digest.relpath())
    r = subprocess.run(
        [sys.executable, "-m", "dataver", "pull", "--json"], cwd=clone, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 7, r.stderr
    failed = json.loads(r.stdout)["failed"]
    assert sorted(f["path"] for f in failed) == lost
    for i in range(60):
        rel = f"data/f{i:02}.txt"
        if rel not in lost:
            assert (clone / rel).read_text() == f"file {i}\n"
