"""Ask a file-system monitor (watchman) what changed, as git's ``core.fsmonitor`` does.

A tracked folder that a full scan found unchanged is recorded in the stat cache with a
watchman clock taken *before* that scan. Later, if watchman reports nothing under the
folder since that clock, the folder is unchanged without a scan. Whenever watchman
cannot answer for certain (not installed, a fresh instance or recrawl, an error, a
symbolic link or mount point inside the folder, a network file system, hardlink or
symlink checkouts whose files can change through another path), the caller scans.

watchman is spoken to through its CLI in JSON mode (``watchman -j``, one command on
stdin): no Python dependency, and the CLI starts the server when needed. A call costs
~10 ms; status of an unchanged folder takes one ``watch-project`` per command and one
``query`` per folder. ``WATCHMAN_SOCK`` (as pywatchman honours it) names the server's
socket; then no server is started.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .digest import Digest

if TYPE_CHECKING:
    from .repo import Repo

CONFIG_KEY = "core.fsmonitor"
SETTINGS = ("auto", "true", "false")
ENV = "DATAVER_FSMONITOR"  # 0/false/off turns the monitor off
SYNC_MS = 2000  # how long watchman may take to catch up with the file system before a clock or query
_RECRAWLED = re.compile(r"Recrawled this watch (\d+) time")
_NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "gpfs", "fuse")


class WatchmanError(Exception):
    """watchman could not answer (its message, or why the call failed)."""


@dataclass
class Monitor:
    """One watchman watch holding a repository (``watch-project``: a watch already
    made at a parent folder is reused)."""

    argv: list[str]  # the watchman command line
    watch_root: str  # the watch's root (real path)
    prefix: str  # the repository root relative to the watch root, "" or "a/b/"

    @classmethod
    def open(cls, repo_root: str, setting: str | None = None) -> tuple[Monitor | None, str]:
        """The monitor for ``repo_root``, or None and why not."""
        setting = (setting or "auto").strip().lower()
        if setting not in SETTINGS:
            return None, f"core.fsmonitor {setting[:40]!r} is not auto, true or false"
        if setting == "false" or os.environ.get(ENV, "").strip().lower() in ("0", "false", "off", "no"):
            return None, f"turned off by {ENV}" if setting != "false" else "turned off by core.fsmonitor false"
        exe = shutil.which("watchman")
        if exe is None:
            return None, "watchman not installed"
        argv = [exe, "--output-encoding=json", "--no-pretty"]
        sock = os.environ.get("WATCHMAN_SOCK")
        if sock:  # the 4.9 CLI ignores this variable; pywatchman and newer CLIs honour it
            argv += [f"--sockname={sock}", "--no-spawn", "--no-local"]
        elif setting == "auto":
            argv += ["--no-spawn"]  # auto never starts a server
        root = os.path.realpath(repo_root)
        if setting == "auto":  # auto uses a watch someone made; it never makes one (a crawl of the repository)
            try:
                roots = _call(argv + ["-j"], ["watch-list"], timeout=10).get("roots") or []
            except WatchmanError:
                roots = []
            if not any(isinstance(r, str) and (root + os.sep).startswith(os.path.realpath(r) + os.sep) for r in roots):
                return None, (
                    "watchman does not watch this repository; to use it: dataver config core.fsmonitor true, "
                    f"or watchman watch-project {shlex.quote(root)}"
                )
        try:
            answer = _call(argv + ["-j"], ["watch-project", root], timeout=60)
        except WatchmanError as e:
            return None, f"watchman failed: {e}"
        watch = os.path.realpath(answer.get("watch", ""))
        rel = answer.get("relative_path") or ""
        if not watch or os.path.join(watch, rel).rstrip(os.sep) != root.rstrip(os.sep):
            return None, f"watchman watches {watch!r}, which does not hold {root}"
        return cls(argv + ["-j"], watch, rel.replace(os.sep, "/") + "/" if rel else ""), ""

    def clock(self) -> str | None:
        """The current clock, after watchman caught up with every change made before
        this call; None if it cannot say."""
        # A query, not the clock command: only a query's answer carries the recrawl
        # warning. The path generator looks at one (absent) name, whatever the tree's size.
        probe = {"path": [{"path": ".dataver-fsmonitor-probe", "depth": 0}], "fields": ["name"]}
        try:
            return _clock_of(self._call(["query", self.watch_root, {**probe, "sync_timeout": SYNC_MS}]))
        except WatchmanError:
            return None

    def changed_since(self, clock: str, rel: str) -> tuple[list[str] | None, str | None]:
        """(changed, now): the names under repo-relative folder ``rel`` (files and
        folders created, deleted, renamed, written or whose metadata changed) that
        changed since ``clock``, relative to it; [] if none; None if watchman cannot
        tell (a fresh instance, a recrawl, an error). ``now`` is the clock this answer
        holds as of (taken before the caller's scan, if any)."""
        since, _, recrawls = clock.rpartition("#")
        query = {
            "since": since,
            "relative_root": self.prefix + rel,
            "fields": ["name"],
            "empty_on_fresh_instance": True,
            "sync_timeout": SYNC_MS,
        }
        try:
            answer = self._call(["query", self.watch_root, query])
        except WatchmanError:
            return None, None
        now = _clock_of(answer)
        if answer.get("is_fresh_instance", True) or now is None or now.rpartition("#")[2] != recrawls:
            return None, now  # a fresh instance, or a recrawl since the clock: changes may have gone unseen
        names = answer.get("files")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return None, now
        return names, now

    def blind_spot(self, rel: str, path: str) -> str | None:
        """Why watchman cannot vouch for folder ``rel`` (at ``path``), or None: a
        symbolic link in it (watchman does not follow links, dataver does), a
        different or network file system inside or under it, or a folder that is not
        where the watch sees it."""
        problem = self.cheap_blind_spot(rel, path)
        if problem is not None:
            return problem
        try:
            answer = self._call(
                [
                    "query",
                    self.watch_root,
                    {"relative_root": self.prefix + rel, "expression": ["type", "l"], "fields": ["name"]},
                ]
            )
        except WatchmanError as e:
            return f"watchman failed: {e}"
        if answer.get("files"):
            return "it holds symbolic links, which watchman does not follow"
        return None

    def cheap_blind_spot(self, rel: str, path: str) -> str | None:
        """The checks of ``blind_spot`` that need no call to watchman (made again on
        every use: a mount makes no event)."""
        real = os.path.realpath(path)
        if real != os.path.join(self.watch_root, self.prefix + rel).rstrip("/").replace("/", os.sep):
            return "its path goes through a symbolic link"
        return _mount_problem(real)

    def _call(self, command: list) -> dict:
        return _call(self.argv, command, timeout=30)


def _clock_of(answer: dict) -> str | None:
    """The answer's clock, with ``#N`` appended: how many times watchman had recrawled
    the watch (after an overflow of kernel events), which it says in a warning on
    every answer from then on. A clock is trusted only while that count stays."""
    clock = answer.get("clock")
    if not isinstance(clock, str) or not clock or "#" in clock:
        return None
    warning = answer.get("warning")
    if warning is None:
        return f"{clock}#0"
    found = _RECRAWLED.search(str(warning))
    return f"{clock}#{found.group(1)}" if found else None  # a warning of another kind: do not trust


def _call(argv: list[str], command: list, timeout: float) -> dict:
    try:
        done = subprocess.run(
            argv, input=json.dumps(command), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise WatchmanError(f"no answer in {timeout:g} s") from None
    except OSError as e:
        raise WatchmanError(e.strerror or str(e)) from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise WatchmanError(last[:200]) from None
    if not isinstance(answer, dict):
        raise WatchmanError("unexpected answer")
    if "error" in answer:
        raise WatchmanError(str(answer["error"])[:200])
    return answer


def _mount_problem(real: str) -> str | None:
    """A mount point inside ``real``, or a network file system holding it (whose
    changes made by other machines no local monitor sees); None if neither. Without
    ``/proc/self/mountinfo`` (not Linux) this cannot be told, so the answer is no."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return "its mounts cannot be listed here (/proc/self/mountinfo)"
    holder, holder_type = "", ""
    inside = real.rstrip(os.sep) + os.sep
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        point = fields[4].replace("\\040", " ")
        fstype = right.split()[0]
        if point.startswith(inside):
            return f"another file system is mounted inside it ({point})"
        if (inside).startswith(point.rstrip(os.sep) + os.sep) and len(point) >= len(holder):
            holder, holder_type = point, fstype
    if holder_type.split(".")[0] in _NETWORK_FS:
        return f"it is on a {holder_type} file system, whose changes from other machines no monitor sees"
    return None


@dataclass
class FolderWatch:
    """What the monitor says about one tracked folder before it is scanned."""

    session: Session
    rel: str
    path: str
    unchanged: bool = False  # the scan can be skipped
    clock: str | None = None  # taken before the scan: recorded if the scan vouches for the folder

    def vouched(self, manifest: Digest) -> None:
        """The scan found the folder to match ``manifest``: record the clock taken
        before it, so the next command can skip the scan if nothing changed since."""
        monitor = self.session.monitor
        if monitor is None or self.clock is None:
            return
        problem = monitor.blind_spot(self.rel, self.path)
        if problem is not None:
            self.session.note(f"not recording a watchman clock for {self.rel}: {problem}")
            return
        self.session.repo.state.put_fsmonitor(self.rel, monitor.watch_root, self.clock, _folder_id(self.path), manifest)
        self.session.note(f"recorded a watchman clock for {self.rel}")


@dataclass
class Session:
    """The monitor for one command on a repository, opened at its first use, and
    the notes on which path each folder took (``status --verbose`` prints them)."""

    repo: Repo
    notes: list[str] = field(default_factory=list)
    _opened: bool = False
    _monitor: Monitor | None = None
    reason: str = ""

    @property
    def monitor(self) -> Monitor | None:
        if not self._opened:
            self._opened = True
            if any(k in ("hardlink", "symlink") for k in self.repo.link_types):
                self.reason = "cache.link uses links, through which files change unseen"
            else:
                self._monitor, self.reason = Monitor.open(self.repo.root, self.repo.config.get(CONFIG_KEY))
        return self._monitor

    def report(self, verbose: bool) -> list[str]:
        """The notes to show: all of them if ``verbose``; else, where ``core.fsmonitor``
        is ``true`` and the monitor could not be used, why not."""
        if verbose:
            return self.notes
        wanted = (self.repo.config.get(CONFIG_KEY) or "").strip().lower() == "true"
        return [f"fsmonitor: not used ({self.reason})"] if wanted and self._opened and self._monitor is None else []

    def note(self, text: str) -> None:
        self.notes.append("fsmonitor: " + text)

    def watch(self, rel: str, path: str, manifest: Digest | None) -> FolderWatch:
        """Before scanning folder ``rel`` (at ``path``) whose pointer records
        ``manifest``: is it unchanged since a scan vouched for that manifest?"""
        w = FolderWatch(self, rel, path)
        monitor = self.monitor
        if monitor is None:
            self.note(f"not used ({self.reason}); scanning {rel}")
            return w
        state = self.repo.state
        row = state.fsmonitor_clock(rel) if manifest is not None else None
        if row is None or row[0] != monitor.watch_root or row[3] != manifest or row[2] != _folder_id(path):
            w.clock = monitor.clock()
            self.note(f"no watchman clock recorded for {rel} and this pointer; scanning {rel}")
            return w
        changed, w.clock = monitor.changed_since(row[1], rel)
        problem = monitor.cheap_blind_spot(rel, path) if changed == [] else None
        if problem is not None:
            self.note(f"watchman cannot vouch for {rel}: {problem}; scanning {rel}")
        elif changed == []:
            w.unchanged = True
            self.note(f"{rel} unchanged since the last scan (watchman)")
        elif changed is None:
            state.drop_fsmonitor(rel)
            self.note(f"watchman cannot tell what changed in {rel} (fresh instance or recrawl); scanning {rel}")
        else:
            # What watchman saw change is hashed again: the stat cache and fingerprint
            # miss a same-size write whose mtime was set back (they keep no ctime).
            # Later commands scan without asking, until a scan vouches again.
            state.forget(rel, changed)
            state.drop_fsmonitor(rel)
            self.note(f"{rel} changed since the last scan ({len(changed)} paths, watchman); scanning {rel}")
        return w


def _folder_id(path: str) -> str:
    """The folder's device and inode: a folder replaced by another is not vouched for."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"
