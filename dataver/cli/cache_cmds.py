"""Commands about the cache: verify, gc, hash, and debugging plumbing."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, List, Optional

import typer

from ..errors import CheckFailed, WouldLoseData
from .main import app
from .options import JSON, QUIET
from .render import emit_json, human_size, note, progress_for

if TYPE_CHECKING:
    from ..ops.gc import GcResult


@app.command()
def verify(
    paths: Optional[List[str]] = typer.Argument(None, help="Tracked paths (default: all)."),
    quiet: bool = QUIET,
    json_out: bool = JSON,
    remote_name: Optional[str] = typer.Option(
        None, "--remote", "-r", help="Instead: check that REMOTE holds every object the pointers at HEAD need."
    ),
    deep: bool = typer.Option(
        False, "--deep", help="With --remote: also read every pack (or object) there and re-hash what it holds."
    ),
    rev: Optional[List[str]] = typer.Option(
        None, "--rev", help="With --remote: the pointers at this revision instead of HEAD; repeat for several."
    ),
    all_branches: bool = typer.Option(False, "--all-branches", "-a", help="With --remote: also every branch tip's."),
    all_tags: bool = typer.Option(False, "--all-tags", "-T", help="With --remote: also every tag's pointers."),
    all_commits: bool = typer.Option(False, "--all-commits", "-A", help="With --remote: also every commit's."),
) -> None:
    """Re-read everything and exit 1 if the workspace or cache disagrees with any pointer.

    Ignores the stat cache: every workspace file and every cache object the pointers
    need is hashed again. Use it as a CI gate. With --remote NAME it checks instead
    that the remote has every object the pointers committed at HEAD need (catches
    "forgot to dataver push") and, on a packed remote, that its index agrees with its
    packs; --deep also downloads every pack and re-hashes every object in it.
    --rev REV (repeatable), -a, -T and -A check other revisions' pointers instead of
    HEAD's (-a/-T/-A with HEAD's, as gc keeps them).
    """
    from ..errors import UsageError
    from ..ops.core import verify as do_verify
    from ..repo import Repo
    from .options import revisions

    repo = Repo.find()
    revs = revisions(rev, all_branches, all_tags, all_commits)
    if remote_name is not None:
        from ..ops.sync import verify_remote

        problems = verify_remote(repo, remote_name, deep, rev=_at_head(revs))
    elif not revs.plain:
        raise UsageError(
            "verify checks the workspace against its own pointers; --rev and --all-* go with --remote",
            "dataver verify --remote NAME --rev REV",
        )
    else:
        problems = do_verify(repo, paths, progress_for(quiet))
    if json_out:
        emit_json({"ok": not problems, "problems": problems})
    else:
        for p in problems:
            print(f"{p.path}: {p.what}")
    if problems:
        raise CheckFailed(f"verify found {len(problems)} problem(s)")
    if not quiet and not json_out:
        note("verify: everything matches")


def _at_head(revs):
    """verify --remote's revisions: HEAD's pointers by default, and beside -a/-T/-A
    (None keeps the plain default, HEAD)."""
    if revs.plain:
        return None
    if revs.revs:
        return revs
    return type(revs)(("HEAD",), revs.all_branches, revs.all_tags, revs.all_commits)


class _Declined(Exception):
    """The user answered no at gc's prompt."""


@app.command()
def gc(
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Only report what would be removed."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    all_branches: bool = typer.Option(False, "--all-branches", "-a", help="Keep what any branch tip references."),
    all_tags: bool = typer.Option(False, "--all-tags", "-T", help="Keep what any tag references."),
    all_commits: bool = typer.Option(False, "--all-commits", "-A", help="Keep what any commit references."),
    not_pushed_too: bool = typer.Option(
        False, "--not-pushed-too", help="Also remove committed data that no remote holds (its only copy)."
    ),
    remote_name: Optional[str] = typer.Option(None, "--remote", "-r", help="Collect garbage on this remote instead."),
    json_out: bool = JSON,
) -> None:
    """Remove objects that no kept revision references, from the cache or a remote.

    Always kept: what the workspace's pointers reference; add --all-branches,
    --all-tags or --all-commits to keep older versions too. In the cache, what any
    commit references and no remote holds is kept as well, unless --not-pushed-too.
    Asks first unless --yes.
    """
    from ..ops.gc import gc as do_gc
    from ..repo import Repo

    repo = Repo.find()
    if remote_name is None and repo.config.get("cache.dir"):
        note(
            f"warning: the cache at {repo.cache.root} is set by cache.dir and may be shared: gc keeps only what "
            "this repository references, so objects only other repositories use will be removed"
        )

    def confirm(plan: GcResult) -> None:
        if not plan.removed or yes:
            return  # stale temporaries need no confirmation
        if not sys.stdin.isatty():
            raise WouldLoseData(
                f"gc would remove {plan.removed} object(s) ({human_size(plan.freed)}) from the {plan.where}",
                "review with --dry-run, then confirm with --yes",
            )
        if not typer.confirm(f"remove {plan.removed} object(s), {human_size(plan.freed)}, from the {plan.where}?"):
            raise _Declined  # an answer, not an interruption (Ctrl-C at the prompt still is one: exit 130)

    try:
        with repo.lock(note, cache_exclusive=True):
            result = do_gc(
                repo,
                dry_run=dry_run,
                all_branches=all_branches,
                all_tags=all_tags,
                all_commits=all_commits,
                remote_name=remote_name,
                not_pushed_too=not_pushed_too,
                confirm=confirm,
            )
    except _Declined:
        note("gc: nothing removed")
        return
    if json_out:
        emit_json({k: v for k, v in vars(result).items() if k != "removed_paths"})
        return
    verb = "would remove" if dry_run else "removed"
    revs = f" (kept what {result.revisions} commit(s) reference)" if result.revisions else ""
    note(
        f"gc ({result.where}): {verb} {result.removed} object(s), {human_size(result.freed)}; kept {result.kept}{revs}"
    )
    if result.packs_deleted or result.packs_rewritten or result.orphan_packs:
        verb = "would delete" if dry_run else "deleted"
        note(
            f"packs: {verb} {result.packs_deleted + result.orphan_packs} pack(s) "
            f"({result.orphan_packs} left by killed pushes), "
            f"{'would rewrite' if dry_run else 'rewrote'} {result.packs_rewritten} "
            f"({human_size(result.bytes_rewritten)} of live objects copied into new packs)"
        )
    _report_unpushed(result)


