"""Gradient aggregators: [T, P] task gradients -> one shared update (DESIGN §2)."""

from mtl.aggregators import basic  # noqa: F401  (registration)
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS

__all__ = ["AGGREGATORS", "AggregationResult", "Aggregator"]
