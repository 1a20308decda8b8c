"""The chunker (dataver/chunker.py) against its normative text, docs/formats.md,
"Content-defined chunking".

The test vectors are read from that page, not copied here: a change to the parameters or
to the cutting that the page does not follow (or the other way round) fails here. The
page's description of the cut-point search is also run as written (``reference_cuts``,
byte by byte, in pure Python) over the same data, so the prose and pyfastcdc agree.
"""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import pytest
import xxhash

from dataver import chunker
from dataver.chunker import MAX, MIN, cuts

DOC = Path(__file__).resolve().parent.parent / "docs" / "formats.md"


def _section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Content-defined chunking\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


SECTION = _section()


def _constant(name: str) -> int:
    m = re.search(rf"^\| `{name}` \| (\d+)", SECTION, re.M)
    assert m, f"docs/formats.md states no {name}"
    return int(m.group(1))


def _hex_constant(name: str) -> int:
    m = re.search(rf"^\| `{re.escape(name)}` \| `0x([0-9a-f]{{16}})`", SECTION, re.M)
    assert m, f"docs/formats.md states no {name}"
    return int(m.group(1), 16)


# -- the page's data generators, as it defines them -----------------------------------------
def stream(seed: int, n: int) -> bytes:
    """Block ``i`` (from 0) is XXH3-64 of ``u64le(i)`` under ``seed``, as 8 canonical
    (big-endian) bytes; the stream is the blocks in order, cut to ``n`` bytes."""
    blocks = (n + 7) // 8
    return b"".join(xxhash.xxh3_64_digest(struct.pack("<Q", i), seed=seed) for i in range(blocks))[:n]


def zeros(n: int) -> bytes:
    return bytes(n)


CSV_CATEGORIES = ("food", "rent", "travel", "salary", "fees", "gifts", "health", "other")


def csv(rows: int) -> bytes:
    """Row ``i`` (from 0), with ``h`` = XXH3-64 of ``u64le(i)`` under seed 0 as an integer."""
    out = []
    for i in range(rows):
        h = xxhash.xxh3_64_intdigest(struct.pack("<Q", i), seed=0)
        out.append(
            f"{i},2026-{1 + h % 12:02d}-{1 + (h >> 4) % 28:02d},user{(h >> 12) % 10000:04d},"
            f"{(h >> 26) % 100000}.{(h >> 43) % 100:02d},{CSV_CATEGORIES[(h >> 50) % 8]}\n"
        )
    return "".join(out).encode()


GENERATORS = {"stream": stream, "zeros": zeros, "csv": csv}


def generate(expr: str) -> bytes:
    """``name(arg, ...)`` with integer arguments, or the constants MIN and MAX in sums and products."""
    m = re.fullmatch(r"(\w+)\((.*)\)", expr)
    assert m and m.group(1) in GENERATORS, f"unknown data {expr!r}"
    names = {"MIN": MIN, "MAX": MAX}
    args = []
    for arg in m.group(2).split(","):
        assert re.fullmatch(r"[\w\s*+-]+", arg), arg
        args.append(eval(arg, {"__builtins__": {}}, names))  # noqa: S307 - digits, MIN/MAX, + - *
    return GENERATORS[m.group(1)](*args)


def lengths_digest(boundaries: list[tuple[int, int]]) -> str:
    """XXH3-64 (seed 0) of the lengths, each as u32le, in order; hex of the canonical bytes."""
    return xxhash.xxh3_64_hexdigest(struct.pack(f"<{len(boundaries)}I", *(n for _, n in boundaries)))


# -- the vectors, as the page gives them -----------------------------------------------------
_PAIR = re.compile(r"\((\d+), (\d+)\)")
VECTORS = [
    {
        "case": case,
        "data": data,
        "size": int(size),
        "count": int(count),
        "first": [(int(a), int(b)) for a, b in _PAIR.findall(first)],
        "last": [(int(a), int(b)) for a, b in _PAIR.findall(last)],
        "digest": digest,
    }
    for case, data, size, count, first, last, digest in re.findall(
        r"^\| `([\w-]+)` \| `([^`]+)` \| (\d+) \| (\d+) \| ([^|]*) \| ([^|]*) \| `([0-9a-f]{16})` \|$",
        SECTION,
        re.M,
    )
]


def test_the_page_has_every_vector():
    cases = {v["case"] for v in VECTORS}
    assert {"empty", "below-min", "min", "min-plus-1", "random-1m", "zeros", "csv"} <= cases
    assert len(cases) == len(VECTORS)


