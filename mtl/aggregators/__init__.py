"""Gradient aggregators: [T, P] task gradients -> one shared update (DESIGN §2)."""

from mtl.aggregators import (  # noqa: F401  (registration)
    adaptive,
    aligned,
    basic,
    cagrad,
    config,
    cr_mogm,
    excess_mtl,
    fairgrad,
    imtl,
    jd,
    mgda,
    modo,
    nash,
    optimizer_level,
    projection,
    sdmgrad,
)
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS

__all__ = ["AGGREGATORS", "AggregationResult", "Aggregator"]
