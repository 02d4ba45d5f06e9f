"""The dataset registry."""

from __future__ import annotations

from mtl.registry import Registry

DATASETS: Registry = Registry("dataset")
