"""The public Python API is deliberate: these names, no more, no fewer."""

import dataver
import dataver.api


def test_package_exports():
    errors = sorted(n for n in dataver.__all__ if n != "__version__")
    assert dataver.__all__[0] == "__version__"
    assert isinstance(dataver.__version__, str) and dataver.__version__.count(".") == 2
    # the whole exception tree, each named in the package docstring's tree
    import dataver.errors as mod

    tree = sorted(n for n, c in vars(mod).items() if isinstance(c, type) and issubclass(c, mod.DataverError))
    assert errors == tree
    for name in errors:
        assert getattr(dataver, name) is getattr(mod, name)
        assert f" {name} " in dataver.__doc__, name


def test_one_exit_code_table():
    """errors.EXIT_CODES is the table: every family's code is in it, --help's epilog is
    made from it, and docs/commands.md lists the same codes with the same meanings."""
    import re
    from pathlib import Path

    from dataver.cli.main import app
    from dataver.errors import EXIT_CODES, CommandFailed, DataverError, exit_codes_help

    def families(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from families(sub)

    for cls in families(DataverError):
        if cls is not CommandFailed:  # exits with the failing command's own code
            assert cls.exit_code in EXIT_CODES, cls
    assert app.info.epilog == exit_codes_help()
    doc = (Path(__file__).parent.parent / "docs" / "commands.md").read_text()
    section = doc.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.M))
    assert sorted(map(int, rows)) == sorted(EXIT_CODES)
    for code, (_, meaning) in EXIT_CODES.items():
        assert rows[str(code)].replace("`", "").startswith(meaning), (code, rows[str(code)])


def test_api_exports():
    assert sorted(dataver.api.__all__) == ["get_path", "get_url", "lineage", "open", "read", "record", "view"]
    for name in dataver.api.__all__:
        assert callable(getattr(dataver.api, name)), name


def test_fsspec_protocol_is_registered():
    import fsspec

    from dataver.fs import DataverFileSystem

    assert fsspec.get_filesystem_class("dataver") is DataverFileSystem
