"""status, ls, gc, verify, hash, config, --version and --help through the CLI."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import xxhash
from conftest import cli_proc, make_tree, write

from dataver import __version__


def digest_of(pointer_path) -> str:
    for line in pointer_path.read_text().splitlines():
        if line.startswith("digest:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no digest in {pointer_path}")


def cache_dir(repo_dir):
    return repo_dir / ".dataver" / "cache" / "xxh3-128"


def blob(repo_dir, hex_: str):
    return cache_dir(repo_dir) / hex_[:2] / hex_[2:]


def cached_objects(repo_dir) -> set[str]:
    """Names (full hex, '.manifest' kept) of every object in the cache."""
    root = cache_dir(repo_dir)
    return {p.parent.name + p.name for p in root.glob("*/*")} if root.exists() else set()


def status_lines(cli, *args) -> list[tuple[str, str]]:
    r = cli("status", *args)
    assert r.code == 0, r.err
    return [tuple(line.split(None, 1)) for line in r.out.splitlines()]


# -- status ---------------------------------------------------------------------------
def test_status_states_for_a_folder(repo_dir, cli):
    make_tree(repo_dir / "data", 9)
    write(repo_dir / "gone", b"whole path")
    assert cli("add", "data", "gone").code == 0
    r = cli("status")
    assert r.code == 0 and r.out == ""
    assert "everything matches" in r.err
    write(repo_dir / "data" / "f0.bin", b"edited")
    os.unlink(repo_dir / "data" / "sub1" / "f1.bin")
    write(repo_dir / "data" / "sub9" / "new.txt", "new")
    os.unlink(repo_dir / "gone")
    assert status_lines(cli) == [
        ("modified:", "data/f0.bin"),
        ("deleted:", "data/sub1/f1.bin"),
        ("added:", "data/sub9/new.txt"),
        ("missing:", "gone"),
    ]
    shutil.rmtree(repo_dir / "data")
    assert ("missing:", "data") in status_lines(cli)


def test_status_json_shape(repo_dir, cli):
    make_tree(repo_dir / "data", 3)
    write(repo_dir / "one.bin", b"1")
    assert cli("add", "data", "one.bin").code == 0
    write(repo_dir / "data" / "f0.bin", b"changed")
    write(repo_dir / "data" / "extra", b"extra")
    r = cli("status", "--json")
    assert r.code == 0
    records = json.loads(r.out)
    assert all(set(rec) == {"path", "state", "in_cache", "tracked"} for rec in records)
    by_path = {rec["path"]: rec for rec in records}
    assert by_path["data/f0.bin"] == {"path": "data/f0.bin", "state": "modified", "in_cache": True, "tracked": "data"}
    assert by_path["data/extra"] == {"path": "data/extra", "state": "added", "in_cache": None, "tracked": "data"}
    assert by_path["data/sub1/f1.bin"]["state"] == "unchanged"
    assert by_path["one.bin"] == {"path": "one.bin", "state": "unchanged", "in_cache": True, "tracked": "one.bin"}
    # --all lists unchanged files in the text form too
    assert ("unchanged:", "one.bin") in status_lines(cli, "--all")
    assert ("unchanged:", "one.bin") not in status_lines(cli)


def test_status_of_a_file_pointer(repo_dir, cli):
    write(repo_dir / "m.bin", b"abcdef")
    assert cli("add", "m.bin").code == 0
    assert status_lines(cli, "m.bin") == []
    write(repo_dir / "m.bin", b"abcdeX")  # same size, new bytes
    assert status_lines(cli, "m.bin") == [("modified:", "m.bin")]
    write(repo_dir / "m.bin", b"longer content")
    assert status_lines(cli, "m.bin.dv") == [("modified:", "m.bin")]
    os.unlink(repo_dir / "m.bin")
    assert status_lines(cli, "m.bin") == [("missing:", "m.bin")]


def test_status_flags_content_not_in_cache(repo_dir, cli):
    files = make_tree(repo_dir / "data", 4, seed=1)
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "data", "w.bin").code == 0
    os.unlink(blob(repo_dir, digest_of(repo_dir / "w.bin.dv")))
    os.unlink(blob(repo_dir, xxhash.xxh3_128_hexdigest(files["f2.bin"])))
    r = cli("status")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines == ["unchanged:  data/f2.bin  (not in cache)", "unchanged:  w.bin  (not in cache)"]
    records = {rec["path"]: rec for rec in json.loads(cli("status", "--json").out)}
    assert records["w.bin"]["in_cache"] is False
    assert records["data/f2.bin"]["in_cache"] is False
    assert records["data/f0.bin"]["in_cache"] is True


def test_status_and_verify_see_an_executable_bit_change(repo_dir, cli):
    make_tree(repo_dir / "data", 3)
    assert cli("add", "data").code == 0
    os.chmod(repo_dir / "data" / "f0.bin", 0o755)
    assert status_lines(cli) == [("modified:", "data/f0.bin")]
    r = cli("verify")
    assert r.code == 1 and r.out == "data/f0.bin: workspace modified\n"
    # what status reports agrees with what hash and add see
    assert cli("hash", "data").out.split()[0] != digest_of(repo_dir / "data.dv")
    assert cli("checkout").code == 0
    assert not os.stat(repo_dir / "data" / "f0.bin").st_mode & 0o100
    assert status_lines(cli) == []
    assert cli("verify", "-q").code == 0


def test_status_nothing_tracked(repo_dir, cli):
    r = cli("status")
    assert r.code == 0 and r.out == ""
    assert "nothing is tracked" in r.err


def test_status_of_a_path_inside_a_tracked_folder(repo_dir, cli):
    """A part of a tracked folder (issue 14's granular targets; it was an error)."""
    make_tree(repo_dir / "data", 2)
    assert cli("add", "data").code == 0
    r = cli("status", "data/f0.bin")
    assert r.code == 0 and r.out == "", r.err
    write(repo_dir / "data/f0.bin", b"changed")
    assert cli("status", "data/f0.bin").out.split() == ["modified:", "data/f0.bin"]
    r = cli("status", "data/nothere.bin")
    assert r.code == 4
    assert r.err.startswith("error: data/nothere.bin is not in data")
    r = cli("status", "elsewhere.bin")
    assert r.code == 4 and "not tracked" in r.err


# -- ls -------------------------------------------------------------------------------
def test_ls_text_json_and_folder(repo_dir, cli):
    files = make_tree(repo_dir / "data", 5, seed=7)
    write(repo_dir / "w.bin", b"x" * 2048)
    assert cli("add", "data", "w.bin").code == 0
    r = cli("ls")
    assert r.code == 0
    lines = r.out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == "dir" and lines[0].endswith("  data") and "5 files" in lines[0]
    assert lines[1].split()[0] == "file" and lines[1].endswith("  w.bin") and "2.0 KiB" in lines[1]
    items = json.loads(cli("ls", "--json").out)
    assert items == [
        {
            "path": "data",
            "kind": "dir",
            "size": sum(len(b) for b in files.values()),
            "digest": digest_of(repo_dir / "data.dv"),
            "files": 5,
            "executable": False,
        },
        {
            "path": "w.bin",
            "kind": "file",
            "size": 2048,
            "digest": digest_of(repo_dir / "w.bin.dv"),
            "files": None,
            "executable": False,
        },
    ]
    inside = json.loads(cli("ls", "--json", "data").out)
    assert {it["path"]: (it["size"], it["digest"]) for it in inside} == {
        f"data/{rel}": (len(b), xxhash.xxh3_128_hexdigest(b)) for rel, b in files.items()
    }
    text = cli("ls", "data").out.splitlines()
    assert sorted(line.split()[-1] for line in text) == sorted(f"data/{rel}" for rel in files)
    assert json.loads(cli("ls", "--json", "w.bin").out)[0]["path"] == "w.bin"


def test_ls_works_without_the_data(repo_dir, cli):
    make_tree(repo_dir / "data", 3)
    assert cli("add", "data").code == 0
    shutil.rmtree(repo_dir / "data")
    r = cli("ls", "data")
    assert r.code == 0 and len(r.out.splitlines()) == 3


def test_ls_empty_repo(repo_dir, cli):
    r = cli("ls", "--json")
    assert r.code == 0 and json.loads(r.out) == []


# -- gc -------------------------------------------------------------------------------
def test_gc_removes_only_unreferenced_objects(repo_dir, cli):
    write(repo_dir / "data" / "keep.txt", "kept in both versions")
    write(repo_dir / "data" / "old.txt", "only in version one")
    write(repo_dir / "w.bin", b"weights v1")
    assert cli("add", "data", "w.bin").code == 0
    v1_manifest = digest_of(repo_dir / "data.dv") + ".manifest"
    v1_weights = digest_of(repo_dir / "w.bin.dv")
    old_blob = xxhash.xxh3_128_hexdigest(b"only in version one")
    os.unlink(repo_dir / "data" / "old.txt")
    write(repo_dir / "w.bin", b"weights v2")
    assert cli("add", "data", "w.bin").code == 0
    referenced = {
        digest_of(repo_dir / "data.dv") + ".manifest",
        xxhash.xxh3_128_hexdigest(b"kept in both versions"),
        digest_of(repo_dir / "w.bin.dv"),
    }
    unreferenced = {v1_manifest, v1_weights, old_blob}
    assert cached_objects(repo_dir) == referenced | unreferenced

    r = cli("gc", "--dry-run", "--json")
    assert r.code == 0
    out = json.loads(r.out)
    assert (out["removed"], out["kept"], out["dry_run"]) == (3, 3, True)
    assert out["freed"] > 0
    assert cached_objects(repo_dir) == referenced | unreferenced  # nothing removed

    r = cli("gc", "-y")
    assert r.code == 0, r.err
    assert "removed 3 object(s)" in r.err and "kept 3" in r.err
    assert cached_objects(repo_dir) == referenced
    # what is referenced still checks out
    shutil.rmtree(repo_dir / "data")
    os.unlink(repo_dir / "w.bin")
    assert cli("checkout").code == 0
    assert (repo_dir / "w.bin").read_bytes() == b"weights v2"
    assert (repo_dir / "data" / "keep.txt").read_text() == "kept in both versions"
    assert cli("verify", "-q").code == 0
    # nothing more to do
    out = json.loads(cli("gc", "-y", "--json").out)
    assert (out["removed"], out["kept"]) == (0, 3)


def test_gc_keeps_objects_shared_by_two_pointers(repo_dir, cli):
    write(repo_dir / "a" / "same.txt", "shared bytes")
    write(repo_dir / "b.txt", "shared bytes")
    assert cli("add", "a", "b.txt").code == 0
    os.unlink(repo_dir / "b.txt.dv")
    assert cli("gc", "-y").code == 0
    assert blob(repo_dir, xxhash.xxh3_128_hexdigest(b"shared bytes")).exists()


def test_gc_without_yes_when_not_interactive_refuses(repo_dir, cli):
    write(repo_dir / "w.bin", b"v1")
    assert cli("add", "w.bin").code == 0
    old = digest_of(repo_dir / "w.bin.dv")
    write(repo_dir / "w.bin", b"v2")
    assert cli("add", "w.bin").code == 0
    r = cli("gc")
    assert r.code == 6  # refused: it would delete data (WouldLoseData)
    assert "--yes" in r.err and "would remove 1 object" in r.err
    assert blob(repo_dir, old).exists()


def _gc_at_a_terminal(repo_dir, answer: bytes) -> tuple[int, str]:
    """``dataver gc`` with a pseudo-terminal as its stdin, ``answer`` typed at the prompt."""
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dataver", "gc"], cwd=repo_dir, stdin=slave, stdout=slave, stderr=slave
        )
        os.close(slave)
        seen = b""
        while b"?" not in seen:  # the prompt
            seen += os.read(master, 4096)
        os.write(master, answer)
        code = proc.wait(timeout=60)
        while True:
            try:
                got = os.read(master, 4096)
            except OSError:  # the terminal closed
                break
            if not got:
                break
            seen += got
    finally:
        os.close(master)
    return code, seen.decode(errors="replace")


