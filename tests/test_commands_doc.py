"""docs/commands.md covers every command and every option (issue 14's "done when"):
each command the CLI offers has a section, and each of its long options is named in it."""

from __future__ import annotations

import re
from pathlib import Path

import click
import typer.main

from dataver.cli.main import app

DOC = (Path(__file__).parent.parent / "docs" / "commands.md").read_text()


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in sorted(group.commands.items()):
        if getattr(cmd, "hidden", False):
            continue
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, full + " ")
        else:
            yield full, cmd


def _section(name: str) -> str | None:
    """The text under the heading naming ``name`` (## or ###), up to the next heading of any level."""
    m = re.search(rf"^#{{2,3}} {re.escape(name)}\n(.*?)(?=^#{{2,3}} |\Z)", DOC, re.S | re.M)
    return m.group(1) if m else None


def test_every_command_and_option_is_documented():
    root = typer.main.get_command(app)
    missing = []
    for name, cmd in _commands(root):
        section = _section(name)
        if section is None:
            missing.append(f"no section for {name}")
            continue
        same = re.search(r"Options as for \[(\w[\w -]*)\]", section)
        if same:  # "Options as for [push](#push), plus ...": that section's too
            section += _section(same.group(1)) or ""
        for param in cmd.params:
            longs = [o for o in getattr(param, "opts", []) if o.startswith("--") and o != "--help"]
            if isinstance(param, click.Option) and longs and not any(o in section for o in longs):
                missing.append(f"{name}: {longs[0]}")
    assert missing == [], missing
