"""The pack, index and marker formats of a packed remote (dataver/packfmt.py, the marker
in dataver/packstore.py) against their normative text, docs/formats.md, "Packed remotes
(format 2)".

The test vectors are read from that page, not copied here: a change to the code that
the page does not follow (or the other way round) fails here. Packs and index files
arrive from anyone with write access to a remote, so the rule is the one
test_formats.py states for pointers: any bytes either parse or raise IntegrityError,
never another exception.
"""

from __future__ import annotations

import ast
import random
import re
import struct
import tracemalloc
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from dataver import manifest, packfmt
from dataver.digest import DEFAULT_ALGORITHM as ALGORITHM
from dataver.digest import Digest
from dataver.errors import IntegrityError, PointerError, RemoteError
from dataver.hashing import digest_bytes, digest_manifest
from dataver.packfmt import (
    CODEC_RAW,
    CODEC_ZSTD,
    ENTRY_SIZE,
    KIND_BLOB,
    KIND_CHUNK,
    KIND_MANIFEST,
    PACK_TAIL_SIZE,
    RECORD_SIZE,
    PackBuilder,
    Record,
    compress,
    decompress,
)
from dataver.packstore import Marker

DOC = Path(__file__).resolve().parent.parent / "docs" / "formats.md"


# -- the vectors, as the page gives them ---------------------------------------------------
def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Packed remotes (format 2)\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


SECTION = _section()
VECTORS = SECTION[SECTION.index("### Packed remote test vectors") :]
VECTORS = VECTORS[: VECTORS.index("\n### ", 1)]


def _dump_bytes(block: str) -> bytes:
    """The bytes of an annotated dump: per line, a decimal offset, hex groups, then an
    optional ``# comment``. Each offset must be the length of the bytes before it."""
    out = bytearray()
    for line in block.strip("\n").splitlines():
        fields = line.split("#", 1)[0].split()
        assert fields, f"empty dump line: {line!r}"
        assert int(fields[0]) == len(out), f"offset {fields[0]} does not follow the bytes before it"
        out += bytes.fromhex("".join(fields[1:]))
    return bytes(out)


def _file_vector(kind: str, suffix: str) -> tuple[str, bytes]:
    m = re.search(rf"`{kind}/([0-9a-f]{{32}})\.{suffix}` \((\d+) bytes\):\n\n```text\n(.*?)```", VECTORS, re.S)
    assert m, f"no {kind} vector in docs/formats.md"
    data = _dump_bytes(m.group(3))
    assert len(data) == int(m.group(2)), "the dump's length is not the length the page states"
    return m.group(1), data


DOC_PACK_ID, DOC_PACK = _file_vector("packs", "pack")
DOC_INDEX_ID, DOC_INDEX = _file_vector("index", "idx")
DOC_BLOB_DIGEST, DOC_MANIFEST_DIGEST = re.findall(r"`xxh3-128:([0-9a-f]{32})`", VECTORS)[:2]
DOC_MANIFEST = ast.literal_eval(re.search(r"```\n(b'dataver-manifest .*?')\n```", VECTORS).group(1))
DOC_FRAME = bytes.fromhex(re.search(r"zstd frame.*?\n\n```\n([0-9a-f]+)\n```", VECTORS, re.S).group(1))
DOC_CHECKS = [int(h, 16) for h in re.findall(r"The check is `0x([0-9a-f]{16})`", VECTORS)]
_marker = re.search(r"`dataver\.json` \((\d+) bytes\):\n\n```json\n(.*?)```", VECTORS, re.S)
DOC_MARKER = _marker.group(2).encode()
DOC_WINDOWS = [
    (int(n), key, int(lo), int(hi), int(b0), int(b1))
    for n, key, lo, hi, b0, b1 in re.findall(
        r"^\| (\d+) \| (any|`[0-9a-f]{16}`) \| (\d+) \| (\d+) \| `\[(\d+), (\d+)\)` \|$", VECTORS, re.M
    )
]
DOC_BLOB = b"hello\n"


