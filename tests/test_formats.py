"""Pointer files, folder manifests and the Digest value type.

Both formats arrive through git from other people, so the rule is: any bytes either
parse or raise PointerError -- never another exception.
"""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataver import manifest, pointer
from dataver.digest import DEFAULT_ALGORITHM, Digest
from dataver.errors import PointerError
from dataver.manifest import Entry
from dataver.pointer import Pointer

HEX_A = "0123456789abcdef0123456789abcdef"
HEX_B = "fedcba9876543210fedcba9876543210"
D_A = Digest(DEFAULT_ALGORITHM, HEX_A)
D_B = Digest(DEFAULT_ALGORITHM, HEX_B)

hex_digests = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
digests = hex_digests.map(lambda h: Digest(DEFAULT_ALGORITHM, h))
counts = st.integers(0, 10**20 - 1)


def valid_pointer_text(kind: str = "file", **over: str) -> str:
    fields = {"version": "1", "kind": kind, "hash": DEFAULT_ALGORITHM, "digest": HEX_A, "size": "1234"}
    if kind == "dir":
        fields["files"] = "3"
    fields.update(over)
    return "".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None)


def load_text(text: str) -> Pointer:
    return pointer.loads(text.encode())


def expect_pointer_error(data: bytes, match: str | None = None) -> PointerError:
    with pytest.raises(PointerError, match=match) as e:
        pointer.loads(data, source="x/data.dv")
    assert e.value.message.startswith("x/data.dv: ")
    assert e.value.exit_code == 5
    return e.value


# -- Digest ------------------------------------------------------------------------


def test_digest_valid_and_rendering():
    d = Digest(DEFAULT_ALGORITHM, HEX_A)
    assert str(d) == f"xxh3-128:{HEX_A}"
    assert d.relpath() == f"xxh3-128/01/{HEX_A[2:]}"
    assert d.short() == HEX_A[:12]
    assert Digest.parse(str(d)) == d
    assert Digest.parse(HEX_A, DEFAULT_ALGORITHM) == d
    assert hash(d) == hash(Digest(DEFAULT_ALGORITHM, HEX_A))


