"""Folder manifests: the canonical list of a tracked folder's files.

Serialisation (version 1), UTF-8, ``\\n`` line ends, no trailing spaces::

    dataver-manifest 1 <algorithm>
    <hex digest> <size> <x|-> <relative/path>
    ...

The header names the hash algorithm of every digest listed, and of the manifest's
own digest (a manifest named by a blake3 digest lists blake3 digests). One line per
regular file, sorted by the UTF-8 bytes of the path; ``x`` marks an
executable file. The path is the rest of the line (it may contain spaces). Paths use
``/``, are relative, and have no empty, ``.`` or ``..`` component, no NUL, CR or LF,
and no component that spells ``.git`` or ``.dataver`` (``safepath.check_relpath``).
Parsing accepts only canonical bytes (sorted, unique, no file that is also a
folder), so one folder has exactly one manifest and one digest on every machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from .digest import ALGORITHMS, DEFAULT_ALGORITHM, Digest
from .errors import PointerError
from .safepath import check_relpath

_HEADER_PREFIX = "dataver-manifest 1 "
_ALGORITHM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def header(algorithm: str) -> str:
    """The first line of a manifest whose digests use ``algorithm``."""
    return _HEADER_PREFIX + algorithm


HEADER = header(DEFAULT_ALGORITHM)  # an xxh3-128 manifest's


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    digest: Digest
    size: int
    executable: bool = False


def dumps(entries: Iterable[Entry], algorithm: str = DEFAULT_ALGORITHM) -> bytes:
    """Canonical bytes of a manifest of ``algorithm`` digests (every entry's must be one)."""
    # Code-point order is UTF-8 byte order (UTF-8 preserves it), so the str sort gives
    # the canonical order without a bytes key per entry; a path that is not valid
    # UTF-8 fails the encode below rather than sorting wrongly.
    ordered = sorted(entries, key=_path_of)
    check_entries(ordered, algorithm)
    parts = [(header(algorithm) + "\n").encode()]
    for start in range(0, len(ordered), _DUMP_SLICE):  # bounded text at a time, not all lines
        lines = [
            f"{e.digest.hex} {e.size} {'x' if e.executable else '-'} {e.path}\n"
            for e in ordered[start : start + _DUMP_SLICE]
        ]
        parts.append("".join(lines).encode())
    return b"".join(parts)


def check_entries(ordered: list[Entry], algorithm: str) -> None:
    """What a writer checks of sorted entries before listing them: every path, no
    duplicate, no file that is also a folder, every digest of ``algorithm``."""
    check_tree(ordered, "manifest")
    for e in ordered:
        check_relpath(e.path)
        if e.digest.algorithm != algorithm:
            raise ValueError(f"{e.path}: a {e.digest.algorithm} digest in a {algorithm} manifest")


def _path_of(e: Entry) -> str:
    return e.path


_DUMP_SLICE = 10_000


def loads(data: bytes, source: str = "manifest", algorithm: str | None = None) -> list[Entry]:
    """Parse canonical manifest bytes (already digest-checked by the store).

    ``algorithm``, when given, is that of the digest the manifest was found by: its
    header must name the same one."""
    lines = _lines(decode_text(data, source))
    first = next(lines)
    named = first[len(_HEADER_PREFIX) :] if first.startswith(_HEADER_PREFIX) else ""
    if named not in ALGORITHMS:
        if not _ALGORITHM_NAME.fullmatch(named):
            raise PointerError(f"{source}: unknown header {first[:60]!r}")
        raise PointerError(
            f"{source}: unknown hash algorithm {named!r} in its header (dataver knows {', '.join(ALGORITHMS)})",
            "it was written by another tool or a newer dataver",
        )
    if algorithm is not None and named != algorithm:
        raise PointerError(f"{source}: its header names {named}, but it is named by a {algorithm} digest")
    entries = []
    for n, line in enumerate(lines, 2):
        parts = line.split(" ", 3)
        if len(parts) != 4 or parts[2] not in ("x", "-") or not is_canonical_count(parts[1]):
            raise PointerError(f"{source}: line {n} is malformed: {line[:80]!r}")
        hex_, size, mode, path = parts
        check_relpath(path, source)
        try:
            digest = Digest(named, hex_)
        except PointerError as e:
            raise PointerError(f"{source}: line {n}: {e.message}") from None
        entries.append(Entry(path, digest, int(size), mode == "x"))
    for a, b in zip(entries, entries[1:], strict=False):
        if a.path >= b.path:  # code-point order is UTF-8 byte order
            raise PointerError(f"{source}: entries not in canonical order or duplicated at {b.path[:100]!r}")
    check_tree(entries, source)
    return entries


def decode_text(data: bytes, source: str) -> str:
    """Manifest or tree node bytes as text: UTF-8, ending with a line end."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PointerError(f"{source}: not UTF-8") from None
    if not text.endswith("\n"):
        raise PointerError(f"{source}: truncated (no final newline)")
    return text


def known_good_entries(data: bytes) -> Iterator[tuple[str, str]]:
    """``(path, hex digest)`` per entry of manifest bytes that ``loads`` has accepted
    before (the caller knows it by their digest), without validating every line again:
    the fast path of status over a folder whose files did not change. Streamed, one
    line at a time, so a 200,000-line manifest is never held as 200,000 pairs."""
    lines = _lines(data.decode("utf-8"))
    n = _hex_length(next(lines))
    for line in lines:
        yield line.split(" ", 3)[3], line[:n]


def _hex_length(first_line: str) -> int:
    """The hex length of the digests of an accepted manifest, from its header."""
    return ALGORITHMS[first_line[len(_HEADER_PREFIX) :]].hex_length


def listed_hexes(data: bytes) -> Iterator[str]:
    """The first word of every entry line of manifest bytes, nothing validated: what
    gc compares with the digests it might delete, so that a committed folder keeps
    its files even when its manifest is one a checkout would refuse (a hostile path,
    bytes that are not UTF-8). A word that is no digest matches nothing."""
    for line in _lines(data.decode("utf-8", "replace") + "\n"):  # the header and an unended line too
        yield line.split(" ", 1)[0]


def _lines(text: str) -> Iterator[str]:
    """The ``\n``-terminated lines of ``text``, without their ends, one at a time: a
    200,000-line manifest as a list of lines costs twice its size again, and through
    ``io.StringIO`` four times (it widens the text to 4 bytes per character)."""
    start = 0
    find = text.find
    while (end := find("\n", start)) >= 0:
        yield text[start:end]
        start = end + 1


def check_tree(ordered: list[Entry], source: str) -> None:
    """No entry may be the parent folder of another (a file cannot be a folder)."""
    paths = {e.path for e in ordered}
    if len(paths) != len(ordered):
        dup = next(a.path for a, b in zip(ordered, ordered[1:], strict=False) if a.path == b.path)
        raise PointerError(f"{source}: {dup[:100]!r} is listed twice")
    for e in ordered:
        parent = e.path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in paths:
                raise PointerError(f"{source}: {parent!r} is both a file and a folder")


def is_canonical_count(text: str) -> bool:
    """ASCII digits, no leading zero (``str.isdigit`` also accepts '²' and '١٢٣')."""
    return text.isascii() and text.isdigit() and len(text) <= 20 and (text == "0" or text[0] != "0")
