"""Classification accuracy per task (Office-31 / Office-Home: each domain is a task), in percent.

Accuracy = correct / evaluated samples of the split, the unit of the DB-MTL paper's Office tables.
Implements the :class:`mtl.data.base.MetricAccumulator` protocol (registered as a virtual subclass by
:mod:`mtl.data.office`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


class AccuracyAccumulator:
    """Top-1 accuracy (%) of each task; a task missing from a batch is simply not updated."""

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = list(task_names)
        self.correct = {t: 0 for t in self.task_names}
        self.count = {t: 0 for t in self.task_names}

    @torch.no_grad()
    def update(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None:
        for t in self.task_names:
            if t not in targets:
                continue
            target = targets[t].reshape(-1)
            pred = preds[t].argmax(dim=-1).reshape(-1)
            self.correct[t] += int((pred == target).sum())
            self.count[t] += int(target.numel())

    def compute(self) -> dict[str, dict[str, float]]:
        return {
            t: {"acc": 100.0 * self.correct[t] / self.count[t] if self.count[t] else math.nan}
            for t in self.task_names
        }