@pytest.mark.parametrize("answer", [b"n\n", b"\n"])
def test_gc_answered_no_removes_nothing_and_exits_0(repo_dir, cli, answer):
    write(repo_dir / "w.bin", b"v1")
    assert cli("add", "w.bin").code == 0
    old = digest_of(repo_dir / "w.bin.dv")
    write(repo_dir / "w.bin", b"v2")
    assert cli("add", "w.bin").code == 0
    code, out = _gc_at_a_terminal(repo_dir, answer)
    assert code == 0, out
    assert "remove 1 object(s)" in out and "gc: nothing removed" in out and "interrupted" not in out
    assert blob(repo_dir, old).exists()
    code, out = _gc_at_a_terminal(repo_dir, b"y\n")
    assert code == 0, out
    assert "removed 1 object(s)" in out
    assert not blob(repo_dir, old).exists()


# -- verify ---------------------------------------------------------------------------
def test_verify_clean_then_modified_workspace(repo_dir, cli):
    make_tree(repo_dir / "data", 6)
    write(repo_dir / "w.bin", b"weights")
    assert cli("add", "data", "w.bin").code == 0
    r = cli("verify")
    assert r.code == 0, r.err
    assert "everything matches" in r.err
    assert json.loads(cli("verify", "--json").out) == {"ok": True, "problems": []}
    write(repo_dir / "data" / "f0.bin", b"tampered")
    r = cli("verify")
    assert r.code == 1
    assert r.out.splitlines() == ["data/f0.bin: workspace modified"]
    assert r.err.startswith("error: verify found 1 problem(s)")
    r = cli("verify", "--json")
    assert r.code == 1
    assert json.loads(r.out) == {"ok": False, "problems": [{"path": "data/f0.bin", "what": "workspace modified"}]}
    # a path argument limits the check
    assert cli("verify", "w.bin").code == 0


