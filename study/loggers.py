"""Experiment loggers a Ray Tune user expects, through Ray Tune's own callbacks (``loggers:`` in the YAML).

* ``tensorboard`` — :class:`ray.tune.logger.TBXLoggerCallback`: TensorBoard event files in each trial's
  folder under the study, ``<storage>/<study>/tune/study/<trial>/events.out.tfevents.*``
  (``tensorboard --logdir <storage>/<study>/tune``).
* ``mlflow`` — :class:`ray.air.integrations.mlflow.MLflowLoggerCallback`: one MLflow run per trial in the
  experiment ``experiment`` (default: the study's name), its hyperparameters as params and every reported
  metric per epoch. ``tracking_uri`` defaults to a local store in the study folder,
  ``sqlite:///<storage>/<study>/mlflow.db`` (local storage only; MLflow 3 refuses its old ``./mlruns``
  file store unless ``MLFLOW_ALLOW_FILE_STORE=true``); give a server's URI (``http://host:5000``) or any
  other MLflow store URI otherwise.
  MLflow is an optional extra: ``pip install 'mtl-study[mlflow]'``.

The metrics logged are those each trial reports to Tune (:data:`study.trial.REPORTED` and the per-task
validation and test metrics and training losses); Parquet stays the study's record.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from study.schema import LoggerEntry, Study

LOGGERS = ("tensorboard", "mlflow")
MLFLOW_EXTRA = "pip install 'mtl-study[mlflow]' (or mlflow-skinny)"


def logger_problems(entries: list[LoggerEntry], storage: str) -> list[str]:
    """What is wrong with the ``loggers:`` entries, before anything runs (``field: reason`` lines)."""
    problems = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        first = seen.setdefault(entry.name, i)
        if first != i:
            problems.append(f"loggers[{i}]: '{entry.name}' is listed twice (loggers[{first}]); list it once")
        if entry.name == "mlflow":
            if importlib.util.find_spec("mlflow") is None:
                problems.append(f"loggers[{i}]: mlflow is not installed: {MLFLOW_EXTRA}")
            if entry.tracking_uri is None and "://" in storage and not storage.startswith("file://"):
                problems.append(
                    f"loggers[{i}].tracking_uri: the study's storage '{storage}' is not local: give the "
                    "MLflow tracking server's URI (the default store is a file in a local folder)"
                )
        elif entry.tracking_uri is not None or entry.experiment is not None:
            problems.append(f"loggers[{i}]: tracking_uri and experiment apply to mlflow only")
    return problems


MLFLOW_DB = "mlflow.db"


def mlflow_tracking_uri(entry: LoggerEntry, study: Study) -> str:
    """The entry's tracking URI, or the local store ``sqlite:///<storage>/<study>/mlflow.db``."""
    if entry.tracking_uri is not None:
        return entry.tracking_uri
    from results_store.location import storage_uri

    base = storage_uri(study.storage).removeprefix("file://")
    return f"sqlite:///{Path(base).resolve() / study.name / MLFLOW_DB}"


def logger_callbacks(study: Study) -> list[Any]:
    """Ray Tune callbacks for the study's ``loggers:`` (built on the driver, before Tune starts)."""
    callbacks: list[Any] = []
    for entry in study.loggers:
        if entry.name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            callbacks.append(TBXLoggerCallback())
        elif entry.name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            callbacks.append(
                MLflowLoggerCallback(
                    tracking_uri=mlflow_tracking_uri(entry, study),
                    experiment_name=entry.experiment or study.name,
                    tags={"study": study.name},
                    save_artifact=False,
                )
            )
    return callbacks


__all__ = ["LOGGERS", "logger_callbacks", "logger_problems", "mlflow_tracking_uri"]
