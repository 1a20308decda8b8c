"""One exception root for everything dataver reports to a user.

Each family carries the process exit code the CLI maps it to; the CLI's single
handler (``dataver.cli.main``) turns any ``DataverError`` into one line on stderr
and that code. Library exceptions (OSError, sqlite3, pygit2, ...) are translated
into these at the boundary where they occur.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .digest import Digest


class DataverError(Exception):
    """Root of dataver's errors. ``hint`` says what the user can do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class CheckFailed(DataverError):
    """A check (verify) ran and found disagreements: a result, not a crash."""

    exit_code = 1


class UsageError(DataverError):
    """Options or arguments that cannot go together (the CLI's own usage errors)."""

    exit_code = 2


class RepoError(DataverError):
    """Not inside a dataver repository, or its configuration is invalid."""

    exit_code = 3


class ConfigError(RepoError):
    """A configuration key or value is not valid."""


class PathError(DataverError):
    """A path given by the user cannot be used: outside the repo, missing, in git..."""

    exit_code = 4


class UnreadableFile(PathError):
    """A file could not be read (permissions, I/O error)."""


class SymlinkLoop(PathError):
    """A symbolic link cycle was found while walking a folder."""


class PointerError(DataverError):
    """A pointer file or manifest is malformed or hostile."""

    exit_code = 5


class WouldLoseData(DataverError):
    """The operation would overwrite or delete user data not saved in the cache."""

    exit_code = 6


class ObjectsMissing(DataverError):
    """Objects that pointers need are not in the cache (or on the remote)."""

    exit_code = 7


class IntegrityError(DataverError):
    """An object's bytes do not match its digest."""

    exit_code = 8


class FileChanged(IntegrityError):
    """A file changed while it was being hashed or copied."""


class RemoteError(DataverError):
    """A remote could not be reached, authenticated against or used."""

    exit_code = 9


class LockTimeout(DataverError):
    """Another dataver process holds the lock for longer than we wait."""

    exit_code = 10


class StorageError(DataverError):
    """Something could not be written: disk full, permissions, read-only filesystem."""

    exit_code = 11


class CommandFailed(DataverError):
    """The command ``dataver run`` (or ``reproduce``) ran exited non-zero: nothing was
    recorded, and dataver exits with the command's own code (128 + N for signal N)."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None):
        super().__init__(message, hint)
        self.exit_code = exit_code if 0 < exit_code < 256 else 1


# Why a file could not be restored (brought into the cache, or written into the workspace).
MISSING = "missing"  # in neither the cache nor the remote
CORRUPT_REMOTE = "corrupt-remote"  # the remote's copy does not hash to its name
CORRUPT_CACHE = "corrupt-cache"  # the cache's copy does not hash to its name


class Unrestored(NamedTuple):
    """A file a command could not restore, and why. Commands skip it, go on with the
    rest, and list every one in a single error at the end: IntegrityError if any is
    corrupt, else ObjectsMissing (``dataver.ops.core.missing_error``)."""

    path: str  # repo-relative, for messages
    digest: Digest
    reason: str = MISSING
    where: str = ""  # the remote or cache object that holds the bad copy
    manifest: bool = False  # a folder's manifest, not a file's content


# The one table of exit codes: code -> (what ``dataver --help`` says, what docs/commands.md
# says; its table starts each line with this text, tests/test_exported_members.py checks).
EXIT_CODES: dict[int, tuple[str, str]] = {
    0: ("ok", "success"),
    CheckFailed.exit_code: ("verify found differences", "check failed / differences found"),
    UsageError.exit_code: ("usage", "usage error (bad option or argument)"),
    RepoError.exit_code: ("repository/config", "repository or configuration error"),
    PathError.exit_code: (
        "bad path",
        "bad path (outside the repo, missing, tracked by git, unreadable, symlink loop)",
    ),
    PointerError.exit_code: ("bad pointer/manifest", "malformed or hostile pointer file or manifest"),
    WouldLoseData.exit_code: (
        "refused: would lose data (use --force/--yes)",
        "refused: would lose workspace changes",
    ),
    ObjectsMissing.exit_code: ("objects missing", "objects missing from the cache or remote"),
    IntegrityError.exit_code: (
        "integrity (corrupt object, file changed while hashed)",
        "integrity error (bytes do not match digest, file changed while hashed)",
    ),
    RemoteError.exit_code: ("remote", "remote error"),
    LockTimeout.exit_code: ("lock timeout", "lock held by another process (timed out)"),
    StorageError.exit_code: (
        "cannot write (disk full, permissions)",
        "cannot write (disk full, permissions, read-only filesystem)",
    ),
    130: ("interrupted", "interrupted (Ctrl-C)"),
}


def exit_codes_help() -> str:
    """The exit-code line of ``dataver --help``, from ``EXIT_CODES``."""
    codes = "; ".join(f"{code} {short}" for code, (short, _) in sorted(EXIT_CODES.items()))
    return f"Exit codes: {codes}; run/reproduce: a failing command's own code."
