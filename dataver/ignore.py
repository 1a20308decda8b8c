"""``.dataverignore``: files a tracked folder holds that are not data (``.DS_Store``,
``.ipynb_checkpoints/``, ``__pycache__/``), in gitignore syntax, matched by pathspec.

A ``.dataverignore`` applies to the folder it is in and everything below, at any level:
the repository root's to every tracked folder, one inside a tracked folder to that part
of it. As in git, the last matching line of the deepest file decides (``!`` re-admits),
a folder's pattern ends with ``/``, and nothing below an ignored folder is looked at.
An ignored file is not in the manifest, the fingerprint, status or checkout: a folder's
digest changes only with the files the rules admit. The ``.dataverignore`` file itself is
data like any other file of the folder (as git tracks ``.gitignore``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from .errors import PathError

IGNORE_FILE = ".dataverignore"
MAX_IGNORE_BYTES = 1 << 20  # a .dataverignore bigger than this is refused (it arrives through git)


@dataclass(frozen=True)
class Rule:
    """One ``.dataverignore`` as it applies to a scan: a name under the scanned folder
    is tested as ``lead + name[strip:]`` (its path relative to the file's folder)."""

    source: str  # where it is, for messages ("data/.dataverignore")
    lead: str  # the scanned folder's path below the rule's folder ("sub/"), for a file above it
    strip: int  # characters of a name's prefix above the rule's folder, for a file inside the scan
    lines: tuple[str, ...]


def read_rule(path: str, source: str, lead: str = "", strip: int = 0) -> Rule | None:
    """The rule in ``path`` (None if there is no such file)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_IGNORE_BYTES + 1)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as e:
        raise PathError(f"cannot read {source}: {e.strerror}") from None
    if len(data) > MAX_IGNORE_BYTES:
        raise PathError(f"{source} is larger than {MAX_IGNORE_BYTES} bytes", "keep ignore files to patterns")
    text = data.decode("utf-8", errors="replace")
    return Rule(source, lead, strip, tuple(text.splitlines()))


@lru_cache(maxsize=256)
def _patterns(lines: tuple[str, ...]) -> tuple:
    """(line number, pattern) of each line that is a pattern, last first."""
    from pathspec import util

    try:
        pattern_class = util.lookup_pattern("gitignore")  # pathspec 1.x (gitwildmatch is deprecated there)
    except KeyError:
        pattern_class = util.lookup_pattern("gitwildmatch")
    out = []
    for number, line in enumerate(lines, 1):
        try:
            pattern = pattern_class(line)
        except Exception:  # a malformed line is no pattern (git ignores it too)
            continue
        if pattern.include is not None:
            out.append((number, line, pattern))
    return tuple(reversed(out))


def decide(rules: tuple[Rule, ...], name: str, is_dir: bool) -> tuple[Rule, int, str, bool] | None:
    """The deciding line for ``name`` (a path under the scanned folder), or None when no
    line matches: (rule, line number, the line, ignored?)."""
    for rule in reversed(rules):  # the deepest file first
        probe = rule.lead + name[rule.strip :] + ("/" if is_dir else "")
        for number, line, pattern in _patterns(rule.lines):
            if pattern.match_file(probe) is not None:
                return rule, number, line, bool(pattern.include)
    return None


def ignored(rules: tuple[Rule, ...], name: str, is_dir: bool) -> bool:
    found = decide(rules, name, is_dir)
    return found is not None and found[3]


def rules_above(root: str, folder: str) -> tuple[Rule, ...]:
    """The ``.dataverignore`` files from the repository ``root`` down to ``folder``'s
    parent, as rules for a scan of ``folder`` (the shallowest first)."""
    rel = os.path.relpath(folder, root)
    if rel == "." or rel == ".." or rel.startswith(".." + os.sep):
        return ()
    parts = rel.split(os.sep)
    out = []
    for depth in range(len(parts)):
        here = os.path.join(root, *parts[:depth])
        lead = "/".join(parts[depth:]) + "/"
        source = "/".join([*parts[:depth], IGNORE_FILE])
        rule = read_rule(os.path.join(here, IGNORE_FILE), source, lead=lead)
        if rule is not None:
            out.append(rule)
    return tuple(out)


@dataclass
class Decision:
    """Why ``check-ignore`` says what it says of a path."""

    path: str  # repo-relative, posix
    ignored: bool
    source: str | None = None  # the .dataverignore whose line decided (repo-relative)
    line_number: int | None = None
    line: str | None = None
    via: str | None = None  # a folder above the path that the line ignores (nothing below it is looked at)


def explain(root: str, path: str, is_dir: bool) -> Decision:
    """Is ``path`` (inside the repository ``root``) ignored, and by which line: each
    folder on the way is tested first, as a scan meets them."""
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    parts = rel.split("/")
    rules: list[Rule] = []
    for depth in range(len(parts)):
        folder = parts[:depth]
        prefix = "/".join(folder)
        rule = read_rule(
            os.path.join(root, *folder, IGNORE_FILE),
            "/".join([*folder, IGNORE_FILE]),
            strip=len(prefix) + 1 if prefix else 0,
        )
        if rule is not None:
            rules.append(rule)
        name = "/".join(parts[: depth + 1])
        last = depth + 1 == len(parts)
        found = decide(tuple(rules), name, is_dir if last else True)
        if found is not None and (found[3] or last):
            r, number, line, ignores = found
            return Decision(rel, ignores, r.source, number, line, None if last else name)
    return Decision(rel, False)
