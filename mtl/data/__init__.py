"""Datasets (DESIGN §5). ``build_dataset(name, **kwargs)`` validates the name and keyword arguments."""

from __future__ import annotations

from typing import Any

from mtl.data import cityscapes, nyuv2, office, qm9, synthetic  # noqa: F401  (registration)
from mtl.data.base import MetricAccumulator, MTLDataset, TaskSpec, TrainDefaults
from mtl.data.registry import DATASETS


def build_dataset(name: str, **kwargs: Any) -> MTLDataset:
    return DATASETS.build(name, **kwargs)


__all__ = ["DATASETS", "MTLDataset", "MetricAccumulator", "TaskSpec", "TrainDefaults", "build_dataset"]
