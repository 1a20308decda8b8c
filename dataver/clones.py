"""A per-user cache of other repositories' git objects: ``get``, ``import`` and
``update`` of a repository named by URL clone it once (bare: git objects only, no work
tree) and fetch it again before each later use, as ``dvc get URL`` and
``dvc.api.open(repo=URL)`` keep theirs.

Where: ``$DATAVER_CLONES``, else ``$XDG_CACHE_HOME/dataver/clones``, else
``~/.cache/dataver/clones``; one folder per URL (its SHA-256), holding ``repo.git`` and
``url``. A clone is made in a temporary folder beside it and renamed into place, under
a lock per URL, so two processes never share half a clone; a fetch that fails (offline)
leaves the clone as it was, and the caller says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile

from .errors import StorageError
from .gitscm import clone_bare, update_bare
from .lock import FileLock

LOCK_TIMEOUT = 600.0  # seconds another process's clone of the same URL may take


def clones_root() -> str:
    configured = os.environ.get("DATAVER_CLONES")
    if configured:
        return os.path.abspath(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dataver", "clones")


def cached_clone(url: str) -> tuple[str, str | None]:
    """The bare clone of ``url`` (made, or fetched again) and, when the fetch failed, why
    (the clone as it was is used)."""
    folder = os.path.join(clones_root(), hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()[:32])
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot make the clone cache {folder}: {e.strerror}", "set DATAVER_CLONES") from None
    dest = os.path.join(folder, "repo.git")
    with FileLock(os.path.join(folder, "lock"), f"the clone cache lock of {url}", False, LOCK_TIMEOUT, None):
        if os.path.isfile(os.path.join(dest, "HEAD")):
            return dest, update_bare(dest)
        try:
            for name in os.listdir(folder):  # what a killed clone left (we hold the lock: none runs)
                if name.startswith("clone-") or name == "repo.git":
                    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            scratch = tempfile.mkdtemp(prefix="clone-", dir=folder)
            try:
                clone_bare(url, os.path.join(scratch, "repo.git"))
                # a bare clone names the other branches refs/remotes/origin/*: fetch them as
                # branches and tags, so --rev BRANCH works from the first use on
                update_bare(os.path.join(scratch, "repo.git"))
                os.rename(os.path.join(scratch, "repo.git"), dest)
                with open(os.path.join(folder, "url"), "w", encoding="utf-8", errors="surrogateescape") as f:
                    f.write(url + "\n")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        except OSError as e:
            raise StorageError(f"cannot write the clone cache {folder}: {e.strerror}", "set DATAVER_CLONES") from None
    return dest, None
