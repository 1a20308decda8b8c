"""``python -m dataver.scanshare``: one share of a big folder's prints-only scan, run
by ``workspace._scan_shares`` in another process. Reads the job (marshal) on stdin,
writes the answer (marshal) on stdout; it reads the folders and writes nothing else."""

from __future__ import annotations

import signal
import sys


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it ends this one
    from .workspace import scan_share

    sys.stdout.buffer.write(scan_share(sys.stdin.buffer.read()))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
