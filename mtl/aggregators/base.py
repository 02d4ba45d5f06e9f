"""Gradient aggregation (DESIGN §2): the task-gradient matrix ``G`` [T, P] -> one shared update [P]."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from mtl.context import StepContext
from mtl.step_hooks import StepProbe


@dataclass
class AggregationResult:
    """``shared`` [P] is the update written into the shared parameters' ``.grad``.

    ``task_weights`` [T], when given, also weight the task-specific heads' gradients (MGDA, GradNorm,
    Nash-MTL); when ``None`` the heads get the gradient of ``Σ_t ℓ_t``.
    """

    shared: Tensor
    task_weights: Tensor | None = None


class Aggregator(nn.Module):
    """Base class. ``weights_heads`` says whether :attr:`AggregationResult.task_weights` is returned."""

    weights_heads: bool = False
    needs_validation_batch: bool = False  # step hooks (DESIGN §8): see mtl.step_hooks

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        raise NotImplementedError

    def before_step(self, probe: StepProbe) -> None:
        """Called after ``optimizer.zero_grad`` and before the step's forward (``probe.losses`` is None)."""

    def after_step(self, probe: StepProbe) -> None:
        """Called after ``optimizer.step()`` with the step's batch and its losses before the step."""

    def get_extra_state(self) -> dict:
        return {}

    def set_extra_state(self, state: dict) -> None:
        pass
