"""The digest value type and the hash-algorithm registry.

A digest becomes a filesystem path (``<algorithm>/ab/cdef...``), and digests arrive in
pointer files that came through git from someone else, so every digest is validated
here, once, before anything can turn it into a path.

Every digest carries its algorithm's name. The registry maps a name to what defines
the algorithm (normative text and test vectors in docs/formats.md): the length of its
hex digests, how a file's bytes are digested, and how a folder manifest's bytes are.
The hashing engine (``hashing.Hasher``) reads files in chunks and parallelises; an
algorithm says only what a chunk contributes, so a new algorithm is an entry here.

* ``xxh3-128`` (the default): fast, detects accidents, not an adversary.
* ``blake3``: BLAKE3-256 of the whole file, as ``b3sum`` prints it; collision
  resistant, for remotes that untrusted people can write to.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import xxhash

from .errors import PointerError

DEFAULT_ALGORITHM = "xxh3-128"

# The xxh3-128 definition. A file of at most CHUNK_SIZE bytes: XXH3_128(content, seed 0).
# A larger one: each CHUNK_SIZE chunk's XXH3_128 (seed 0, 16 big-endian bytes), combined
# in file order under SEED_CHUNKED after CHUNKED_PREFIX, the size and the chunk size.
# A manifest: XXH3_128(bytes, SEED_MANIFEST). The seeds keep the three forms apart.
CHUNK_SIZE = 8 * 1024 * 1024
SEED_BLOB = 0
SEED_CHUNKED = int.from_bytes(b"dvchunk1", "big")
SEED_MANIFEST = int.from_bytes(b"dvmanif1", "big")
CHUNKED_PREFIX = b"dataver-chunked-v1\0"

_HEX = re.compile(r"[0-9a-f]+")


class FileHash(Protocol):
    """One file's digest being computed from its chunks (of the hasher's chunk size,
    the last one shorter). ``feed`` gets every chunk once, with its index: in file
    order, or, for an algorithm marked ``parallel``, from several threads in any order."""

    def feed(self, index: int, chunk: memoryview) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Algorithm:
    """What defines a hash algorithm; ``docs/formats.md`` is the normative text."""

    name: str
    hex_length: int
    #: The digest of content of at most one chunk (the common case: one call).
    hash_small: Callable[[bytes | memoryview], str]
    #: ``(size, chunk_size, threads)`` -> the digest of a file of more than one chunk.
    #: ``threads`` is how many threads the algorithm may use inside one ``feed``.
    new_file_hash: Callable[[int, int, int], FileHash]
    #: The digest of a folder manifest's bytes.
    hash_manifest: Callable[[bytes], str]
    #: ``feed`` may be called from several threads at once, chunks in any order.
    parallel: bool


def xxh3_combine(size: int, chunk_digests: Iterable[bytes], chunk_size: int = CHUNK_SIZE) -> str:
    """xxh3-128 of a large file from its chunks' digests, in file order (hex)."""
    h = xxhash.xxh3_128(seed=SEED_CHUNKED)
    h.update(CHUNKED_PREFIX + struct.pack(">QQ", size, chunk_size))
    for d in chunk_digests:
        h.update(d)
    return h.hexdigest()


class _Xxh3File:
    """Chunks are digested independently (on any thread) and combined at the end."""

    def __init__(self, size: int, chunk_size: int, threads: int):
        self.size, self.chunk_size = size, chunk_size
        self.parts = [b""] * -(-size // chunk_size)

    def feed(self, index: int, chunk: memoryview) -> None:
        self.parts[index] = xxhash.xxh3_128_digest(chunk, seed=SEED_BLOB)

    def hexdigest(self) -> str:
        return xxh3_combine(self.size, self.parts, self.chunk_size)


def _xxh3_small(data: bytes | memoryview) -> str:
    return xxhash.xxh3_128_hexdigest(data, seed=SEED_BLOB)


def _xxh3_manifest(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data, seed=SEED_MANIFEST)


class _Blake3File:
    """One BLAKE3 state fed in file order; BLAKE3's own tree hashing spreads each
    chunk over ``threads`` threads (it releases the GIL)."""

    def __init__(self, size: int, chunk_size: int, threads: int):
        from blake3 import blake3  # imported where used: ~5 ms no xxh3 repository pays

        self._h = blake3(max_threads=max(1, threads))

    def feed(self, index: int, chunk: memoryview) -> None:
        self._h.update(chunk)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _blake3_hex(data: bytes | memoryview) -> str:
    from blake3 import blake3

    return blake3(data).hexdigest()


XXH3_128 = Algorithm(DEFAULT_ALGORITHM, 32, _xxh3_small, _Xxh3File, _xxh3_manifest, parallel=True)
BLAKE3 = Algorithm("blake3", 64, _blake3_hex, _Blake3File, _blake3_hex, parallel=False)

#: Every algorithm dataver reads, by name. Object folders, pointers and manifests name
#: one of these; anything else is refused.
ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (XXH3_128, BLAKE3)}


def known_names() -> str:
    return ", ".join(ALGORITHMS)


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name``; PointerError (naming the known ones) if none."""
    algo = ALGORITHMS.get(name)
    if algo is None:
        raise PointerError(f"unknown hash algorithm {name[:40]!r} (dataver knows {known_names()})")
    return algo


def algorithm_for_length(hex_: str) -> str | None:
    """The one algorithm whose digests have as many hex digits as ``hex_``, if exactly one."""
    names = [a.name for a in ALGORITHMS.values() if a.hex_length == len(hex_)]
    return names[0] if len(names) == 1 else None


@dataclass(frozen=True, slots=True)
class Digest:
    """A content digest. ``str(d)`` is ``algorithm:hex``, the form pointers record."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        algo = ALGORITHMS.get(self.algorithm) or get_algorithm(self.algorithm)  # the latter raises
        expected = algo.hex_length
        if len(self.hex) != expected or not _HEX.fullmatch(self.hex):
            raise PointerError(
                f"invalid {self.algorithm} digest {self.hex[:80]!r}: expected {expected} lowercase hex digits"
            )

    @classmethod
    def of_bytes(cls, algorithm: str, raw: bytes) -> Digest:
        """The digest whose bytes are ``raw`` (exactly the algorithm's length): hex made
        here is well formed, so only the algorithm and the length are checked."""
        algo = ALGORITHMS.get(algorithm) or get_algorithm(algorithm)
        if len(raw) * 2 != algo.hex_length:
            raise PointerError(f"a {algorithm} digest of {len(raw)} bytes (expected {algo.hex_length // 2})")
        d = object.__new__(cls)
        object.__setattr__(d, "algorithm", algorithm)
        object.__setattr__(d, "hex", raw.hex())
        return d

    @classmethod
    def parse(cls, text: str, algorithm: str | None = None) -> Digest:
        """Parse ``algo:hex`` or, when ``algorithm`` is given, a bare hex string."""
        if ":" in text:
            algo, _, hex_ = text.partition(":")
        elif algorithm is not None:
            algo, hex_ = algorithm, text
        else:
            raise PointerError(f"digest {text[:80]!r} has no algorithm prefix (expected ALGORITHM:HEX)")
        return cls(algo, hex_)

    def relpath(self) -> str:
        """Path of the object relative to a store root: ``xxh3-128/ab/cdef...``."""
        return f"{self.algorithm}/{self.hex[:2]}/{self.hex[2:]}"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def short(self) -> str:
        return self.hex[:12]