@pytest.mark.parametrize(
    "algo,hex_,why",
    [
        ("xxh3-128", "0" * 31, "32 lowercase hex"),
        ("xxh3-128", "0" * 33, "32 lowercase hex"),
        ("xxh3-128", "", "32 lowercase hex"),
        ("xxh3-128", HEX_A.upper(), "32 lowercase hex"),
        ("xxh3-128", "g" * 32, "32 lowercase hex"),
        ("xxh3-128", "0" * 31 + "\n", "32 lowercase hex"),
        ("xxh3-128", "../../config" + "0" * 20, "32 lowercase hex"),
        ("xxh3-128", "00/" + "0" * 29, "32 lowercase hex"),
        ("xxh3-128", "٠" * 32, "32 lowercase hex"),  # Arabic-Indic zeros
        ("sha256", "0" * 64, "unknown hash algorithm"),
        ("", HEX_A, "unknown hash algorithm"),
        ("BLAKE3", "0" * 64, "unknown hash algorithm"),
        ("blake3", HEX_A, "64 lowercase hex"),  # an xxh3-128 length under blake3
        ("blake3", "0" * 65, "64 lowercase hex"),
        ("blake3", "A" * 64, "64 lowercase hex"),
        ("blake3", "../" + "0" * 61, "64 lowercase hex"),
        ("xxh3-128", "0" * 64, "32 lowercase hex"),  # a blake3 length under xxh3-128
    ],
)
def test_digest_rejects_invalid(algo, hex_, why):
    with pytest.raises(PointerError, match=why):
        Digest(algo, hex_)


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def test_documented_blake3_vectors():
    """The blake3 vectors of docs/formats.md are what dataver computes (and what the
    doc says; the first two are BLAKE3's published test vectors)."""
    from pathlib import Path

    from dataver.hashing import CHUNK_SIZE, digest_bytes, digest_manifest

    doc = (Path(__file__).parent.parent / "docs" / "formats.md").read_text()
    example = (
        "dataver-manifest 1 blake3\n"
        "c2cbd1c35b6b272f1e6983bb7f17f329ae53e30ff3472556a1b002edaa2866bb 6 - Z.txt\n"
        "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85 3 - a-b.txt\n"
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262 0 - a.txt\n"
        "4b694fa6468140836e2f43625aca1150ec72032dc23a12e13416ca026c647ef3 18 x a/x.sh\n"
        "96d2f084a2cd9b1a05193fe80c685bb68ba22fb2a4b6eb1c56c4bbd5cc012688 5 - été.csv\n"
    ).encode()
    blobs = {
        b"": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        pattern(1024): "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
        b"abc": "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
        pattern(CHUNK_SIZE + 1): "249ef5d5043bde86396029c96497c8ac6c0e7f2f5ef97b7f9afabdf23167b7fb",
    }
    manifests = {
        b"dataver-manifest 1 blake3\n": "3b3a7bf3262460e22f280942b271209dc1a3826e5a92da3727db8e28b3a119fb",
        example: "14cb09459bcc8a5b63258fa090e4f5205f00829637f0bd9bffd3c7bf38fcce85",
    }
    for data, hex_ in blobs.items():
        assert digest_bytes(data, algorithm="blake3") == Digest("blake3", hex_)
        assert f"`{hex_}`" in doc
    for data, hex_ in manifests.items():
        assert digest_manifest(data, "blake3") == Digest("blake3", hex_)
        assert hex_ in doc
    assert example.decode() in doc and len(example) == 409
    assert [e.digest for e in manifest.loads(example, algorithm="blake3")] == [
        digest_bytes(data, algorithm="blake3")
        for data in (b"zebra\n", b"abc", b"", b"#!/bin/sh\necho hi\n", b"id\n1\n")
    ]


def test_manifest_of_blake3_digests():
    d = Digest("blake3", "ab" * 32)
    data = manifest.dumps([Entry("x.txt", d, 1)], "blake3")
    assert data == f"dataver-manifest 1 blake3\n{'ab' * 32} 1 - x.txt\n".encode()
    assert manifest.loads(data, algorithm="blake3") == [Entry("x.txt", d, 1)]
    assert list(manifest.known_good_entries(data)) == [("x.txt", "ab" * 32)]
    assert manifest.dumps([], "blake3") == b"dataver-manifest 1 blake3\n"
    with pytest.raises(PointerError, match="header names blake3, but it is named by a xxh3-128 digest"):
        manifest.loads(data, algorithm="xxh3-128")
    with pytest.raises(PointerError, match="64 lowercase hex"):  # 32-digit entries under a blake3 header
        manifest.loads(f"dataver-manifest 1 blake3\n{HEX_A} 1 - x.txt\n".encode())
    with pytest.raises(PointerError, match="unknown hash algorithm 'sha256'"):
        manifest.loads(f"dataver-manifest 1 sha256\n{'ab' * 32} 1 - x.txt\n".encode())
    with pytest.raises(ValueError):  # a digest of another algorithm than the manifest's
        manifest.dumps([Entry("x.txt", D_A, 1)], "blake3")


@pytest.mark.parametrize("text", [HEX_A, "", "xxh3-128:", f"xxh3-128:{HEX_A}:x", f"md5:{HEX_A}", f":{HEX_A}"])
def test_digest_parse_rejects(text):
    with pytest.raises(PointerError):
        Digest.parse(text)


@given(hex_digests)
def test_digest_relpath_is_a_safe_two_level_path(h):
    rel = Digest(DEFAULT_ALGORITHM, h).relpath()
    parts = rel.split("/")
    assert parts == [DEFAULT_ALGORITHM, h[:2], h[2:]]
    assert ".." not in parts and not rel.startswith("/")


