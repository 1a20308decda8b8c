"""Folder trees (docs/formats.md, "Folder trees"): the node format, its vectors, what a
walk refuses, and that a one-file change rewrites only the nodes on its path."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import xxhash

from dataver import manifest, tree
from dataver.digest import DEFAULT_ALGORITHM, Digest
from dataver.errors import PathError, PointerError
from dataver.hashing import digest_bytes, digest_manifest
from dataver.manifest import Entry

ALGO = DEFAULT_ALGORITHM
DOC = (Path(__file__).parent.parent / "docs" / "formats.md").read_text()


class Objects(dict):
    """A manifest store in memory: ``put`` for ``tree.build``, ``read`` for walks."""

    def put(self, data: bytes) -> Digest:
        d = digest_manifest(data, ALGO)
        self[d] = data
        return d

    def read(self, digest: Digest) -> bytes:
        return self[digest]

    def add_raw(self, text: str) -> Digest:
        return self.put(text.encode())


def entries_of(files: dict[str, bytes]) -> list[Entry]:
    return [Entry(p, digest_bytes(b), len(b), False) for p, b in files.items()]


def random_entries(rng: random.Random, n: int, shape: str) -> list[Entry]:
    out = []
    for i in range(n):
        if shape == "flat":
            path = f"{i:07d}.bin"
        elif shape == "nested":
            path = f"d{rng.randrange(40)}/s{rng.randrange(5)}/f{i}.bin"
        else:  # mixed: files beside folders, names that sort around "/"
            path = rng.choice([f"a-{i}", f"a/{i}", f"a.{i}", f"b/c/{i}", f"{i}"])
        out.append(Entry(path, Digest(ALGO, f"{rng.getrandbits(128):032x}"), rng.randrange(1000), i % 5 == 0))
    return out


def vector(name: str) -> str:
    return DOC.split(f"```{name}\n", 1)[1].split("```", 1)[0]


# -- round trips ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ["flat", "nested", "mixed"])
@pytest.mark.parametrize("n", [0, 1, tree.FLAT_MAX, tree.FLAT_MAX + 1, 30_000])
def test_build_then_walk_gives_the_flat_manifest_order(shape, n):
    rng = random.Random(n)
    ents = list({e.path: e for e in random_entries(rng, n, shape)}.values())
    objs = Objects()
    root = tree.build(ents, ALGO, objs.put)
    walked = tree.entries(objs.read, root, "t")
    assert walked == sorted(ents, key=lambda e: e.path)
    if len(ents) <= tree.FLAT_MAX:  # small folders: the flat manifest, byte for byte
        assert objs[root] == manifest.dumps(ents, ALGO)
        assert len(objs) == 1
    else:
        assert tree.is_tree(objs[root])
        for data in objs.values():  # every node is bounded
            assert len(data.splitlines()) - 1 <= tree.NODE_MAX


@pytest.mark.parametrize("shape", ["flat", "nested", "mixed"])
@pytest.mark.parametrize("n", [0, 7, tree.FLAT_MAX + 1, 30_000])
def test_file_hexes_lists_what_a_walk_lists(shape, n):
    """The cache look-up's listing (lines split, not validated) names the same files as
    the walk, one per file: a subfolder that appears twice (same manifest) is counted twice."""
    rng = random.Random(n)
    ents = list({e.path: e for e in random_entries(rng, n, shape)}.values())
    if shape == "nested" and n > tree.FLAT_MAX:  # two subfolders with the same files: one shared node
        twin = [
            Entry("twin/" + e.path.split("/", 1)[1], e.digest, e.size, e.executable)
            for e in ents
            if e.path.startswith("d1/")
        ]
        ents += twin
    objs = Objects()
    root = tree.build(ents, ALGO, objs.put)
    walked = sorted(e.digest.hex for e in tree.walk(objs.read, root, "t"))
    assert sorted(tree.file_hexes(objs.read, root, "t")) == walked
    assert len(walked) == len(ents)


def test_file_hexes_is_bounded_and_names_no_junk():
    objs = Objects()
    child, _ = big_flat(objs, 1)
    for _ in range(tree.MAX_DEPTH + 5):
        child = objs.add_raw(node(f"{child.hex} 1 d x"))
    with pytest.raises(PointerError, match="deeper than"):
        list(tree.file_hexes(objs.read, child, "t"))
    odd = objs.add_raw(node(f"{H} 1 - a", "not-a-line", f"{H[:-1]}g 2 - b"))
    assert list(tree.file_hexes(objs.read, odd, "t")) == [H, f"{H[:-1]}g"]  # a look-up of junk finds nothing
    bad_child = objs.add_raw(node(f"{'zz' * 16} 1 d a"))
    with pytest.raises(PointerError):
        list(tree.file_hexes(objs.read, bad_child, "t"))


def test_one_file_change_rewrites_only_the_nodes_on_its_path():
    """1,000 folders of 30 files: a changed file costs its folder's manifest and the
    root's pieces around it; an insert into a 20,000-file flat folder costs one or two
    pieces and the list."""
    rng = random.Random(5)
    ents = [
        Entry(f"d{f:04d}/{i}", Digest(ALGO, f"{rng.getrandbits(128):032x}"), 10, False)
        for f in range(1000)
        for i in range(30)
    ]
    a, b = Objects(), Objects()
    tree.build(ents, ALGO, a.put)
    ents[12_345] = Entry(ents[12_345].path, Digest(ALGO, "f" * 32), 11, False)
    tree.build(ents, ALGO, b.put)
    new = set(b) - set(a)
    assert len(new) <= 4, len(new)
    assert sum(len(b[d]) for d in new) < 0.1 * sum(len(x) for x in a.values())

    flat = [Entry(f"{i:06d}", Digest(ALGO, f"{rng.getrandbits(128):032x}"), 1, False) for i in range(20_000)]
    c, d = Objects(), Objects()
    tree.build(flat, ALGO, c.put)
    tree.build(flat + [Entry("010000x", Digest(ALGO, "e" * 32), 1, False)], ALGO, d.put)
    assert len(set(d) - set(c)) <= 3


def test_documented_tree_vectors():
    """docs/formats.md "Folder tree test vectors": the root node bytes and digests."""
    files = {f"a/{i:04d}.txt": f"{i}\n".encode() for i in range(3000)}
    files.update({f"b/{i:04d}.txt": f"b{i}\n".encode() for i in range(3000)})
    files["README"] = b"hi\n"
    files["a-z.txt"] = b"az\n"
    objs = Objects()
    root = tree.build(entries_of(files), ALGO, objs.put)
    assert objs[root].decode() == vector("tree-vector")
    assert root.hex == re.search(r"has this root node \(digest `([0-9a-f]{32})`\)", DOC).group(1)

    objs = Objects()
    root = tree.build(entries_of({f"{i:05d}": f"{i}\n".encode() for i in range(10_000)}), ALGO, objs.put)
    assert objs[root].decode() == vector("pieces-vector")
    assert root.hex == re.search(r"is a node of 7 pieces \(digest `([0-9a-f]{32})`\)", DOC).group(1)
    counts = [
        len(tree.parse_node(objs[Digest(ALGO, x.hex)], "t", ALGO)) for x in tree.parse_node(objs[root], "t", ALGO)
    ]
    assert counts == [853, 2244, 2085, 1529, 620, 1815, 854]
    line = b"00000000000000000000000000000000 1 - 00000\n"
    assert xxhash.xxh3_64_intdigest(line, tree.CUT_SEED) == 17769211923221074720
    assert "seed 0x64617461766572" in DOC and tree.CUT_SEED == 0x64617461766572


def test_cli_hash_of_a_large_folder_is_the_tree_digest(tmp_path, cli):
    folder = tmp_path / "ex"
    for i in range(3000):
        (folder / "a").mkdir(parents=True, exist_ok=True)
        (folder / "b").mkdir(parents=True, exist_ok=True)
        (folder / "a" / f"{i:04d}.txt").write_bytes(f"{i}\n".encode())
        (folder / "b" / f"{i:04d}.txt").write_bytes(f"b{i}\n".encode())
    (folder / "README").write_bytes(b"hi\n")
    (folder / "a-z.txt").write_bytes(b"az\n")
    r = cli("hash", str(folder))
    assert r.code == 0, r.err
    assert r.out.split()[0] == "4343ca70119f697daea7d55f284fd862"


# -- what a walk refuses -------------------------------------------------------------------------
H = "0" * 32


def node(*lines: str) -> str:
    return f"dataver-tree 1 {ALGO}\n" + "".join(line + "\n" for line in lines)


def big_flat(objs: Objects, n: int, prefix: str = "f") -> tuple[Digest, int]:
    ents = [Entry(f"{prefix}{i:05d}", Digest(ALGO, H), 1, False) for i in range(n)]
    return objs.put(manifest.dumps(ents, ALGO)), n


def refuses(objs: Objects, root: Digest, match: str) -> None:
    with pytest.raises(PointerError, match=match):
        list(tree.walk(objs.read, root, "manifest of data"))


def two_halves(objs: Objects) -> tuple[str, str]:
    """Lines for two subfolders of 3,000 files each (a valid node holds both)."""
    a, n = big_flat(objs, 3000)
    b, _ = big_flat(objs, 3000, "g")
    return f"{a.hex} {n} d a", f"{b.hex} {n} d b"


def test_a_valid_hand_made_node_walks():
    objs = Objects()
    a, b = two_halves(objs)
    root = objs.add_raw(node(a, b))
    assert len(tree.entries(objs.read, root, "t")) == 6000


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda a, b: node(a, a), "canonical order or duplicated"),  # a child named twice
        (lambda a, b: node(b, a), "canonical order"),
        (lambda a, b: node(a, b.replace(" d b", " d a")), "canonical order or duplicated"),
        (lambda a, b: node(a, b.replace(" 3000 d", " 2999 d")), "holds 3000 bytes"),
        (lambda a, b: node(a, b, f"{H} 1 - c/d"), "not one name"),
        (lambda a, b: node(a, b, f"{H} 1 - .git"), "reserved|\\.git"),
        (lambda a, b: node(a, b, f"{H} 1 - .."), "malformed|\\.\\.|not allowed|invalid"),
        (lambda a, b: node(a, b, f"{H} 01 - c"), "malformed"),
        (lambda a, b: node(a, b, f"{H} 1 q c"), "malformed"),
        (lambda a, b: node(a, b, f"{H[:-1]} 1 - c"), "malformed"),
        (lambda a, b: node(a, b, f"{H} 1 p c"), "both pieces and files"),
        (lambda a, b: node(a, b).replace(ALGO, "blake3", 1), "header names"),
        (lambda a, b: node(a, b)[:-1], "no final newline"),
        (lambda a, b: node(), "empty tree node"),
    ],
)
def test_walk_refuses_a_hostile_node(make, match):
    objs = Objects()
    a, b = two_halves(objs)
    refuses(objs, objs.add_raw(make(a, b)), match)


def test_walk_refuses_a_name_that_is_a_file_and_a_folder():
    objs = Objects()
    a, b = two_halves(objs)
    refuses(objs, objs.add_raw(node(f"{H} 1 - a", f"{H} 1 - a-x", a, b)), "both a file and a folder")


def test_walk_refuses_the_wrong_form():
    objs = Objects()
    small, _ = big_flat(objs, 10)
    refuses(objs, objs.add_raw(node(f"{small.hex} 10 d a")), "a tree node for 10 files")
    a, b = two_halves(objs)
    big, n = big_flat(objs, tree.FLAT_MAX + 1, "h")
    refuses(objs, objs.add_raw(node(a, b, f"{big.hex} {n} d c")), "a flat manifest of 4097 files inside a tree")


def test_walk_refuses_a_cycle_free_but_too_deep_tree():
    objs = Objects()
    child, _ = big_flat(objs, 1)
    for _ in range(tree.MAX_DEPTH + 5):
        child = objs.add_raw(node(f"{child.hex} 1 d x"))
    refuses(objs, child, "deeper than")


def test_walk_refuses_a_huge_node_and_too_many_lines():
    objs = Objects()
    refuses(objs, objs.add_raw(node(*[f"{H} 1 - {i:07d}" for i in range(tree.NODE_MAX + 1)])), "at most 4096")
    huge = objs.put(node(f"{H} 1 - {'n' * 200}").encode() + b"x" * tree.MAX_NODE_BYTES + b"\n")
    refuses(objs, huge, "at most")


def test_walk_refuses_pieces_that_break_the_rules():
    objs = Objects()
    ents = [Entry(f"{i:05d}", Digest(ALGO, H), 1, False) for i in range(10_000)]
    root = tree.build(ents, ALGO, objs.put)
    lines = [x.text()[:-1] for x in tree.parse_node(objs[root], "t", ALGO)]
    assert len(lines) >= 3
    # a piece named for another first key (still in order among the others)
    bad = list(lines)
    bad[1] = bad[1] + "0"
    refuses(objs, objs.add_raw(node(*bad)), "starts at")
    # two pieces swapped: the order across pieces
    refuses(objs, objs.add_raw(node(lines[1], lines[0], *lines[2:])), "canonical order")
    first = tree.parse_node(objs[Digest(ALGO, lines[0].split()[0])], "t", ALGO)
    second = tree.parse_node(objs[Digest(ALGO, lines[1].split()[0])], "t", ALGO)
    # a piece cut short (its last line moved to the next): it ends where the rule does not cut
    short = objs.add_raw(node(*[x.text()[:-1] for x in first[:-1]]))
    longer = objs.add_raw(node(*[x.text()[:-1] for x in first[-1:] + second]))
    moved = [
        f"{short.hex} {sum(x.size for x in first[:-1])} p {first[0].key}",
        f"{longer.hex} {sum(x.size for x in first[-1:] + second)} p {first[-1].key}",
    ]
    refuses(objs, objs.add_raw(node(*moved, *lines[2:])), "ends where the cut rule does not cut")
    # two pieces joined into one: it goes on past a cut
    joined = objs.add_raw(node(*[x.text()[:-1] for x in first + second]))
    size = sum(x.size for x in first + second)
    refuses(objs, objs.add_raw(node(f"{joined.hex} {size} p 00000", *lines[2:])), "goes on past a cut")
    # a level cut though it fits one node
    few = [Entry(f"{i:05d}", Digest(ALGO, H), 1, False) for i in range(5000)]
    a = objs.add_raw(node(*[f"{H} 1 - {e.path}" for e in few[:2500]]))
    b = objs.add_raw(node(*[f"{H} 1 - {e.path}" for e in few[2500:]]))
    refuses(objs, objs.add_raw(node(f"{a.hex} 2500 p 00000", f"{b.hex} 2500 p 02500")), "cut")


def test_walk_refuses_a_missing_node():
    objs = Objects()
    a, b = two_halves(objs)
    root = objs.add_raw(node(a, b))
    del objs[Digest(ALGO, a.split()[0])]
    with pytest.raises(KeyError):
        list(tree.walk(objs.read, root, "t"))


def test_build_refuses_bad_entries_and_absurd_depth():
    with pytest.raises(PointerError):
        tree.build([Entry("a/.git/x", Digest(ALGO, H), 1, False)] * 1, ALGO, Objects().put)
    deep = "/".join(["d"] * (tree.MAX_FOLDER_DEPTH + 2))
    ents = [Entry(f"{deep}/{i:05d}", Digest(ALGO, H), 1, False) for i in range(tree.FLAT_MAX + 1)]
    ents += [Entry(f"{'/'.join(['d'] * k)}/x{k}", Digest(ALGO, H), 1, False) for k in range(1, tree.MAX_FOLDER_DEPTH)]
    with pytest.raises(PathError, match="nested folders"):
        tree.build(ents, ALGO, Objects().put)


def test_gc_listing_of_a_damaged_node_still_names_its_children():
    objs = Objects()
    a, b = two_halves(objs)
    data = (node(a, b) + "garbage line\n").encode()
    listed = list(tree.listed(data))
    assert (a.split()[0], True) in listed and (b.split()[0], True) in listed
