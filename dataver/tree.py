"""Folder trees: a large tracked folder's manifest as bounded nodes (docs/formats.md,
"Folder trees").

A folder (or subfolder) of at most ``FLAT_MAX`` files is one flat manifest, format 1
(``manifest``), exactly as before trees existed: small folders, and every pointer
written before, read and hash as they always did. A larger one is a **tree node**::

    dataver-tree 1 <algorithm>
    <hex> <size> <mode> <name>
    ...

one line per file directly in the folder (mode ``-`` or ``x``, the blob's digest and
size) and per subfolder (mode ``d``: the digest of the subfolder's own manifest, flat
or tree, and the bytes of every file below it), sorted by *key*: the name, plus ``/``
for a subfolder (git's tree order, which makes a walk list files in the same order
as a flat manifest). A node of more than ``NODE_MAX`` lines is cut into pieces at
content-defined points (``_cut``: a function of each line's bytes, so an insert moves
no other cut): the node then lists its pieces (mode ``p``: the piece's digest, the
bytes below it, and the key of its first line), and the pieces, nodes in the same
format, list the lines. A one-file change rewrites one small manifest and the nodes
above it, not the whole list.

Every node is an ordinary manifest object (same digest rule, same store). Readers
accept only canonical trees, so a folder has one digest on every machine: the flat
or tree form as its file count says, lines in order, cuts where the rule puts them,
sizes that add up. ``walk`` checks all of it while it streams the files; the depth
and the size of every node are bounded, so a hostile tree costs at most its files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import xxhash

from . import manifest
from .digest import ALGORITHMS, Digest
from .errors import PathError, PointerError
from .manifest import Entry
from .safepath import check_relpath

TREE_PREFIX = "dataver-tree 1 "
FLAT_MAX = 4096  # a folder of at most this many files (all below it) is one flat manifest
NODE_MAX = 4096  # lines in one node; a folder node with more is cut into pieces
PIECE_MIN = 512  # a piece has at least this many lines (except a level's last)
PIECE_MASK = 2047  # after PIECE_MIN lines, a line whose hash has these bits clear ends a piece
CUT_SEED = 0x64617461766572  # "datavers": the xxh3-64 seed of the cut rule
MAX_NODE_BYTES = 16 << 20  # a node is NODE_MAX lines: a few hundred KiB; larger is refused
MAX_DEPTH = 256  # folder levels plus piece levels a walk follows (nested generators: within the recursion limit)
MAX_FOLDER_DEPTH = 240  # tree levels add builds: the rest is room for piece levels
MAX_FILES = 1 << 30  # a tree naming more files than this is refused (a tree can reuse a subtree)

FILE_MODES = ("-", "x")
DIR, PIECE = "d", "p"

Read = Callable[[Digest], bytes]  # a manifest object's bytes, checked against the digest


def header(algorithm: str) -> str:
    return TREE_PREFIX + algorithm


def is_tree(data: bytes) -> bool:
    return data.startswith(TREE_PREFIX.encode())


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a tree node: a file (``-``/``x``), a subfolder (``d``) or a piece (``p``)."""

    name: str  # a file or folder name; for a piece, the key of its first line
    hex: str
    size: int
    mode: str

    @property
    def key(self) -> str:
        return self.name + "/" if self.mode == DIR else self.name

    def text(self) -> str:
        return f"{self.hex} {self.size} {self.mode} {self.name}\n"


def _cut(line_text: str, count: int) -> bool:
    """Whether a piece ends after this line, its ``count``-th (from 1)."""
    if count >= NODE_MAX:
        return True
    return count >= PIECE_MIN and xxhash.xxh3_64_intdigest(line_text.encode("utf-8"), CUT_SEED) & PIECE_MASK == 0


# -- writing -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Subtree:
    """A subfolder whose manifest is already made (``build``'s ``subtrees``)."""

    path: str  # relative to the folder being built, no trailing "/"
    digest: Digest
    size: int
    files: int