# -- pointer: round trip and preservation ----------------------------------------------

_KEY_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
extra_keys = st.builds(
    str.__add__, st.sampled_from(_KEY_START), st.text(_KEY_START + "0123456789.-", max_size=10)
).filter(lambda k: k not in pointer._KNOWN)
# Values as loads leaves them: stripped, single line, no NUL.
extra_values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x1c\x1d\x1e\x85"),
    max_size=30,
).map(str.strip)


@st.composite
def pointers(draw) -> Pointer:
    kind = draw(st.sampled_from(pointer.KINDS))
    keys = draw(st.lists(extra_keys, unique=True, max_size=5))
    extra = tuple((k, draw(extra_values)) for k in keys)
    files = draw(counts) if kind == "dir" else None
    return Pointer(kind, draw(digests), draw(counts), files, extra)


@settings(max_examples=100, deadline=None)
@given(pointers())
def test_pointer_round_trip(ptr):
    data = pointer.dumps(ptr)
    assert data.startswith(pointer.HEADER.encode() + b"\n")
    back = pointer.loads(data)
    assert back == ptr
    assert pointer.dumps(back) == data


def test_pointer_dumps_exact_bytes():
    ptr = Pointer("dir", D_A, 10, 2, (("desc", "my data"),))
    assert (
        pointer.dumps(ptr)
        == (
            f"{pointer.HEADER}\nversion: 1\nkind: dir\nhash: xxh3-128\ndigest: {HEX_A}\nsize: 10\nfiles: 2\n"
            "desc: my data\n"
        ).encode()
    )
    assert b"files:" not in pointer.dumps(Pointer("file", D_A, 10))


def test_unknown_keys_are_kept_in_order():
    text = "zeta: last?\n" + valid_pointer_text() + "desc: hello world\nalpha: 1\nowner.team-x: ml\n"
    ptr = load_text(text)
    assert ptr.extra == (("zeta", "last?"), ("desc", "hello world"), ("alpha", "1"), ("owner.team-x", "ml"))
    again = ptr.with_content(D_B, 99, None)
    assert again.extra == ptr.extra and again.digest == D_B and again.size == 99
    out = pointer.dumps(again).decode()
    assert out.endswith("zeta: last?\ndesc: hello world\nalpha: 1\nowner.team-x: ml\n")


def test_comments_blank_lines_and_crlf_are_accepted():
    text = "# a comment\n\n   \n" + valid_pointer_text("dir").replace("\n", "\r\n") + "# trailing\n"
    ptr = load_text(text)
    assert (ptr.kind, ptr.digest, ptr.size, ptr.files, ptr.extra) == ("dir", D_A, 1234, 3, ())
    assert ptr.is_dir


def test_value_whitespace_is_stripped():
    ptr = load_text(valid_pointer_text(size="  42  "))
    assert ptr.size == 42


def test_largest_allowed_pointer_parses():
    base = valid_pointer_text()
    pad = pointer.MAX_POINTER_BYTES - len(base) - 2
    data = (base + "#" + "x" * pad + "\n").encode()
    assert len(data) == pointer.MAX_POINTER_BYTES
    assert pointer.loads(data).size == 1234


# -- pointer: malformed ---------------------------------------------------------------


@pytest.mark.parametrize("missing", ["version", "kind", "hash", "digest", "size"])
def test_pointer_missing_key(missing):
    expect_pointer_error(valid_pointer_text(**{missing: None}).encode(), f"missing '{missing}:'")


def test_pointer_duplicate_keys():
    expect_pointer_error((valid_pointer_text() + "size: 1234\n").encode(), "'size' appears twice")
    expect_pointer_error((valid_pointer_text() + "desc: a\ndesc: b\n").encode(), "'desc' appears twice")


