"""MetaBalance and MTAdam: optimiser-level methods written in the aggregator contract.

Both work per shared parameter tensor (``ctx.param_sizes``, filled by :func:`mtl.step.backward` in the exact
modes), as the authors' optimisers do; in ``rep`` mode the representation is one group. Their running
statistics are the aggregator's state (state dict). The run's optimiser then steps with the returned
update as the shared gradient; task-specific heads get the gradient of ``Σ_t ℓ_t``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.aggregators._common import (
    check_choice,
    check_range,
    group_dot,
    group_sizes,
    scale_groups,
    task_index,
)
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError

GRANULARITIES = ("tensor", "whole")


def _check_state(name: str, state: Tensor | None, shape: tuple[int, ...]) -> None:
    if state is not None and tuple(state.shape) != shape:
        raise ValueError(f"{name} state has shape {tuple(state.shape)}, the gradients need {shape}")


@AGGREGATORS.register("metabalance", "meta_balance")
class MetaBalance(Aggregator):
    """MetaBalance (He et al. 2022, Alg. 1 and Eq. 3-6), per shared parameter tensor ``k``.

    Running gradient magnitudes ``m_{t,k} ← β m_{t,k} + (1 − β) ‖g_{t,k}‖`` (``m = 0`` initially, no bias
    correction, as the authors' code); each task gradient is pulled towards the main task's magnitude,
    ``g_{t,k} ← r (m_{main,k} / m_{t,k}) g_{t,k} + (1 − r) g_{t,k}`` (relax factor ``r``); the update is their
    sum. The paper has one target task and auxiliary tasks: ``main_task`` (name or index, default the first
    task, as the authors' code) plays the target. Groups whose running magnitude is 0 are left unscaled.
    """

    def __init__(
        self,
        num_tasks: int,
        task_names: Sequence[str],
        relax_factor: float = 0.7,
        beta: float = 0.9,
        main_task: str | int = 0,
        granularity: str = "tensor",
    ) -> None:
        super().__init__(num_tasks)
        self.relax_factor = check_range("metabalance", "relax_factor", relax_factor, 0.0, 1.0, high_open=True)
        self.beta = check_range("metabalance", "beta", beta, 0.0, 1.0, high_open=True)
        self.main_index = task_index("metabalance main_task", main_task, list(task_names))
        self.granularity = check_choice("metabalance", "granularity", granularity, GRANULARITIES)
        self.norms: Tensor | None = None  # [T, K] running magnitudes

    def scales(self, norms: Tensor) -> Tensor:
        """Per task and group, ``r m_main / m_t + (1 − r)`` (1 where ``m_t = 0``)."""
        ratio = norms[self.main_index] / norms.clamp_min(1e-30)
        ratio = torch.where(norms > 0, ratio, torch.ones_like(norms))
        return self.relax_factor * ratio + (1.0 - self.relax_factor)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        num_cols = grads.shape[1]
        sizes = group_sizes(ctx, num_cols, self.granularity)
        current = group_dot(grads, grads, sizes).sqrt().double().cpu()
        _check_state("metabalance", self.norms, tuple(current.shape))
        if self.norms is None:
            self.norms = torch.zeros_like(current)
        self.norms = self.beta * self.norms + (1.0 - self.beta) * current
        scale = self.scales(self.norms).to(grads.device, grads.dtype)
        return AggregationResult(shared=scale_groups(grads, scale, sizes).sum(dim=0))

    def get_extra_state(self) -> dict:
        return {"norms": None if self.norms is None else self.norms.clone()}

    def set_extra_state(self, state: dict) -> None:
        self.norms = None if state["norms"] is None else state["norms"].clone()


@AGGREGATORS.register("mtadam", "mt_adam")
class MTAdam(Aggregator):
    """MTAdam (Malkiel & Wolf 2021, Alg. 1, as the authors' optimiser), per shared parameter tensor ``k``.

    Step ``s`` (from 1): running magnitudes ``n_{t,k} = ‖g_{t,k}‖`` at ``s = 1``, then
    ``n_{t,k} ← β₃ n_{t,k} + (1 − β₃) ‖g_{t,k}‖``; each task gradient is rescaled to the anchor's magnitude
    (the first task with ``n > 1e-10``), ``g_{t,k} ← rank_t n_{anchor,k} g_{t,k} / n_{t,k}``; per task Adam
    moments ``m_t ← β₁ m_t + (1 − β₁) g_t``, ``v_t ← β₂ v_t + (1 − β₂) g_t²``; the update direction is
    ``Σ_t m_t / (1 − β₁^s) / max_t (√(v_t / (1 − β₂^s)) + ε)`` (elementwise max over tasks).

    Deviation: MTAdam is an optimiser that steps ``θ ← θ − lr · direction``. Here the direction is the shared
    gradient handed to the run's optimiser, so MTAdam is reproduced exactly with plain SGD (no momentum) and
    composed with the run's optimiser otherwise (Adam re-normalises the already normalised direction). The
    heads use the run's optimiser on ``Σ_t ℓ_t`` (MTAdam on a single-task parameter is Adam).
    """

    def __init__(
        self,
        num_tasks: int,
        beta1: float = 0.9,
        beta2: float = 0.999,
        beta3: float = 0.9,
        eps: float = 1e-8,
        ranks: Sequence[float] | None = None,
        granularity: str = "tensor",
    ) -> None:
        super().__init__(num_tasks)
        self.beta1 = check_range("mtadam", "beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = check_range("mtadam", "beta2", beta2, 0.0, 1.0, high_open=True)
        self.beta3 = check_range("mtadam", "beta3", beta3, 0.0, 1.0, high_open=True)
        if not eps > 0:
            raise ConfigError(f"mtadam eps must be > 0, got {eps}")
        self.eps = float(eps)
        ranks = [1.0] * num_tasks if ranks is None else [float(r) for r in ranks]
        if len(ranks) != num_tasks or any(not r > 0 for r in ranks):
            raise ConfigError(f"mtadam ranks must be {num_tasks} positive numbers, got {ranks}")
        self.ranks = ranks
        self.granularity = check_choice("mtadam", "granularity", granularity, GRANULARITIES)
        self.step = 0
        self.norms: Tensor | None = None  # [T, K]
        self.exp_avg: Tensor | None = None  # [T, P]
        self.exp_avg_sq: Tensor | None = None  # [T, P]

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        num_cols = grads.shape[1]
        sizes = group_sizes(ctx, num_cols, self.granularity)
        current = group_dot(grads, grads, sizes).sqrt().double().cpu()
        _check_state("mtadam", self.norms, tuple(current.shape))
        self.step += 1
        if self.step == 1 or self.norms is None:
            self.norms = current.clone()
        else:
            self.norms = self.beta3 * self.norms + (1.0 - self.beta3) * current
        alive = self.norms > 1e-10
        anchor = torch.argmax(alive.to(torch.int64), dim=0)  # first task with a non-zero magnitude
        anchor_norm = self.norms.gather(0, anchor.unsqueeze(0)).squeeze(0)
        ranks = torch.tensor(self.ranks, dtype=torch.float64).unsqueeze(1)
        factor = ranks * anchor_norm / self.norms.clamp_min(1e-30)
        factor = torch.where(alive, factor, torch.ones_like(self.norms))
        g = scale_groups(grads, factor.to(grads.device, grads.dtype), sizes)
        if self.exp_avg is None:
            self.exp_avg = torch.zeros_like(grads)
            self.exp_avg_sq = torch.zeros_like(grads)
        self.exp_avg = self.exp_avg.to(grads.device, grads.dtype)
        self.exp_avg_sq = self.exp_avg_sq.to(grads.device, grads.dtype)
        self.exp_avg.mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
        bias1 = 1.0 - self.beta1**self.step
        bias2 = 1.0 - self.beta2**self.step
        denom = (self.exp_avg_sq.sqrt() / bias2**0.5 + self.eps).max(dim=0).values
        return AggregationResult(shared=self.exp_avg.sum(dim=0) / bias1 / denom)

    def get_extra_state(self) -> dict:
        def cpu(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.detach().cpu().clone()

        return {
            "step": self.step,
            "norms": cpu(self.norms),
            "exp_avg": cpu(self.exp_avg),
            "exp_avg_sq": cpu(self.exp_avg_sq),
        }

    def set_extra_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.norms = None if state["norms"] is None else state["norms"].clone()
        self.exp_avg = None if state["exp_avg"] is None else state["exp_avg"].clone()
        self.exp_avg_sq = None if state["exp_avg_sq"] is None else state["exp_avg_sq"].clone()
