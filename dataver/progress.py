"""Progress reporting as a value passed in, so core code never decides UI.

Core code calls ``progress.start``/``advance``/``close``; the default does nothing.
The CLI passes a tqdm-backed implementation (``dataver.cli.render.TqdmProgress``).
Implementations must accept calls from several threads.
"""

from __future__ import annotations


class Progress:
    """A no-op progress sink; subclass to show something."""

    def start(self, desc: str, total_bytes: int | None = None, total_files: int | None = None) -> None:
        """Begin a phase of work of the given size (``None`` when unknown)."""

    def advance(self, nbytes: int = 0, nfiles: int = 0) -> None:
        """Record finished work."""

    def close(self) -> None:
        """End the current phase."""


NO_PROGRESS = Progress()
