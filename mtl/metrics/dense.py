"""Dense-prediction metrics of NYUv2 and Cityscapes, accumulated over a whole split (DESIGN §5).

Definitions follow the MTAN/LibMTL evaluation (``examples/nyu/utils.py`` of LibMTL), with units matching the
DB-MTL paper's tables:

* segmentation: a ``C × C`` confusion matrix over every labelled pixel of the split (label ``-1``, and any
  label outside ``[0, C)``, is ignored); ``miou`` = mean over classes of ``TP / (TP + FP + FN)`` and
  ``pix_acc`` = ``trace / total``, both in **percent**. Classes that occur neither in the labels nor in the
  predictions of the split (union 0) are left out of the mean (LibMTL would return NaN).
* depth: valid pixels are ``depth != 0``; ``abs_err`` = Σ|p − g| / N and ``rel_err`` = Σ(|p − g| / g) / N over
  **all valid pixels of the split** (raw units: metres and a ratio — the papers print them unscaled).
  LibMTL weights its per-batch means by each batch's number of valid pixels, which is the same number.
* normals: valid pixels are those whose ground-truth normal is not all-zero (LibMTL tests
  ``sum(gt) != 0``, which also drops the measure-zero set of valid normals whose components sum to 0);
  predictions are L2-normalised; the angle ``acos(clamp(p̂·g, −1, 1))`` in degrees over all valid pixels of
  the split gives ``mean``, ``median`` (degrees) and ``within_11_25``, ``within_22_5``, ``within_30``
  (percent of pixels with angle strictly below 11.25°, 22.5°, 30°).

The median is read from a histogram of the angles with ``median_resolution`` (default 1e-4°) wide bins, so
it is exact up to half a bin without storing the 72 M angles of the NYUv2 test split; every other number is
exact (float64 sums and integer counts).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

Nested = dict[str, dict[str, float]]

ANGLE_THRESHOLDS: tuple[tuple[str, float], ...] = (
    ("within_11_25", 11.25),
    ("within_22_5", 22.5),
    ("within_30", 30.0),
)
SEGMENTATION_METRICS: dict[str, bool] = {"miou": True, "pix_acc": True}
DEPTH_METRICS: dict[str, bool] = {"abs_err": False, "rel_err": False}
NORMAL_METRICS: dict[str, bool] = {
    "mean": False,
    "median": False,
    **{name: True for name, _ in ANGLE_THRESHOLDS},
}


def depth_valid_mask(depth: Tensor) -> Tensor:
    """Valid depth pixels: ``depth != 0`` (same shape as ``depth``)."""
    return depth != 0


def normal_valid_mask(normal: Tensor) -> Tensor:
    """Valid normal pixels of a ``[B, 3, H, W]`` map: not all three components zero -> ``[B, 1, H, W]``."""
    return (normal != 0).any(dim=1, keepdim=True)


class SegmentationConfusion:
    """Confusion matrix ``[target, prediction]`` over a split; ``compute``: mIoU and pixel accuracy (%)."""

    def __init__(self, num_classes: int, ignore_index: int = -1) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred_labels: Tensor, target: Tensor) -> None:
        """``pred_labels`` and ``target``: integer label maps of the same shape."""
        if pred_labels.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred_labels.shape)} != target shape {tuple(target.shape)}"
            )
        c = self.num_classes
        target = target.reshape(-1).long()
        pred = pred_labels.reshape(-1).long()
        keep = (target >= 0) & (target < c) & (target != self.ignore_index)
        idx = target[keep] * c + pred[keep].clamp(0, c - 1)
        counts = torch.bincount(idx, minlength=c * c).reshape(c, c)
        self.matrix += counts.to("cpu", torch.int64)

    def compute(self) -> dict[str, float]:
        h = self.matrix.double()
        total = h.sum()
        if total == 0:
            return {"miou": math.nan, "pix_acc": math.nan}
        tp = torch.diag(h)
        union = h.sum(0) + h.sum(1) - tp
        present = union > 0
        miou = float((tp[present] / union[present]).mean()) if bool(present.any()) else math.nan
        return {"miou": 100.0 * miou, "pix_acc": 100.0 * float(tp.sum() / total)}


class DepthErrors:
    """Absolute and relative depth error over all valid pixels (``target != 0``) of a split."""

    def __init__(self) -> None:
        self.abs_sum = 0.0
        self.rel_sum = 0.0
        self.count = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred = pred.reshape(target.shape)
        mask = depth_valid_mask(target)
        p = pred[mask].double()
        g = target[mask].double()
        err = (p - g).abs()
        self.abs_sum += float(err.sum())
        self.rel_sum += float((err / g.abs()).sum())
        self.count += int(mask.sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {"abs_err": math.nan, "rel_err": math.nan}
        return {"abs_err": self.abs_sum / self.count, "rel_err": self.rel_sum / self.count}


class NormalErrors:
    """Angular error statistics of surface normals over all valid pixels of a split (see module docstring)."""

    def __init__(self, median_resolution: float = 1e-4) -> None:
        if not median_resolution > 0:
            raise ValueError(f"median_resolution must be > 0, got {median_resolution}")
        self.resolution = float(median_resolution)
        self.num_bins = math.ceil(180.0 / self.resolution) + 1
        self.hist: Tensor | None = None
        self.angle_sum = 0.0
        self.count = 0
        self.below = {name: 0 for name, _ in ANGLE_THRESHOLDS}

    @staticmethod
    def angles(pred: Tensor, target: Tensor) -> Tensor:
        """Angles in degrees between the normalised predictions and the targets, at the valid pixels."""
        mask = normal_valid_mask(target).squeeze(1)
        unit = F.normalize(pred, p=2, dim=1)
        cos = (unit * target).sum(dim=1)[mask].clamp(-1.0, 1.0)
        return torch.rad2deg(torch.acos(cos))

    def update(self, pred: Tensor, target: Tensor) -> None:
        ang = self.angles(pred, target)
        if ang.numel() == 0:
            return
        bins = torch.floor(ang.double() / self.resolution).long().clamp(0, self.num_bins - 1)
        counts = torch.bincount(bins, minlength=self.num_bins)
        self.hist = counts if self.hist is None else self.hist + counts.to(self.hist.device)
        self.angle_sum += float(ang.double().sum())
        self.count += int(ang.numel())
        for name, threshold in ANGLE_THRESHOLDS:
            self.below[name] += int((ang < threshold).sum())

    def _value_at_rank(self, cumulative: Tensor, rank: int) -> float:
        """Centre of the histogram bin holding the ``rank``-th smallest angle (0-based)."""
        b = int(torch.searchsorted(cumulative, torch.tensor([rank + 1], dtype=cumulative.dtype))[0])
        return (b + 0.5) * self.resolution

    def median(self) -> float:
        if self.hist is None or self.count == 0:
            return math.nan
        cumulative = torch.cumsum(self.hist.cpu(), dim=0)
        n = self.count
        if n % 2:
            return self._value_at_rank(cumulative, n // 2)
        return 0.5 * (self._value_at_rank(cumulative, n // 2 - 1) + self._value_at_rank(cumulative, n // 2))

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {name: math.nan for name in NORMAL_METRICS}
        out = {"mean": self.angle_sum / self.count, "median": self.median()}
        for name, _ in ANGLE_THRESHOLDS:
            out[name] = 100.0 * self.below[name] / self.count
        return out


class DenseMetricAccumulator:
    """Metrics of the dense tasks in ``kinds`` (task -> ``"segmentation"``, ``"depth"`` or ``"normal"``).

    Expects predictions as produced by the dense models: segmentation logits ``[B, C, H, W]``, depth
    ``[B, 1, H, W]``, normals ``[B, 3, H, W]``; targets as produced by the dense loaders: labels ``[B, H, W]``
    (int64, −1 ignored), depth ``[B, 1, H, W]`` (0 invalid), normals ``[B, 3, H, W]`` (all-zero invalid).
    Implements :class:`mtl.data.base.MetricAccumulator` (registered there as a virtual subclass, so that this
    module does not import :mod:`mtl.data`).
    """

    def __init__(
        self, kinds: Mapping[str, str], num_classes: int | None = None, median_resolution: float = 1e-4
    ) -> None:
        self.kinds = dict(kinds)
        self.parts: dict[str, SegmentationConfusion | DepthErrors | NormalErrors] = {}
        for task, kind in self.kinds.items():
            if kind == "segmentation":
                if num_classes is None:
                    raise ValueError("a segmentation task needs num_classes")
                self.parts[task] = SegmentationConfusion(num_classes)
            elif kind == "depth":
                self.parts[task] = DepthErrors()
            elif kind == "normal":
                self.parts[task] = NormalErrors(median_resolution)
            else:
                raise ValueError(f"unknown dense task kind '{kind}' for task '{task}'")

    @torch.no_grad()
    def update(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None:
        for task, part in self.parts.items():
            pred, target = preds[task].detach(), targets[task]
            if isinstance(part, SegmentationConfusion):
                part.update(pred.argmax(dim=1), target)
            else:
                part.update(pred.float(), target.float())

    def compute(self) -> Nested:
        return {task: part.compute() for task, part in self.parts.items()}


def dense_metric_flags(kinds: Sequence[tuple[str, str]]) -> dict[str, dict[str, bool]]:
    """``higher_is_better`` flags of each (task, kind)."""
    table = {"segmentation": SEGMENTATION_METRICS, "depth": DEPTH_METRICS, "normal": NORMAL_METRICS}
    return {task: dict(table[kind]) for task, kind in kinds}
