"""A remote seen from outside dataver, object by object, whatever its layout.

Tests corrupt, replace and delete objects on a remote as a stranger with write access
would. On a packed remote (dataver/packstore.py) an object lives inside a pack and is
found through index files, so these helpers read the packs and index files themselves
(with dataver's format module) and, to damage one object, write a new pack and a new
index file that point at the damaged bytes: exactly what a hostile writer can do.

A class using ``ObjectView`` provides raw file access: ``raw_keys``, ``raw_read``,
``raw_write``, ``raw_delete`` (keys relative to the remote's root).
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from dataver import packfmt
from dataver.digest import get_algorithm
from dataver.packfmt import decompress

OBJECT_KEY = re.compile(r"(xxh3-128|blake3)/([0-9a-f]{2})/([0-9a-f]+?)(\.manifest)?")
FORMAT_FILE = re.compile(r"dataver\.json|packs/[0-9a-f]{32}\.pack|index/[0-9a-f]{32}\.idx")


def key_for(record: packfmt.Record) -> str | None:
    """The object key a record stores: its own, or (a chunk map) its file's; None for a
    chunk, which is part of a file, not an object."""
    e = record.entry
    if e.kind == packfmt.KIND_CHUNK:
        return None
    return e.digest.relpath() + (".manifest" if e.kind == packfmt.KIND_MANIFEST else "")


def unpack(raw: bytes, e: packfmt.Entry, where: str) -> bytes:
    stored = raw[e.offset : e.offset + e.stored]
    return decompress(stored, e.size, where) if e.codec == packfmt.CODEC_ZSTD else stored


def rebuild(chunk_map: bytes, chunks: dict[str, bytes], where: str) -> bytes:
    """A chunked file from its map and ``chunks`` (hex -> bytes): every chunk named must be there."""
    _, items = packfmt.parse_map(chunk_map, where)
    lacking = [d for d, _ in items if d.hex not in chunks]
    assert not lacking, f"{where}: its map is on the remote before {len(lacking)} of its chunks"
    return b"".join(chunks[d.hex] for d, _ in items)


class ObjectView:
    def raw_keys(self) -> list[str]:
        raise NotImplementedError

    def raw_read(self, key: str) -> bytes:
        raise NotImplementedError

    def raw_write(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def raw_delete(self, key: str) -> None:
        raise NotImplementedError

    # -- packed objects -------------------------------------------------------------
    def index_files(self) -> list[str]:
        return [k for k in self.raw_keys() if k.startswith("index/") and k.endswith(".idx")]

    def packed(self) -> dict[str, packfmt.Record]:
        out: dict[str, packfmt.Record] = {}
        for k in sorted(self.index_files()):
            for r in packfmt.parse_index(self.raw_read(k), k):
                key = key_for(r)
                if key is not None:
                    out.setdefault(key, r)
        return out

    def chunk_records(self) -> dict[str, packfmt.Record]:
        out: dict[str, packfmt.Record] = {}
        for k in sorted(self.index_files()):
            for r in packfmt.parse_index(self.raw_read(k), k):
                if r.entry.kind == packfmt.KIND_CHUNK:
                    out.setdefault(r.entry.digest.hex, r)
        return out

    def _rewrite_index(self, records: list[packfmt.Record]) -> None:
        old = self.index_files()
        if records:
            index_id, data = packfmt.encode_index(records)
            self.raw_write(f"index/{index_id}.idx", data)
        for k in old:
            if not records or k != f"index/{packfmt.encode_index(records)[0]}.idx":
                self.raw_delete(k)

    # -- objects, whatever the layout -----------------------------------------------------
    def keys(self) -> list[str]:
        """Every object's key (``xxh3-128/ab/cd...[.manifest]``), loose or packed, and
        every other file that is not part of the packed layout (a temporary, a lock)."""
        raw = [k for k in self.raw_keys() if not FORMAT_FILE.fullmatch(k)]
        return sorted(set(raw) | set(self.packed()))

    def read(self, key: str) -> bytes:
        if key in self.raw_keys():
            return self.raw_read(key)
        r = self.packed()[key]
        data = unpack(self.raw_read(f"packs/{r.pack}.pack"), r.entry, key)
        if r.entry.kind != packfmt.KIND_MAP:
            return data
        chunks = {h: unpack(self.raw_read(f"packs/{c.pack}.pack"), c.entry, h) for h, c in self.chunk_records().items()}
        return rebuild(data, chunks, key)

    def write(self, key: str, data: bytes) -> None:
        """Put ``data`` (any bytes) under the object's name: a loose object is
        overwritten; a packed one is pointed at a new pack holding ``data``."""
        if key in self.raw_keys():
            self.raw_write(key, data)
            return
        records = self.packed()
        old = records.pop(key)
        builder = packfmt.PackBuilder()  # a chunked object becomes a whole one: these bytes
        kind = packfmt.KIND_BLOB if old.entry.kind == packfmt.KIND_MAP else old.entry.kind
        builder.add(old.entry.digest, kind, data, len(data))
        pack_id, pack, entries = builder.finish()
        self.raw_write(f"packs/{pack_id}.pack", pack)
        chunks = list(self.chunk_records().values())  # the parts of chunked objects stay
        self._rewrite_index([*records.values(), *chunks, packfmt.Record(entries[0], pack_id)])

    def delete(self, key: str) -> None:
        if key in self.raw_keys():
            self.raw_delete(key)
            return
        records = self.packed()
        records.pop(key)
        self._rewrite_index([*records.values(), *self.chunk_records().values()])


class FolderView(ObjectView):
    """A remote (or cache) in a local folder."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def raw_keys(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if not p.is_dir())

    def raw_read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def raw_write(self, key: str, data: bytes) -> None:
        path = self.root / key
        if path.exists():
            path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def raw_delete(self, key: str) -> None:
        (self.root / key).unlink()