def test_verify_detects_flipped_cache_bytes(repo_dir, cli):
    data = bytes(range(256)) * 4
    write(repo_dir / "w.bin", data)
    assert cli("add", "w.bin").code == 0
    hex_ = digest_of(repo_dir / "w.bin.dv")
    obj = blob(repo_dir, hex_)
    os.chmod(obj, 0o644)
    raw = bytearray(obj.read_bytes())
    raw[100] ^= 0x01
    obj.write_bytes(bytes(raw))
    assert cli("status").out == ""  # the stat cache does not re-read the cache
    r = cli("verify")
    assert r.code == 1
    assert r.out.splitlines() == [f"w.bin: cache object {hex_[:12]} is corrupt"]
    out = json.loads(cli("verify", "--json").out)
    assert out["ok"] is False and out["problems"][0]["path"] == "w.bin"
    # checkout refuses to copy the corrupt object out (integrity error, exit 8)
    os.unlink(repo_dir / "w.bin")
    r = cli("checkout")
    assert r.code == 8
    (error,) = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert "corrupt" in r.err[r.err.index(error) :]
    assert not (repo_dir / "w.bin").exists()


def test_verify_reports_missing_object(repo_dir, cli):
    make_tree(repo_dir / "data", 3, seed=2)
    assert cli("add", "data").code == 0
    victim = json.loads(cli("ls", "--json", "data").out)[0]
    os.unlink(blob(repo_dir, victim["digest"]))
    r = cli("verify")
    assert r.code == 1
    assert f"{victim['path']}: object {victim['digest'][:12]} missing from the cache" in r.out.splitlines()


