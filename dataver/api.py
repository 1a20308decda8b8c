"""Python API: read tracked data at any revision without a checkout; lineage records.

    import dataver.api
    with dataver.api.open("data/train.csv", rev="v1.0") as f:
        header = f.readline()

``repo`` is a path inside a dataver repository (default: the current directory), or
another repository by path or any URL git can clone (``https://``, ``ssh://``,
``git@host:path``; cloned once per user and fetched again, as ``dvc.api`` does);
``rev`` is any git revision (default: the pointers in the workspace). Bytes come
from the cache, fetched from the default remote when missing, and are verified
against their digest before they are handed out.
"""

from __future__ import annotations

import builtins
from typing import IO, Any

from .lineagefmt import Lineage
from .recording import note_read, record
from .repo import Repo
from .view import RevisionView, open_view

__all__ = ["open", "read", "get_path", "get_url", "view", "lineage", "record"]


def view(repo: str | None = None, rev: str | None = None) -> RevisionView:
    """The tracked data of ``repo`` at ``rev`` (reusable across many reads)."""
    return open_view(repo, rev)


def get_path(path: str, rev: str | None = None, repo: str | None = None) -> str:
    """A local, read-only file holding ``path``'s bytes at ``rev`` (a cache object)."""
    v = view(repo, rev)
    info = v.file(path)
    if v.repo is not None:  # an input of an active dataver.api.record block (in this repository)
        note_read(v.repo, info.path, info.digest)
    return v.local_path(info)


def get_url(path: str, rev: str | None = None, repo: str | None = None, remote: str | None = None) -> str:
    """The URL of the object holding ``path``'s bytes (at ``rev``) on ``remote`` (the
    default one), as ``dvc.api.get_url`` gives it: where it is a file of its own there
    (a small object in a pack has none; read it with ``open``)."""
    from .ops.urls import object_url

    return object_url(Repo.find(repo), path, rev, remote)


def open(
    path: str, rev: str | None = None, repo: str | None = None, mode: str = "rb", encoding: str | None = None
) -> IO[Any]:  # noqa: A001 - mirrors builtins.open on purpose
    """Open ``path`` as it was at ``rev`` for reading ("rb" or "r")."""
    if mode not in ("r", "rb", "rt"):
        raise ValueError("dataver.api.open is read-only: mode must be 'r' or 'rb'")
    local = get_path(path, rev, repo)
    if "b" in mode:
        return builtins.open(local, "rb")
    return builtins.open(local, encoding=encoding or "utf-8")


def read(
    path: str, rev: str | None = None, repo: str | None = None, mode: str = "rb", encoding: str | None = None
) -> bytes | str:
    """The whole content of ``path`` at ``rev``."""
    with open(path, rev, repo, mode, encoding) as f:
        return f.read()


def lineage(path: str, rev: str | None = None, repo: str | None = None) -> Lineage:
    """The lineage record of ``path`` (an output of ``dataver run`` or ``record``) at ``rev``."""
    from .ops.lineage import record_of

    return record_of(Repo.find(repo), path, rev)[2]


_ = record  # exported: ``with dataver.api.record(outputs=[...]) as r:`` (see dataver.recording)
