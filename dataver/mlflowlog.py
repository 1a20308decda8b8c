"""Tell MLflow which data versions a run used, when MLflow is installed and a run is active.

Inputs become MLflow datasets (name: the path; digest: dataver's digest; source: a
``dataver://PATH?repo=ROOT&rev=COMMIT`` URL) logged with ``mlflow.log_input``, and each
output's digest a tag ``dataver.output.PATH``, so the MLflow UI shows exact data
versions. The only module that imports mlflow; optional (``pip install dataver[mlflow]``).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote

from .lineagefmt import Lineage


def source_url(repo_root: str, path: str, rev: str | None) -> str:
    query = f"repo={quote(repo_root)}" + (f"&rev={rev}" if rev else "")
    return f"dataver://{quote(path)}?{query}"


def log(lin: Lineage, repo_root: str) -> str | None:
    """Log ``lin`` into the active MLflow run (or the one ``MLFLOW_RUN_ID`` names, as
    ``mlflow run`` sets for a command): the run id, or None when there is none."""
    try:
        import mlflow
        from mlflow.data.meta_dataset import MetaDataset
    except ImportError:  # not installed, or without the numpy its datasets need
        return None
    active = mlflow.active_run()
    if active is None and not os.environ.get("MLFLOW_RUN_ID"):
        return None
    source = _source_class()
    started = None
    if active is None:
        started = mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"])
    try:
        for item in list(lin.inputs) + list(lin.params):
            url = source_url(repo_root, item.path, lin.code.commit)
            ds = MetaDataset(source(url), name=item.path, digest=str(item.digest))
            mlflow.log_input(ds, context="dataver run")
        for o in lin.outputs:
            mlflow.set_tag(f"dataver.output.{o.path}"[:250], str(o.digest))
        mlflow.set_tag("dataver.lineage_id", lin.id)
        return mlflow.active_run().info.run_id
    finally:
        if started is not None:
            mlflow.end_run()


_SOURCE: Any = None


def _source_class() -> Any:
    """A ``DatasetSource`` of type ``dataver`` (built on first use: mlflow is optional)."""
    global _SOURCE
    if _SOURCE is None:
        from mlflow.data.dataset_source import DatasetSource

        class DataverDatasetSource(DatasetSource):
            def __init__(self, url: str):
                self.url = url

            @staticmethod
            def _get_source_type() -> str:
                return "dataver"

            def load(self, **kwargs: Any) -> str:
                raise NotImplementedError("read it with dataver.api.open or the dataver:// filesystem")

            @staticmethod
            def _can_resolve(raw_source: Any) -> bool:
                return isinstance(raw_source, str) and raw_source.startswith("dataver://")

            @classmethod
            def _resolve(cls, raw_source: Any) -> DataverDatasetSource:
                return cls(raw_source)

            def to_dict(self) -> dict[str, Any]:
                return {"url": self.url}

            @classmethod
            def from_dict(cls, source_dict: dict[Any, Any]) -> DataverDatasetSource:
                return cls(source_dict["url"])

        _SOURCE = DataverDatasetSource
    return _SOURCE
