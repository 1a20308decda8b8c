#!/usr/bin/env python3
"""dataver vs DVC benchmark harness: see benchmarks/README.md and benchmarks/dvbench/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dvbench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