def objects_in(root: Path) -> set[tuple[str, bool]]:
    """(digest hex, is_manifest) of every object in a folder remote or a cache, loose or packed."""
    out = set()
    for key in FolderView(root).keys():
        m = OBJECT_KEY.fullmatch(key)
        if m and m.group(1) == "xxh3-128":
            out.add((m.group(2) + m.group(3), bool(m.group(4))))
    return out


def packed_objects(root: Path) -> dict[str, bytes]:
    """Every object a packed folder remote's index files name, ``key -> bytes``, after
    checking the write-ordering invariants a reader relies on: each index file is whole
    and named by its hash; each pack an index names exists, is whole (its bytes hash to
    its name) and lists the object in its trailer as the index does."""
    from dataver import packfmt

    out: dict[str, bytes] = {}
    chunks: dict[str, bytes] = {}
    maps: dict[str, bytes] = {}
    packs: dict[str, tuple[bytes, dict]] = {}
    index_dir = root / "index"
    for path in sorted(index_dir.iterdir()) if index_dir.is_dir() else []:
        data = path.read_bytes()
        assert path.name == f"{packfmt.object_id(data)}.idx", f"{path} is not whole (its bytes do not hash to its name)"
        for r in packfmt.parse_index(data, str(path)):
            if r.pack not in packs:
                pack_path = root / "packs" / f"{r.pack}.pack"
                assert pack_path.exists(), f"{path} names {pack_path}, which is not there"
                raw = pack_path.read_bytes()
                assert packfmt.object_id(raw) == r.pack, f"{pack_path} is not whole, yet an index names it"
                packs[r.pack] = (raw, {e.key(): e for e in packfmt.parse_trailer(raw, str(pack_path), len(raw))})
            raw, entries = packs[r.pack]
            assert entries.get(r.entry.key()) == r.entry, f"{path}: {r.pack} does not hold {r.entry.digest} as named"
            e = r.entry
            body = unpack(raw, e, f"{e.digest} in {r.pack}")
            if e.kind == packfmt.KIND_CHUNK:
                assert get_algorithm(e.digest.algorithm).hash_small(body) == e.digest.hex, f"chunk {e.digest} is bad"
                chunks[e.digest.hex] = body
            elif e.kind == packfmt.KIND_MAP:
                maps[key_for(r)] = body
            else:
                out[key_for(r)] = body
    for key, chunk_map in maps.items():
        out.setdefault(key, rebuild(chunk_map, chunks, key))
    return out


def orphan_packs(root: Path) -> list[str]:
    """Packs in ``packs/`` that no index file names."""
    from dataver import packfmt

    named = set()
    for path in (root / "index").glob("*.idx"):
        named |= {r.pack for r in packfmt.parse_index(path.read_bytes(), str(path))}
    return sorted(p.name for p in (root / "packs").glob("*.pack") if p.name[:-5] not in named)
