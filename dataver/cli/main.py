"""The ``dataver`` entry point: builds the typer app and maps errors to exit codes.

This is the one place where exceptions become messages: a ``DataverError`` prints
``error: <message>`` (and its hint) on stderr and exits with the family's code (see
``dataver.errors.EXIT_CODES``); usage errors exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import os
import sys

import typer

from .. import __version__
from ..errors import DataverError, exit_codes_help

try:  # typer >= 0.26 vendors click and raises its own exception classes
    from typer._click import exceptions as _click_exceptions
except ImportError:  # typer < 0.26 (what we pin, for start-up time) uses click itself
    from click import exceptions as _click_exceptions

_EXIT: tuple[type[BaseException], ...] = (_click_exceptions.Exit, typer.Exit)
_ABORT: tuple[type[BaseException], ...] = (_click_exceptions.Abort, typer.Abort, KeyboardInterrupt)
_CLICK_ERRORS: tuple[type[BaseException], ...] = (_click_exceptions.ClickException,)

EXIT_CODES_HELP = exit_codes_help()  # from the one table, errors.EXIT_CODES

app = typer.Typer(
    name="dataver",
    help="Version large data and models beside git: content-addressed cache, pointer files, remotes.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"dataver {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Version large data and models beside git."""


from . import cache_cmds, info_cmds, lineage_cmds, remote_cmds, repo_cmds, workspace_cmds  # noqa: E402  (commands register on app)

_ = (cache_cmds, info_cmds, lineage_cmds, remote_cmds, repo_cmds, workspace_cmds)


def main(argv: list[str] | None = None) -> int:
    try:
        rv = app(args=argv, prog_name="dataver", standalone_mode=False)
    except DataverError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except _EXIT as e:
        return e.exit_code
    except _CLICK_ERRORS as e:
        _one_suggestion(e)
        e.show()
        return e.exit_code
    except _ABORT:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    if rv == 130:  # click hands Ctrl-C back as the return value 130
        print("interrupted", file=sys.stderr)
    return rv if isinstance(rv, int) else 0


def _one_suggestion(e: BaseException) -> None:
    """click 8.4+ suggests a close command name itself (``NoSuchCommand``) and typer adds
    the same "Did you mean ...?" to the message: keep click's only."""
    message = getattr(e, "message", None)
    if getattr(e, "possibilities", None) and isinstance(message, str) and " Did you mean " in message:
        e.message = message.split(" Did you mean ", 1)[0]  # type: ignore[misc]


def main_exit() -> None:
    """Console-script entry point (and ``python -m dataver``)."""
    sys.unraisablehook = _quiet_teardown
    sys.exit(main())


def _quiet_teardown(unraisable) -> None:  # type: ignore[no-untyped-def]
    """An exception in a library's ``__del__`` or finalizer (fsspec's filesystems tear
    down their event loop after an error) is no news to a user who already got one
    ``error:`` line: shown only with DATAVER_DEBUG=1."""
    if os.environ.get("DATAVER_DEBUG"):
        sys.__unraisablehook__(unraisable)