# -- hash -----------------------------------------------------------------------------
def test_hash_matches_pointer_digests(repo_dir, cli):
    make_tree(repo_dir / "data", 8)
    os.chmod(repo_dir / "data" / "f0.bin", 0o755)
    write(repo_dir / "w.bin", os.urandom(10_000))
    assert cli("add", "data", "w.bin").code == 0
    r = cli("hash", "w.bin")
    assert r.code == 0
    assert r.out == f"{digest_of(repo_dir / 'w.bin.dv')}  w.bin\n"
    r = cli("hash", "data")
    assert r.code == 0
    assert r.out == f"{digest_of(repo_dir / 'data.dv')}  data\n"
    h = json.loads(cli("hash", "--json", "data").out)
    assert (h["kind"], h["digest"], h["files"]) == ("dir", digest_of(repo_dir / "data.dv"), 8)
    assert json.loads(cli("hash", "--json", "-j", "1", "w.bin").out)["digest"] == digest_of(repo_dir / "w.bin.dv")


def test_hash_needs_no_repository(tmp_path, cli):
    write(tmp_path / "loose.txt", "hello")
    r = cli("hash", "loose.txt", cwd=tmp_path)
    assert r.code == 0
    assert r.out.split()[0] == xxhash.xxh3_128_hexdigest(b"hello")
    r = cli("hash", "nope", cwd=tmp_path)
    assert r.code == 4 and r.err.startswith("error: nope does not exist")


