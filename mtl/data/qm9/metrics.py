"""QM9's metric: the per-task MAE in the papers' units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtl.data.base import MetricAccumulator, Nested


class QM9MAE(MetricAccumulator):
    """Per-target MAE in the original units: predictions and targets are z-scored, so the absolute error
    is scaled back by the training standard deviation."""

    def __init__(self, task_names: Sequence[str], std: Tensor) -> None:
        self.task_names = list(task_names)
        self.std = std.double()
        self.abs_err = torch.zeros(len(self.task_names), dtype=torch.float64)
        self.count = 0

    def update(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None:
        for t, name in enumerate(self.task_names):
            diff = preds[name].detach().reshape(-1).double() - targets[name].detach().reshape(-1).double()
            self.abs_err[t] += diff.abs().sum().cpu()
        self.count += int(next(iter(targets.values())).shape[0])

    def compute(self) -> Nested:
        if self.count == 0:
            raise ValueError("no molecules were evaluated")
        mae = self.abs_err * self.std / self.count
        return {name: {"mae": float(mae[t])} for t, name in enumerate(self.task_names)}
