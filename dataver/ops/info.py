"""``du`` and ``doctor``: what the tracked data and the cache take, and the facts a bug
report needs (versions, platform, cache and free space, link type, remotes, hooks,
the file-system monitor). Both only read."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from .. import __version__
from ..digest import ALGORITHMS
from ..history import Revisions, tracked_for
from ..repo import Repo


@dataclass
class DuRow:
    path: str  # repo-relative (``PATH at COMMIT`` for other revisions)
    kind: str  # "file" or "dir"
    size: int  # bytes the pointer records
    files: int


@dataclass
class CacheUsage:
    root: str
    objects: int = 0
    manifests: int = 0
    object_bytes: int = 0  # the objects' own sizes (a packed manifest: compressed)
    loose: int = 0
    packs: int = 0
    disk_bytes: int = 0  # allocated blocks of everything under the cache folder


def du(repo: Repo, paths: list[str] | None = None, rev: str | Revisions | None = None) -> list[DuRow]:
    """Each tracked path's size and file count, as its pointer records them (the
    workspace's pointers, or those at ``rev``): what a checkout writes."""
    rows = []
    for t in tracked_for(repo, rev, paths):
        p = t.pointer
        rows.append(DuRow(t.rel, p.kind, p.size, (p.files or 0) if p.is_dir else 1))
    return sorted(rows, key=lambda r: r.path)


def cache_usage(repo: Repo) -> CacheUsage:
    """The cache's objects (loose and packed) and the blocks its folder holds."""
    cache = repo.cache
    usage = CacheUsage(cache.root)
    for ref, size in cache.iter_objects():
        usage.objects += 1
        usage.manifests += ref.manifest
        usage.object_bytes += size
    for here, _, names in os.walk(cache.root):
        top = os.path.relpath(here, cache.root).split(os.sep)[0]
        for name in names:
            try:
                usage.disk_bytes += os.lstat(os.path.join(here, name)).st_blocks * 512
            except OSError:
                continue
            if top == "packs":
                usage.packs += name.endswith(".pack")
            elif top in ALGORITHMS:  # <algorithm>/<fan-out>/<rest of the digest>[.manifest]
                usage.loose += 1
    return usage


@dataclass
class Doctor:
    dataver: str = __version__
    python: str = field(default_factory=lambda: f"{platform.python_version()} ({sys.executable})")
    platform: str = field(default_factory=platform.platform)
    git: str = ""
    libraries: dict[str, str] = field(default_factory=dict)
    repository: str = ""
    cache: str = ""
    cache_free_bytes: int | None = None
    link_types: list[str] = field(default_factory=list)  # configured, in order of preference
    link_works: dict[str, bool] = field(default_factory=dict)  # each, tried between the cache and the workspace
    link_in_use: str = ""
    remotes: list[dict] = field(default_factory=list)  # name, url, default, reachable, problem
    hooks: dict[str, str] = field(default_factory=dict)  # name -> installed / not installed / someone else's
    fsmonitor: str = ""
    scan_processes: int = 1
    clones: str = ""  # the per-user cache of other repositories' clones (get, import)


LIBRARIES = ("typer", "xxhash", "pygit2", "fsspec", "s3fs", "zstandard", "blake3", "tqdm")


def doctor(repo: Repo | None, check_remotes: bool = True) -> Doctor:
    """Everything a bug report asks for; ``repo`` None outside a repository."""
    from importlib import metadata

    d = Doctor()
    try:
        d.git = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        d.git = "not found"
    for name in LIBRARIES:
        try:
            d.libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            d.libraries[name] = "not installed"
    from ..workspace import scan_processes

    d.scan_processes = scan_processes()
    from ..clones import clones_root

    d.clones = clones_root()
    if repo is None:
        return d
    d.repository = repo.root
    d.cache = repo.cache.root
    probe = d.cache if os.path.isdir(d.cache) else repo.dataver_dir
    try:
        d.cache_free_bytes = shutil.disk_usage(probe).free
    except OSError:
        d.cache_free_bytes = None
    d.link_types = list(repo.link_types)
    d.link_works = {kind: _link_works(kind, probe, repo.dataver_dir) for kind in d.link_types}
    d.link_in_use = next((k for k in d.link_types if d.link_works[k]), "none works")
    d.remotes = _remotes(repo, check_remotes)
    d.hooks = _hooks(repo)
    from ..fsmonitor import CONFIG_KEY, Monitor

    monitor, why = Monitor.open(repo.root, repo.config.get(CONFIG_KEY))
    d.fsmonitor = f"watchman, watching {monitor.watch_root}" if monitor is not None else f"not used: {why}"
    return d


def _link_works(kind: str, cache_dir: str, workspace: str) -> bool:
    """Can ``kind`` make a workspace file from a cache file here? Tried on two scratch
    files named as dataver's temporaries, removed at once: one in the cache, one in
    ``workspace`` (the repository's ``.dataver``, on the workspace's file system, where
    a killed doctor's never shows in ``git status``)."""
    from ..linking import reflink, temp_sibling

    src = temp_sibling(os.path.join(cache_dir, "doctor-probe"))
    dst = temp_sibling(os.path.join(workspace, "doctor-probe"))
    try:
        with open(src, "wb") as f:
            f.write(b"dataver doctor\n")
        if kind == "copy":
            shutil.copyfile(src, dst)
        elif kind == "hardlink":
            os.link(src, dst)
        elif kind == "symlink":
            os.symlink(src, dst)
        elif kind == "reflink":
            with open(src, "rb") as a, open(dst, "wb") as b:
                if not reflink(a.fileno(), b.fileno()):
                    return False
        else:
            return False
        return True
    except OSError:
        return False
    finally:
        for path in (dst, src):
            try:
                os.unlink(path)
            except OSError:
                pass


def _remotes(repo: Repo, check: bool) -> list[dict]:
    from ..errors import DataverError
    from ..remotes import default_remote_name, open_remote, redact, remote_names, section_name

    try:
        default = default_remote_name(repo.config)
    except DataverError:
        default = None
    out = []
    for name in remote_names(repo.config):
        url = (repo.config.section(section_name(name)) or {}).get("url", "")
        row: dict = {"name": name, "url": redact(url), "default": name == default, "reachable": None, "problem": None}
        if check:
            try:
                open_remote(repo.config, name, repo.root).check_reachable()
                row["reachable"] = True
            except DataverError as e:
                row["reachable"], row["problem"] = False, e.message
        out.append(row)
    return out


def _hooks(repo: Repo) -> dict[str, str]:
    if repo.git is None:
        return {}
    from .hooks import HOOKS, MARKER, hooks_dir

    out = {}
    folder = hooks_dir(repo)
    for name in HOOKS:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            out[name] = "not installed (dataver install)"
            continue
        except OSError as e:
            out[name] = f"unreadable: {e.strerror}"
            continue
        out[name] = "installed" if MARKER in text else "another program's hook (dataver install chains it)"
    return out