def test_the_page_has_every_vector():
    assert len(DOC_CHECKS) == 2
    assert len(DOC_MARKER) == int(_marker.group(1))
    assert len(DOC_WINDOWS) >= 5
    assert f'`b"hello\\n"` (6 bytes, `xxh3-128:{DOC_BLOB_DIGEST}`)' in VECTORS


# -- the constants the page states ---------------------------------------------------------
def _table_row(value: str, name: str) -> bool:
    return re.search(rf"^\| {re.escape(value)} \| `?{re.escape(name)}", SECTION, re.M) is not None


def test_constants_match_the_page():
    for magic in (packfmt.PACK_MAGIC, packfmt.PACK_END, packfmt.INDEX_MAGIC):
        assert f"the bytes `{magic.hex(' ')}`" in SECTION
    assert ENTRY_SIZE == 48 and "An **entry** (48 bytes)" in SECTION
    assert RECORD_SIZE == 64 and "A **record** (64 bytes)" in SECTION
    assert "exactly 24 + 64n bytes" in SECTION and packfmt.INDEX_OVERHEAD == 24
    assert PACK_TAIL_SIZE == 20 and "read its last 20 bytes" in SECTION
    assert packfmt.DIGEST_FIELD == 32
    assert (KIND_BLOB, KIND_MANIFEST, KIND_CHUNK) == (0, 1, 2)
    assert _table_row("0", "blob") and _table_row("1", "manifest") and _table_row("2", "chunk")
    assert (CODEC_RAW, CODEC_ZSTD) == (0, 1)
    assert _table_row("0", "raw") and _table_row("1", "zstd")
    for name, number in packfmt.ALGORITHM_IDS.items():
        assert _table_row(str(number), name)
    # the entry's fields at the offsets the page's table gives
    raw = packfmt._ENTRY.pack(b"\x11" * 32, 3, 4, 5, 0x07060504, 0x0B0A0908, 0x0F0E0D0C)
    assert raw[32:36] == bytes([3, 4, 5, 0]) and raw[36:] == bytes(range(4, 16))
    for row in ("| 32 | 1 | kind |", "| 33 | 1 | codec |", "| 34 | 1 | algorithm |", "| 36 | 4 | offset"):
        assert row in SECTION


def test_marker_constants_match_the_page():
    from dataver import packstore

    assert packstore.MARKER == "dataver.json" and packstore.FORMAT == "dataver-remote"
    assert packstore.VERSION == 2 and packstore.PACK_SIZE == 16777216
    assert "default 16777216 (16 MiB)" in SECTION
    assert packstore.LOCK_STALE == 30 * 60 and "more than 30 minutes" in SECTION
    assert packstore.LOCK_REFRESH == 5 * 60 and "every\n   5 minutes" in SECTION
    assert "A gc removes every pack that no index names" in SECTION
    assert packstore.REPACK_GARBAGE == 0.2 and "more than 20% of the\n   objects' stored bytes" in SECTION


# -- the vectors, reproduced -----------------------------------------------------------------
def _vector_objects() -> tuple[Digest, Digest]:
    return digest_bytes(DOC_BLOB), digest_manifest(DOC_MANIFEST)


def test_vector_objects_are_what_the_page_says():
    blob, man = _vector_objects()
    assert blob.hex == DOC_BLOB_DIGEST and man.hex == DOC_MANIFEST_DIGEST
    assert manifest.dumps([manifest.Entry("hello.txt", blob, 6, False)]) == DOC_MANIFEST
    assert len(DOC_MANIFEST) == 75 and len(DOC_FRAME) == 84
    assert decompress(DOC_FRAME, len(DOC_MANIFEST), "vector") == DOC_MANIFEST


def test_zstd_frame_is_what_dataver_writes():
    """What this zstd writes for the vector's manifest (the page allows another frame)."""
    assert compress(DOC_MANIFEST) == DOC_FRAME