# -- config ---------------------------------------------------------------------------
def test_config_get_set_unset_list(repo_dir, cli):
    r = cli("config", "cache.link")  # not set: the default commands use
    assert (r.code, r.out) == (0, "reflink,copy\n")
    assert cli("config", "cache.link", "hardlink,copy").code == 0
    assert cli("config", "core.jobs", "3").code == 0
    r = cli("config", "cache.link")
    assert (r.code, r.out) == (0, "hardlink,copy\n")
    r = cli("config", "--list")
    assert r.code == 0
    assert "cache.link=hardlink,copy" in r.out.splitlines()
    assert "core.jobs=3" in r.out.splitlines()
    assert "link = hardlink,copy" in (repo_dir / ".dataver" / "config").read_text()
    assert cli("config", "--unset", "cache.link").code == 0
    assert cli("config", "cache.link").out == "reflink,copy\n"
    assert "cache.link=" not in cli("config", "-l").out
    r = cli("config", "--unset", "cache.link")
    assert r.code == 3 and "not set" in r.err


def test_config_local_overrides_shared(repo_dir, cli):
    assert cli("config", "core.jobs", "2").code == 0
    assert cli("config", "--local", "core.jobs", "5").code == 0
    assert cli("config", "core.jobs").out == "5\n"
    assert "jobs = 5" in (repo_dir / ".dataver" / "config.local").read_text()
    assert "jobs = 2" in (repo_dir / ".dataver" / "config").read_text()


def test_config_prints_the_effective_value_and_its_origin(repo_dir, cli):
    """Unset keys print the value commands use; --show-origin says where it comes from,
    as git's does; a key with no default (core.remote) is still an error (exit 3)."""
    cache = os.path.realpath(repo_dir / ".dataver" / "cache")
    r = cli("config", "--show-origin", "cache.dir")
    assert (r.code, r.out) == (0, f"default\t{cache}\n")
    assert cli("config", "core.hash").out == "xxh3-128\n"
    assert cli("config", "core.lock_timeout").out == "60\n"
    assert cli("config", "core.fsmonitor").out == "auto\n"
    assert int(cli("config", "core.jobs").out) >= 1
    assert cli("config", "core.jobs", "2").code == 0
    assert cli("config", "--show-origin", "core.jobs").out == "file:.dataver/config\t2\n"
    assert cli("config", "--local", "core.jobs", "5").code == 0
    assert cli("config", "--show-origin", "core.jobs").out == "file:.dataver/config.local\t5\n"
    assert cli("config", "-l", "--show-origin").out.splitlines() == ["file:.dataver/config.local\tcore.jobs=5"]
    assert cli("remote", "add", "store", str(repo_dir.parent / "store")).code == 0
    listed = cli("config", "-l", "--show-origin").out.splitlines()
    assert any(x.startswith("file:.dataver/config\tremote") and x.endswith("store") for x in listed), listed
    r = cli("config", "core.remote")
    assert r.code == 3 and "core.remote is not set, and has no default" in r.err and "remote default" in r.err
    r = cli("config", "nope.key")
    assert r.code == 3 and "unknown config key 'nope.key'" in r.err


