"""Options shared by several commands."""

import typer

QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries.")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
JOBS = typer.Option(
    None, "--jobs", "-j", min=1, help="Parallel workers (default: the remote's jobs setting, else 4 x CPU, at least 8)."
)
REV = typer.Option(None, "--rev", help="Use the pointers committed at this git revision (branch, tag, SHA, HEAD~3).")
