"""Packed remotes end to end: few files and few requests for many objects, the format
marker and older remotes, gc of packs, the remote lock, concurrent pushes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import git_commit, write
from remote_view import FolderView, objects_in
from s3servers import MotoServer, s3_client

from dataver import packstore


def tree(root: Path, n: int, tag: str = "") -> dict[str, bytes]:
    files = {f"data/d{i % 9}/f{i:04}.txt": f"{tag}file {i}\n".encode() * (1 + i % 13) for i in range(n)}
    for rel, data in files.items():
        write(root / rel, data)
    return files


def dv(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dataver", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def ok(*args: str, cwd: Path, env: dict | None = None) -> str:
    r = dv(*args, cwd=cwd, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def clone(repo: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(repo), str(dest)], check=True)
    return dest


def snapshot(root: Path) -> dict[str, bytes]:
    base = root / "data"
    return {f"data/{p.relative_to(base).as_posix()}": p.read_bytes() for p in base.rglob("*") if p.is_file()}


def test_a_new_folder_remote_is_packed_and_a_clone_pulls_from_it(repo_dir, tmp_path):
    files = tree(repo_dir, 600)
    ok("add", "data", cwd=repo_dir)
    store = tmp_path / "store"
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    first = json.loads(ok("push", "--json", cwd=repo_dir))
    assert first["transferred"] == 601
    raw = FolderView(store).raw_keys()
    assert "dataver.json" in raw
    assert json.loads((store / "dataver.json").read_text())["layout"] == "packed"
    assert len([k for k in raw if k.startswith("packs/")]) == 1  # 600 small files and a manifest: one pack
    assert len([k for k in raw if k.startswith("index/")]) == 1
    assert [k for k in raw if not k.startswith(("packs/", "index/", "dataver.json", "tmp"))] == []
    assert objects_in(store) == objects_in(repo_dir / ".dataver/cache")
    second = json.loads(ok("push", "--json", cwd=repo_dir))
    assert second["transferred"] == 0 and second["present"] == 601
    assert FolderView(store).raw_keys() == raw  # nothing written by a push with nothing to send
    git_commit(repo_dir, "data")
    other = clone(repo_dir, tmp_path / "other")
    ok("pull", cwd=other)
    assert snapshot(other) == files
    spill = tmp_path / "spill"  # a remote index too large for memory: read from a temporary file
    spill.mkdir()
    third = clone(repo_dir, tmp_path / "third")
    env = {**os.environ, packstore.INDEX_MEMORY_ENV: "640", "TMPDIR": str(spill)}
    assert json.loads(ok("pull", "--json", cwd=third, env=env))["transferred"] == 601
    assert snapshot(third) == files and os.listdir(spill) == []


@pytest.fixture
def counted_s3(aws_env, repo_dir):
    server = MotoServer(count=True).start()
    try:
        s3_client(server.endpoint).create_bucket(Bucket="packs")
        ok("remote", "add", "s3", "s3://packs/team", "--default", cwd=repo_dir)
        ok("remote", "modify", "s3", "endpoint_url", server.endpoint, cwd=repo_dir)
        yield server
    finally:
        server.stop()


def requests(server: MotoServer) -> int:
    return sum(server.request_counts().get("packs", {}).values())


def test_push_and_pull_of_many_small_files_cost_a_few_requests(counted_s3, repo_dir, tmp_path):
    files = tree(repo_dir, 1500)
    ok("add", "data", cwd=repo_dir)
    before = requests(counted_s3)
    ok("push", cwd=repo_dir)
    push_requests = requests(counted_s3) - before
    assert push_requests <= 30, counted_s3.request_counts()  # 1,501 objects: 2 %
    before = counted_s3.request_counts()["packs"]
    ok("push", cwd=repo_dir)
    after = counted_s3.request_counts()["packs"]
    again = {m: after[m] - before.get(m, 0) for m in after if after[m] != before.get(m, 0)}
    # unchanged data: the marker (which also proves the bucket is there), the index listing
    # and the one index file, each one GET (no HEAD before a whole-file read); target: <= 5
    assert again == {"GET": 3}, again
    git_commit(repo_dir, "data")
    other = clone(repo_dir, tmp_path / "other")
    before = requests(counted_s3)
    ok("pull", cwd=other)
    assert requests(counted_s3) - before <= 30
    assert snapshot(other) == files
    # one small file of the folder through the API, in a fresh clone: the index listing,
    # the index (96 KB here: whole; above 256 KiB one ranged window per lookup), the
    # manifest's and the file's ranges of their packs. No marker read, no HEAD.
    reader = clone(repo_dir, tmp_path / "reader")
    before, sent = counted_s3.request_counts()["packs"], counted_s3.traffic_bytes()["packs"]["sent"]
    target = "data/d3/f0777.txt"
    read = [sys.executable, "-c", "import sys, dataver.api; sys.stdout.buffer.write(dataver.api.read(sys.argv[1]))"]
    r = subprocess.run([*read, target], cwd=reader, capture_output=True, check=True, timeout=120)
    assert r.stdout == files[target]
    after = counted_s3.request_counts()["packs"]
    assert {m: after[m] - before.get(m, 0) for m in after if after[m] != before.get(m, 0)} == {"GET": 4}
    assert counted_s3.traffic_bytes()["packs"]["sent"] - sent < 200_000  # index 96 KB, manifest ~40 KB


def test_a_remote_with_loose_objects_stays_loose_until_upgraded(repo_dir, tmp_path):
    store = tmp_path / "old-store"
    tree(repo_dir, 30)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    ok("remote", "modify", "origin", "layout", "loose", cwd=repo_dir)
    ok("push", cwd=repo_dir)  # as a dataver without packs wrote it
    ok("remote", "modify", "origin", "layout", "packed", cwd=repo_dir)
    assert not (store / "dataver.json").exists() and (store / "xxh3-128").is_dir()
    files = tree(repo_dir, 60, "v2 ")
    ok("add", "data", cwd=repo_dir)
    ok("push", cwd=repo_dir)
    assert not (store / "dataver.json").exists() and not (store / "packs").exists()  # still format 1
    assert "packed now" in dv("remote", "upgrade", cwd=repo_dir).stderr
    files = tree(repo_dir, 90, "v3 ")
    ok("add", "data", cwd=repo_dir)
    ok("push", cwd=repo_dir)
    assert (store / "dataver.json").exists() and len(list((store / "packs").iterdir())) == 1
    git_commit(repo_dir, "v3")
    other = clone(repo_dir, tmp_path / "other")
    ok("pull", cwd=other)  # loose objects of v1/v2 and packed ones of v3, read alike
    assert snapshot(other) == files


def test_a_marker_from_a_newer_dataver_is_refused_with_a_hint(repo_dir, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "dataver.json").write_text(json.dumps({"format": "dataver-remote", "version": 99, "layout": "packed"}))
    tree(repo_dir, 3)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    r = dv("push", cwd=repo_dir)
    assert r.returncode == 9 and "newer dataver" in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(store)) == ["dataver.json", "tmp"]


def test_a_reader_skips_the_marker_but_not_before_calling_an_object_missing(repo_dir, tmp_path):
    """Readers find a packed remote by its index files (no marker request); an object they
    cannot find makes them read the marker, and a newer dataver's remote is refused."""
    store = tmp_path / "store"
    files = tree(repo_dir, 20)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    ok("push", cwd=repo_dir)
    git_commit(repo_dir, "v1")
    (store / "dataver.json").write_text(json.dumps({"format": "dataver-remote", "version": 99, "layout": "packed"}))
    other = clone(repo_dir, tmp_path / "other")
    ok("pull", cwd=other)  # everything it wants is in the index files it can read
    assert snapshot(other) == files
    write(repo_dir / "data/d0/new.txt", b"written by a newer dataver, in a place we cannot see\n")
    ok("add", "data", cwd=repo_dir)
    git_commit(repo_dir, "v2")
    subprocess.run(["git", "pull", "-q"], cwd=other, check=True)
    r = dv("pull", cwd=other)
    assert r.returncode == 9 and "newer dataver" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = dv("push", cwd=repo_dir)  # writers read the marker first
    assert r.returncode == 9 and "newer dataver" in r.stderr


