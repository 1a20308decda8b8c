"""The folder fingerprint: status and re-add skip per-file work when a tracked
folder's stat data equals what was recorded with its manifest. Every test here
first makes the fast path active (a status that records the fingerprint), then
changes something it must notice."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import age, make_tree, write

from dataver.digest import Digest
from dataver.workspace import scan_folder


def _tracked(repo_dir, cli, n: int = 30) -> dict[str, bytes]:
    files = make_tree(repo_dir / "data", n, max_size=2048)
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    assert cli("status").code == 0  # records the fingerprint
    assert _recorded(repo_dir) == ["data"]
    return files


def _recorded(repo_dir) -> list[str]:
    db = sqlite3.connect(repo_dir / ".dataver" / "state.db")
    try:
        return [row[0] for row in db.execute("SELECT path FROM folders")]
    finally:
        db.close()


def _status(cli) -> dict[str, dict]:
    r = cli("status", "--json")
    assert r.code == 0, r.err
    return {rec["path"]: rec for rec in json.loads(r.out)}


def test_unchanged_folder_reports_every_file(repo_dir, cli):
    files = _tracked(repo_dir, cli)
    records = _status(cli)
    assert sorted(records) == sorted(f"data/{rel}" for rel in files)
    assert {(r["state"], r["in_cache"]) for r in records.values()} == {("unchanged", True)}
    r = cli("add", "data")
    assert r.code == 0 and "0 hashed" in r.err


def test_same_size_edit_is_seen(repo_dir, cli):
    files = _tracked(repo_dir, cli)
    rel = next(iter(files))
    p = repo_dir / "data" / rel
    data = bytearray(files[rel] or b"x")
    data[0] ^= 0xFF
    os.chmod(p, 0o644)
    p.write_bytes(bytes(data))
    age(p, 5)
    assert _status(cli)[f"data/{rel}"]["state"] == "modified"
    r = cli("add", "data")
    assert r.code == 0 and "1 hashed" in r.err
    assert cli("checkout").code == 0 and p.read_bytes() == bytes(data)


def test_executable_bit_is_seen(repo_dir, cli):
    files = _tracked(repo_dir, cli)
    rel = next(iter(files))
    p = repo_dir / "data" / rel
    os.chmod(p, os.stat(p).st_mode | 0o100)
    assert _status(cli)[f"data/{rel}"]["state"] == "modified"


def test_rename_new_and_deleted_files_are_seen(repo_dir, cli):
    files = _tracked(repo_dir, cli)
    first, second = list(files)[:2]
    os.rename(repo_dir / "data" / first, repo_dir / "data" / "renamed.bin")
    os.unlink(repo_dir / "data" / second)
    records = _status(cli)
    assert records[f"data/{first}"]["state"] == "deleted"
    assert records[f"data/{second}"]["state"] == "deleted"
    assert records["data/renamed.bin"]["state"] == "added"


def test_object_deleted_from_cache_is_reported_and_re_added(repo_dir, cli):
    files = _tracked(repo_dir, cli)
    rel = max(files, key=lambda k: len(files[k]))
    from dataver.hashing import digest_bytes

    digest = digest_bytes(files[rel])
    obj = repo_dir / ".dataver" / "cache" / digest.relpath()
    os.chmod(obj, 0o644)
    obj.unlink()
    records = _status(cli)
    assert records[f"data/{rel}"] == {"path": f"data/{rel}", "state": "unchanged", "in_cache": False, "tracked": "data"}
    r = cli("add", "data")
    assert r.code == 0 and "1 hashed" in r.err
    assert obj.read_bytes() == files[rel]


def test_manifest_deleted_from_cache_is_rebuilt_by_add(repo_dir, cli):
    _tracked(repo_dir, cli)
    text = (repo_dir / "data.dv").read_text()
    hex_ = next(line.split(": ")[1] for line in text.splitlines() if line.startswith("digest: "))
    manifest = repo_dir / ".dataver" / "cache" / (Digest("xxh3-128", hex_).relpath() + ".manifest")
    os.chmod(manifest, 0o644)
    manifest.unlink()
    r = cli("add", "data")
    assert r.code == 0, r.err
    assert manifest.exists()
    assert cli("verify").code == 0


def test_racy_files_are_not_vouched_for(repo_dir, cli):
    """A file written in the same moment as the scan could change again within the
    same timestamp tick; the folder's fingerprint must not cover it."""
    files = make_tree(repo_dir / "data", 5)
    assert cli("add", "data").code == 0
    rel = next(r for r in files if files[r])
    p = repo_dir / "data" / rel
    now = time.time_ns()
    os.utime(p, ns=(now, now))
    assert cli("status").code == 0
    assert _recorded(repo_dir) == []
    st = os.stat(p)
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:  # same inode, same size, then the same mtime again
        f.write(bytes([files[rel][0] ^ 1]))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _status(cli)[f"data/{rel}"]["state"] == "modified"