@pytest.mark.parametrize(
    "digest",
    [HEX_A[:-1], HEX_A + "0", HEX_A.upper(), "z" * 32, "", "0x" + HEX_A[:30], HEX_A[:16] + " " + HEX_A[17:]],
)
def test_pointer_bad_digest(digest):
    e = expect_pointer_error(valid_pointer_text(digest=digest).encode())
    assert "digest" in e.message


def test_pointer_unknown_hash_algorithm():
    expect_pointer_error(valid_pointer_text(hash="sha256").encode(), "unknown hash algorithm")


@pytest.mark.parametrize(
    "size",
    ["-1", "", "abc", "1.5", "1e3", "+5", "0x10", "1 2", "1" * 21, "99999999999999999999999999999", "²", "١٢٣", "１２"],
)
def test_pointer_bad_size(size):
    expect_pointer_error(valid_pointer_text(size=size).encode(), "size must be a non-negative integer")


@pytest.mark.parametrize("files", ["-1", "x", "1" * 21, "²", "٣"])
def test_pointer_bad_files_count(files):
    expect_pointer_error(valid_pointer_text("dir", files=files).encode(), "files must be a non-negative integer")


def test_pointer_largest_size_accepted():
    assert load_text(valid_pointer_text(size="9" * 20)).size == 10**20 - 1


def test_pointer_dir_without_files():
    expect_pointer_error(valid_pointer_text("dir", files=None).encode(), "missing 'files:'")


def test_pointer_files_on_a_file():
    expect_pointer_error((valid_pointer_text() + "files: 3\n").encode(), "only valid for kind: dir")


@pytest.mark.parametrize("kind", ["", "File", "folder", "symlink"])
def test_pointer_bad_kind(kind):
    expect_pointer_error(valid_pointer_text(kind=kind).encode(), "kind must be")


@pytest.mark.parametrize("version", ["0", "01", "1.0", "v1", "", "-1", "one", "²", "١"])
def test_pointer_unknown_version(version):
    e = expect_pointer_error(valid_pointer_text(version=version).encode(), "unknown format version")
    assert "upgrade" not in str(e)


@pytest.mark.parametrize("version", ["2", "10", "999999999999999999999999"])
def test_pointer_newer_version_says_upgrade(version):
    e = expect_pointer_error(valid_pointer_text(version=version).encode(), "newer dataver")
    assert "upgrade" in str(e)
    assert e.hint is not None and "upgrade" in e.hint


@pytest.mark.parametrize(
    "data,match",
    [
        (valid_pointer_text().encode() + b"\0", "NUL"),
        (valid_pointer_text(size="12\x0034").encode(), "NUL"),
        (b"\xff\xfe" + valid_pointer_text().encode(), "not UTF-8"),
        (valid_pointer_text(desc="caf\xe9").encode("latin-1"), "not UTF-8"),
        (valid_pointer_text().encode() + b"just some words\n", "not 'key: value'"),
        (valid_pointer_text().encode() + b"bad key: 1\n", "not 'key: value'"),
        (valid_pointer_text().encode() + b": empty key\n", "not 'key: value'"),
        (b"<<<<<<< HEAD\n" + valid_pointer_text().encode(), "not 'key: value'"),
        (b"", "missing 'version:'"),
    ],
)
def test_pointer_malformed_bytes(data, match):
    expect_pointer_error(data, match)


def test_pointer_oversize():
    base = valid_pointer_text()
    data = (base + "#" + "x" * (pointer.MAX_POINTER_BYTES - len(base) - 1) + "\n").encode()
    assert len(data) == pointer.MAX_POINTER_BYTES + 1
    expect_pointer_error(data, "too large")


