"""Commands that only report: du (sizes of tracked data and of the cache) and doctor
(what a bug report needs)."""

from __future__ import annotations

from typing import List, Optional

import typer

from .main import app
from .options import ALL_BRANCHES, ALL_COMMITS, ALL_TAGS, JSON, REVS, revisions
from .render import emit_json, human_size


@app.command()
def du(
    paths: Optional[List[str]] = typer.Argument(None, help="Tracked paths (default: all)."),
    rev: Optional[List[str]] = REVS,
    all_branches: bool = ALL_BRANCHES,
    all_tags: bool = ALL_TAGS,
    all_commits: bool = ALL_COMMITS,
    cache: bool = typer.Option(False, "--cache", help="Also the cache: its objects, packs and blocks on disk."),
    json_out: bool = JSON,
) -> None:
    """Sizes of tracked data, as the pointers record them (what a checkout writes).

    Per tracked path: its size and files, then the total. --rev (repeatable) and
    -a/-T/-A read other revisions' pointers (each distinct pointer counted once).
    --cache adds what the cache holds and takes on disk.
    """
    from ..ops.info import cache_usage
    from ..ops.info import du as do_du
    from ..repo import Repo

    repo = Repo.find()
    rows = do_du(repo, paths, revisions(rev, all_branches, all_tags, all_commits))
    usage = cache_usage(repo) if cache else None
    total = sum(r.size for r in rows)
    if json_out:
        emit_json({"paths": rows, "total": total, "files": sum(r.files for r in rows), "cache": usage})
        return
    width = max((len(human_size(r.size)) for r in rows), default=0)
    for r in rows:
        files = f"{r.files} files" if r.kind == "dir" else "file"
        print(f"{human_size(r.size):>{width}}  {r.path}  ({files})")
    n = sum(r.files for r in rows)
    print(f"{human_size(total):>{width}}  total ({n} file{'' if n == 1 else 's'})")
    if usage is not None:
        print(
            f"cache {usage.root}: {usage.objects} objects ({usage.manifests} manifests), "
            f"{human_size(usage.object_bytes)}; {usage.loose} loose, {usage.packs} packs; "
            f"{human_size(usage.disk_bytes)} on disk"
        )


@app.command()
def doctor(
    json_out: bool = JSON,
    offline: bool = typer.Option(False, "--offline", help="Do not contact the remotes."),
) -> None:
    """Print what a bug report needs: versions, platform, the cache and its free space,
    the link type in use (and which work here), remotes (reachable or not), hooks, and
    whether watchman answers status. Works outside a repository too (versions only)."""
    from ..errors import RepoError
    from ..ops.info import doctor as do_doctor
    from ..repo import Repo

    try:
        repo: Repo | None = Repo.find()
    except RepoError:
        repo = None
    d = do_doctor(repo, check_remotes=not offline)
    if json_out:
        emit_json(d)
        return
    print(f"dataver {d.dataver}")
    print(f"python {d.python}")
    print(f"platform {d.platform}")
    print(f"git {d.git.removeprefix('git version ')}")
    print("libraries " + ", ".join(f"{k} {v}" for k, v in d.libraries.items()))
    print(f"scan processes {d.scan_processes}")
    print(f"clones of other repositories {d.clones}")
    if repo is None:
        print("repository: none here (run doctor inside one for the rest)")
        return
    print(f"repository {d.repository}")
    free = "unknown" if d.cache_free_bytes is None else human_size(d.cache_free_bytes)
    print(f"cache {d.cache} ({free} free)")
    works = ", ".join(f"{k} {'works' if ok else 'fails'}" for k, ok in d.link_works.items())
    print(f"link type {d.link_in_use} (cache.link: {', '.join(d.link_types)}; here: {works})")
    for r in d.remotes:
        state = (
            "not checked"
            if r["reachable"] is None
            else "reachable"
            if r["reachable"]
            else f"NOT reachable: {r['problem']}"
        )
        print(f"remote {r['name']}{' (default)' if r['default'] else ''} {r['url']}: {state}")
    if not d.remotes:
        print("remotes: none (dataver remote add NAME URL --default)")
    for name, state in d.hooks.items():
        print(f"hook {name}: {state}")
    print(f"fsmonitor {d.fsmonitor}")


@app.command("check-ignore")
def check_ignore(
    paths: List[str] = typer.Argument(..., help="Paths to explain (they need not exist)."),
    non_matching: bool = typer.Option(False, "--non-matching", "-n", help="Also list paths no line matches."),
    json_out: bool = JSON,
) -> None:
    """Say whether .dataverignore keeps each path out of tracked folders, and which line.

    Prints SOURCE:LINE:PATTERN<TAB>PATH for each path a line decides (a '!' line
    re-admits it), as git check-ignore -v does. Exit 0 if any path is ignored, 1 if
    none is.
    """
    import os

    from ..ignore import explain
    from ..repo import Repo

    repo = Repo.find()
    decisions = []
    for up in paths:
        path = repo.resolve(up)
        decisions.append(explain(repo.root, path, os.path.isdir(path)))
    if json_out:
        emit_json(decisions)
    else:
        for d in decisions:
            if d.source is not None:
                via = f" (inside {d.via}/)" if d.via else ""
                print(f"{d.source}:{d.line_number}:{d.line}\t{d.path}{via}")
            elif non_matching:
                print(f"::\t{d.path}")
    if not any(d.ignored for d in decisions):
        raise typer.Exit(1)  # as git check-ignore: no message, exit 1