def test_constants_match_the_page():
    assert (_constant("MIN"), _constant("AVG_PARAM"), _constant("MAX")) == (MIN, chunker.AVG_PARAM, MAX)
    assert _constant("NORMAL") == chunker.AVG_PARAM
    assert chunker.NORMALIZATION == 1 and chunker.SEED == 0
    from pyfastcdc.py.constants import GEAR, MASKS
    from pyfastcdc.utils import logarithm2

    bits = logarithm2(chunker.AVG_PARAM)
    assert _constant("BITS") == bits
    assert _hex_constant("MASK_S") == MASKS[bits + 1] and bin(MASKS[bits + 1]).count("1") == bits + 1
    assert _hex_constant("MASK_L") == MASKS[bits - 1] and bin(MASKS[bits - 1]).count("1") == bits - 1
    assert _hex_constant("GEAR[0]") == GEAR[0] and _hex_constant("GEAR[255]") == GEAR[255]
    table = xxhash.xxh3_64_hexdigest(struct.pack("<256Q", *GEAR))
    assert f"XXH3-64 of the 256 values as u64le, seed 0, is `{table}`" in SECTION


@pytest.mark.parametrize("vector", VECTORS, ids=[v["case"] for v in VECTORS])
def test_vector(vector):
    data = generate(vector["data"])
    assert len(data) == vector["size"]
    got = list(cuts(data))
    assert len(got) == vector["count"]
    if vector["count"] <= 7:  # the page lists them all
        assert got == vector["first"] and vector["last"] == []
    else:
        assert got[:5] == vector["first"] and got[-2:] == vector["last"]
    assert lengths_digest(got) == vector["digest"]


# -- the page's description, run as written ----------------------------------------------------
def reference_cuts(data: bytes) -> list[tuple[int, int]]:
    """docs/formats.md's cut-point search as the page words it, byte by byte (slow)."""
    from pyfastcdc.py.constants import GEAR

    mask_s, mask_l, normal = _hex_constant("MASK_S"), _hex_constant("MASK_L"), _constant("NORMAL")
    out, start = [], 0
    while start < len(data):
        r = len(data) - start
        length = r
        if r > MIN:
            r = min(r, MAX)
            length = r
            mid, end = min(normal, r) // 2 * 2, r // 2 * 2
            h = 0
            for i in range(MIN, end):
                h = ((h << 1) + GEAR[data[start + i]]) & 0xFFFFFFFFFFFFFFFF
                if h & (mask_s if i < mid else mask_l) == 0:
                    length = i
                    break
        out.append((start, length))
        start += length
    return out


@pytest.mark.parametrize("case", ["min-plus-1", "odd-tail", "csv"])
def test_description_reproduces_the_vectors(case):
    vector = next(v for v in VECTORS if v["case"] == case)
    data = generate(vector["data"])
    assert reference_cuts(data) == list(cuts(data))


# -- properties --------------------------------------------------------------------------------
def _check_cover(data, boundaries):
    pos = 0
    for offset, length in boundaries:
        assert offset == pos and length > 0
        pos += length
    assert pos == len(data)
    for _, length in boundaries[:-1]:
        assert MIN <= length <= MAX
    if boundaries:
        assert boundaries[-1][1] <= MAX


@pytest.mark.parametrize("size", [0, 1, MIN - 1, MIN, MIN + 1, MAX, MAX + 1, 3 * MAX + 12345])
def test_boundaries_cover_the_data(size):
    data = random.Random(size).randbytes(size)
    _check_cover(data, list(cuts(data)))
    _check_cover(bytes(size), list(cuts(bytes(size))))


def test_an_insert_changes_only_the_chunks_beside_it():
    data = random.Random(1).randbytes(4 << 20)
    mid = len(data) // 2
    edited = data[:mid] + random.Random(2).randbytes(100) + data[mid:]
    before = [data[o : o + n] for o, n in cuts(data)]
    after = [edited[o : o + n] for o, n in cuts(edited)]
    assert len(before) > 10
    assert len(set(after) - set(before)) <= 3
    assert len(set(before) - set(after)) <= 3


def test_boundaries_depend_only_on_the_bytes():
    data = random.Random(3).randbytes(2 << 20)
    want = list(cuts(data))
    assert list(cuts(bytearray(data))) == want
    assert list(cuts(memoryview(data))) == want
    padded = b"\xff" * 7 + data + b"\xee"
    assert list(cuts(memoryview(padded)[7:-1])) == want
    assert list(cuts(memoryview(bytearray(padded))[7:-1])) == want