def build(
    entries: list[Entry],
    algorithm: str,
    store: Callable[[bytes], Digest],
    subtrees: Iterable[Subtree] = (),
    on_folder: Callable[[str, Digest], None] | None = None,
) -> Digest:
    """The digest of the folder listing ``entries`` (any order; paths relative to it):
    a flat manifest when there are at most ``FLAT_MAX``, else a tree, each node passed
    to ``store`` (which stores it and returns its digest) before the node naming it.

    ``subtrees``: subfolders whose manifests are known (a re-add's unchanged ones), in
    place of their files; each must be one a tree node names (its parent holds more
    than ``FLAT_MAX`` files). ``on_folder(path + "/", digest)`` is told every folder
    made a manifest of its own ("" for the whole)."""
    subs = list(subtrees)
    items: list[Entry | Subtree] = sorted([*entries, *subs], key=_key_of)
    if not subs and len(items) <= FLAT_MAX:
        digest = store(manifest.dumps(items, algorithm))  # type: ignore[arg-type]
        if on_folder is not None:
            on_folder("", digest)
        return digest
    manifest.check_entries([e for e in items if isinstance(e, Entry)], algorithm)  # once, for the whole tree
    weights = [0]
    for item in items:
        weights.append(weights[-1] + (item.files if isinstance(item, Subtree) else 1))
    b = _Builder(items, weights, algorithm, store, on_folder)
    return b.folder(0, len(items), 0, 0)[0]


def _key_of(item: Entry | Subtree) -> str:
    return item.path + "/" if isinstance(item, Subtree) else item.path


class _Builder:
    """``build``'s state: the sorted items and their running file counts."""

    def __init__(self, items, weights, algorithm, store, on_folder):
        self.items, self.weights, self.algorithm = items, weights, algorithm
        self.store, self.on_folder = store, on_folder

    def folder(self, lo: int, hi: int, cut: int, depth: int) -> tuple[Digest, int]:
        """(digest, bytes) of the folder of ``items[lo:hi]``, whose paths share their
        first ``cut`` characters (the folder's path and ``/``)."""
        items = self.items
        total = sum(x.size for x in items[lo:hi])
        prefix = items[lo].path[:cut] if hi > lo else ""
        if self.weights[hi] - self.weights[lo] <= FLAT_MAX:
            if any(isinstance(x, Subtree) for x in items[lo:hi]):
                raise ValueError(f"{prefix!r}: a known subtree inside a folder that is a flat manifest")
            digest = self.store(_flat_bytes(items, lo, hi, cut, self.algorithm))  # type: ignore[arg-type]
            if self.on_folder is not None:
                self.on_folder(prefix, digest)
            return digest, total
        if depth >= MAX_FOLDER_DEPTH:
            raise PathError(
                f"{prefix}: more than {MAX_FOLDER_DEPTH} nested folders with over {FLAT_MAX} files each",
                "dataver's folder trees stop there; track a deeper part as a folder of its own",
            )
        lines: list[Line] = []
        i = lo
        while i < hi:
            e = items[i]
            rest = e.path[cut:]
            slash = rest.find("/")
            if slash < 0:
                if isinstance(e, Subtree):
                    lines.append(Line(rest, e.digest.hex, e.size, DIR))
                else:
                    lines.append(Line(rest, e.digest.hex, e.size, "x" if e.executable else "-"))
                i += 1
                continue
            sub = e.path[: cut + slash + 1]  # "folder/name/"
            j = i + 1
            while j < hi and items[j].path.startswith(sub):
                j += 1
            child, size = self.folder(i, j, cut + slash + 1, depth + 1)
            lines.append(Line(rest[:slash], child.hex, size, DIR))
            i = j
        lines.sort(key=lambda line: line.key)
        digest = _node(lines, self.algorithm, self.store)
        if self.on_folder is not None:
            self.on_folder(prefix, digest)
        return digest, total


def _flat_bytes(ordered: list[Entry], lo: int, hi: int, cut: int, algorithm: str) -> bytes:
    """A flat manifest of ``ordered[lo:hi]`` with the first ``cut`` characters of every
    path taken off (checked already; a common prefix keeps the order)."""
    out = [manifest.header(algorithm) + "\n"]
    for e in ordered[lo:hi]:
        out.append(f"{e.digest.hex} {e.size} {'x' if e.executable else '-'} {e.path[cut:]}\n")
    return "".join(out).encode("utf-8")


def _node(lines: list[Line], algorithm: str, store: Callable[[bytes], Digest]) -> Digest:
    """Store the node of ``lines`` (sorted), cut into pieces while it has too many."""
    while len(lines) > NODE_MAX:
        pieces: list[Line] = []
        start, count = 0, 0
        for i, line in enumerate(lines):
            count += 1
            if _cut(line.text(), count) or i == len(lines) - 1:
                run = lines[start : i + 1]
                digest = store(_node_bytes(run, algorithm))
                pieces.append(Line(run[0].key, digest.hex, sum(x.size for x in run), PIECE))
                start, count = i + 1, 0
        lines = pieces
    return store(_node_bytes(lines, algorithm))