def test_fingerprint_covers_name_size_mtime_ctime_inode_and_mode(tmp_path):
    folder = tmp_path / "f"
    write(folder / "a", b"12345")
    write(folder / "sub" / "b", b"x")
    age(folder)

    def fp() -> str:
        got = scan_folder(str(folder), "f").fingerprint()
        assert got is not None
        return got

    base = fp()
    assert fp() == base
    st = os.stat(folder / "a")
    time.sleep(0.02)  # past the kernel's coarse clock tick: each change gets a new ctime
    os.utime(folder / "a", ns=(st.st_atime_ns, st.st_mtime_ns - 1))
    moved = fp()
    assert moved != base
    time.sleep(0.02)
    os.utime(folder / "a", ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime back, not the ctime
    back = fp()
    assert back not in (base, moved)  # an edit hidden by restoring the mtime still shows
    time.sleep(0.02)
    os.chmod(folder / "a", 0o755)
    assert fp() != back
    base = fp()
    os.rename(folder / "sub" / "b", folder / "sub" / "c")
    assert fp() != base
    copy = folder / "a.new"
    write(copy, b"12345")
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(copy, folder / "a")  # same name, size and mtime, another inode
    assert fp() != base
    now = time.time_ns()
    os.utime(folder / "a", ns=(now, now))
    assert scan_folder(str(folder), "f").fingerprint() is None


def test_fingerprint_is_the_documented_digest(tmp_path):
    """docs/formats.md defines the fingerprint folder by folder: a folder's own print,
    then each subfolder's name and fingerprint. Computed here from the definition over
    a real scan (and moving one file's mtime changes it)."""
    import array

    import xxhash

    from dataver.workspace import scan_folder

    seed = int.from_bytes(b"dvfinger", "little")
    for i in range(60):
        write(tmp_path / "f" / (f"d{i % 3}/" if i % 2 else "") / f"n{i:03d}", b"x" * i)
    write(tmp_path / "f" / "d1" / "deep" / "z", b"z")
    age(tmp_path / "f")

    def own(folder: Path) -> bytes:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        sts = [os.stat(folder / n) for n in names]
        data = "\n".join(names).encode() + b"\0"
        data += array.array("Q", [v for s in sts for v in (s.st_ino, s.st_size, s.st_mode)]).tobytes()
        data += array.array("q", [v for s in sts for v in (s.st_mtime_ns, s.st_ctime_ns)]).tobytes()
        return xxhash.xxh3_128_digest(data, seed=seed)

    def fingerprint(folder: Path) -> str:
        h = xxhash.xxh3_128(own(folder), seed=seed)
        for sub in sorted(p.name for p in folder.iterdir() if p.is_dir()):
            h.update(f"\n{sub}\0{fingerprint(folder / sub)}".encode())
        return h.hexdigest()

    assert scan_folder(str(tmp_path / "f"), "f").fingerprint() == fingerprint(tmp_path / "f")
    assert scan_folder(str(tmp_path / "f"), "f", keep=False).fingerprint() == fingerprint(tmp_path / "f")
    before = fingerprint(tmp_path / "f")
    st = os.stat(tmp_path / "f" / "d1" / "deep" / "z")
    os.utime(tmp_path / "f" / "d1" / "deep" / "z", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    after = scan_folder(str(tmp_path / "f"), "f")
    assert after.fingerprint() == fingerprint(tmp_path / "f") != before
    assert after.prints()["d0/"].combined == scan_folder(str(tmp_path / "f" / "d0"), "d0").fingerprint()


def test_per_file_status_merges_stat_cache_rows_in_manifest_order(repo_dir, cli):
    """Without a fingerprint, status walks the manifest and the stat-cache rows side by
    side in path order. A row whose digest was changed behind the file's back is what
    only a used row can show, so every such file reported modified proves its row was
    found; the names sort differently as bytes, naively and by component ("a-b" < "a/b")."""
    names = ["a-b", "a/b", "a/c d", "a0", "é.bin", "z", "zz/é/x", "Z"]
    for i, n in enumerate(names):
        write(repo_dir / "data" / n, f"content {i}\n")
    write(repo_dir / "data" / "gone", b"will be deleted")
    write(repo_dir / "data" / "edited", b"0123456789")
    age(repo_dir / "data")
    assert cli("add", "data").code == 0
    db = sqlite3.connect(repo_dir / ".dataver" / "state.db")
    db.execute("DELETE FROM folders")  # no fingerprint: the per-file path
    for n in names:  # the row still matches the file's stat, but names other bytes
        db.execute("UPDATE files SET digest = ? WHERE path = ?", ("ab" * 16, f"data/{n}"))
    db.commit()
    db.close()
    os.chmod(repo_dir / "data" / "edited", 0o644)
    (repo_dir / "data" / "edited").write_bytes(b"9876543210")  # same size, new mtime: hashed
    age(repo_dir / "data" / "edited", 5)
    os.unlink(repo_dir / "data" / "gone")
    write(repo_dir / "data" / "a/new", b"new")
    got = {path: rec["state"] for path, rec in _status(cli).items()}
    assert got == {
        **{f"data/{n}": "modified" for n in names},
        "data/edited": "modified",
        "data/gone": "deleted",
        "data/a/new": "added",
    }


def test_scan_files_mapping_matches_os_stat(tmp_path):
    """The scan keeps its stats as columns; what it hands out must be what os.stat says."""
    folder = tmp_path / "f"
    write(folder / "a", b"12345")
    write(folder / "sub" / "é b", b"x")
    os.chmod(folder / "a", 0o755)
    files = scan_folder(str(folder), "f").files
    assert sorted(files) == ["a", "sub/é b"] and len(files) == 2 and "a" in files and "b" not in files
    for rel, st in files.items():
        real = os.stat(folder / rel)
        assert st == (real.st_ino, real.st_size, real.st_mtime_ns, real.st_mode, real.st_ctime_ns)
        assert (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_ctime_ns) == tuple(files[rel])
    assert files.get("missing") is None
    assert files.keys() - {"a"} == {"sub/é b"}
    assert [st.st_size for st in files.values()] == [files[rel].st_size for rel in files]


@pytest.mark.parametrize("fingerprints", [True, False])
def test_status_sees_an_in_place_edit_whose_mtime_was_set_back(repo_dir, cli, fingerprints):
    """An edit of the same size whose mtime a tool put back (``cp -p``, ``rsync -t``):
    inode, size and mtime all match the stat cache, the ctime does not (issue 14, defect
    13; git's core.trustctime). Status names it, for a tracked folder (with and without
    its fingerprint) and a tracked file."""
    write(repo_dir / "data" / "a.csv", b"id\n1\n")
    write(repo_dir / "data" / "b.csv", b"id\n2\n")
    write(repo_dir / "one.csv", b"x,y\n")
    age(repo_dir)
    assert cli("add", "data", "one.csv").code == 0
    assert cli("status").out == ""
    if not fingerprints:
        db = sqlite3.connect(repo_dir / ".dataver" / "state.db")
        db.execute("DELETE FROM folders")
        db.commit()
        db.close()
    for p, new in ((repo_dir / "data" / "a.csv", b"ID\n1\n"), (repo_dir / "one.csv", b"X,Y\n")):
        st = os.stat(p)
        time.sleep(0.02)  # a ctime the kernel's coarse clock can tell from the recorded one
        with open(p, "r+b") as f:
            f.write(new)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        after = os.stat(p)
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    got = {path: rec["state"] for path, rec in _status(cli).items() if rec["state"] != "unchanged"}
    assert got == {"data/a.csv": "modified", "one.csv": "modified"}
    assert cli("verify").code == 1