def _report_unpushed(result: GcResult) -> None:
    """Why gc kept more than its scope: committed data with no copy on a remote."""
    for name, why in result.unreachable_remotes.items():
        note(f"warning: could not check remote {name!r}, so gc counted none of its objects as pushed: {why}")
    if result.unreadable_pointers:
        shown = ", ".join(result.unreadable_pointers[:3]) + (", ..." if len(result.unreadable_pointers) > 3 else "")
        note(
            f"warning: {len(result.unreadable_pointers)} committed pointer file(s) do not parse ({shown}); "
            "gc kept every object they name"
        )
    if result.unpushed_kept:
        revs = [r[:10] for r in result.unpushed_revisions]
        how = "dataver push " + " ".join(f"--rev {r}" for r in revs)
        if len(revs) > 3:  # a long history: every commit at once
            how = f"dataver push --all-commits: {len(revs)} commits need them"
        note(
            f"kept {result.unpushed_kept} object(s) ({human_size(result.unpushed_bytes)}) that committed revisions "
            f"need and no remote holds; push them ({how}), or pass --not-pushed-too"
        )


@app.command("hash")
def hash_cmd(
    path: str = typer.Argument(..., help="A file or folder."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Hashing threads (default: CPU count)."),
    hash_name: Optional[str] = typer.Option(
        None,
        "--hash",
        metavar="ALGORITHM",
        help="xxh3-128 or blake3 (default: the repository's core.hash, or xxh3-128 outside one).",
    ),
    json_out: bool = JSON,
) -> None:
    """Print the digest a pointer would record for PATH (no repository needed).

    For a folder this is its manifest's digest.
    """
    from ..ops.core import hash_path

    h = hash_path(path, jobs, algorithm=_hash_algorithm(hash_name))
    if json_out:
        emit_json(h)
    else:
        print(f"{h.digest}  {h.path}")


debug = typer.Typer(help="Plumbing for inspecting the cache.", no_args_is_help=True)
app.add_typer(debug, name="debug")


def _hash_algorithm(name: str | None) -> str:
    """``--hash NAME`` checked, or the current repository's core.hash, or the default."""
    from ..config import validate
    from ..digest import DEFAULT_ALGORITHM
    from ..errors import RepoError
    from ..repo import Repo

    if name is not None:
        validate("core.hash", name)
        return name
    try:
        return Repo.find().hash_algorithm
    except RepoError:
        return DEFAULT_ALGORITHM


def _parse_digest(text: str):
    """ALGORITHM:HEX, or bare HEX of the algorithm its length names (else xxh3-128's,
    whose check then says what is wrong)."""
    from ..digest import DEFAULT_ALGORITHM, Digest, algorithm_for_length

    return Digest.parse(text, algorithm_for_length(text) or DEFAULT_ALGORITHM)


@debug.command("digest-path")
def digest_path(digest: str, manifest: bool = typer.Option(False, "--manifest")) -> None:
    """Print the cache path of a digest (ALGORITHM:HEX, or HEX: 32 digits xxh3-128, 64 blake3)."""
    from ..repo import Repo
    from ..store import ObjRef

    print(Repo.find().cache.path(ObjRef(_parse_digest(digest), manifest)))


@debug.command("cat-object")
def cat_object(digest: str, manifest: bool = typer.Option(False, "--manifest")) -> None:
    """Write an object's bytes to stdout."""
    import shutil

    from ..errors import ObjectsMissing
    from ..repo import Repo
    from ..store import ObjRef

    ref = ObjRef(_parse_digest(digest), manifest)
    cache = Repo.find().cache
    packed = cache.packed_bytes(ref)
    if packed is not None:
        sys.stdout.buffer.write(packed)
        return
    try:
        with open(cache.path(ref), "rb") as f:
            shutil.copyfileobj(f, sys.stdout.buffer)
    except FileNotFoundError:
        raise ObjectsMissing(f"object {ref.digest} is not in the cache") from None
