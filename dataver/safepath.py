"""The one check every path dataver writes or deletes passes (git's ``verify_path``).

Pointers, manifests and the git trees they come in arrive from strangers. A pointer
named ``.git.dv`` or a manifest entry ``x/.git/hooks/post-checkout`` would make a
checkout write into git's own folder (and plant a hook that the next git command
runs), or into dataver's (its config and cache). Git fixed this class of bug at one
choke point, ``verify_path()`` in read-cache.c (CVE-2014-9390, CVE-2018-11235,
CVE-2024-32002): a path component that *any* filesystem would take for ``.git`` is
refused. This module is dataver's choke point, for ``.git`` and ``.dataver`` alike.

A component is reserved when, after

1. removing Unicode's default-ignorable code points (HFS+ ignores the zero-width and
   direction marks git lists: ``.g\\u200cit`` is ``.git`` on a Mac),
2. NFKC normalisation and case folding (``.GIT``, ``.Git``, full-width letters),
3. cutting an NTFS alternate data stream (``.git::$INDEX_ALLOCATION``) and the
   trailing dots and spaces Windows drops (``.git.``, ``.git ``),

it equals ``.git`` or ``.dataver``, or it is one of their 8.3 short names (``git~1``,
``datave~1``; any digit). A backslash separates components too, as on Windows.
Pure: strings in, ``PointerError`` out; no file-system access.
"""

from __future__ import annotations

import re
import shlex
import unicodedata

from .errors import PointerError

RESERVED = (".git", ".dataver")
_SHORT_NAME = re.compile(r"(git|datave)~[0-9]+")
_ASCII_STARTS = (".git", "git~", ".datave", "datave~")
MAX_NAME_BYTES = 255  # ext4, XFS, APFS (UTF-8 bytes); NTFS counts 255 UTF-16 units

# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt); they
# include every code point git's next_hfs_char() skips (U+200C-200F, U+202A-202E,
# U+206A-206F, U+FEFF).
_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_IGNORABLE = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in _IGNORABLE_RANGES) + "]")


def reserved_name(component: str) -> str | None:
    """The reserved name (``.git`` or ``.dataver``) that ``component`` spells on some
    filesystem, or None. Cheap for ordinary names: only names that could fold to a
    reserved one (they start with '.', 'g' or 'd' in some form, or are not ASCII) get
    the full treatment."""
    for part in component.split("\\"):
        found = _reserved_part(part)
        if found:
            return found
    return None


def _reserved_part(name: str) -> str | None:
    if name.isascii():
        folded = name.lower()
        if not folded.startswith(_ASCII_STARTS):  # every reserved ASCII spelling starts so
            return None
    else:
        folded = unicodedata.normalize("NFKC", _IGNORABLE.sub("", name)).casefold()
    folded = folded.split(":", 1)[0].rstrip(" .")  # NTFS: streams, trailing dots and spaces
    if not folded:
        return None
    if folded in RESERVED:
        return folded
    if _SHORT_NAME.fullmatch(folded):
        return ".git" if folded.startswith("git") else ".dataver"
    return None


_NOT_OURS = "this did not come from dataver add; remove it and tell the repository's owners"


def check_relpath(path: str, source: str = "manifest", hint: str = _NOT_OURS) -> None:
    """Refuse a relative posix path dataver would write or delete below some folder:
    empty, ``.`` or ``..`` components, absolute, NUL/CR/LF, a reserved component, or a
    component longer than 255 bytes (no common filesystem holds one).

    ``source`` names where the path came from (a pointer file, a manifest) in the error.
    """
    framed = f"/{path}/"  # every component between slashes: no empty, "." or ".." one
    if (
        not path
        or "\0" in path
        or "\r" in path
        or "\n" in path
        or "//" in framed
        or "/./" in framed
        or "/../" in framed
    ):
        raise PointerError(f"{source}: unsafe or invalid path {path[:100]!r}", hint)
    if len(path) > MAX_NAME_BYTES // 4:  # only then can one component exceed the limit in UTF-8
        long = next((c for c in path.split("/") if len(c.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES), None)
        if long is not None:
            raise PointerError(
                f"{source}: a name in {path[:100]!r} is longer than {MAX_NAME_BYTES} bytes, "
                "which no common filesystem can hold",
                hint,
            )
    if path.isascii():  # the common case: every reserved spelling holds "git" or "datave"
        low = path.lower()
        if "git" not in low and "datave" not in low:
            return
    for component in path.split("/"):
        found = reserved_name(component)
        if found:
            owner = "git" if found == ".git" else "dataver"
            spelled = "" if component == found else f" ({component[:60]!r} is {found} on some filesystems)"
            raise PointerError(
                f"{source}: unsafe path {path[:100]!r}: it reaches into {found}/, {owner}'s own folder{spelled}",
                hint,
            )


def check_target(rel: str, pointer_display: str) -> None:
    """Refuse the target of a pointer (its path without ``.dv``, repo-relative posix)."""
    pointer_file = rel + ".dv"
    check_relpath(
        rel,
        pointer_display,
        f"dataver add never writes such a pointer; remove it from the repository: git rm {shlex.quote(pointer_file)}",
    )


def reserved_in(parts: list[str]) -> str | None:
    """How the first component of ``parts`` that spells a reserved name reads in a
    message (``.git/``, or ``'.GIT' (.git/ on some filesystems)``), or None."""
    for part in parts:
        found = reserved_name(part)
        if found:
            return f"{found}/" if part == found else f"{part!r} ({found}/ on some filesystems)"
    return None
