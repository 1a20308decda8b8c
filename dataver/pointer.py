"""Pointer files (``PATH.dv``): the small text file git tracks in place of the data.

Format (version 1): UTF-8, ``\n``-separated lines, each ``key: value`` or a
comment line starting with ``#``::

    # dataver pointer: commit this file; the data lives in the dataver cache
    version: 1
    kind: dir
    hash: xxh3-128
    digest: 0f3a...
    size: 1234
    files: 20

``kind`` is ``file`` or ``dir``; ``hash`` names the digest's algorithm (any in the
registry, ``digest.ALGORITHMS``; its hex length is checked by it); ``digest`` is the
file's digest or the folder manifest's; ``size`` is in bytes (a folder's: the total of its files); ``files``
(folders only) counts its files. Keys this version does not know (a user's
``desc:``, say, or an import's ``source.*`` block) are kept, in order, and written
back on re-add; comment lines are not. A ``lineage.*`` block (what produced the
data, ``dataver.lineagefmt``) is validated here like every other field, and dropped
when a re-add records different content. Pure: bytes in, values out; pointers arrive through git from
other people, so everything is validated and errors are ``PointerError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .digest import ALGORITHMS, Digest
from .errors import PointerError
from .lineagefmt import Lineage, NewerLineage, from_items, has_block, to_items, without_block

SUFFIX = ".dv"
FORMAT_VERSION = 1
MAX_POINTER_BYTES = 64 * 1024
HEADER = "# dataver pointer: commit this file; the data lives in the dataver cache"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_KNOWN = ("version", "kind", "hash", "digest", "size", "files")
KINDS = ("file", "dir")
SOURCE_PREFIX = "source."  # keys of an imported pointer: where its data came from


@dataclass(frozen=True)
class Pointer:
    kind: str
    digest: Digest
    size: int
    files: int | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def source(self) -> dict[str, str]:
        """The ``source.*`` keys of an imported pointer (repo, rev, commit, path); {} otherwise."""
        return {k[len(SOURCE_PREFIX) :]: v for k, v in self.extra if k.startswith(SOURCE_PREFIX)}

    def with_source(self, source: dict[str, str]) -> Pointer:
        """The same pointer with its source block replaced (other extra keys kept)."""
        kept = tuple((k, v) for k, v in self.extra if not k.startswith(SOURCE_PREFIX))
        block = tuple((SOURCE_PREFIX + k, v) for k, v in source.items() if v)
        return Pointer(self.kind, self.digest, self.size, self.files, kept + block)

    def with_content(self, digest: Digest, size: int, files: int | None) -> Pointer:
        """The same pointer recording new content: extra keys kept, except a lineage
        block when the content differs (it describes the bytes it was recorded with)."""
        extra = self.extra if digest == self.digest else without_block(self.extra)
        return Pointer(self.kind, digest, size, files, extra)

    @property
    def lineage(self) -> Lineage | None:
        """The validated ``lineage.*`` block (None if absent, or of a newer version)."""
        try:
            return from_items(self.extra)
        except NewerLineage:
            return None

    def with_lineage(self, lineage: Lineage | None) -> Pointer:
        """The same pointer with its lineage block replaced (other extra keys kept, first)."""
        block = tuple(to_items(lineage)) if lineage is not None else ()
        return Pointer(self.kind, self.digest, self.size, self.files, without_block(self.extra) + block)


def dumps(ptr: Pointer) -> bytes:
    lines = [
        HEADER,
        f"version: {FORMAT_VERSION}",
        f"kind: {ptr.kind}",
        f"hash: {ptr.digest.algorithm}",
        f"digest: {ptr.digest.hex}",
        f"size: {ptr.size}",
    ]
    if ptr.is_dir:
        lines.append(f"files: {ptr.files}")
    lines += [f"{k}: {v}" for k, v in ptr.extra]
    return ("\n".join(lines) + "\n").encode()


def loads(data: bytes, source: str = "pointer") -> Pointer:
    """Parse and validate a pointer file's bytes; ``source`` names it in errors."""

    def fail(why: str) -> PointerError:
        return PointerError(f"{source}: {why}", "fix or restore the file (git checkout -- FILE), then re-run")

    if len(data) > MAX_POINTER_BYTES:
        raise fail(f"too large for a pointer file ({len(data)} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise fail("not UTF-8 text") from None
    if "\0" in text:
        raise fail("contains a NUL byte")
    values: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    seen: set[str] = set()
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.fullmatch(key):
            raise fail(f"line {n} is not 'key: value': {raw[:60]!r}")
        if key in seen:
            raise fail(f"key {key!r} appears twice")
        seen.add(key)
        if key in _KNOWN:
            values[key] = value
        else:
            extra.append((key, value))
    for key in _KNOWN[:5]:
        if key not in values:
            raise fail(f"missing '{key}:'")
    if values["version"] != str(FORMAT_VERSION):
        if _is_decimal(values["version"]) and int(values["version"]) > FORMAT_VERSION:
            raise PointerError(
                f"{source}: written by a newer dataver (format {values['version']})",
                "upgrade dataver: pip install -U dataver",
            )
        raise fail(f"unknown format version {values['version']!r}")
    kind = values["kind"]
    if kind not in KINDS:
        raise fail(f"kind must be 'file' or 'dir', not {kind!r}")
    try:
        digest = Digest(values["hash"], values["digest"])
    except PointerError as e:
        raise fail(e.message) from None
    size = _count(values["size"], "size", fail)
    files = None
    if kind == "dir":
        if "files" not in values:
            raise fail("missing 'files:' (required for a folder)")
        files = _count(values["files"], "files", fail)
    elif "files" in values:
        raise fail("'files:' is only valid for kind: dir")
    if has_block(extra):
        try:
            from_items(extra, source)  # a stranger's block is checked like every other field
        except NewerLineage:
            pass  # kept as unknown keys, as an older reader keeps any
    return Pointer(kind, digest, size, files, tuple(extra))


def digests_named(data: bytes) -> list[Digest]:
    """The valid digests on the ``digest:`` lines of a pointer file that ``loads``
    rejects (a merge conflict committed by mistake, a hand edit): gc keeps what a
    broken pointer seems to name rather than guess that it names nothing. Each is
    tried under every algorithm (the ``hash:`` line may be what is broken)."""
    out = []
    for raw in data[:MAX_POINTER_BYTES].decode("utf-8", "replace").split("\n"):
        key, sep, value = raw.partition(":")
        if sep and key.strip() == "digest":
            for algorithm in ALGORITHMS:
                try:
                    out.append(Digest(algorithm, value.strip()))
                except PointerError:
                    continue
    return out


def looks_like_pointer(path: str) -> bool:
    """Cheap test used when scanning a repo: is this ``*.dv`` file meant as a pointer?

    Files that do not start like one (another tool's ``.dv`` files) are ignored by
    repo-wide scans; a file the user names explicitly is always parsed (and errors).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return True  # let the real read report the problem
    return reads_like_pointer(head)


def reads_like_pointer(head: bytes) -> bool:
    """Do these first bytes of a ``*.dv`` file look like a dataver pointer?"""
    head = head[:256]
    return head.startswith(b"# dataver pointer") or head.lstrip().startswith(b"version:") or b"\nversion:" in head


def _count(text: str, key: str, fail) -> int:
    if not _is_decimal(text) or len(text) > 20 or (len(text) > 1 and text[0] == "0"):
        raise fail(f"{key} must be a non-negative integer, not {text[:40]!r}")
    return int(text)


def _is_decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²' (int() then fails) and '١٢٣'."""
    return text.isascii() and text.isdigit()


def new_pointer(kind: str, digest: Digest, size: int, files: int | None = None) -> Pointer:
    return Pointer(kind, digest, size, files if kind == "dir" else None)
