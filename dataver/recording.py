"""``dataver.api.record``: lineage for code that cannot be wrapped as a command.

    with dataver.api.record(outputs=["model.bin"], params=["params.yaml:seed"]) as r:
        data = dataver.api.read("data/train.csv")
        ...write model.bin...

Inside the block every read through ``dataver.api.open``/``read``/``get_path`` is an
input (the file's path and digest at the revision it was read at); ``r.input(PATH)``
adds one explicitly. When the block ends without an exception, the outputs are added
and their pointers get the lineage block, exactly as ``dataver run`` writes it; the
command recorded is the script (``python SCRIPT ARGS``) when there is one in the
repository, else ``(python session)``, which ``reproduce`` declines to re-run.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from .lineagefmt import Item, Lineage
from .repo import Repo

_active: ContextVar[Recording | None] = ContextVar("dataver_recording", default=None)


class Recording:
    """The record being made; ``lineage`` is set when the block ends cleanly."""

    def __init__(self, repo: Repo):
        self.repo = repo
        self.inputs: list[Item] = []
        self.lineage: Lineage | None = None
        self.mlflow_run: str | None = None

    def input(self, path: str) -> None:
        """Declare a workspace file or folder (dataver- or git-tracked) as an input."""
        from .ops.run import resolve_inputs

        with self.repo.lock():
            items, _ = resolve_inputs(self.repo, [path])
        self._add(items[0])

    def _add(self, item: Item) -> None:
        if all(i.path != item.path for i in self.inputs):
            self.inputs.append(item)


def note_read(repo: Repo, path: str, digest) -> None:
    """Called by the API for every file it hands out: an input of the active record."""
    rec = _active.get()
    if rec is not None and os.path.samefile(rec.repo.root, repo.root):
        rec._add(Item(path, "file", digest))


@contextmanager
def record(
    outputs: list[str],
    params: list[str] | None = None,
    env: list[str] | None = None,
    repo: str | None = None,
    command: list[str] | None = None,
) -> Iterator[Recording]:
    from . import mlflowlog
    from .ops.reproduce import INTERACTIVE
    from .ops.run import check_paths, now, prepare, record_outputs

    r = Repo.find(repo)
    check_paths(r, [], outputs, params or [])
    with r.lock():
        ctx = prepare(r, [], params or [], env or [], os.getcwd())
    rec = Recording(r)
    token = _active.set(rec)
    start = now()
    try:
        yield rec
    finally:
        _active.reset(token)
    ctx.inputs = list(rec.inputs)
    ctx.check_inputs = False  # read at any revision, files inside folders: digests are what was read
    cmd = command or _script_command(r) or [INTERACTIVE]
    with r.lock():
        rec.lineage, _ = record_outputs(r, ctx, cmd, outputs, start, now())
    rec.mlflow_run = mlflowlog.log(rec.lineage, r.root)
    r.close()


def _script_command(repo: Repo) -> list[str] | None:
    script = sys.argv[0] if sys.argv else ""
    if not script.endswith(".py") or not os.path.isfile(script):
        return None
    rel = os.path.relpath(os.path.abspath(script), os.getcwd())
    if os.path.relpath(os.path.abspath(script), repo.root).startswith(".."):
        return None
    return ["python", rel, *sys.argv[1:]]