def test_gc_deletes_unused_packs_rewrites_mostly_garbage_ones_and_dry_run_changes_nothing(repo_dir, tmp_path):
    store = tmp_path / "store"
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    old = tree(repo_dir, 200, "old ")
    ok("add", "data", cwd=repo_dir)
    ok("push", cwd=repo_dir)  # pack A: only the old data
    for rel in list(old)[:40]:
        (repo_dir / rel).unlink()
    keep = tree(repo_dir, 0)
    for i in range(300):
        write(repo_dir / f"data/new/n{i}.txt", f"new {i}\n".encode() * 20)
    ok("add", "data", cwd=repo_dir)
    ok("push", cwd=repo_dir)  # pack B: the new files and the new manifest
    git_commit(repo_dir, "now")
    keep = snapshot(repo_dir)
    before = FolderView(store).raw_keys()
    dry = dv("gc", "--remote", "origin", "--dry-run", cwd=repo_dir)
    assert dry.returncode == 0, dry.stderr
    assert "would rewrite 1" in dry.stderr, dry.stderr  # pack A: 40 of 201 objects are garbage
    assert FolderView(store).raw_keys() == before
    r = dv("gc", "--remote", "origin", "--yes", cwd=repo_dir)
    assert r.returncode == 0, r.stderr
    after = FolderView(store).raw_keys()
    assert len([k for k in after if k.startswith("index/")]) == 1  # compacted
    assert not [k for k in after if k.startswith("locks/")]
    other = clone(repo_dir, tmp_path / "other")
    ok("pull", cwd=other)
    assert snapshot(other) == keep


