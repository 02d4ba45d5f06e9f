"""The per-step context handed to balancers and aggregators."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class StepContext:
    """Where training stands when a step is taken.

    Attributes:
        epoch: 0-based epoch index.
        step: global iteration ``k``, counted from 1 (the ``k`` of DB-MTL's ``β/k^σ``).
        step_in_epoch: 0-based index of the batch inside the epoch.
        steps_per_epoch: number of optimisation steps in one epoch.
        lr_ratio: initial learning rate / current learning rate (IGBv2's ``α_lr``).
        losses: the step's raw per-task losses [T], detached (filled by :func:`mtl.step.backward` before the
            aggregator runs; GradNorm and other loss-aware aggregators read it).
        param_sizes: sizes of the shared parameter tensors whose flattened gradients are concatenated in the
            columns of ``G`` (filled by :func:`mtl.step.backward` in the ``exact`` modes; None in ``rep``
            mode). Layer-wise aggregators (MetaBalance, MTAdam, GradVac's per-tensor grouping) read it.
    """

    epoch: int
    step: int
    step_in_epoch: int = 0
    steps_per_epoch: int = 1
    lr_ratio: float = 1.0
    losses: Tensor | None = None
    param_sizes: tuple[int, ...] | None = None
