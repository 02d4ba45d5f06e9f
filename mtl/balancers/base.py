"""Loss balancing (DESIGN §2): weights ``λ`` [T] and transformed per-task losses ``ℓ_t = λ_t · f(L_t)``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mtl.context import StepContext
from mtl.step_hooks import StepProbe

LOG_EPS = 1e-8


@dataclass
class BalanceResult:
    """``terms`` [T] carry gradients (ℓ_t); ``weights`` [T] are detached λ_t for logging and heads."""

    terms: Tensor
    weights: Tensor


class Balancer(nn.Module):
    """Base class. Subclasses override :meth:`compute_weights` (and :meth:`forward` when the loss is not
    of the form ``λ_t f(L_t)``, as for UW and IMTL-L).

    State (EMA buffers, learnable scales, RNG) lives in ``state_dict()``: parameters, buffers and
    ``get_extra_state``.

    Step hooks (DESIGN §8, :mod:`mtl.step_hooks`): :meth:`before_step` and :meth:`after_step` run around
    each optimisation step when a subclass overrides them (FAMO, Auto-Lambda); ``needs_validation_batch``
    asks the trainer for a validation stream in the probe.
    """

    needs_validation_batch: bool = False

    def __init__(self, num_tasks: int, log: bool = False) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        self.num_tasks = num_tasks
        self.log = bool(log)

    def transform(self, losses: Tensor) -> Tensor:
        """``f(L)``: identity, or ``log(L + 1e-8)`` for log-based methods (DB-MTL Alg. 1 line 5)."""
        return torch.log(losses + LOG_EPS) if self.log else losses

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        """λ [T] from detached raw losses. Default: equal weights."""
        return torch.ones_like(losses)

    def forward(self, losses: Tensor, ctx: StepContext) -> BalanceResult:
        weights = self.compute_weights(losses.detach(), ctx).detach().to(losses.dtype)
        return BalanceResult(terms=weights * self.transform(losses), weights=weights)

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        """Called after each training epoch with the mean raw training loss per task."""

    def before_step(self, probe: StepProbe) -> None:
        """Called after ``optimizer.zero_grad`` and before the step's forward (``probe.losses`` is None)."""

    def after_step(self, probe: StepProbe) -> None:
        """Called after ``optimizer.step()`` with the step's batch and its losses before the step."""

    def get_extra_state(self) -> dict:
        return {}

    def set_extra_state(self, state: dict) -> None:
        pass
