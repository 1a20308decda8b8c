"""Commands about remotes: remote add/list/remove/modify/default, push, fetch, pull."""

from __future__ import annotations

import os
import shlex
from typing import List, Optional

import typer

from .main import app
from .options import ALL_BRANCHES, ALL_COMMITS, ALL_TAGS, JOBS, JSON, QUIET, REVS, revisions
from .render import emit_json, failures_json, human_size, note, progress_for

remote = typer.Typer(help="Configure remotes (local folders, s3://, any fsspec URL).", no_args_is_help=True)
app.add_typer(remote, name="remote")

REMOTE = typer.Option(None, "--remote", "-r", help="Remote name (default: core.remote).")
PATHS = typer.Argument(None, help="Tracked paths (default: all).")


def _repo():
    from ..repo import Repo

    return Repo.find()


@remote.command("add")
def remote_add(
    name: str = typer.Argument(..., help="A short name, e.g. origin or storage."),
    url: str = typer.Argument(..., help="A folder path, file://, s3://bucket/prefix, or any fsspec URL."),
    default: bool = typer.Option(False, "--default", "-d", help="Make it the default remote."),
    local: bool = typer.Option(False, "--local", help="Write to .dataver/config.local (not committed)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing remote of that name."),
) -> None:
    """Add a remote. Relative folder paths are taken from the repository root."""
    from ..errors import ConfigError
    from ..remotes import check_name, check_url, redact, remote_names, section_name

    repo = _repo()
    check_name(name)
    missing_package = check_url(url)
    if name in remote_names(repo.config) and not force:
        raise ConfigError(f"remote {name!r} already exists", "use --force to replace it, or remote modify")
    if redact(url) != url:
        raise ConfigError(
            "remote URLs must not contain credentials", f"use: dataver remote modify {name} access_key_id ... --local"
        )
    if force:
        repo.config.remove_section(section_name(name))
    repo.config.set_in(section_name(name), "url", url, local)
    if default:
        repo.config.set("core.remote", name, local)
    note(f"remote {name} -> {url}" + (" (default)" if default else ""))
    if missing_package:
        note(f"note: {missing_package}; install it before the first push")


@remote.command("list")
def remote_list(json_out: bool = JSON) -> None:
    """List remotes and their settings (credentials hidden)."""
    from ..remotes import SECRET_KEYS, remote_names, section_name

    repo = _repo()
    default = repo.config.get("core.remote")
    rows = []
    for name in remote_names(repo.config):
        options = repo.config.section(section_name(name)) or {}
        shown = {k: ("***" if k in SECRET_KEYS else v) for k, v in options.items()}
        rows.append({"name": name, "default": name == default, **shown})
    if json_out:
        emit_json(rows)
        return
    for row in rows:
        extra = " ".join(f"{k}={v}" for k, v in row.items() if k not in ("name", "default", "url"))
        print(f"{row['name']}{' (default)' if row['default'] else ''}\t{row.get('url', '')}\t{extra}".rstrip())


@remote.command("remove")
def remote_remove(name: str) -> None:
    """Remove a remote's configuration (its stored objects are not touched)."""
    from ..errors import ConfigError
    from ..remotes import section_name

    repo = _repo()
    if not repo.config.remove_section(section_name(name)):
        raise ConfigError(f"no remote named {name!r}")
    for local in (False, True):  # unset the default only where it names this remote
        if repo.config.get_in("core", "remote", local) == name:
            repo.config.set_in("core", "remote", None, local)
    note(f"removed remote {name}")


@remote.command("modify")
def remote_modify(
    name: str,
    key: str = typer.Argument(
        ...,
        help="url, endpoint_url, region, profile, anonymous, access_key_id, "
        "secret_access_key, session_token, jobs, or a storage option of the backend.",
    ),
    value: Optional[str] = typer.Argument(None),
    local: bool = typer.Option(False, "--local", help="Write to .dataver/config.local (for credentials)."),
    unset: bool = typer.Option(False, "--unset", help="Remove the key."),
) -> None:
    """Set a remote's option. Credentials go to config.local only (--local)."""
    from ..errors import ConfigError
    from ..remotes import SECRET_KEYS, check_url, remote_names, section_name

    repo = _repo()
    if name not in remote_names(repo.config):
        raise ConfigError(f"no remote named {name!r}", "add it first: dataver remote add NAME URL")
    if key == "url" and unset:
        raise ConfigError("a remote needs its url", f"remove the remote instead: dataver remote remove {name}")
    if key == "url" and value is not None:
        missing_package = check_url(value)
        if missing_package:
            note(f"note: {missing_package}; install it before the first push")
    if key in SECRET_KEYS and not local and not unset:
        raise ConfigError(
            f"{key} is a credential and would be committed with .dataver/config",
            f"store it locally: dataver remote modify {name} {key} VALUE --local",
        )
    if not unset and value is None:
        raise typer.BadParameter("give a VALUE, or --unset")
    repo.config.set_in(section_name(name), key, None if unset else value, local)