def _node_bytes(lines: Iterable[Line], algorithm: str) -> bytes:
    return (header(algorithm) + "\n" + "".join(line.text() for line in lines)).encode("utf-8")


# -- reading -------------------------------------------------------------------------------
def parse_node(data: bytes, source: str, algorithm: str) -> list[Line]:
    """The lines of tree node bytes (found by an ``algorithm`` digest), each checked
    alone: the syntax, the names, the order. What spans nodes (counts, sizes, cuts) is
    ``walk``'s."""
    if len(data) > MAX_NODE_BYTES:
        raise PointerError(f"{source}: a tree node of {len(data)} bytes (at most {MAX_NODE_BYTES})")
    rows = manifest.decode_text(data, source)[:-1].split("\n")
    if rows[0] != header(algorithm):
        named = rows[0][len(TREE_PREFIX) :] if rows[0].startswith(TREE_PREFIX) else rows[0][:60]
        raise PointerError(f"{source}: its header names {named!r}, but it is named by a {algorithm} digest")
    length = ALGORITHMS[algorithm].hex_length
    lines: list[Line] = []
    for n, row in enumerate(rows[1:], 2):
        parts = row.split(" ", 3)
        if (
            len(parts) != 4
            or len(parts[0]) != length
            or not _is_hex(parts[0])
            or parts[2] not in ("-", "x", DIR, PIECE)
            or not manifest.is_canonical_count(parts[1])
        ):
            raise PointerError(f"{source}: line {n} is malformed: {row[:80]!r}")
        hex_, size, mode, name = parts
        if mode == PIECE:
            key = name[:-1] if name.endswith("/") else name
            if "/" in key or not key:
                raise PointerError(f"{source}: line {n}: a piece named {name[:80]!r}")
            check_relpath(key, source)
        elif "/" in name or "\\" in name:
            raise PointerError(f"{source}: line {n}: {name[:80]!r} is not one name")
        else:
            check_relpath(name, source)
        lines.append(Line(name, hex_, int(size), mode))
    if not lines:
        raise PointerError(f"{source}: an empty tree node")
    pieces = sum(1 for x in lines if x.mode == PIECE)
    if pieces not in (0, len(lines)):
        raise PointerError(f"{source}: a node lists both pieces and files")
    if len(lines) > NODE_MAX:
        raise PointerError(f"{source}: a node of {len(lines)} lines (at most {NODE_MAX})")
    for a, b in zip(lines, lines[1:], strict=False):
        if a.key >= b.key:
            raise PointerError(f"{source}: lines not in canonical order or duplicated at {b.name[:100]!r}")
    return lines


_HEX = frozenset("0123456789abcdef")


def _is_hex(text: str) -> bool:
    return _HEX.issuperset(text)


class _Names:
    """One folder's names as its lines go by in key order: a name may not be both a
    file and a subfolder. The file ``a`` sorts before ``a/`` with only names ``a``
    plus a character below ``/`` between them, so the files that could clash are a
    chain of prefixes of the latest name (at most its length)."""

    def __init__(self) -> None:
        self.open: list[str] = []

    def see(self, name: str, folder: bool, source: str) -> None:
        if folder and name in self.open:
            raise PointerError(f"{source}: {name[:100]!r} is both a file and a folder")
        while self.open and not name.startswith(self.open[-1]):
            self.open.pop()
        if not folder:
            self.open.append(name)


