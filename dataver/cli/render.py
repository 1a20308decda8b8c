"""Output for people and scripts: tqdm progress, JSON, stderr messages."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from typing import Any

from ..errors import MISSING, Unrestored
from ..progress import NO_PROGRESS, Progress


class TqdmProgress(Progress):
    """A bytes bar with a files count; appears only after about a second of work."""

    def __init__(self) -> None:
        self._bar = None
        self._lock = threading.Lock()
        self._files = 0
        self._total_files: int | None = None

    def start(self, desc: str, total_bytes: int | None = None, total_files: int | None = None) -> None:
        from tqdm import tqdm

        self.close()
        self._files, self._total_files = 0, total_files
        self._bar = tqdm(
            total=total_bytes,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            delay=1.0,
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def advance(self, nbytes: int = 0, nfiles: int = 0) -> None:
        bar = self._bar
        if bar is None:
            return
        with self._lock:
            if nfiles:
                self._files += nfiles
                total = f"/{self._total_files}" if self._total_files is not None else ""
                bar.set_postfix_str(f"{self._files}{total} files", refresh=False)
            bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_for(quiet: bool) -> Progress:
    return TqdmProgress() if not quiet and sys.stderr.isatty() else NO_PROGRESS


def emit_json(value: Any) -> None:
    def default(o: Any) -> Any:
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)  # type: ignore[arg-type]
        return str(o)

    json.dump(value, sys.stdout, default=default, indent=2)
    sys.stdout.write("\n")


def failures_json(failed: list[Unrestored]) -> dict[str, list[dict[str, str]]]:
    """``missing`` (objects found nowhere, as before) and ``failed``: every file not
    restored, with its reason (missing, corrupt-remote, corrupt-cache) and where."""
    return {
        "missing": [{"path": u.path, "digest": str(u.digest)} for u in failed if u.reason == MISSING],
        "failed": [{"path": u.path, "digest": str(u.digest), "reason": u.reason, "where": u.where} for u in failed],
    }


def note(message: str) -> None:
    """A message for the person (stderr, so stdout stays parseable)."""
    print(message, file=sys.stderr)


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
