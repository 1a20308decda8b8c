"""Options shared by several commands."""

import typer

QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries.")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
JOBS = typer.Option(None, "--jobs", "-j", min=1, help="Worker threads (default: core.jobs or CPU count).")
REV = typer.Option(None, "--rev", help="Use the pointers committed at this git revision (branch, tag, SHA, HEAD~3).")
