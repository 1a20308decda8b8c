"""``install``: git hooks that keep data in step with git.

post-checkout and post-merge run ``dataver checkout``; pre-push runs ``dataver push``
(so a ``git push`` fails if the data it needs could not be pushed). A hook that is
already there and is not ours is kept as ``NAME.pre-dataver`` and run first, with the
same arguments and standard input, so installing never disables someone's hook.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from dataclasses import dataclass

from ..errors import RepoError
from ..history import require_git
from ..repo import Repo

MARKER = "# installed by `dataver install`"
FORCE_NOTE = "(--force discards unsaved changes to tracked data)"
HOOKS = {
    # git passes the commit it left, the commit it moved to, and 1 for a branch checkout
    # (0: files checked out); the data of pointers the left commit had and this one
    # lacks is removed (checkout --previous).
    "post-checkout": 'checkout --quiet $( [ "$3" = 1 ] && printf -- "--previous %s" "$1" )',
    "post-merge": "checkout --quiet --previous ORIG_HEAD",
    "pre-push": "push --quiet --rev",  # once per commit being pushed (read from git's stdin)
}


@dataclass
class Installed:
    hook: str
    path: str
    chained: str | None  # the previous hook, kept and run first
    changed: bool


def python_command() -> str:
    """This Python running this dataver, for a git hook or merge driver. Not ``python -m
    dataver``: its first import path is the working folder, so a repository's own
    ``dataver/`` (or ``typer/``) would run; the path is set to where this dataver is."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    boot = f"import sys; sys.path[0] = {root!r}; from dataver.cli.main import main_exit; main_exit()"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(boot)}"


def _script(name: str, command: str) -> str:
    python = python_command()
    if name == "pre-push":
        # git gives "<local ref> <local sha> <remote ref> <remote sha>" per ref pushed:
        # push the data of each commit going out; without a remote there is nothing to do.
        body = f"""if ! dv remote default >/dev/null 2>&1; then
    echo "dataver: no default data remote, data not pushed (dataver remote add NAME URL --default)" >&2
    true
else
    while read -r local_ref local_sha remote_ref remote_sha; do
        case "$local_sha" in *[!0]*) ;; *) continue ;; esac
        dv {command} "$local_sha" || exit $?
    done < "$input_file"
fi"""
    else:
        # git has already moved HEAD (or merged) when this runs, and its exit status
        # changes nothing: say so, and what to run once the error above is dealt with.
        moved = "switched commits" if name == "post-checkout" else "merged"
        body = f"""dv {command} || {{
    status=$?
    echo "dataver: git has already {moved}, but the data in the workspace was not updated to match" >&2
    echo "dataver: deal with the error above, then run: dataver checkout {FORCE_NOTE}" >&2
    exit $status
}}"""
    reads_stdin = name == "pre-push"  # the only one of these hooks git feeds on stdin
    capture = (
        'input_file=$(mktemp)\ntrap \'rm -f "$input_file"\' EXIT\ncat > "$input_file"'
        if reads_stdin
        else "input_file=/dev/null"
    )
    return f"""#!/bin/sh
{MARKER}
# Runs the hook that was here before (kept as {name}.pre-dataver), then dataver.
hook_dir=$(dirname "$0")
{capture}
if [ -x "$hook_dir/{name}.pre-dataver" ]; then
    "$hook_dir/{name}.pre-dataver" "$@" < "$input_file" || exit $?
fi
if command -v dataver >/dev/null 2>&1; then dv() {{ dataver "$@"; }}; else dv() {{ {python} "$@"; }}; fi
{body}
"""


def hooks_dir(repo: Repo) -> str:
    git = require_git(repo)
    configured = git.config_value("core.hooksPath")
    if configured:
        return configured if os.path.isabs(configured) else os.path.join(repo.root, configured)
    return os.path.join(git.git_dir, "hooks")


def install(repo: Repo) -> list[Installed]:
    folder = hooks_dir(repo)
    os.makedirs(folder, exist_ok=True)
    out = []
    for name, command in HOOKS.items():
        path = os.path.join(folder, name)
        text = _script(name, command)
        chained = None
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                current = f.read()
            if MARKER in current:
                if current != text:
                    _write_executable(path, text)
                out.append(Installed(name, path, None, current != text))
                continue
            chained = path + ".pre-dataver"
            if os.path.exists(chained):
                raise RepoError(f"both {path} and {chained} exist", "merge them by hand, then re-run")
            os.rename(path, chained)
        _write_executable(path, text)
        out.append(Installed(name, path, chained, True))
    return out


def _write_executable(path: str, text: str) -> None:
    tmp = path + ".dataver-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, os.stat(tmp).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, path)