@remote.command("default")
def remote_default(
    name: Optional[str] = typer.Argument(None, help="Remote to make the default (omit to print it)."),
    local: bool = typer.Option(False, "--local"),
) -> None:
    """Print or set the default remote."""
    from ..errors import ConfigError
    from ..remotes import default_remote_name, remote_names

    repo = _repo()
    if name is None:
        print(default_remote_name(repo.config))
        return
    if name not in remote_names(repo.config):
        raise ConfigError(f"no remote named {name!r}")
    repo.config.set("core.remote", name, local)


@remote.command("upgrade")
def remote_upgrade(
    name: Optional[str] = typer.Argument(None, help="Remote to upgrade (default: the default remote)."),
) -> None:
    """Make a remote written by an older dataver (loose objects) a packed one.

    Writes the format marker (dataver.json): from then on pushes pack small objects (a
    few requests for thousands of files). Objects already there stay where they are and
    stay readable. Older dataver versions cannot read packed objects: upgrade everyone's
    dataver first.
    """
    from ..remotes import open_remote

    repo = _repo()
    remote = open_remote(repo.config, name, repo.root)
    if remote.layout == "loose":
        from ..errors import ConfigError

        raise ConfigError(
            f"remote {remote.name!r} is configured to stay loose (layout = loose)",
            f"dataver remote modify {remote.name} layout packed",
        )
    was = remote.marker
    remote.upgrade()
    note(f"remote {remote.name!r} is packed" + (" already" if was is not None else " now"))


def _report(verb: str, result, quiet: bool) -> None:
    from ..ops.core import missing_error

    for path, ref in result.repaired:
        note(f"corrupt cache object removed, to be fetched again: {path} ({ref.digest.short()})")
    if not quiet:
        note(f"{verb} {result.transferred} object(s) ({human_size(result.nbytes)}); {result.present} already there")
    if result.failed:
        hint = (
            "re-add the data where it exists, then push again"
            if verb == "pushed"
            else "push them from a machine that has them (dataver push), then fetch again"
        )
        raise missing_error(result.failed, "everywhere it was looked for", hint)


def _transfer_json(result) -> dict:
    return {
        "repaired": [{"path": p, "digest": str(r.digest)} for p, r in result.repaired],
        "transferred": result.transferred,
        "present": result.present,
        "bytes": result.nbytes,
        **failures_json(result.failed),
    }