def test_config_without_key_lists_known_keys(repo_dir, cli):
    r = cli("config")
    assert r.code == 0
    assert "cache.link" in r.err and "core.jobs" in r.err


def test_config_unknown_key(repo_dir, cli):
    r = cli("config", "cache.linky", "copy")
    assert r.code == 3
    assert r.err.splitlines()[0] == "error: unknown config key 'cache.linky'"
    assert "cache.link" in r.err  # the hint lists the known keys
    assert "linky" not in (repo_dir / ".dataver" / "config").read_text()


def test_config_link_setting_takes_effect(repo_dir, cli):
    assert cli("config", "cache.link", "copy").code == 0
    write(repo_dir / "w.bin", b"w")
    assert cli("add", "w.bin").code == 0
    os.unlink(repo_dir / "w.bin")
    assert json.loads(cli("checkout", "--json").out)["link_types"] == {"copy": 1}


# -- version and help -----------------------------------------------------------------
def test_version(cli, tmp_path):
    r = cli("--version", cwd=tmp_path)
    assert (r.code, r.out) == (0, f"dataver {__version__}\n")


def test_version_as_a_process(tmp_path):
    p = cli_proc("--version", cwd=tmp_path)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"dataver {__version__}\n", "")


COMMANDS = [
    (),
    ("init",),
    ("config",),
    ("add",),
    ("status",),
    ("checkout",),
    ("ls",),
    ("unprotect",),
    ("verify",),
    ("gc",),
    ("hash",),
    ("debug",),
    ("debug", "digest-path"),
    ("debug", "cat-object"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "dataver")
def test_help_of_each_command(cli, tmp_path, command):
    for flag in ("--help", "-h"):
        r = cli(*command, flag, cwd=tmp_path)
        assert r.code == 0, r.err
        assert r.out.startswith("Usage: dataver")
        assert r.err == ""


def test_help_of_every_listed_command(cli, tmp_path):
    """Commands added later are covered too: each one the root help lists."""
    r = cli("--help", cwd=tmp_path)
    block = r.out.split("Commands:", 1)[1].split("\n\n", 1)[0]  # up to the epilog
    names = [line.split()[0] for line in block.strip().splitlines()]
    assert {"add", "status", "checkout", "ls", "gc", "verify", "hash", "config", "init"} <= set(names)
    for name in names:
        r = cli(name, "--help", cwd=tmp_path)
        assert r.code == 0, (name, r.err)
        assert r.out.startswith(f"Usage: dataver {name}")


# -- debug plumbing -------------------------------------------------------------------
def test_debug_digest_path_and_cat_object(repo_dir, cli):
    write(repo_dir / "w.bin", b"payload bytes")
    make_tree(repo_dir / "data", 2)
    assert cli("add", "w.bin", "data").code == 0
    hex_ = digest_of(repo_dir / "w.bin.dv")
    r = cli("debug", "digest-path", hex_)
    assert r.code == 0 and r.out.strip() == str(blob(repo_dir, hex_))
    r = cli("debug", "digest-path", f"xxh3-128:{hex_}", "--manifest")
    assert r.out.strip().endswith(".manifest")
    p = cli_proc("debug", "cat-object", hex_, cwd=repo_dir)
    assert (p.returncode, p.stdout) == (0, "payload bytes")
    m = cli_proc("debug", "cat-object", "--manifest", digest_of(repo_dir / "data.dv"), cwd=repo_dir)
    assert m.stdout.startswith("dataver-manifest 1 xxh3-128\n")
    r = cli("debug", "cat-object", "0" * 32)
    assert r.code == 7 and r.err.startswith("error: object xxh3-128:" + "0" * 32 + " is not in the cache")
    r = cli("debug", "digest-path", "zz")
    assert r.code == 5 and r.err.startswith("error: invalid xxh3-128 digest")