def test_a_push_waits_for_a_live_gc_lock_and_ignores_a_stale_one(repo_dir, tmp_path):
    store = tmp_path / "store"
    tree(repo_dir, 5)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    ok("push", cwd=repo_dir)
    tree(repo_dir, 8, "more ")
    ok("add", "data", cwd=repo_dir)
    lock = store / "locks" / "0123456789abcdef.json"
    lock.parent.mkdir(exist_ok=True)
    live = {"exclusive": True, "host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
    lock.write_text(json.dumps({**live, "command": "gc"}))
    env = {**os.environ, "DATAVER_LOCK_WAIT": "1"}
    r = dv("push", cwd=repo_dir, env=env)
    assert r.returncode == 10 and "locked by gc" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(store / "locks") == [lock.name]  # ours was taken back
    lock.write_text(json.dumps({**live, "time": time.time() - packstore.LOCK_STALE - 60}))
    r = dv("push", cwd=repo_dir, env=env)
    assert r.returncode == 0, r.stderr


def test_two_clones_pushing_into_one_remote_at_once_lose_nothing(repo_dir, tmp_path):
    store = tmp_path / "store"
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    git_commit(repo_dir, "remote")
    a, b = clone(repo_dir, tmp_path / "a"), clone(repo_dir, tmp_path / "b")
    files_a, files_b = tree(a, 400, "a "), tree(b, 400, "b ")
    ok("add", "data", cwd=a)
    ok("add", "data", cwd=b)
    procs = [subprocess.Popen([sys.executable, "-m", "dataver", "push"], cwd=c) for c in (a, b)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert objects_in(store) == objects_in(a / ".dataver/cache") | objects_in(b / ".dataver/cache")
    for side, files in ((a, files_a), (b, files_b)):
        git_commit(side, "data")
        fresh = clone(side, tmp_path / f"fresh-{side.name}")
        ok("pull", cwd=fresh)
        assert snapshot(fresh) == files


def test_gc_removes_packs_no_index_names_and_a_suspended_push_publishes_nothing(repo_dir, tmp_path):
    store = tmp_path / "store"
    tree(repo_dir, 20)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    ok("push", cwd=repo_dir)
    git_commit(repo_dir, "data")
    orphan = store / "packs" / ("ab" * 16 + ".pack")  # as a push killed before its index
    orphan.write_bytes(b"DVPACK\x00\x01 left by a killed push")
    dry = dv("gc", "--remote", "origin", "--dry-run", cwd=repo_dir)
    assert "would delete 1 pack(s) (1 left by killed pushes)" in dry.stderr and orphan.exists()
    r = dv("gc", "--remote", "origin", "--yes", cwd=repo_dir)
    assert r.returncode == 0 and "1 left by killed pushes" in r.stderr, r.stderr
    assert not orphan.exists()
    other = clone(repo_dir, tmp_path / "other")
    ok("pull", cwd=other)
    # a push whose lock was removed as stale (suspended > 30 min) must not write its index
    from dataver.hashing import digest_bytes
    from dataver.remotes import LocalRemoteStore
    from dataver.store import ObjRef

    remote = LocalRemoteStore("origin", str(store), {})
    remote.prepare_write()
    batch = remote.writer()
    batch.put_bytes(ObjRef(digest_bytes(b"late")), b"late")
    (store / batch.lock.rel).unlink()  # what another command's stale-lock sweep does
    indexes = sorted(os.listdir(store / "index"))
    with pytest.raises(Exception, match="lock .* expired"):
        with batch:
            pass
    assert sorted(os.listdir(store / "index")) == indexes


class CountingFiles:
    """A remote's files in a dict, counting reads and the bytes they return."""

    where = "counting remote"

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.reads, self.read_bytes, self.lists = 0, 0, 0

    def read_file(self, rel, start=0, end=None):
        from dataver.errors import ObjectsMissing

        if rel not in self.files:
            raise ObjectsMissing(f"{rel} is not there")
        self.reads += 1
        data = self.files[rel][start:end]
        self.read_bytes += len(data)
        return data

    def read_buffer(self, rel, start, end):
        return bytearray(self.read_file(rel, start, end))  # as a streamed S3 range comes

    def write_file(self, rel, data):
        self.files[rel] = bytes(data)

    def list_files(self, rel_dir):
        self.lists += 1
        return [(k.split("/", 1)[1], len(v), 0.0) for k, v in self.files.items() if k.startswith(rel_dir + "/")]

    def delete_files(self, rels):
        for r in rels:
            self.files.pop(r, None)


def test_a_few_lookups_read_windows_of_a_large_index_not_all_of_it():
    from dataver import packfmt
    from dataver.hashing import digest_bytes
    from dataver.store import ObjRef

    files = CountingFiles()
    refs = [ObjRef(digest_bytes(f"object {i}".encode())) for i in range(20_000)]
    records = [
        packfmt.Record(packfmt.Entry(r.digest, packfmt.KIND_BLOB, packfmt.CODEC_RAW, 8 + i, 1, 1), "ab" * 16)
        for i, r in enumerate(refs)
    ]
    index_id, data = packfmt.encode_index(records)
    files.write_file(f"index/{index_id}.idx", data)
    index = packstore.PackIndex(files)
    for i in (0, 777, 19_999):
        assert index.find(refs[i]).entry.offset == 8 + i
    assert index.find(ObjRef(digest_bytes(b"not there"))) is None
    assert files.lists == 1 and files.reads == 4
    assert files.read_bytes < len(data) / 4  # windows of 1.3 MB, not the file
    assert not index.loaded
    for r in refs[: packstore.PackIndex.FEW]:  # many lookups: the whole index, once
        index.find(r)
    assert index.loaded and len(index) == 20_000


def open_files_in(folder: Path) -> list[str]:
    """What this process holds open in ``folder`` (Linux: /proc/self/fd)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{folder}/"):
            out.append(target)
    return out


@pytest.mark.parametrize("how", ["in-memory", "spilled", "pieces"])
def test_many_index_files_merge_into_one_run_and_the_first_record_of_a_key_wins(how, tmp_path, monkeypatch):
    """A remote after many pushes: one bisection per look-up (the runs merged on load),
    every key once, and a key that two index files name keeps the older file's record.
    Past its memory limit the index keeps its records in an unnamed temporary file
    (nothing to clean up after a kill) and answers the same; an index file larger than
    a piece is read in pieces, each byte once, and answers the same."""
    import tempfile

    from dataver import packfmt
    from dataver.hashing import digest_bytes
    from dataver.store import ObjRef

    spilled = how == "spilled"
    if how == "pieces":
        monkeypatch.setattr(packstore, "INDEX_PIECE", 100 * 64)
    spill = tmp_path / "tmp"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    if spilled:
        monkeypatch.setenv(packstore.INDEX_MEMORY_ENV, str(700 * packfmt.RECORD_SIZE))  # a file and a bit
    else:
        monkeypatch.delenv(packstore.INDEX_MEMORY_ENV, raising=False)
    files = CountingFiles()
    refs = [ObjRef(digest_bytes(f"object {i}".encode())) for i in range(3000)]
    names = []
    for part in range(6):  # 6 index files of 600 objects; each also repeats 100 of the previous one's
        lo = part * 500
        records = [
            packfmt.Record(
                packfmt.Entry(r.digest, packfmt.KIND_BLOB, packfmt.CODEC_RAW, 8 + part, 1, 1), f"{part:032x}"
            )
            for r in refs[lo : lo + 600]
        ]
        index_id, data = packfmt.encode_index(records)
        files.write_file(f"index/{index_id}.idx", data)
        names.append(index_id)
    index = packstore.PackIndex(files)
    files.reads = files.read_bytes = 0
    index.load()
    assert files.read_bytes == sum(len(v) for v in files.files.values())
    counts = [packfmt.index_count(len(v)) for v in files.files.values()]  # 600 each, the last 500
    assert files.reads == (6 if how != "pieces" else sum(-(-n // 100) for n in counts))  # pieces of 100
    assert os.listdir(spill) == []
    held = open_files_in(spill)
    assert held == ([f"{held[0].split(' ')[0]} (deleted)"] if spilled else []), held
    assert len(index._runs) == 1
    assert len(index) == 3000 and len(index.keys()) == 3000 and len(list(index.all_records())) == 3000
    order = sorted(range(6), key=lambda p: names[p])  # index files are read in name order
    for i, r in enumerate(refs):
        parts = [p for p in range(6) if p * 500 <= i < p * 500 + 600]
        first = min(parts, key=order.index)
        assert index.find(r).pack == f"{first:032x}", i
        assert index.holds(r)
    assert not index.holds(ObjRef(digest_bytes(b"not there")))


def test_an_index_that_cannot_spill_to_its_temporary_folder_says_where_and_what_to_do(tmp_path, monkeypatch):
    import tempfile

    from dataver import packfmt
    from dataver.errors import StorageError
    from dataver.hashing import digest_bytes

    not_a_folder = tmp_path / "tmpfile"
    not_a_folder.write_bytes(b"")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    monkeypatch.setenv(packstore.INDEX_MEMORY_ENV, "64")
    files = CountingFiles()
    records = [
        packfmt.Record(
            packfmt.Entry(digest_bytes(bytes([i])), packfmt.KIND_BLOB, packfmt.CODEC_RAW, 8, 1, 1), "ab" * 16
        )
        for i in range(3)
    ]
    index_id, data = packfmt.encode_index(records)
    files.write_file(f"index/{index_id}.idx", data)
    with pytest.raises(StorageError) as e:
        packstore.PackIndex(files).load()
    assert f"temporary copy of the index of counting remote in {not_a_folder}" in e.value.message
    assert "TMPDIR" in e.value.hint


def test_an_index_file_read_in_pieces_is_checked_as_a_whole_one_is(monkeypatch):
    """Damage that only the whole file shows (its checksum, its name) is still refused,
    and the index is not left half loaded."""
    from dataver import packfmt
    from dataver.errors import IntegrityError
    from dataver.hashing import digest_bytes

    monkeypatch.setattr(packstore, "INDEX_PIECE", 10 * 64)
    refs = [digest_bytes(f"object {i}".encode()) for i in range(50)]
    records = [
        packfmt.Record(packfmt.Entry(d, packfmt.KIND_BLOB, packfmt.CODEC_RAW, 8 + i, 1, 1), "cd" * 16)
        for i, d in enumerate(refs)
    ]
    index_id, data = packfmt.encode_index(records)
    flipped = bytearray(data)
    flipped[packfmt.INDEX_HEADER + 30 * 64 + 50] ^= 1  # the pack id of the 31st record
    other_id, other = packfmt.encode_index(records[:49])
    short = data[: packfmt.INDEX_HEADER + 40 * 64] + data[-16:]  # listed with 40 records, the tail says 50
    cases = [
        (bytes(flipped), index_id, "is damaged (its count or checksum does not match)"),
        (other, index_id, "does not match its name (damaged)"),
        (data + b"\0" * 5, index_id, "is not a dataver index file"),
        (short, packfmt.object_id(short), "is damaged (its count or checksum does not match)"),
    ]
    for body, name, says in cases:
        files = CountingFiles()
        files.write_file(f"index/{name}.idx", body)
        index = packstore.PackIndex(files)
        with pytest.raises(IntegrityError) as e:
            index.load()
        assert f"index file index/{name}.idx on counting remote" in e.value.message
        assert says in e.value.message, e.value.message
        assert not index.loaded
    assert other_id != index_id


class SlowFiles(CountingFiles):
    """Packs are written slowly and only their sizes kept (what a push holds is what counts)."""

    def write_file(self, rel, data):
        if rel.startswith("packs/"):
            time.sleep(0.03)
            self.files[rel] = len(data).to_bytes(8, "little")
        else:
            super().write_file(rel, data)


def test_a_push_holds_a_few_packs_in_memory_however_many_it_writes():
    """Objects read group by group (PackWriter.plan), at most UPLOADS_IN_FLIGHT packs built
    and not yet written: with uploads slower than reads, memory stays at a few packs, not
    the eight reader threads' worth and not the data's."""
    import tracemalloc

    from dataver.concurrency import run_parallel
    from dataver.hashing import digest_bytes
    from dataver.store import ObjRef

    pack_size, obj = 1 << 20, 32 << 10
    content = {}
    for i in range(1024):  # 32 MiB in 32 packs of 1 MiB
        data = i.to_bytes(4, "little") * (obj // 4)
        content[ObjRef(digest_bytes(data))] = i
    files = SlowFiles()
    writer = packstore.PackWriter(files, packstore.PackIndex(files), pack_size)
    groups = writer.plan((ref, obj) for ref in content)
    tracemalloc.start()
    try:
        for group in groups:
            run_parallel(lambda r: writer.add(r, content[r].to_bytes(4, "little") * (obj // 4)), group, 8)
        writer.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        writer.close()
    assert len(groups) == 32 // packstore.GROUP_PACKS and sum(map(len, groups)) == 1024
    assert writer.packs_written == 32 and len(packstore.PackIndex(files)) == 1024  # one index file names all
    assert len([k for k in files.files if k.startswith("packs/")]) == 32
    # UPLOADS_IN_FLIGHT written or waiting to be, GROUP_PACKS being filled, one joined from
    # its parts: 5.4 packs measured (GROUP_PACKS = 4: 6.4 to 7.4; one group, as the eight
    # reader threads would fill packs ahead unchecked: more)
    assert peak < 7 * pack_size, peak / pack_size


def test_verify_remote_checks_the_index_against_the_packs_and_deep_rehashes(repo_dir, tmp_path):
    store = tmp_path / "store"
    files = tree(repo_dir, 50)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    ok("push", cwd=repo_dir)
    git_commit(repo_dir, "data")
    assert "everything matches" in dv("verify", "--remote", "origin", "--deep", cwd=repo_dir).stderr
    (pack,) = (store / "packs").iterdir()
    raw = bytearray(pack.read_bytes())
    victim = files["data/d3/f0012.txt"]
    at = bytes(raw).index(victim)
    raw[at] ^= 0x01  # one object's byte, the trailer untouched: only --deep sees it
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    assert dv("verify", "--remote", "origin", cwd=repo_dir).returncode == 0
    r = dv("verify", "--remote", "origin", "--deep", cwd=repo_dir)
    assert r.returncode == 1
    from dataver.hashing import digest_bytes

    assert f"{digest_bytes(victim)} in packs/{pack.name}: its bytes do not hash to its name (corrupt)" in r.stdout
    pack.unlink()
    r = dv("verify", "--remote", "origin", "--json", cwd=repo_dir)
    assert r.returncode == 1 and f"packs/{pack.name}" in r.stdout and "missing" in r.stdout


def test_verify_remote_deep_rehashes_a_loose_remote_too(repo_dir, tmp_path):
    store = tmp_path / "store"
    files = tree(repo_dir, 10)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    ok("remote", "modify", "origin", "layout", "loose", cwd=repo_dir)
    ok("push", cwd=repo_dir)
    git_commit(repo_dir, "data")
    view = FolderView(store)
    from dataver.hashing import digest_bytes

    key = digest_bytes(files["data/d1/f0001.txt"]).relpath()
    view.write(key, b"x" * len(files["data/d1/f0001.txt"]))
    assert dv("verify", "--remote", "origin", cwd=repo_dir).returncode == 0
    r = dv("verify", "--remote", "origin", "--deep", cwd=repo_dir)
    assert r.returncode == 1 and "data/d1/f0001.txt" in r.stdout and "corrupt" in r.stdout, r.stdout


def test_a_push_killed_before_its_index_is_resumed_with_the_same_packs(repo_dir, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    marker = {"format": "dataver-remote", "version": 2, "layout": "packed", "pack_size": 65536}
    (store / "dataver.json").write_text(json.dumps(marker))
    files = {f"data/f{i:03}.bin": os.urandom(1000 + i) for i in range(400)}  # 600 KB
    for rel, data in files.items():
        write(repo_dir / rel, data)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(store), "--default", cwd=repo_dir)
    ok("push", "-j", "4", cwd=repo_dir)
    packs = sorted(os.listdir(store / "packs"))
    assert len(packs) >= 4  # 64 KiB packs
    (index,) = (store / "index").iterdir()
    index.unlink()  # as if killed after the packs, before the index
    mtimes = {p: os.stat(store / "packs" / p).st_mtime_ns for p in packs}
    again = json.loads(ok("push", "--json", "-j", "2", cwd=repo_dir))
    assert again["transferred"] == 401
    assert sorted(os.listdir(store / "packs")) == packs  # the same packs: none left that no index names
    assert {p: os.stat(store / "packs" / p).st_mtime_ns for p in packs} == mtimes  # found, not uploaded again
    git_commit(repo_dir, "data")
    other = clone(repo_dir, tmp_path / "other")
    ok("pull", cwd=other)
    assert snapshot(other) == files


def test_a_pull_reads_many_objects_a_batch_at_a_time(repo_dir, tmp_path, cli, monkeypatch):
    """read_many looks up and reads READ_BATCH objects at once (bounded memory); batches
    that split packs and folders still bring back every file."""
    from dataver import remotes

    files = tree(repo_dir, 50)
    ok("add", "data", cwd=repo_dir)
    ok("remote", "add", "origin", str(tmp_path / "store"), "--default", cwd=repo_dir)
    ok("push", cwd=repo_dir)
    git_commit(repo_dir, "data")
    other = clone(repo_dir, tmp_path / "other")
    monkeypatch.setattr(remotes, "READ_BATCH", 7)
    calls = []
    real = remotes.RemoteStore._read_batch
    monkeypatch.setattr(
        remotes.RemoteStore, "_read_batch", lambda self, refs, *a: calls.append(len(refs)) or real(self, refs, *a)
    )
    r = cli("pull", cwd=other)
    assert r.code == 0, r.err
    assert snapshot(other) == files
    assert max(calls) == 7 and sum(calls) >= 50