@app.command()
def push(
    paths: Optional[List[str]] = PATHS,
    remote_name: Optional[str] = REMOTE,
    rev: Optional[List[str]] = REVS,
    all_branches: bool = ALL_BRANCHES,
    all_tags: bool = ALL_TAGS,
    all_commits: bool = ALL_COMMITS,
    jobs: Optional[int] = JOBS,
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Upload the objects the pointers need that the remote lacks (in parallel).

    The pointers are the workspace's; --rev REV (repeatable) takes those committed at
    each REV instead; -a/-T/-A add every branch tip's, tag's or commit's (with the
    workspace's unless --rev is given). Interrupted? Run it again: only what is still
    missing moves.
    """
    from ..ops.sync import push as do_push

    repo = _repo()
    with repo.lock(note):
        result = do_push(
            repo, paths, remote_name, jobs, progress_for(quiet), revisions(rev, all_branches, all_tags, all_commits)
        )
    if json_out:
        emit_json(_transfer_json(result))
    _report("pushed", result, quiet or json_out)


@app.command()
def fetch(
    paths: Optional[List[str]] = PATHS,
    remote_name: Optional[str] = REMOTE,
    rev: Optional[List[str]] = REVS,
    all_branches: bool = ALL_BRANCHES,
    all_tags: bool = ALL_TAGS,
    all_commits: bool = ALL_COMMITS,
    jobs: Optional[int] = JOBS,
    repair: bool = typer.Option(
        False, "--repair", help="Re-hash the cache objects first; replace corrupt ones from the remote."
    ),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Download missing objects into the cache (the workspace is not touched).

    Each object is hashed before it enters the cache. One the remote lacks or holds
    corrupt is skipped, the others still arrive, and all such are listed at the end
    (exit 8 if any is corrupt, else 7). With --repair, objects already in the cache
    are checked too, and damaged ones are fetched again. Revisions: as for push
    (--rev repeatable, -a/-T/-A).
    """
    from ..ops.sync import fetch as do_fetch

    repo = _repo()
    revs = revisions(rev, all_branches, all_tags, all_commits)
    with repo.lock(note):
        result = do_fetch(repo, paths, remote_name, jobs, progress_for(quiet), revs, repair)
    if json_out:
        emit_json(_transfer_json(result))
    _report("fetched", result, quiet or json_out)


@app.command()
def pull(
    paths: Optional[List[str]] = PATHS,
    remote_name: Optional[str] = REMOTE,
    rev: Optional[List[str]] = typer.Option(
        None, "--rev", help="Fetch and check out the pointers committed at this git revision (one only)."
    ),
    all_branches: bool = typer.Option(False, "--all-branches", "-a", help="Also fetch every branch tip's data."),
    all_tags: bool = typer.Option(False, "--all-tags", "-T", help="Also fetch every tag's data."),
    all_commits: bool = typer.Option(False, "--all-commits", "-A", help="Also fetch every commit's data."),
    jobs: Optional[int] = JOBS,
    force: bool = typer.Option(False, "--force", "-f", help="Let checkout discard unsaved workspace changes."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """fetch, then checkout: the workspace ends up with the pointers' exact bytes.

    A file whose object is missing or corrupt (on the remote or in the cache) is left
    as it was; every other file is restored, then all such files are listed with the
    reason (exit 8 if any is corrupt, else 7). -a/-T/-A also fetch every branch
    tip's, tag's or commit's data into the cache; only one revision is checked out
    (--rev's, else the workspace's pointers).
    """
    from ..ops.core import missing_error
    from ..ops.sync import pull as do_pull

    repo = _repo()
    revs = revisions(rev, all_branches, all_tags, all_commits)
    with repo.lock(note):
        result = do_pull(repo, paths, remote_name, jobs, force, progress_for(quiet), revs)
    a = result.checkout.applied
    failed = result.failed
    if json_out:
        emit_json(
            {
                **_transfer_json(result.fetched),
                **failures_json(failed),
                "created": a.created,
                "replaced": a.replaced,
                "deleted": a.deleted,
                "unchanged": result.checkout.unchanged,
                "temporaries": a.temporaries,
            }
        )
    elif not quiet:
        note(
            f"fetched {result.fetched.transferred} object(s) ({human_size(result.fetched.nbytes)}); "
            f"checkout: {a.created} created, {a.replaced} replaced, {a.deleted} deleted, "
            f"{result.checkout.unchanged} unchanged"
        )
    if failed:
        raise missing_error(
            failed,
            "the cache and the remote",
            "push them from a machine that has them (dataver push), then pull again",
        )


@app.command()
def get(
    url: str = typer.Argument(..., help="Another dataver repository: a local path or any URL git can clone."),
    path: str = typer.Argument(..., help="A tracked path in that repository."),
    rev: Optional[str] = typer.Option(None, "--rev", help="Revision there (default: its HEAD)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Where to write it (default: the path's name)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Download data tracked in another repository; no pointer is kept.

    Works outside a dataver repository too. Objects come from the other
    repository's cache (local paths) or its default remote.
    """
    from ..ops.imports import get as do_get

    result = do_get(url, path, rev, out, progress_for(quiet))
    _stale(url, result.stale)
    if json_out:
        emit_json(result)
    elif not quiet:
        note(f"got {result.path} ({result.files} file(s), {human_size(result.size)}) at {result.commit[:10]}")


@app.command("import")
def import_cmd(
    url: str = typer.Argument(..., help="Another dataver repository: a local path or any URL git can clone."),
    path: str = typer.Argument(..., help="A tracked path in that repository."),
    rev: Optional[str] = typer.Option(None, "--rev", help="Revision to pin (default: its HEAD)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Where to put it here (default: the path's name)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Track data from another repository, pinned to the commit REV resolves to.

    Writes OUT.dv with a source block (repo, rev, commit, path); commit it, and
    pull reproduces exactly that commit's data. Move the pin with dataver update.
    """
    from ..ops.imports import import_

    repo = _repo()
    with repo.lock(note):
        result = import_(repo, url, path, rev, out, progress_for(quiet))
    _report_pin("imported", result, quiet, json_out)


@app.command()
def update(
    pointer_file: str = typer.Argument(..., help="An import's pointer (PATH.dv or PATH)."),
    rev: Optional[str] = typer.Option(None, "--rev", help="Move the pin to this revision."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Re-resolve an import's revision (or move it to --rev) and check out the result.

    For an import-url: ask the URL for its version evidence (ETag, size, mtime; a
    folder's listing) again, and download and re-add only when it changed.
    """
    from ..ops.imports import update as do_update
    from ..ops.urls import update_url
    from ..workspace import load_tracked, pointer_for

    repo = _repo()
    path = repo.resolve(pointer_file)
    pointer_path = path if path.endswith(".dv") else pointer_for(path)
    if os.path.isfile(pointer_path) and load_tracked(repo, pointer_path).pointer.source.get("url"):
        if rev is not None:
            raise typer.BadParameter("an import-url has no revisions: update asks the URL again")
        with repo.lock(note):
            got = update_url(repo, pointer_path, progress_for(quiet))
        _report_url("updated" if got.changed else "up to date:", got, quiet, json_out)
        return
    with repo.lock(note):
        result = do_update(repo, pointer_file, rev, progress_for(quiet))
    _report_pin("updated" if result.changed else "up to date:", result, quiet, json_out)


@app.command("import-url")
def import_url(
    url: str = typer.Argument(..., help="A file or folder at any fsspec URL: s3://, https://, gs://, a path."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Where to put it here (default: its name)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Track a file or folder from a URL, recording where it came from and its version.

    Downloads it, adds it (its bytes are cached and pushed like any data) and writes
    OUT.dv with a source block: the URL and its version evidence (ETag, size, mtime or
    checksum; for a folder, a digest of its listing). dataver update OUT.dv asks the
    URL again and downloads only what changed. Credentials: the backend's own (for
    s3://, the AWS environment variables or profile).
    """
    from ..ops.urls import import_url as do_import_url

    repo = _repo()
    with repo.lock(note):
        got = do_import_url(repo, url, out, progress_for(quiet))
    _report_url("imported", got, quiet, json_out)
    if not quiet and not json_out:
        note("next: git add " + shlex.join([f"{got.path}.dv", os.path.join(os.path.dirname(got.path), ".gitignore")]))


@app.command("get-url")
def get_url(
    url: str = typer.Argument(..., help="A file or folder at any fsspec URL: s3://, https://, gs://, a path."),
    out: Optional[str] = typer.Argument(None, help="Where to write it (default: its name, here)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
) -> None:
    """Download a file or folder from a URL; nothing is tracked. Works anywhere."""
    from ..ops.urls import get_url as do_get_url

    got = do_get_url(url, out)
    if json_out:
        emit_json(got)
    elif not quiet:
        note(f"got {got.path} ({got.files} file(s), {human_size(got.size)}) from {url}")


def _report_url(verb: str, got, quiet: bool, json_out: bool) -> None:
    if json_out:
        emit_json(got)
    elif not quiet:
        what = f"{got.files} files, " if got.kind == "dir" else ""
        note(f"{verb} {got.path} ({what}{human_size(got.size)}) from {got.url} -> {got.path}.dv")


def _stale(url: str, why: str | None) -> None:
    if why:
        note(f"warning: could not fetch {url} again ({why}); used the copy cloned before")


def _report_pin(verb: str, result, quiet: bool, json_out: bool) -> None:
    _stale(f"the source of {result.path}", result.stale)
    if json_out:
        emit_json(
            {"path": result.path, "commit": result.commit, "changed": result.changed, **_transfer_json(result.fetched)}
        )
    elif not quiet:
        note(f"{verb} {result.path} at {result.commit[:10]} -> {result.path}.dv")
