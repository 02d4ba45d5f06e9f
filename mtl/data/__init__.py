"""Datasets (DESIGN §5). ``build_dataset(name, **kwargs)`` validates the name and keyword arguments.

The names below are loaded on first use (PEP 562) from :mod:`mtl.data.catalog`, which imports every
dataset (and torch): ``mtl.data.references`` and ``mtl.data.registry`` stay importable without them, so
read-only tools (``study status``, ``analysis``) can name the published STL rows cheaply.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DATASETS",
    "MTLDataset",
    "MetricAccumulator",
    "TaskSpec",
    "build_dataset",
    "check_dataset",
    "check_model",
    "dataset_task_names",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mtl.data import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module 'mtl.data' has no attribute {name!r}")