class _Walk:
    """State of one ``walk``: where nodes come from, the algorithm, counts."""

    def __init__(self, read: Read, algorithm: str, source: str, skip: Callable[[str], bool] | None = None):
        self.read, self.algorithm, self.source = read, algorithm, source
        self.skip = skip
        self.files = 0
        self.skipped = 0  # subfolders left out (``walk``'s ``skip``): the counts below them are unknown

    def object(self, hex_: str, where: str) -> tuple[bytes, str]:
        digest = Digest(self.algorithm, hex_)
        data = self.read(digest)
        return data, f"{self.source}: {where}" if where else self.source

    def folder(self, hex_: str, prefix: str, depth: int, where: str) -> Iterator[tuple[Entry, str]]:
        """Every file of the folder manifest ``hex_`` (flat or tree), checked; the
        entry's path relative to the tracked folder, and the folder's form."""
        if depth > MAX_DEPTH:
            raise PointerError(f"{self.source}: the tree is deeper than {MAX_DEPTH} levels at {prefix[:100]!r}")
        data, source = self.object(hex_, where)
        if not is_tree(data):
            entries = manifest.loads(data, source, self.algorithm)
            if len(entries) > FLAT_MAX and depth > 0:
                raise PointerError(f"{source}: a flat manifest of {len(entries)} files inside a tree")
            self._count(len(entries))
            for e in entries:
                yield Entry(prefix + e.path, e.digest, e.size, e.executable) if prefix else e, "flat"
            return
        lines = parse_node(data, source, self.algorithm)
        count_before = self.files
        names = _Names()
        skipped_before = self.skipped
        if lines[0].mode == PIECE:
            yield from self._pieces(lines, prefix, depth, source, names)
        else:
            yield from self._lines(lines, prefix, depth, names, source)
        if self.files - count_before <= FLAT_MAX and self.skipped == skipped_before:
            raise PointerError(
                f"{source}: a tree node for {self.files - count_before} files (a flat manifest holds them)"
            )

    def _lines(
        self, lines: list[Line], prefix: str, depth: int, names: _Names, source: str
    ) -> Iterator[tuple[Entry, str]]:
        for line in lines:
            names.see(line.name, line.mode == DIR, source)
            if line.mode in FILE_MODES:
                self._count(1)
                yield Entry(prefix + line.name, Digest(self.algorithm, line.hex), line.size, line.mode == "x"), "tree"
                continue
            if line.mode != DIR:
                raise PointerError(f"{self.source}: a piece among the files of {prefix or 'the folder'}")
            where = f"{prefix}{line.name}/"
            if self.skip is not None and self.skip(where):
                self.skipped += 1
                continue
            total = 0
            for e, form in self.folder(line.hex, where, depth + 1, f"subfolder {where}"):
                total += e.size
                yield e, form
            if total != line.size:
                raise PointerError(f"{self.source}: {where} holds {total} bytes, its line says {line.size}")

    def _pieces(
        self, lines: list[Line], prefix: str, depth: int, source: str, names: _Names, last: bool = True
    ) -> Iterator[tuple[Entry, str]]:
        """The files of the pieces ``lines`` name (one level of a cut folder node)."""
        if len(lines) < 2:
            raise PointerError(f"{source}: a node with one piece")
        cut_lines = 0  # the lines this level was cut from: more than a node holds, or it would not be cut
        for i, line in enumerate(lines):
            if line.mode != PIECE:
                raise PointerError(f"{source}: a node lists both pieces and files")
            if depth > MAX_DEPTH:
                raise PointerError(f"{self.source}: the tree is deeper than {MAX_DEPTH} levels at {prefix[:100]!r}")
            data, where = self.object(line.hex, f"a piece of {prefix or 'the folder'}")
            if not is_tree(data):
                raise PointerError(f"{where}: a piece is not a tree node")
            sub = parse_node(data, where, self.algorithm)
            if sub[0].key != line.name:
                raise PointerError(f"{where}: it starts at {sub[0].key[:100]!r}, its line says {line.name[:100]!r}")
            final = last and i == len(lines) - 1
            _check_cuts(sub, final, where)
            cut_lines += len(sub)
            total = 0
            if sub[0].mode == PIECE:
                inner = self._pieces(sub, prefix, depth + 1, where, names, final)
            else:
                inner = self._lines(sub, prefix, depth + 1, names, where)
            skipped_before = self.skipped
            for e, form in inner:
                total += e.size
                yield e, form
            if total != line.size and self.skipped == skipped_before:
                raise PointerError(f"{where}: it holds {total} bytes, its line says {line.size}")
        if cut_lines <= NODE_MAX:
            raise PointerError(f"{source}: {cut_lines} lines cut into pieces (a node holds {NODE_MAX})")

    def _count(self, n: int) -> None:
        self.files += n
        if self.files > MAX_FILES:
            raise PointerError(f"{self.source}: names more than {MAX_FILES} files")


def _check_cuts(lines: list[Line], final: bool, where: str) -> None:
    """A piece ends where the cut rule says, and nowhere before."""
    for i, line in enumerate(lines):
        cut = _cut(line.text(), i + 1)
        if i < len(lines) - 1 and cut:
            raise PointerError(f"{where}: a piece goes on past a cut (after {line.key[:100]!r})")
        if i == len(lines) - 1 and not cut and not final:
            raise PointerError(f"{where}: a piece ends where the cut rule does not cut")


