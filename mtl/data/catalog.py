"""The dataset catalogue (DESIGN §5): every dataset registered, and ``build_dataset(name, **kwargs)``,
which validates the name and keyword arguments. Imported on first use through :mod:`mtl.data`."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from mtl.data import cityscapes, nyuv2, office, qm9, synthetic  # noqa: F401  (registration)
from mtl.data.base import MTLDataset
from mtl.data.registry import DATASETS


def build_dataset(name: str, **kwargs: Any) -> MTLDataset:
    return DATASETS.build(name, **kwargs)


def check_dataset(name: str, kwargs: Mapping[str, Any]) -> None:
    """Check a dataset's name and constructor arguments (names, types, ranges) without reading any data:
    what ``build_dataset(name, **kwargs)`` would reject before loading. Raises ConfigError."""
    values = DATASETS.coerce(name, dict(kwargs))
    cls = DATASETS.factory(name)
    if isinstance(cls, type) and issubclass(cls, MTLDataset):
        bound = inspect.signature(cls).bind_partial(**values)
        bound.apply_defaults()
        cls.check_arguments(bound.arguments)


def dataset_task_names(name: str, kwargs: Mapping[str, Any]) -> list[str]:
    """The task names of dataset ``name`` built with ``kwargs``, without reading any data."""
    cls = DATASETS.factory(name)
    values = DATASETS.coerce(name, dict(kwargs))
    return cls.task_names_for(values) if isinstance(cls, type) and issubclass(cls, MTLDataset) else []


def check_model(name: str, architecture: str, model_kwargs: Mapping[str, Any]) -> None:
    """Check an architecture and model keyword arguments for dataset ``name`` without building the model
    (what the dataset's ``build_model`` would reject). Raises ConfigError."""
    cls = DATASETS.factory(name)
    if isinstance(cls, type) and issubclass(cls, MTLDataset):
        cls.check_model_arguments(architecture, model_kwargs)
