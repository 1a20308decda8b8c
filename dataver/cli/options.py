"""Options shared by several commands."""

import typer

QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars or summaries.")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
JOBS = typer.Option(
    None, "--jobs", "-j", min=1, help="Parallel workers (default: the remote's jobs setting, else 4 x CPU, at least 8)."
)
REV = typer.Option(None, "--rev", help="Use the pointers committed at this git revision (branch, tag, SHA, HEAD~3).")
REVS = typer.Option(
    None,
    "--rev",
    help="Use the pointers committed at this git revision instead of the workspace's; repeat for several.",
)
ALL_BRANCHES = typer.Option(False, "--all-branches", "-a", help="Also every branch tip's pointers.")
ALL_TAGS = typer.Option(False, "--all-tags", "-T", help="Also every tag's pointers.")
ALL_COMMITS = typer.Option(False, "--all-commits", "-A", help="Also every commit's pointers (of every branch and tag).")


def revisions(revs, all_branches: bool = False, all_tags: bool = False, all_commits: bool = False):
    """The ``history.Revisions`` the revision options ask for."""
    from ..history import Revisions

    return Revisions(tuple(revs or ()), all_branches, all_tags, all_commits)
