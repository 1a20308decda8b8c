"""The digest value type: an algorithm name plus a validated hex string.

A digest becomes a filesystem path (``ab/cdef...``), and digests arrive in pointer
files that came through git from someone else, so every digest is validated here,
once, before anything can turn it into a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import PointerError

ALGORITHM = "xxh3-128"
_HEX_LENGTH = {ALGORITHM: 32}
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class Digest:
    """A content digest. ``str(d)`` is ``algorithm:hex``, the form pointers record."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        expected = _HEX_LENGTH.get(self.algorithm)
        if expected is None:
            raise PointerError(f"unknown hash algorithm {self.algorithm!r} (dataver knows {ALGORITHM})")
        if len(self.hex) != expected or not _HEX.fullmatch(self.hex):
            raise PointerError(
                f"invalid {self.algorithm} digest {self.hex[:80]!r}: expected {expected} lowercase hex digits"
            )

    @classmethod
    def parse(cls, text: str, algorithm: str | None = None) -> Digest:
        """Parse ``algo:hex`` or, when ``algorithm`` is given, a bare hex string."""
        if ":" in text:
            algo, _, hex_ = text.partition(":")
        elif algorithm is not None:
            algo, hex_ = algorithm, text
        else:
            raise PointerError(f"digest {text[:80]!r} has no algorithm prefix (expected {ALGORITHM}:HEX)")
        return cls(algo, hex_)

    def relpath(self) -> str:
        """Path of the object relative to a store root: ``xxh3-128/ab/cdef...``."""
        return f"{self.algorithm}/{self.hex[:2]}/{self.hex[2:]}"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def short(self) -> str:
        return self.hex[:12]
