"""``dataver du`` and ``dataver doctor`` (issue 14): sizes of tracked data (at any
revision) and of the cache; the facts a bug report needs. Real repositories, a real
folder remote (present, then gone)."""

from __future__ import annotations

import json
import os
import platform
import subprocess

from conftest import git_commit, write

from dataver import __version__


def _tag(root, name: str) -> None:
    subprocess.run(["git", "tag", name], cwd=root, check=True)


def test_du_sizes_from_the_pointers_at_any_revision(repo_dir, cli):
    write(repo_dir / "data/a.bin", b"a" * 1000)
    write(repo_dir / "data/sub/b.bin", b"b" * 3000)
    write(repo_dir / "model.bin", b"m" * 500)
    assert cli("add", "data", "model.bin", "-q").code == 0
    git_commit(repo_dir, "v1")
    _tag(repo_dir, "v1")
    r = cli("du", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["paths"] == [
        {"path": "data", "kind": "dir", "size": 4000, "files": 2},
        {"path": "model.bin", "kind": "file", "size": 500, "files": 1},
    ]
    assert (out["total"], out["files"], out["cache"]) == (4500, 3, None)
    r = cli("du")
    assert r.out.splitlines()[-1].split() == ["4.4", "KiB", "total", "(3", "files)"], r.out

    write(repo_dir / "model.bin", b"m" * 2000)  # v2 of the model, re-added, not committed
    assert cli("add", "model.bin", "-q").code == 0
    assert json.loads(cli("du", "model.bin", "--json").out)["total"] == 2000
    assert json.loads(cli("du", "model.bin", "--rev", "v1", "--json").out)["total"] == 500
    both = json.loads(cli("du", "model.bin", "--all-tags", "--json").out)  # the workspace's and v1's
    assert sorted(r["size"] for r in both["paths"]) == [500, 2000] and both["total"] == 2500


def test_du_cache_counts_objects_and_blocks(repo_dir, cli):
    for i in range(3):
        write(repo_dir / f"data/f{i}.bin", os.urandom(5000))
    assert cli("add", "data", "-q").code == 0
    cache = json.loads(cli("du", "--cache", "--json").out)["cache"]
    assert cache["objects"] == 4 and cache["manifests"] == 1 and cache["loose"] == 4 and cache["packs"] == 0
    assert cache["object_bytes"] >= 15000 and cache["disk_bytes"] >= 4 * 4096
    r = cli("du", "--cache")
    assert "4 objects (1 manifests)" in r.out and "4 loose, 0 packs" in r.out


def test_doctor_in_a_repository(repo_dir, cli, tmp_path):
    store = tmp_path / "store"
    assert cli("remote", "add", "here", str(store), "--default").code == 0
    assert cli("remote", "add", "gone", str(tmp_path / "nothing")).code == 0
    write(repo_dir / "f.txt", b"x\n")
    assert cli("add", "f.txt", "-q").code == 0
    assert cli("push", "-q").code == 0  # creates the folder remote
    assert cli("install").code == 0
    r = cli("doctor", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["dataver"] == __version__ and d["python"].startswith(platform.python_version())
    assert d["git"].startswith("git version") and d["libraries"]["xxhash"] != "not installed"
    assert d["repository"] == str(repo_dir) and d["cache"] == str(repo_dir / ".dataver" / "cache")
    assert d["cache_free_bytes"] > 0
    assert d["link_types"] and d["link_works"]["copy"] is True and d["link_in_use"] in d["link_types"]
    remotes = {x["name"]: x for x in d["remotes"]}
    assert remotes["here"]["reachable"] is True and remotes["here"]["default"] is True
    assert remotes["gone"]["reachable"] is False and "does not exist" in remotes["gone"]["problem"]
    assert d["hooks"] == {"post-checkout": "installed", "post-merge": "installed", "pre-push": "installed"}
    assert d["fsmonitor"].startswith("not used")  # the tests turn watchman off
    # no probe file is left behind, in the cache or the workspace
    leftovers = [p for p in list(repo_dir.rglob("*doctor-probe*"))]
    assert leftovers == []
    r = cli("doctor", "--offline")
    assert "remote gone" in r.out and "not checked" in r.out and "link type " in r.out


def test_doctor_outside_a_repository(tmp_path, cli):
    r = cli("doctor", cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.out.startswith(f"dataver {__version__}\n") and "repository: none here" in r.out
    assert list(tmp_path.iterdir()) == []