def test_pointer_with_many_distinct_keys_parses_quickly():
    """A hostile 64 KiB pointer of ~13,000 distinct keys must not cost seconds
    (duplicate-key detection must not be quadratic)."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    keys = (a + b + c for a in letters for b in letters for c in letters)
    lines, size = [], 0
    for k in keys:
        if size + 5 > pointer.MAX_POINTER_BYTES - 200:
            break
        lines.append(k + ":\n")
        size += 5
    data = (valid_pointer_text() + "".join(lines)).encode()
    assert len(data) <= pointer.MAX_POINTER_BYTES
    t = time.perf_counter()
    ptr = pointer.loads(data)
    elapsed = time.perf_counter() - t
    assert len(ptr.extra) == len(lines)
    assert elapsed < 1.0, f"parsing took {elapsed:.2f}s"


# -- pointer: fuzz ----------------------------------------------------------------------


def _parse_or_pointer_error(data: bytes) -> Pointer | None:
    try:
        ptr = pointer.loads(data)
    except PointerError:
        return None
    # Whatever parses re-serialises to something that parses to the same value.
    assert pointer.loads(pointer.dumps(ptr)) == ptr
    return ptr


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_pointer_any_bytes_parse_or_pointer_error(data):
    _parse_or_pointer_error(data)


near_values = st.one_of(
    st.text(max_size=25),
    st.sampled_from(
        ["1", "2", "0", "file", "dir", DEFAULT_ALGORITHM, HEX_A, HEX_A.upper(), "-1", "²", "١٢", "٣", "1" * 21]
    ),
    st.integers(-5, 10**22).map(str),
)


@st.composite
def near_valid_pointers(draw) -> bytes:
    lines = valid_pointer_text(draw(st.sampled_from(["file", "dir"]))).splitlines()
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["set", "drop", "dup", "insert", "raw"]))
        i = draw(st.integers(0, len(lines)))
        if op == "set" and lines:
            i %= len(lines)
            key = lines[i].split(":")[0]
            lines[i] = f"{key}: {draw(near_values)}"
        elif op == "drop" and lines:
            lines.pop(i % len(lines))
        elif op == "dup" and lines:
            lines.insert(i, lines[i % len(lines)])
        elif op == "insert":
            key = draw(st.sampled_from(["files", "desc", "size", "version", "kind", "x y", "", "#c"]))
            lines.insert(i, f"{key}: {draw(near_values)}")
        else:
            lines.insert(i, draw(st.text(max_size=20)))
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(max_size=3)) + data[pos:]
    return data


@settings(max_examples=200, deadline=None)
@given(near_valid_pointers())
def test_pointer_near_valid_bytes_parse_or_pointer_error(data):
    _parse_or_pointer_error(data)


# -- manifest: canonical form -----------------------------------------------------------------


def entry(path: str, d: Digest = D_A, size: int = 1, x: bool = False) -> Entry:
    return Entry(path, d, size, x)


def test_manifest_exact_bytes_and_order():
    entries = [
        entry("b/z.txt", D_B, 0),
        entry("a b.txt", D_A, 12, True),
        entry("é.bin", D_A, 3),
        entry("b-c", D_A, 4),
        entry("z", D_B, 5),
    ]
    data = manifest.dumps(entries)
    assert (
        data
        == (
            "dataver-manifest 1 xxh3-128\n"
            f"{HEX_A} 12 x a b.txt\n"
            f"{HEX_A} 4 - b-c\n"  # '-' (0x2d) sorts before '/' (0x2f)
            f"{HEX_B} 0 - b/z.txt\n"
            f"{HEX_B} 5 - z\n"
            f"{HEX_A} 3 - é.bin\n"  # UTF-8 bytes 0xc3.. sort after ASCII
        ).encode()
    )
    assert manifest.loads(data) == sorted(entries, key=lambda e: e.path.encode())


def test_large_manifest_is_the_same_bytes_as_line_by_line():
    """dumps writes in slices of entries; across slice boundaries the bytes must be
    exactly the header plus one line per entry in UTF-8 byte order."""
    entries = [entry(f"d{i % 13}/é{i:05d}", D_A if i % 2 else D_B, i, i % 3 == 0) for i in range(25_001)]
    ordered = sorted(entries, key=lambda e: e.path.encode())
    lines = [f"{e.digest.hex} {e.size} {'x' if e.executable else '-'} {e.path}" for e in ordered]
    assert manifest.dumps(reversed(entries)) == ("\n".join(["dataver-manifest 1 xxh3-128", *lines]) + "\n").encode()


def test_empty_manifest():
    data = manifest.dumps([])
    assert data == b"dataver-manifest 1 xxh3-128\n"
    assert manifest.loads(data) == []


# A small alphabet (with multi-byte and astral characters) so paths often share
# prefixes and sort differently by bytes than by naive expectations.
path_components = st.text("ab-._ ~\té€😀", min_size=1, max_size=6).filter(lambda c: c not in (".", ".."))
rel_paths = st.lists(path_components, min_size=1, max_size=3).map("/".join)


@st.composite
def entry_lists(draw) -> list[Entry]:
    paths = draw(st.lists(rel_paths, unique=True, max_size=12))
    # Drop any path that is a parent folder of another: a file cannot be a folder.
    paths = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    return [Entry(p, draw(digests), draw(counts), draw(st.booleans())) for p in paths]


@settings(max_examples=80, deadline=None)
@given(entry_lists(), st.randoms(use_true_random=False))
def test_manifest_canonical_and_round_trip(entries, rnd):
    data = manifest.dumps(entries)
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert manifest.dumps(shuffled) == data
    back = manifest.loads(data)
    assert back == sorted(entries, key=lambda e: e.path.encode())
    assert manifest.dumps(back) == data


# -- manifest: malformed ---------------------------------------------------------------------


def expect_manifest_error(data: bytes, match: str | None = None) -> None:
    with pytest.raises(PointerError, match=match) as e:
        manifest.loads(data, source="M")
    assert e.value.message.startswith("M: ")


def mf(*lines: str) -> bytes:
    return ("\n".join(["dataver-manifest 1 xxh3-128", *lines]) + "\n").encode()


def test_manifest_rejects_unsorted_and_duplicates():
    expect_manifest_error(mf(f"{HEX_A} 1 - b", f"{HEX_A} 1 - a"), "canonical order")
    expect_manifest_error(mf(f"{HEX_A} 1 - a", f"{HEX_B} 2 - a"), "canonical order or duplicated")
    expect_manifest_error(mf(f"{HEX_A} 1 - a/b", f"{HEX_A} 1 - a-b"), "canonical order")


def test_manifest_rejects_file_that_is_also_a_folder():
    expect_manifest_error(mf(f"{HEX_A} 1 - a", f"{HEX_A} 1 - a/b"), "both a file and a folder")
    expect_manifest_error(mf(f"{HEX_A} 1 - d/a", f"{HEX_A} 1 - d/a/b/c"), "both a file and a folder")
    with pytest.raises(PointerError, match="both a file and a folder"):
        manifest.dumps([entry("x/y/z"), entry("x/y")])


def test_manifest_dumps_rejects_duplicate_paths():
    """dumps must never write bytes that loads rejects (nor depend on input order)."""
    with pytest.raises(PointerError, match="a/b"):
        manifest.dumps([entry("a/b", D_A), entry("a/b", D_B)])


UNSAFE_PATHS = ["", "/abs", "/", "a//b", "a/", "./a", "a/./b", "..", "../a", "a/..", "a/../b", "a\0b", "a\rb", "a\nb"]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_check_relpath_rejects(path):
    with pytest.raises(PointerError, match="unsafe or invalid path"):
        manifest.check_relpath(path)
    with pytest.raises(PointerError):
        manifest.dumps([entry(path)])


@pytest.mark.parametrize("path", [p for p in UNSAFE_PATHS if "\n" not in p and p])
def test_manifest_loads_rejects_unsafe_paths(path):
    expect_manifest_error(mf(f"{HEX_A} 1 - {path}"))


@pytest.mark.parametrize("path", ["a", ".hidden", "..foo", "a/...", "with space", " lead", "trail ", "ü/ß", "a\tb"])
def test_check_relpath_accepts(path):
    manifest.check_relpath(path)
    assert manifest.loads(manifest.dumps([entry(path)]))[0].path == path


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "truncated"),
        (mf(f"{HEX_A} 1 - a")[:-1], "truncated"),
        (b"\n", "unknown header"),
        (b"dataver-manifest 2 xxh3-128\n", "unknown header"),
        (b"dataver-manifest 1 xxh3-128\r\n", "unknown header"),
        (b"dataver-manifest 1 xxh3-128\n\xff\n", "not UTF-8"),
        (mf(""), "malformed"),
        (mf(f"{HEX_A} 1 -"), "malformed"),
        (mf(f"{HEX_A} 1 y a"), "malformed"),
        (mf(f"{HEX_A} 1 X a"), "malformed"),
        (mf(f"{HEX_A} -1 - a"), "malformed"),
        (mf(f"{HEX_A} 1.0 - a"), "malformed"),
        (mf(f"{HEX_A} {'1' * 21} - a"), "malformed"),
        (mf(f"{HEX_A}  1 - a"), "malformed"),
        (mf(f"{HEX_A} ² - a"), "malformed"),
        (mf(f"{HEX_A} ١٢ - a"), "malformed"),
        (mf(f"{HEX_A} 007 - a"), "malformed"),  # leading zeros are not canonical
        (mf(f"{HEX_A[:-1]} 1 - a"), "32 lowercase hex"),
        (mf(f"{HEX_A.upper()} 1 - a"), "32 lowercase hex"),
        (mf(f"{HEX_A} 1 - a", ""), "malformed"),
    ],
)
def test_manifest_malformed(data, match):
    expect_manifest_error(data, match)


def test_manifest_size_zero_is_canonical():
    assert manifest.loads(mf(f"{HEX_A} 0 - a"))[0].size == 0


# -- manifest: fuzz ------------------------------------------------------------------------------


def _manifest_parse_or_error(data: bytes) -> None:
    try:
        entries = manifest.loads(data)
    except PointerError:
        return
    # Only canonical bytes are accepted: they are exactly what dumps writes.
    assert manifest.dumps(entries) == data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_manifest_any_bytes_parse_or_pointer_error(data):
    _manifest_parse_or_error(data)
    _manifest_parse_or_error(manifest.HEADER.encode() + b"\n" + data)


size_fields = st.one_of(
    counts.map(str),
    st.sampled_from(["0", "00", "01", "-1", "", "²", "١", "1" * 21, "1 ", " 1"]),
    st.text(max_size=4),
)
near_paths = st.one_of(rel_paths, st.sampled_from(["..", "a/../b", "/x", "a//b", "a/", "x y", "a", "a/b", "b"]))


@st.composite
def near_valid_manifests(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        hex_ = draw(st.one_of(hex_digests, st.sampled_from([HEX_A.upper(), HEX_A[:31], "", "x" * 32])))
        mode = draw(st.sampled_from(["x", "-", "", "X", "--"]))
        lines.append(f"{hex_} {draw(size_fields)} {mode} {draw(near_paths)}")
    if draw(st.booleans()):
        lines.sort(key=lambda line: line.split(" ", 3)[-1].encode("utf-8", "surrogatepass"))
    data = "\n".join([manifest.HEADER, *lines]) + "\n"
    return data.encode("utf-8", "surrogatepass")


@settings(max_examples=100, deadline=None)
@given(near_valid_manifests())
def test_manifest_near_valid_bytes_parse_or_pointer_error(data):
    _manifest_parse_or_error(data)


def test_manifest_handles_many_entries():
    rng = random.Random(3)
    entries = [entry(f"d{i % 50}/f{i}.bin", D_A if i % 2 else D_B, rng.randint(0, 10**12)) for i in range(5000)]
    data = manifest.dumps(entries)
    assert manifest.loads(data) == sorted(entries, key=lambda e: e.path.encode())
