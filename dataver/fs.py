"""The ``dataver://`` fsspec filesystem: tracked data at a revision, read-only.

    import pandas as pd
    pd.read_csv("dataver://data/train.csv", storage_options={"rev": "v1.0"})

Registered under the ``dataver`` protocol through the ``fsspec.specs`` entry point.
Options: ``rev`` (any git revision; default the workspace pointers) and ``repo``
(a path inside the dataver repository, default the current directory; or another
repository by path or any URL git can clone).
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractFileSystem

from .errors import PathError
from .view import open_view


class DataverFileSystem(AbstractFileSystem):
    protocol = "dataver"
    root_marker = ""
    cachable = False  # pointers change under a long-running process: never reuse an instance

    def __init__(self, repo: str | None = None, rev: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.view = open_view(repo, rev)

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = super()._strip_protocol(path)
        return path.lstrip("/")

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if not self.view.is_dir(path):
            info = self.info(path)
            return [info] if detail else [info["name"]]
        entries = []
        for name, kind, size in self.view.listdir(path):
            full = f"{path}/{name}" if path else name
            entries.append({"name": full, "type": kind, "size": size})
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if self.view.is_dir(path):
            return {"name": path, "type": "directory", "size": 0}
        try:
            f = self.view.file(path)
        except PathError as e:  # not tracked there: what fsspec callers expect is FileNotFoundError
            raise FileNotFoundError(path) from e
        return {"name": path, "type": "file", "size": f.size, "digest": str(f.digest)}

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" not in mode or any(c in mode for c in "wax+"):
            raise PermissionError("the dataver:// filesystem is read-only")
        path = self._strip_protocol(path)
        try:
            info = self.view.file(path)
        except PathError as e:  # not tracked at this revision: what fsspec callers expect
            raise FileNotFoundError(path) from e
        return open(self.view.local_path(info), "rb")  # noqa: SIM115 - returned to the caller
