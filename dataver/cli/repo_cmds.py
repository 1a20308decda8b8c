"""Commands about the repository itself: init, config."""

from __future__ import annotations

import shlex
from typing import Any, Optional

import typer

from .main import app
from .render import note


@app.command()
def init(
    no_scm: bool = typer.Option(False, "--no-scm", help="Allow a folder that is not a git repository."),
    force: bool = typer.Option(False, "--force", "-f", help="Re-initialise an existing repository."),
    hash_name: Optional[str] = typer.Option(
        None,
        "--hash",
        metavar="ALGORITHM",
        help="Hash algorithm for new content: xxh3-128 (default) or blake3 (sets core.hash).",
    ),
) -> None:
    """Create .dataver/ at the root of the current git repository."""
    import os

    from ..repo import init as do_init

    repo = do_init(os.getcwd(), no_scm=no_scm, force=force, hash_algorithm=hash_name)
    note(f"initialised dataver in {repo.dataver_dir}")
    note("next: git add .dataver/config .dataver/.gitignore && git commit -m 'dataver init'")


@app.command()
def config(
    key: Optional[str] = typer.Argument(None, help="section.option, e.g. cache.link"),
    value: Optional[str] = typer.Argument(None, help="New value (omit to print the current one)."),
    local: bool = typer.Option(False, "--local", help="Write .dataver/config.local (not committed)."),
    unset: bool = typer.Option(False, "--unset", help="Remove the key."),
    list_all: bool = typer.Option(False, "--list", "-l", help="Print every set key."),
    show_origin: bool = typer.Option(
        False,
        "--show-origin",
        help="Say where each value comes from: file:.dataver/config, file:.dataver/config.local or default.",
    ),
) -> None:
    """Get or set configuration (cache.dir, cache.link, core.hash, core.jobs, core.lock_timeout).

    With only KEY: its effective value, the one commands use (the default when no
    file sets it; core.remote has none)."""
    from ..config import KNOWN_KEYS
    from ..errors import ConfigError
    from ..repo import Repo

    repo = Repo.find()
    if list_all or key is None:
        for k, v in sorted(repo.config.items().items()):
            print(f"{_origin(repo, k)}\t{k}={v}" if show_origin else f"{k}={v}")
        if key is None and not list_all:
            note("known keys:\n" + "\n".join(f"  {k}: {why}" for k, why in KNOWN_KEYS.items()))
        return
    if unset:
        repo.config.set(key, None, local)
    elif value is None:
        current = repo.config.get(key)
        if current is None:
            if key not in KNOWN_KEYS:
                raise ConfigError(f"unknown config key {key!r}", "known keys: " + ", ".join(sorted(KNOWN_KEYS)))
            current = _default(repo, key)
            if current is None:
                raise ConfigError(f"{key} is not set, and has no default", "set it: dataver remote default NAME")
        print(f"{_origin(repo, key)}\t{current}" if show_origin else current)
    else:
        repo.config.set(key, value, local)


def _origin(repo: Any, key: str) -> str:
    """Where ``key``'s effective value comes from, as git's --show-origin says it."""
    section, _, option = key.rpartition(".")  # as config._split: a remote section holds dots
    if repo.config.get_in(section, option, True) is not None:
        return "file:.dataver/config.local"
    if repo.config.get_in(section, option, False) is not None:
        return "file:.dataver/config"
    return "default"


def _default(repo: Any, key: str) -> str | None:
    """The value a command uses for ``key`` when no config file sets it."""
    from ..digest import DEFAULT_ALGORITHM
    from ..hashing import default_jobs
    from ..linking import DEFAULT_LINK_TYPES

    defaults = {
        "cache.dir": lambda: repo.cache.root,
        "cache.link": lambda: ",".join(DEFAULT_LINK_TYPES),
        "core.jobs": lambda: str(default_jobs()),
        "core.lock_timeout": lambda: "60",
        "core.fsmonitor": lambda: "auto",
        "core.hash": lambda: DEFAULT_ALGORITHM,
    }
    make = defaults.get(key)
    return make() if make is not None else None


@app.command()
def install() -> None:
    """Install git hooks and the merge driver for pointer files.

    post-checkout and post-merge run dataver checkout, pre-push runs dataver push;
    existing hooks are kept and run first. *.dv files merge with dataver's driver
    (a three-way merge of folder manifests): commit .gitattributes.
    """
    from ..ops.hooks import install as do_install
    from ..ops.merge import install as install_driver
    from ..repo import Repo

    repo = Repo.find()
    for h in do_install(repo):
        chained = f" (runs the previous hook first: {h.chained})" if h.chained else ""
        note(f"{h.hook}: {'installed' if h.changed else 'already installed'}{chained}")
    changed = install_driver(repo)
    note(f"merge driver for *.dv: {'installed' if changed else 'already installed'}")
    if ".gitattributes" in changed:
        note("next: git add .gitattributes")


@app.command("merge-driver", hidden=True)
def merge_driver(
    base: str = typer.Argument(..., help="The merge base's version (git's %O)."),
    ours: str = typer.Argument(..., help="Our version, overwritten with the result (git's %A)."),
    theirs: str = typer.Argument(..., help="Their version (git's %B)."),
    path: str = typer.Argument("pointer", help="The pointer file's path (git's %P)."),
) -> None:
    """git's merge driver for *.dv (set by dataver install): exit 0 with the merged
    pointer in OURS, or 1 naming each conflicting file."""
    from ..ops.merge import merge_files
    from ..repo import Repo

    result = merge_files(Repo.find(), base, ours, theirs, path)
    if result.pointer is None:
        what = result.why or f"{len(result.conflicts)} file(s) changed differently on each side"
        note(f"dataver: cannot merge {path}: {what}")
        for c in result.conflicts[:20]:
            note(f"  {c}")
        if len(result.conflicts) > 20:
            note(f"  ... and {len(result.conflicts) - 20} more")
        note(
            f"dataver: {path} keeps our version; pick one (git checkout --ours/--theirs {shlex.quote(path)}), "
            f"or edit the data and dataver add it; then git add {shlex.quote(path)} and dataver checkout"
        )
        raise typer.Exit(1)