def _vector_pack() -> tuple[str, bytes, list[packfmt.Entry]]:
    blob, man = _vector_objects()
    b = PackBuilder()
    b.add(blob, KIND_BLOB, DOC_BLOB, len(DOC_BLOB))
    b.add(man, KIND_MANIFEST, DOC_FRAME, len(DOC_MANIFEST), CODEC_ZSTD)
    return b.finish()


def test_pack_vector_byte_for_byte():
    pack_id, data, entries = _vector_pack()
    assert data == DOC_PACK
    assert pack_id == DOC_PACK_ID == packfmt.object_id(DOC_PACK) == xxhash.xxh3_128_hexdigest(DOC_PACK)
    assert struct.unpack("<Q", DOC_PACK[-16:-8])[0] == DOC_CHECKS[0]
    assert DOC_CHECKS[0] == xxhash.xxh3_64_intdigest(DOC_PACK[98:-16])
    assert packfmt.parse_trailer(DOC_PACK, "vector", len(DOC_PACK)) == entries
    blob, man = entries
    assert DOC_PACK[blob.offset : blob.offset + blob.stored] == DOC_BLOB
    frame = DOC_PACK[man.offset : man.offset + man.stored]
    assert decompress(frame, man.size, "vector") == DOC_MANIFEST


def test_pack_vector_trailer_from_its_tail_alone():
    """A reader lists a pack from its last bytes: 20, then the 48n + 20 that end it."""
    tlen = packfmt.trailer_length(DOC_PACK[-PACK_TAIL_SIZE:], "vector")
    assert tlen == 2 * ENTRY_SIZE
    tail = DOC_PACK[-(tlen + PACK_TAIL_SIZE) :]
    assert packfmt.parse_trailer(tail, "vector", len(DOC_PACK)) == packfmt.parse_trailer(DOC_PACK, "vector")


def test_index_vector_byte_for_byte():
    _, _, entries = _vector_pack()
    records = [Record(e, DOC_PACK_ID) for e in entries]
    index_id, data = packfmt.encode_index(records)
    assert data == DOC_INDEX and index_id == DOC_INDEX_ID == packfmt.object_id(DOC_INDEX)
    assert packfmt.encode_index(reversed(records)) == (index_id, data)  # sorted by the writer
    assert struct.unpack("<Q", DOC_INDEX[-8:])[0] == DOC_CHECKS[1] == xxhash.xxh3_64_intdigest(DOC_INDEX[:-8])
    assert packfmt.parse_index(DOC_INDEX, "vector") == records
    assert packfmt.index_count(len(DOC_INDEX)) == 2


def test_marker_vector():
    assert Marker().to_bytes() == DOC_MARKER
    assert Marker.parse(DOC_MARKER, "vector") == Marker()


def test_lookup_window_vectors():
    for n, key, lo, hi, b0, b1 in DOC_WINDOWS:
        k = bytes(34) if key == "any" else bytes.fromhex(key.strip("`")).ljust(34, b"\0")
        assert packfmt.lookup_window(n, k) == (b0, b1), (n, key)
        assert (b0, b1) == (8 + 64 * lo, 8 + 64 * hi)


def test_lookup_window_formula_is_the_pages():
    m = re.search(r"guess  = floor\(n × K / 2\^64\)\nspread = floor\(4 × sqrt\(n\)\) \+ 16", SECTION)
    assert m, "the window formula on the page changed: update lookup_window or this test"


# -- the marker, read ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"format": "dataver-remote"}',
        b'{"format": "other", "version": 2, "layout": "packed"}',
        b'{"format": "dataver-remote", "version": "2", "layout": "packed"}',
        b'{"format": "dataver-remote", "version": 2, "layout": "loose"}',
        b'{"format": "dataver-remote", "version": 2, "layout": "packed", "pack_size": 1}',
        b'{"format": "dataver-remote", "version": 2, "layout": "packed", "pack_size": 4294967296}',
        b'{"format": "dataver-remote", "version": 2, "layout": "packed", "pack_size": "16M"}',
    ],
)
def test_marker_refused(doc):
    with pytest.raises(RemoteError) as e:
        Marker.parse(doc, "remote 'r'")
    assert e.value.exit_code == 9 and "dataver.json" in str(e.value)


