"""Commands that move data between the workspace and the cache."""

from __future__ import annotations

import os
import shlex
from typing import List, Optional

import typer

from .main import app
from .options import JSON, QUIET, REV
from .render import emit_json, failures_json, human_size, note, progress_for


def _repo():
    from ..repo import Repo

    return Repo.find()


@app.command()
def add(
    paths: List[str] = typer.Argument(..., help="Files or folders to track."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Track files or folders: store their content in the cache and write PATH.dv.

    Commit the .dv pointer files (and the .gitignore entries added beside them) with
    git. Re-adding unchanged data reads nothing and changes nothing.
    """
    from ..ops.add import add as do_add

    repo = _repo()
    with repo.lock(note):
        results = do_add(repo, paths, progress_for(quiet))
    repo.close()
    if json_out:
        emit_json(results)
    elif not quiet:
        for r in results:
            what = f"{r.files} files, " if r.kind == "dir" else ""
            verb = "added" if r.changed else "up to date"
            note(f"{verb}: {r.path} ({what}{human_size(r.size)}; {r.hashed} hashed) -> {r.path}.dv")
        changed = [r.path for r in results if r.changed]
        if changed:
            gitignores = sorted({os.path.join(os.path.dirname(p), ".gitignore") for p in changed})
            note("next: git add " + shlex.join([f"{p}.dv" for p in changed] + gitignores))


@app.command()
def status(
    paths: Optional[List[str]] = typer.Argument(None, help="Tracked paths (default: all)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
    show_all: bool = typer.Option(False, "--all", "-a", help="Also list unchanged files."),
    remote_name: Optional[str] = typer.Option(
        None, "--remote", "-r", help="Compare the cache with this remote instead of the workspace."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Say on stderr, per tracked folder, whether watchman or a scan answered."
    ),
    rev: Optional[List[str]] = typer.Option(
        None, "--rev", help="With --remote: the pointers committed at this revision; repeat for several."
    ),
    all_branches: bool = typer.Option(False, "--all-branches", help="With --remote: also every branch tip's pointers."),
    all_tags: bool = typer.Option(False, "--all-tags", "-T", help="With --remote: also every tag's pointers."),
    all_commits: bool = typer.Option(False, "--all-commits", "-A", help="With --remote: also every commit's pointers."),
) -> None:
    """Show how the workspace differs from the pointers, file by file.

    States: modified, added, deleted (files in tracked folders), missing (a tracked
    path absent from the workspace: run dataver checkout), and 'not in cache' when
    the content a pointer records is absent from the cache; 'stale' marks an output
    of dataver run whose recorded inputs, params or code changed since (re-run it). With --remote NAME:
    which objects are only local (push them), only on the remote (pull them), or
    missing everywhere, for the workspace's pointers or, with --rev (repeatable),
    --all-branches, -T or -A, those of other revisions (as for push; -a is --all here).

    With watchman running (config core.fsmonitor: auto, true or false), only the
    files it saw change since the last status are looked at; --verbose says which
    folders it answered for.
    """
    from ..errors import UsageError
    from ..ops.core import status as do_status
    from .options import revisions

    repo = _repo()
    revs = revisions(rev, all_branches, all_tags, all_commits)
    if remote_name is not None:
        return _remote_status(repo, paths, remote_name, show_all, json_out, quiet, revs)
    if not revs.plain:
        raise UsageError(
            "status compares the workspace with its own pointers; --rev and --all-* go with --remote",
            "dataver status --remote NAME --rev REV, or dataver diff REV for what changed since REV",
        )
    # Unchanged folders as one line unless every file is to be listed (--all, --json).
    from ..ops.merge import conflicts

    records = do_status(repo, paths, progress_for(quiet), per_file=show_all or json_out)
    stale = _stale(repo, paths, records)
    unmerged = conflicts(repo)  # pointer files a git merge left in conflict
    repo.close()
    for line in repo.fsmonitor.report(verbose):
        note(line)
    if json_out:
        emit_json(
            records
            + [{"path": s.path, "state": "stale", "in_cache": None, "reasons": s.reasons} for s in stale]
            + [
                {"path": p, "state": "unmerged", "in_cache": None, "conflicts": m.conflicts, "why": m.why}
                for p, m in unmerged
            ]
        )
        return
    shown = [r for r in records if show_all or r.state != "unchanged" or r.in_cache is False]
    for r in shown:
        flag = "  (not in cache)" if r.in_cache is False else ""
        print(f"{r.state + ':':<11} {r.path}{flag}")
    for s in stale:
        print(f"{'stale:':<11} {s.path}  ({'; '.join(s.reasons)})")
    for p, m in unmerged:
        print(f"{'unmerged:':<11} {p}")
        more = f"; and {len(m.conflicts) - 5} more" if len(m.conflicts) > 5 else ""
        what = m.why or "; ".join(m.conflicts[:5]) + more
        if m.pointer is not None:  # the driver failed then (a manifest missing), not now
            what = "its versions merge now (what they need arrived): git merge --abort, then merge again"
        note(
            f"{p}: a git merge left it in conflict: {what}. Pick a side (git checkout --ours/--theirs "
            f"{shlex.quote(p)}) or edit the data and dataver add it; then git add {shlex.quote(p)}"
        )
    if not shown and not stale and not unmerged and not quiet:
        note("everything matches the pointers" if records else "nothing is tracked yet: dataver add PATH")


@app.command()
def checkout(
    paths: Optional[List[str]] = typer.Argument(None, help="Tracked paths (default: all)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite or delete changes not saved in the cache."),
    rev: Optional[str] = REV,
    previous: Optional[str] = typer.Option(
        None,
        "--previous",
        help="The commit git just left (the hooks pass it): also remove the data of its pointers that are gone, "
        "where every byte is in the cache.",
    ),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Make the workspace match the pointers, touching only what differs.

    With --rev, the data becomes that of the pointers committed at REV while git's
    HEAD, index and .dv files stay where they are (dataver status then shows the
    difference). Refuses (exit 6, naming the files) to overwrite or delete changes
    that are not in the cache, unless --force. Files whose object is missing from
    the cache or corrupt there are left as they were and listed after everything
    else is checked out (exit 8 if any object is corrupt, else 7).
    """
    from ..ops.core import checkout as do_checkout
    from ..ops.core import missing_error

    repo = _repo()
    with repo.lock(note):
        result = do_checkout(repo, paths, force, progress_for(quiet), rev, previous)
    repo.close()
    a = result.applied
    left = result.left
    if json_out:
        emit_json(
            {
                "created": a.created,
                "replaced": a.replaced,
                "deleted": a.deleted,
                "unchanged": result.unchanged,
                "link_types": a.link_types,
                "temporaries": a.temporaries,
                **failures_json(result.failed),
                **({"left": {"removed": left.removed, "kept": dict(left.kept)}} if left is not None else {}),
            }
        )
    elif not quiet:
        note(f"checkout: {a.created} created, {a.replaced} replaced, {a.deleted} deleted, {result.unchanged} unchanged")
        if a.temporaries:
            note(f"removed {a.temporaries} temporary file(s) an interrupted dataver run left")
    if left is not None and not json_out:
        for rel in left.removed:
            if not quiet:
                note(f"removed {rel}: no pointer tracks it at this commit (its bytes are in the cache)")
        for rel, why in left.kept:  # said even with --quiet (the hooks): the user must decide
            note(f"kept {rel}, no longer tracked at this commit: {why}; dataver add it, or delete it")
    if result.failed:
        if rev is None:
            raise missing_error(result.failed)
        # pull fetches what the workspace's pointers need, not REV's: name the command that works
        again = shlex.join(["dataver", "checkout", "--rev", rev, *(paths or [])])
        hint = f"fetch them for that revision: {shlex.join(['dataver', 'fetch', '--rev', rev])}, then {again}"
        raise missing_error(result.failed, hint=hint + "; or re-add the data where it exists")


@app.command("ls")
def ls_cmd(
    path: Optional[str] = typer.Argument(None, help="A tracked folder to list the files of."),
    rev: Optional[str] = REV,
    repo_url: Optional[str] = typer.Option(
        None, "--repo", help="Another dataver repository instead of this one: a path or any URL git can clone."
    ),
    json_out: bool = JSON,
) -> None:
    """List tracked paths, or the files inside a tracked folder (or a part of one).

    With --repo URL, those of another repository (at its HEAD, or --rev), as dvc list
    URL does; works outside a repository too.
    """
    if repo_url is not None:
        from ..ops.imports import ls_source

        items = ls_source(repo_url, path, rev)
    else:
        from ..ops.core import ls as do_ls

        repo = _repo()
        with repo.cache_lock(note):  # ls --rev may bring a folder's manifest into the cache
            items = do_ls(repo, path, rev)
    if json_out:
        emit_json(items)
        return
    for it in items:
        files = f"{it.files} files" if it.kind == "dir" else ""
        print(f"{it.kind:<4} {human_size(it.size):>10} {files:>12}  {it.path}")


@app.command()
def unprotect(paths: List[str] = typer.Argument(..., help="Tracked files or folders.")) -> None:
    """Replace hardlinked/symlinked (read-only) files with editable copies."""
    from ..ops.core import unprotect as do_unprotect

    repo = _repo()
    with repo.lock(note):
        changed = do_unprotect(repo, paths)
    note(f"unprotected {len(changed)} file(s)")


def _stale(repo, paths, records) -> list:
    """Outputs of dataver run (among ``paths``, or all) whose recorded inputs changed."""
    from ..ops.lineage import stale

    changed = {r.path for r in records if r.state != "unchanged"}
    found = stale(repo, changed)
    if paths:
        wanted = {repo.rel(repo.resolve(p)).removesuffix(".dv") for p in paths}
        found = [s for s in found if s.path in wanted]
    return found


def _remote_status(repo, paths, remote_name, show_all, json_out, quiet, revs) -> None:
    from ..ops.sync import remote_status

    records = remote_status(repo, paths, remote_name, rev=revs)
    if json_out:
        emit_json(records)
        return
    labels = {
        (True, False): "only local:",
        (False, True): "only remote:",
        (False, False): "missing:",
        (True, True): "both:",
    }
    shown = [r for r in records if show_all or not (r.local and r.remote)]
    for r in shown:
        print(f"{labels[(r.local, r.remote)]:<13} {r.path}")
    if not shown and not quiet:
        note(f"the cache and remote {remote_name!r} both hold everything the pointers need")


@app.command("diff")
def diff_cmd(
    a: Optional[str] = typer.Argument(None, help="Old side: a revision (default HEAD)."),
    b: Optional[str] = typer.Argument(None, help="New side: a revision (default: the workspace)."),
    paths: Optional[List[str]] = typer.Option(None, "--path", "-p", help="Limit to these tracked paths."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Files added, modified or deleted in tracked data between two revisions.

    dataver diff            HEAD vs the workspace
    dataver diff v1.0       v1.0 vs the workspace
    dataver diff v1.0 HEAD  v1.0 vs HEAD
    """
    from ..ops.diff import diff as do_diff

    repo = _repo()
    with repo.cache_lock(note):  # manifests of old revisions may be fetched into the cache
        changes = do_diff(repo, a or "HEAD", b, paths, progress_for(quiet))
    repo.close()
    if json_out:
        emit_json(changes)
        return
    for c in changes:
        sizes = {
            "added": f"{human_size(c.new_size or 0)}",
            "deleted": f"{human_size(c.old_size or 0)}",
            "modified": f"{human_size(c.old_size or 0)} -> {human_size(c.new_size or 0)}",
        }[c.change]
        print(f"{c.change + ':':<10} {c.path}  ({sizes})")
    if not quiet:
        counts = {k: sum(1 for c in changes if c.change == k) for k in ("added", "modified", "deleted")}
        note(", ".join(f"{n} {k}" for k, n in counts.items()))


@app.command()
def move(
    src: str = typer.Argument(..., help="A tracked file or folder (or its .dv pointer)."),
    dst: str = typer.Argument(..., help="The new path, or an existing folder to move it into."),
    json_out: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Move tracked data, its pointer and its .gitignore line to a new place.

    The data is renamed (never copied), the pointer keeps its content, the old
    .gitignore line goes and a new one is written beside the new place. Stage the
    result with the git add the hint prints.
    """
    from ..ops.move import move as do_move

    repo = _repo()
    with repo.lock(note):
        moved = do_move(repo, src, dst)
    repo.close()
    if json_out:
        emit_json(moved)
        return
    if not quiet:
        what = "" if moved.moved_data else " (pointer only: the data was not in the workspace)"
        note(f"moved {moved.source} -> {moved.dest}{what}")
        touched = [f"{moved.source}.dv", f"{moved.dest}.dv"]
        touched += sorted({os.path.join(os.path.dirname(p), ".gitignore") for p in (moved.source, moved.dest)})
        note("next: git add " + shlex.join(touched))


@app.command()
def remove(
    paths: List[str] = typer.Argument(..., help="Tracked files or folders (or their .dv pointers)."),
    purge: bool = typer.Option(
        False, "--purge", help="Also delete the data from the workspace (refused unless its bytes are in the cache)."
    ),
    force: bool = typer.Option(False, "--force", "-f", help="With --purge: delete even data not in the cache."),
    json_out: bool = JSON,
    quiet: bool = QUIET,
) -> None:
    """Stop tracking data: delete its pointer and its .gitignore line.

    The data stays in the workspace (now an ordinary, untracked file or folder)
    unless --purge; the cache keeps its objects until gc. Stage the pointer's
    removal with the git add the hint prints.
    """
    from ..ops.move import remove as do_remove

    repo = _repo()
    with repo.lock(note):
        removed = do_remove(repo, paths, purge, force)
    repo.close()
    if json_out:
        emit_json(removed)
        return
    if not quiet:
        for r in removed:
            note(f"removed {r.path}.dv" + (f"; deleted {r.path}" if r.purged else f"; {r.path} kept, untracked"))
            if r.kept:
                more = f" and {len(r.kept) - 1} more" if len(r.kept) > 1 else ""
                note(f"  kept what {r.path}.dv never tracked: {r.kept[0]}{more}")
        touched = [f"{r.path}.dv" for r in removed]
        touched += sorted({os.path.join(os.path.dirname(r.path), ".gitignore") for r in removed})
        note("next: git add " + shlex.join(touched))
