"""Gradient surgery: PCGrad, GradVac and GradDrop. Each keeps a seeded generator in its state."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.aggregators._common import (
    NORM_EPS,
    check_choice,
    check_range,
    group_dot,
    group_sizes,
    seeded_generator,
)
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext

GRANULARITIES = ("whole", "tensor")


class _Seeded(Aggregator):
    """An aggregator with its own generator (state dict: ``generator``)."""

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks)
        self.generator = seeded_generator(seed)

    def other_tasks(self, i: int, num_tasks: int) -> list[int]:
        """The tasks other than ``i`` in a random order (PCGrad Alg. 1 line 4)."""
        order = torch.randperm(num_tasks, generator=self.generator).tolist()
        return [j for j in order if j != i]

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def project_conflicting(grads: Tensor, orders: list[list[int]]) -> Tensor:
    """PCGrad's projected gradients (Yu et al. 2020, Alg. 1): for each task ``i`` and, in ``orders[i]``,
    each other task ``j``: if ``g_i^PC · g_j < 0`` then ``g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j``
    (Eq. in Alg. 1 line 6), against the original ``g_j``. Returns the [T, P] projected gradients."""
    pc = grads.clone()
    sq = (grads * grads).sum(dim=1)
    for i, order in enumerate(orders):
        for j in order:
            dot = pc[i] @ grads[j]
            if float(dot) < 0.0 and float(sq[j]) > 0.0:
                pc[i] -= (dot / sq[j]) * grads[j]
    return pc


@AGGREGATORS.register("pcgrad")
class PCGrad(_Seeded):
    """PCGrad (Yu et al. 2020, Alg. 1): project each task gradient onto the normal plane of every task
    gradient it conflicts with, in a random order per task; the update is ``Σ_t g_t^PC``. Heads get the
    gradient of ``Σ_t ℓ_t`` (as in LibMTL and the Nash-MTL/IGB reference code)."""

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__(num_tasks, seed)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        num_tasks = grads.shape[0]
        orders = [self.other_tasks(i, num_tasks) for i in range(num_tasks)]
        return AggregationResult(shared=project_conflicting(grads, orders).sum(dim=0))


@AGGREGATORS.register("gradvac", "grad_vac")
class GradVac(_Seeded):
    """Gradient Vaccine (Wang et al. 2021, Alg. 1 and Eq. 4-5).

    For each task ``i`` and each other task ``j`` in a random order, per parameter group ``k``: with
    ``φ = cos(g_i^{PC}, g_j)`` and the EMA target ``φ̂_ijk`` (initialised to 0), if ``φ < φ̂`` then
    ``g_i^{PC} ← g_i^{PC} + g_j ‖g_i^{PC}‖ (φ̂ √(1−φ²) − φ √(1−φ̂²)) / (‖g_j‖ √(1−φ̂²))`` (Eq. 4); then
    ``φ̂ ← (1−β) φ̂ + β φ`` (Eq. 5). The update is ``Σ_i g_i^{PC}``.

    ``beta`` defaults to LibMTL's 0.5 (the DB-MTL comparison); ``granularity`` is ``whole`` (one group,
    LibMTL's default) or ``tensor`` (one group per shared parameter tensor, LibMTL's "all_matrix"). The EMA
    update runs for every pair at every step, as in the paper's Alg. 1 and in current LibMTL (older LibMTL
    versions updated it only inside the ``φ < φ̂`` branch; LibMTL has fixed that, and the two implementations
    now agree number for number).
    """

    def __init__(self, num_tasks: int, seed: int = 0, beta: float = 0.5, granularity: str = "whole") -> None:
        super().__init__(num_tasks, seed)
        self.beta = check_range("gradvac", "beta", beta, 0.0, 1.0)
        self.granularity = check_choice("gradvac", "granularity", granularity, GRANULARITIES)
        self.rho: Tensor | None = None  # φ̂ [T, T, K]

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        num_tasks, num_cols = grads.shape
        sizes = group_sizes(ctx, num_cols, self.granularity)
        k = len(sizes)
        if self.rho is None:
            self.rho = torch.zeros(num_tasks, num_tasks, k, dtype=torch.float64)
        if self.rho.shape != (num_tasks, num_tasks, k):
            raise ValueError(
                f"gradvac state has shape {tuple(self.rho.shape)}, the gradients need "
                f"{(num_tasks, num_tasks, k)}"
            )
        g_norm = group_dot(grads, grads, sizes).sqrt().double().cpu()  # [T, K]
        pc = grads.clone()
        for i in range(num_tasks):
            chunks = pc[i].split(sizes)  # views: updating them updates pc[i]
            for j in self.other_tasks(i, num_tasks):
                pc_norm = group_dot(pc[i], pc[i], sizes).sqrt().double().cpu()
                dot = group_dot(pc[i], grads[j], sizes).double().cpu()
                phi = dot / (pc_norm * g_norm[j] + NORM_EPS)
                target = self.rho[i, j]
                below = phi < target
                if bool(below.any()):
                    sin_phi = (1 - phi**2).clamp_min(0).sqrt()
                    sin_target = (1 - target**2).clamp_min(0).sqrt()
                    coef = (
                        pc_norm * (target * sin_phi - phi * sin_target) / (g_norm[j] * sin_target + NORM_EPS)
                    )
                    for chunk, g_chunk, c, on in zip(
                        chunks, grads[j].split(sizes), coef.tolist(), below.tolist()
                    ):
                        if on:
                            chunk.add_(g_chunk, alpha=c)
                self.rho[i, j] = (1 - self.beta) * target + self.beta * phi
        return AggregationResult(shared=pc.sum(dim=0))

    def get_extra_state(self) -> dict:
        state = super().get_extra_state()
        state["rho"] = None if self.rho is None else self.rho.clone()
        return state

    def set_extra_state(self, state: dict) -> None:
        super().set_extra_state(state)
        self.rho = None if state["rho"] is None else state["rho"].clone()


@AGGREGATORS.register("graddrop", "grad_drop")
class GradDrop(_Seeded):
    """Gradient sign dropout (Chen et al. 2020, Eq. 1-3 and Alg. 1): per coordinate, the positive sign
    purity ``P = ½ (1 + Σ_t g_t / Σ_t |g_t|)``; with ``U ~ Uniform(0, 1)`` the mask keeps
    ``M_t = 1[P > U] 1[g_t > 0] + 1[P < U] 1[g_t < 0]``; the update is ``Σ_t (leak + (1 − leak) M_t) g_t``.

    Deviation: the paper (and LibMTL, which only allows representation gradients) applies it to the
    gradients w.r.t. an activation layer, with ``sign(activation)`` factors and a sum over the batch before
    ``P``. Here it is applied coordinate-wise to the columns of ``G``: parameter gradients in the ``exact``
    modes, or the (per-sample) representation gradients in ``rep`` mode, without the ``sign(input)`` factor.
    """

    def __init__(self, num_tasks: int, seed: int = 0, leak: float = 0.0) -> None:
        super().__init__(num_tasks, seed)
        self.leak = check_range("graddrop", "leak", leak, 0.0, 1.0)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        purity = 0.5 * (1.0 + grads.sum(dim=0) / (grads.abs().sum(dim=0) + 1e-7))
        u = torch.rand(grads.shape[1], generator=self.generator, dtype=torch.float64)
        u = u.to(grads.device, grads.dtype)
        mask = (purity > u) & (grads > 0) | (purity < u) & (grads < 0)
        keep = self.leak + (1.0 - self.leak) * mask.to(grads.dtype)
        return AggregationResult(shared=(keep * grads).sum(dim=0))
