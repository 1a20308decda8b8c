"""The public Python API is deliberate: these names, no more, no fewer."""

import dataver
import dataver.api


def test_package_exports():
    assert dataver.__all__ == ["__version__"]
    assert isinstance(dataver.__version__, str) and dataver.__version__.count(".") == 2


def test_api_exports():
    assert sorted(dataver.api.__all__) == ["get_path", "lineage", "open", "read", "record", "view"]
    for name in dataver.api.__all__:
        assert callable(getattr(dataver.api, name)), name


def test_fsspec_protocol_is_registered():
    import fsspec

    from dataver.fs import DataverFileSystem

    assert fsspec.get_filesystem_class("dataver") is DataverFileSystem