def test_marker_from_a_newer_dataver_says_upgrade():
    with pytest.raises(RemoteError, match="newer dataver") as e:
        Marker.parse(b'{"format": "dataver-remote", "version": 3, "layout": "chunked"}', "remote 'r'")
    assert "upgrade" in (e.value.hint or "")


def test_marker_unknown_fields_are_ignored():
    doc = b'{"format": "dataver-remote", "version": 2, "layout": "packed", "pack_size": 65536, "x": [1]}'
    assert Marker.parse(doc, "r") == Marker(pack_size=65536)


# -- round trips -------------------------------------------------------------------------------
hex32 = st.binary(min_size=16, max_size=16).map(lambda b: Digest(ALGORITHM, b.hex()))
objects = st.lists(
    st.tuples(hex32, st.sampled_from([KIND_BLOB, KIND_MANIFEST, KIND_CHUNK]), st.binary(max_size=300)),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(objects, st.booleans())
def test_pack_and_index_round_trip(objs, zstd):
    b = PackBuilder()
    for digest, kind, data in objs:
        stored, codec = (compress(data), CODEC_ZSTD) if zstd and kind == KIND_MANIFEST else (data, CODEC_RAW)
        b.add(digest, kind, stored, len(data), codec)
    pack_id, pack, entries = b.finish()
    assert pack.startswith(packfmt.PACK_MAGIC) and pack.endswith(packfmt.PACK_END)
    assert len(pack) == 8 + sum(e.stored for e in entries) + ENTRY_SIZE * len(entries) + PACK_TAIL_SIZE
    assert packfmt.parse_trailer(pack, "p", len(pack)) == entries
    for (_, _, data), e in zip(objs, entries, strict=True):
        stored = pack[e.offset : e.offset + e.stored]
        assert (decompress(stored, e.size, "p") if e.codec == CODEC_ZSTD else stored) == data
    records = [Record(e, pack_id) for e in entries]
    _, index = packfmt.encode_index(records)
    back = packfmt.parse_index(index, "i")
    first = {}
    for r in records:
        first.setdefault(r.entry.key(), r)  # one record per key: the first given
    assert back == sorted(first.values(), key=lambda r: r.entry.key())
    assert packfmt.encode_index(back)[1] == index


def test_index_keeps_a_blob_and_a_manifest_of_one_digest_apart():
    d = digest_bytes(b"x")
    b = PackBuilder()
    b.add(d, KIND_MANIFEST, b"m", 1)
    b.add(d, KIND_BLOB, b"x", 1)
    pack_id, _, entries = b.finish()
    back = packfmt.parse_index(packfmt.encode_index(Record(e, pack_id) for e in entries)[1], "i")
    assert [r.entry.kind for r in back] == [KIND_BLOB, KIND_MANIFEST]


def test_empty_pack_and_index():
    pack_id, pack, entries = PackBuilder().finish()
    assert entries == [] and packfmt.parse_trailer(pack, "p", len(pack)) == []
    assert len(pack) == 8 + PACK_TAIL_SIZE
    _, index = packfmt.encode_index([])
    assert len(index) == 24 and packfmt.parse_index(index, "i") == []


# -- damage: IntegrityError, never another exception ----------------------------------------
def _reseal_pack(data: bytes) -> bytes:
    """Recompute a pack's check, so damage to an entry gets past it (a hostile writer)."""
    n = struct.unpack("<I", data[-20:-16])[0]
    trailer = data[len(data) - PACK_TAIL_SIZE - n * ENTRY_SIZE : -16]
    return data[:-16] + struct.pack("<Q", xxhash.xxh3_64_intdigest(trailer)) + data[-8:]


def _reseal_index(data: bytes) -> bytes:
    return data[:-8] + struct.pack("<Q", xxhash.xxh3_64_intdigest(data[:-8]))


def _set(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


E0, E1 = 98, 146  # the vector pack's entries
R0, R1 = 8, 72  # the vector index's records


def _expect_damaged_pack(data: bytes, size: int | None = None) -> IntegrityError:
    with pytest.raises(IntegrityError) as e:
        packfmt.parse_trailer(data, "pack p", len(data) if size is None else size)
    assert e.value.exit_code == 8 and "pack p" in str(e.value)
    return e.value


PACK_DAMAGE = {
    "empty": b"",
    "one byte": DOC_PACK[-1:],
    "tail only, 19 bytes": DOC_PACK[-19:],
    "cut in the trailer": DOC_PACK[-30:],
    "cut at the end": DOC_PACK[:-1],
    "cut to the header": DOC_PACK[:8],
    "a byte more at the end": DOC_PACK + b"\0",
    "wrong end magic": _set(DOC_PACK, len(DOC_PACK) - 1, b"\x02"),
    "flipped byte in an entry's digest": _set(DOC_PACK, E0 + 3, bytes([DOC_PACK[E0 + 3] ^ 1])),
    "flipped byte in an entry's offset": _set(DOC_PACK, E1 + 36, b"\x0f"),
    "flipped byte in the count": _set(DOC_PACK, len(DOC_PACK) - 20, b"\x03"),
    "bad checksum": _set(DOC_PACK, len(DOC_PACK) - 16, b"\0" * 8),
    "huge count": _reseal_pack(_set(DOC_PACK, len(DOC_PACK) - 20, b"\xff\xff\xff\xff")[: len(DOC_PACK)]),
    "unknown kind": _reseal_pack(_set(DOC_PACK, E0 + 32, b"\x04")),
    "unknown codec": _reseal_pack(_set(DOC_PACK, E0 + 33, b"\x02")),
    "unknown algorithm 0": _reseal_pack(_set(DOC_PACK, E1 + 34, b"\x00")),
    "unknown algorithm 255": _reseal_pack(_set(DOC_PACK, E1 + 34, b"\xff")),
    "non-zero digest padding": _reseal_pack(_set(DOC_PACK, E0 + 31, b"\x01")),
    "offset inside the header": _reseal_pack(_set(DOC_PACK, E0 + 36, struct.pack("<I", 7))),
    "offset past the body": _reseal_pack(_set(DOC_PACK, E1 + 36, struct.pack("<I", 15))),
    "stored past the body": _reseal_pack(_set(DOC_PACK, E0 + 40, struct.pack("<I", 91))),
    "offset near 2^32": _reseal_pack(_set(DOC_PACK, E0 + 36, b"\xff\xff\xff\xff")),
}


@pytest.mark.parametrize("name", list(PACK_DAMAGE))
def test_damaged_pack_trailer(name):
    _expect_damaged_pack(PACK_DAMAGE[name])


def test_pack_offsets_are_checked_against_the_real_size():
    """Given only the tail, a reader checks the entries against the pack's size."""
    tail = DOC_PACK[-(2 * ENTRY_SIZE + PACK_TAIL_SIZE) :]
    _expect_damaged_pack(tail, size=len(DOC_PACK) - 1)
    assert packfmt.parse_trailer(tail, "p", len(DOC_PACK))


def test_pack_reserved_byte_is_ignored():
    data = _reseal_pack(_set(DOC_PACK, E0 + 35, b"\x07"))
    assert packfmt.parse_trailer(data, "p", len(data)) == packfmt.parse_trailer(DOC_PACK, "p", len(DOC_PACK))


def _expect_damaged_index(data: bytes) -> IntegrityError:
    with pytest.raises(IntegrityError) as e:
        packfmt.parse_index(data, "index i")
    assert e.value.exit_code == 8 and "index i" in str(e.value)
    return e.value


def _swap_records(data: bytes) -> bytes:
    return data[:R0] + data[R1 : R1 + 64] + data[R0:R1] + data[R1 + 64 :]


INDEX_DAMAGE = {
    "empty": b"",
    "magic only": DOC_INDEX[:8],
    "cut by one": DOC_INDEX[:-1],
    "cut by a record": DOC_INDEX[:8] + DOC_INDEX[72:],
    "a byte more": DOC_INDEX + b"\0",
    "a record more, resealed": _reseal_index(DOC_INDEX[:136] + DOC_INDEX[72:136] + DOC_INDEX[136:]),
    "wrong magic": _set(DOC_INDEX, 0, b"DVPACK\x00\x01"),
    "wrong magic, resealed": _reseal_index(_set(DOC_INDEX, 7, b"\x02")),
    "flipped byte in a record": _set(DOC_INDEX, R1 + 5, bytes([DOC_INDEX[R1 + 5] ^ 0x80])),
    "flipped byte in a pack id": _set(DOC_INDEX, R0 + 50, bytes([DOC_INDEX[R0 + 50] ^ 1])),
    "bad checksum": _set(DOC_INDEX, len(DOC_INDEX) - 1, bytes([DOC_INDEX[-1] ^ 1])),
    "count does not match, resealed": _reseal_index(_set(DOC_INDEX, 136, b"\x03")),
    "count zero, resealed": _reseal_index(_set(DOC_INDEX, 136, b"\x00")),
    "unsorted, resealed": _reseal_index(_swap_records(DOC_INDEX)),
    "duplicate key, resealed": _reseal_index(DOC_INDEX[:R1] + DOC_INDEX[R0:R1] + DOC_INDEX[136:]),
    "unknown kind, resealed": _reseal_index(_set(DOC_INDEX, R1 + 32, b"\x09")),
    "unknown codec, resealed": _reseal_index(_set(DOC_INDEX, R1 + 33, b"\x05")),
    "unknown algorithm, resealed": _reseal_index(_set(DOC_INDEX, R0 + 34, b"\x07")),
    "non-zero digest padding, resealed": _reseal_index(_set(DOC_INDEX, R0 + 20, b"\x01")),
}


@pytest.mark.parametrize("name", list(INDEX_DAMAGE))
def test_damaged_index(name):
    _expect_damaged_index(INDEX_DAMAGE[name])


def test_index_reserved_fields_are_ignored():
    for at in (R0 + 35, 140):
        data = _reseal_index(_set(DOC_INDEX, at, b"\x01"))
        assert packfmt.parse_index(data, "i") == packfmt.parse_index(DOC_INDEX, "i")


def _parse_or_integrity_error(which: str, data: bytes) -> None:
    try:
        if which == "pack":
            entries = packfmt.parse_trailer(data, "p", len(data))
            body_end = len(data) - PACK_TAIL_SIZE - ENTRY_SIZE * len(entries)
            assert all(8 <= e.offset and e.offset + e.stored <= body_end for e in entries)
        else:
            records = packfmt.parse_index(data, "i")
            keys = [r.entry.key() for r in records]
            assert keys == sorted(set(keys))
    except IntegrityError:
        pass
    except PointerError as e:  # a digest this build cannot name
        assert "blake3" in str(e)


@settings(derandomize=True, max_examples=50, deadline=None)
@given(
    st.sampled_from(["pack", "index"]),
    st.lists(
        st.tuples(st.sampled_from(["set", "cut", "insert"]), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_random_damage_is_an_integrity_error(which, edits, reseal):
    data = DOC_PACK if which == "pack" else DOC_INDEX
    for op, where, junk in edits:
        at = where % (len(data) + 1)
        if op == "set":
            data = data[:at] + junk + data[at + len(junk) :]
        elif op == "cut":
            data = data[:at]
        else:
            data = data[:at] + junk + data[at:]
    if reseal and which == "pack" and len(data) >= PACK_TAIL_SIZE:
        n = struct.unpack("<I", data[-20:-16])[0]
        if n * ENTRY_SIZE + PACK_TAIL_SIZE <= len(data):
            data = _reseal_pack(data)
    elif reseal and which == "index" and len(data) >= 8:
        data = _reseal_index(data)
    _parse_or_integrity_error(which, data)


def test_parse_records_checks_each_record():
    """A reader of a window (parse_records) gets the same checks as a whole-file reader."""
    body = DOC_INDEX[8:136]
    assert [r.pack for r in packfmt.parse_records(body, "w")] == [DOC_PACK_ID] * 2
    with pytest.raises(IntegrityError):
        packfmt.parse_records(_set(body, 64 + 32, b"\x04"), "w")


# -- the lookup window ------------------------------------------------------------------------
def test_lookup_window_holds_the_record_for_uniform_keys():
    rng = random.Random(20_000)
    refs = {(Digest(ALGORITHM, rng.randbytes(16).hex()), rng.choice([KIND_BLOB, KIND_MANIFEST])) for _ in range(20_000)}
    keys = sorted(packfmt.entry_key(d, k) for d, k in refs)
    n = len(keys)
    assert n == 20_000
    for rank, key in enumerate(keys):
        start, end = packfmt.lookup_window(n, key)
        assert start <= 8 + 64 * rank < end, f"record {rank} outside its window"
    # ...and reading that window of a real index file finds it
    entries = [packfmt.Entry(d, k, CODEC_RAW, 8, 1, 1) for d, k in refs]
    _, index = packfmt.encode_index(Record(e, "00" * 16) for e in entries)
    assert packfmt.index_count(len(index)) == n
    for e in rng.sample(entries, 200):
        start, end = packfmt.lookup_window(n, e.key())
        found = packfmt.find_in(packfmt.parse_records(index[start:end], "w"), e.key())
        assert found is not None and found.entry == e


def test_lookup_window_stays_inside_the_records():
    for n in (0, 1, 2, 3, 17, 1000):
        for key in (bytes(34), b"\xff" * 34, b"\x80" + bytes(33)):
            start, end = packfmt.lookup_window(n, key)
            assert 8 <= start <= end <= 8 + 64 * n
            assert (start - 8) % 64 == 0 and (end - 8) % 64 == 0


# -- bugs found while writing the page, fixed ---------------------------------------------
def test_an_unknown_algorithm_number_is_integrity_error():
    _expect_damaged_pack(_reseal_pack(_set(DOC_PACK, E0 + 34, b"\x03")))


def test_raw_entry_stored_must_equal_size():
    _expect_damaged_pack(_reseal_pack(_set(DOC_PACK, E0 + 44, struct.pack("<I", 50))))


def test_zstd_frame_claiming_more_than_size_is_refused_without_inflating_it():
    import zstandard

    claimed = 64 * 1024 * 1024
    c = zstandard.ZstdCompressor(level=3).compressobj(size=claimed)
    zeros = bytes(1 << 20)
    frame = b"".join(c.compress(zeros) for _ in range(claimed >> 20)) + c.flush()
    assert len(frame) < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError):
            decompress(frame, 75, "m")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, f"{peak} bytes allocated to refuse a 75-byte object"


def test_gc_keeps_a_small_pack_whose_objects_are_all_kept(tmp_path):
    """A pack gc rewrites to the same bytes has the same name: gc must not delete it
    (found while writing docs/formats.md: it did, and the index still named it)."""
    from dataver.remotes import LocalRemoteStore
    from dataver.store import ObjRef

    remote = LocalRemoteStore("r", str(tmp_path / "remote"), {})
    remote.prepare_write()
    assert remote.marker is not None

    def push(blobs: list[bytes]) -> list[ObjRef]:
        refs = [ObjRef(digest_bytes(x)) for x in blobs]
        with remote.writer() as batch:
            for ref, x in zip(refs, blobs, strict=True):
                batch.put_bytes(ref, x)
        return refs

    old = push([b"old-%d" % i for i in range(3)])
    kept = push([b"keep me\n"])
    for doomed in (old, []):  # a gc with nothing to delete must not lose it either
        remote.delete(doomed)
        fresh = LocalRemoteStore("r", str(tmp_path / "remote"), {})
        assert fresh.missing(kept) == []
        assert fresh.read(kept[0]) == b"keep me\n"
