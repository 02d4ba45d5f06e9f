"""Metric accumulators for the vision benchmarks (dense prediction and classification)."""

from mtl.metrics.classification import AccuracyAccumulator
from mtl.metrics.dense import (
    DenseMetricAccumulator,
    DepthErrors,
    NormalErrors,
    SegmentationConfusion,
    depth_valid_mask,
    normal_valid_mask,
)

__all__ = [
    "AccuracyAccumulator",
    "DenseMetricAccumulator",
    "DepthErrors",
    "NormalErrors",
    "SegmentationConfusion",
    "depth_valid_mask",
    "normal_valid_mask",
]
