"""``run``, ``lineage`` and ``reproduce``: record what produced an output, read it, prove it."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from typing import List, Optional

import typer

from .main import app
from .options import JSON, QUIET, REV
from .render import emit_json, note


def _repo():
    from ..repo import Repo

    return Repo.find()


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    command: List[str] = typer.Argument(..., help="The command and its arguments, after --."),
    inputs: Optional[List[str]] = typer.Option(
        None, "--input", "-i", help="A file or folder the command reads (repeat for more)."
    ),
    outputs: List[str] = typer.Option(..., "--output", "-o", help="A file or folder the command writes (repeat)."),
    params: Optional[List[str]] = typer.Option(
        None, "--params", "-p", help="A params file, optionally with keys to record: params.yaml:seed,train.lr"
    ),
    env: Optional[str] = typer.Option(
        None, "--env", help="Environment variables whose values to record: PYTHONHASHSEED,CUDA_VISIBLE_DEVICES"
    ),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Run a command and record, in each output's pointer, what produced it.

    Inputs must be tracked by dataver (new or changed ones are added first) or by git
    (a script, a config: recorded by the digest of their bytes). The record (the
    `lineage` block of OUTPUT.dv) holds the command and folder, every input's and
    params file's digest, the git commit and `git diff HEAD` (stored in the cache), the
    Python version, platform, CPU, the package list (pip freeze or conda list
    --explicit, stored in the cache), the --env values, and start and end times.

    If the command fails, nothing is recorded and dataver exits with the command's
    code. Example: dataver run -i data -i train.py -p params.yaml:seed -o model.bin --
    python train.py
    """
    from ..ops.run import run as do_run

    repo = _repo()
    env_vars = [v.strip() for v in (env or "").split(",") if v.strip()]
    result = do_run(repo, command, inputs or [], outputs, params or [], env_vars, note)
    repo.close()
    lin = result.lineage
    if json_out:
        emit_json({"lineage": dataclasses.asdict(lin), "outputs": result.outputs, "seconds": result.seconds})
        return
    if not quiet:
        for a in result.added_inputs:
            note(f"added input: {a.path} -> {a.path}.dv")
        note(f"ran: {shlex.join(lin.cmd)} ({result.seconds:.1f} s)")
        ins = ", ".join(
            [f"{i.path} ({i.kind} {i.digest.short()})" for i in lin.inputs]
            + [f"{p.path} (params {p.digest.short()})" for p in lin.params]
        )
        for o in lin.outputs:
            note(f"recorded: {o.path} {o.digest.short()} <- {ins or 'no inputs'}")
        if lin.code.dirty:
            note("note: the work tree had uncommitted changes; their diff is recorded")
        if result.mlflow_run:
            note(f"logged the inputs and output digests to MLflow run {result.mlflow_run}")
        files = [f"{o.path}.dv" for o in lin.outputs] + [f"{a.path}.dv" for a in result.added_inputs]
        note("next: git add " + shlex.join(files) + " && git commit")


@app.command()
def lineage(
    path: Optional[str] = typer.Argument(None, help="An output of dataver run (its pointer holds the record)."),
    rev: Optional[str] = REV,
    json_out: bool = JSON,
    dot: bool = typer.Option(False, "--dot", help="Print the graph in Graphviz DOT (dot -Tpng -o lineage.png)."),
    used_by: Optional[str] = typer.Option(
        None, "--used-by", help="Instead: list the outputs whose record names this data as an input."
    ),
) -> None:
    """Show what produced an output, back through inputs that runs produced themselves.

    Each input that was an output of an earlier run is followed to the commit where its
    pointer recorded that version, recursively: a graph of paths, digests, commands
    and commits. Nothing recorded is ever run. With --used-by DATA: which outputs were
    made from DATA.
    """
    from ..ops import lineage as ops

    repo = _repo()
    if used_by is not None:
        rows = ops.used_by(repo, used_by, rev)
        if json_out:
            emit_json(rows)
        else:
            for r in rows:
                used = f"{r['input']} {r['input_digest'].split(':')[-1][:12]}"
                print(f"{r['output']}  <-  {used}  $ {shlex.join(r['command'])}")
            if not rows:
                note(f"no recorded output names {used_by} as an input")
        return
    if path is None:
        raise typer.BadParameter("name an output, or use --used-by DATA", param_hint="PATH")
    g = ops.graph(repo, path, rev)
    if dot:
        sys.stdout.write(ops.to_dot(g))
    elif json_out:
        emit_json({"root": g.root, "nodes": list(g.nodes.values()), "edges": g.edges()})
    else:
        _print_tree(g, g.root, "", set())


def _print_tree(g, nid: str, indent: str, seen: set) -> None:
    n = g.nodes[nid]
    where = f" commit {n.commit[:10]}" if n.commit else (" (not committed)" if n.command else "")
    what = f"  $ {shlex.join(n.command)}" if n.command else f"  [{n.kind}]" + (f" {n.note}" if n.note else "")
    again = " (see above)" if nid in seen and n.inputs else ""
    print(f"{indent}{n.path} {n.digest.split(':')[-1][:12]}{where}{what}{again}")
    if nid in seen:
        return
    seen.add(nid)
    for child in n.inputs:
        _print_tree(g, child, indent + "  ", seen)


@app.command()
def reproduce(
    path: str = typer.Argument(..., help="An output of dataver run."),
    rev: Optional[str] = REV,
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary worktree and print its path."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Re-run the recorded command and check the outputs come out bit-identical.

    In a temporary git worktree of the recorded commit (with the recorded uncommitted
    diff applied) and the inputs at their recorded digests (from the cache, or the
    default remote), the recorded command is shown, then run. Exit 0: every output is
    bit-identical ("reproduced"). Exit 1: some output differs; the environment then and
    now (Python, platform, CPU, packages, --env variables) is listed as likely causes.
    If the command fails there, dataver exits with its code and keeps the worktree.
    Your work tree is never changed.
    """
    from ..errors import CheckFailed
    from ..ops.reproduce import reproduce as do_reproduce

    repo = _repo()

    def announce(lin, worktree: str) -> None:
        commit = lin.code.commit[:10] + (" + recorded diff" if lin.code.dirty else "")
        note(f"re-running the recorded command at {commit} in {worktree}:")
        note(f"  (cd {lin.wdir} && {shlex.join(lin.cmd)})")

    result = do_reproduce(repo, path, rev, keep, announce)
    repo.close()
    if json_out:
        emit_json(result)
    else:
        for w in result.warnings:
            note(f"warning: {w}")
        if result.identical:
            print(f"reproduced: bit-identical ({', '.join(f'{c.path} {c.recorded}' for c in result.outputs)})")
        else:
            for c in result.outputs:
                state = "identical" if c.identical else "differs" if c.now else "not written"
                print(f"{state}: {c.path} (recorded {c.recorded}, now {c.now or '-'})")
            print("environment, recorded -> now:" if result.env_changes else "environment: no difference found")
            for line in result.env_changes:
                print(f"  {line}")
        if result.worktree and not quiet:
            note(f"worktree kept: {result.worktree} (remove with: git worktree remove --force {result.worktree})")
    if not result.identical:
        raise CheckFailed(
            f"{result.path}: the re-run gave different bytes",
            "see the environment differences above; dataver reproduce --keep leaves the worktree to compare",
        )