def walk(read: Read, digest: Digest, source: str, skip: Callable[[str], bool] | None = None) -> Iterator[Entry]:
    """Every file of the folder whose manifest is ``digest``, in path order (as a flat
    manifest lists them), every node read through ``read`` and checked. Streams: a
    walk holds the nodes on one path, not the list. ``skip(path + "/")``: subfolders
    (of tree nodes) to leave out, unread (what is below them goes unchecked)."""
    w = _Walk(read, digest.algorithm, source, skip)
    last = ""
    for i, (e, _) in enumerate(w.folder(digest.hex, "", 0, "")):
        if i and e.path <= last:
            raise PointerError(f"{source}: files not in canonical order or duplicated at {e.path[:100]!r}")
        last = e.path
        yield e


def entries(read: Read, digest: Digest, source: str) -> list[Entry]:
    """``walk`` as a list."""
    return list(walk(read, digest, source))


def keeping(read: Read, digest: Digest) -> Read:
    """``read``, with the bytes of ``digest`` (a folder's top manifest, which the caller
    reads more than once) kept after the first read: read and checked once."""
    kept: list[bytes] = []

    def again(d: Digest) -> bytes:
        if d != digest:
            return read(d)
        if not kept:
            kept.append(read(d))
        return kept[0]

    return again


def subfolders(read: Read, digest: Digest, source: str) -> list[tuple[str, Digest]]:
    """(name, manifest digest) of each subfolder a tree node names (its pieces read
    through ``read``); none for a flat manifest, whose subfolders have none of their own."""
    out: list[tuple[str, Digest]] = []
    todo = [digest]
    for _ in range(MAX_DEPTH):
        if not todo:
            return out
        level, todo = todo, []
        for d in level:
            data = read(d)
            if not is_tree(data):
                continue
            for line in parse_node(data, source, digest.algorithm):
                if line.mode == DIR:
                    out.append((line.name, Digest(digest.algorithm, line.hex)))
                elif line.mode == PIECE:
                    todo.append(Digest(digest.algorithm, line.hex))
    raise PointerError(f"{source}: pieces deeper than {MAX_DEPTH} levels")


def file_hexes(read: Read, digest: Digest, source: str) -> Iterator[str]:
    """The hex digest of every file of a folder (one per file: a subfolder named twice
    is listed twice), in no set order: for look-ups in the cache and counts only. Each
    object is read through ``read`` (which checks it against its digest); its lines are
    split, not validated as ``walk`` does: a word that is no digest matches no object,
    and a folder that is wrong in another way is refused by the walk of the command
    that uses it. (The first status after the cache changed spent 45 % of its time
    validating every line of a 200,000-file tree here.) Bounded as a walk: depth
    ``MAX_DEPTH``, ``MAX_FILES`` files."""
    todo = [(digest.hex, 0)]
    count = 0
    while todo:
        hex_, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise PointerError(f"{source}: the tree is deeper than {MAX_DEPTH} levels")
        data = read(Digest(digest.algorithm, hex_))
        rows = data.decode("utf-8", "replace").split("\n")[1:]
        if not is_tree(data):
            words = [row.split(" ", 1)[0] for row in rows if row]
        else:
            words = []
            for row in rows:
                parts = row.split(" ", 3)
                if len(parts) < 4:
                    continue
                if parts[2] in (DIR, PIECE):
                    todo.append((parts[0], depth + 1))
                else:
                    words.append(parts[0])
        count += len(words)
        if count > MAX_FILES:
            raise PointerError(f"{source}: the tree names more than {MAX_FILES} files")
        yield from words


def children(data: bytes, algorithm: str, source: str) -> tuple[list[Digest], list[Line]]:
    """(the manifests a node names: subfolders and pieces; its file lines) of tree
    node bytes, each line checked alone; flat manifests name no other manifest."""
    if not is_tree(data):
        return [], []
    lines = parse_node(data, source, algorithm)
    subs = [Digest(algorithm, x.hex) for x in lines if x.mode in (DIR, PIECE)]
    return subs, [x for x in lines if x.mode in FILE_MODES]


def check_object(data: bytes, source: str, algorithm: str) -> None:
    """Parse one manifest object alone, flat or a tree node (what a download checks
    before the object gets a name; the walk checks what spans nodes)."""
    if is_tree(data):
        parse_node(data, source, algorithm)
    else:
        manifest.loads(data, source, algorithm)


def listed(data: bytes) -> Iterator[tuple[str, bool]]:
    """``(first word, names a manifest)`` of every line of tree node bytes, nothing
    validated (gc keeps what a node it would refuse still names; see
    ``manifest.listed_hexes``)."""
    for row in data.decode("utf-8", "replace").split("\n")[1:]:
        parts = row.split(" ", 3)
        yield parts[0], len(parts) > 2 and parts[2] in (DIR, PIECE)
