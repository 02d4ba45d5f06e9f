"""MoDo (Chen, Fernando, Ying & Chen 2023, "Three-Way Trade-Off in Multi-Objective Learning: Optimization,
Generalization and Conflict-Avoidance", NeurIPS 2023 / JMLR 2024): one projected step on the MGDA weights
per step."""

from __future__ import annotations

import math

from torch import Tensor

from mtl.aggregators._common import check_choice, check_range, gramian, weighted_sum
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.aggregators.simplex import project_onto_simplex
from mtl.context import StepContext
from mtl.errors import ConfigError

SCALES = ("mean", "sum")


def modo_weight_step(matrix: Tensor, lambd: Tensor, gamma: float, rho: float) -> Tensor:
    """MoDo's λ update (Chen et al. 2023, Eq. 2.9a / Alg. 1): ``λ ← Π_Δ(λ − γ (A λ + ρ λ))``, one projected
    gradient step on ``½ ‖G λ‖² + ½ ρ ‖λ‖²`` with ``A = G Gᵀ``, in ``matrix``'s dtype with torchjd 0.18
    ``MoDoWeighting.forward``'s sequence of operations."""
    grad = matrix @ lambd + rho * lambd
    return project_onto_simplex(lambd - gamma * grad)


@AGGREGATORS.register("modo")
class MoDo(Aggregator):
    """MoDo (Chen et al. 2023, Alg. 1): the weights ``λ`` (on the simplex, ``1/T`` before the first step)
    take one projected step :func:`modo_weight_step` per step, and the update is ``Σ_t λ_t g_t`` with the
    new λ (as LibMTL and torchjd). With ``rho = 0`` the iterates are projected gradient descent on MGDA's
    min-norm problem ``min_{λ ∈ Δ} ‖G λ‖²``: for a fixed ``G`` and ``gamma < 2 / ‖G Gᵀ‖`` they converge to
    MGDA's weights.

    Single-batch formulation (the default and the only one here): ``A = G Gᵀ`` of the step's one gradient
    matrix, which is what torchjd's ``MoDoWeighting`` receives when given the Gramian. The paper (double
    sampling, Eq. 2.9) uses ``A = G(z₁) G(z₂)ᵀ`` from two independent batches and the update from their
    mean (or, as the authors' code with ``three_grads`` and LibMTL's ``MoDo``, from a third batch; LibMTL
    then divides the heads' gradients by 3). Those need two or three gradient matrices per step, which the
    aggregator contract (one ``G`` per step, DESIGN §2) does not provide, so they are not implemented.
    With one batch the λ step's gradient ``A λ`` is a biased estimate, the bias MoDo's double sampling
    removes.

    Arguments (torchjd 0.18 defaults): ``gamma`` (0.1; LibMTL's ``MoDo_gamma`` defaults to 0.001) and
        ``rho`` (0.1, as LibMTL). ``scale``: ``mean`` (default; the weights sum to 1, torchjd's and LibMTL's
        scale) or ``sum`` (times ``T``, the scale of ``Σ_t g_t``). The heads get the gradient of ``Σ_t ℓ_t``.

        State: λ (in the state dict). Equal to ``torchjd.aggregation.MoDoWeighting`` of torchjd 0.18.0 fed
        ``G Gᵀ``, step after step (tests/mtl/aggregators/test_reference_sdmgrad_modo_excess.py).
    """

    def __init__(self, num_tasks: int, gamma: float = 0.1, rho: float = 0.1, scale: str = "mean") -> None:
        super().__init__(num_tasks)
        if not gamma > 0:
            raise ConfigError(f"modo gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)
        self.rho = check_range("modo", "rho", rho, 0.0, math.inf)
        self.scale = check_choice("modo", "scale", scale, SCALES)
        self.lambd: Tensor | None = None

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        grads_ = grads.detach()
        num_tasks = grads_.shape[0]
        if self.lambd is None:
            lambd = grads_.new_full((num_tasks,), 1.0 / num_tasks)
        elif self.lambd.shape != (num_tasks,):
            raise ValueError(f"modo: {num_tasks} task gradients after {self.lambd.numel()}")
        else:
            lambd = self.lambd.to(grads_.device, grads_.dtype)
        self.lambd = modo_weight_step(gramian(grads_), lambd, self.gamma, self.rho)
        weights = self.lambd * num_tasks if self.scale == "sum" else self.lambd.clone()
        return weighted_sum(weights, grads)

    def get_extra_state(self) -> dict:
        return {"lambd": None if self.lambd is None else self.lambd.detach().cpu().clone()}

    def set_extra_state(self, state: dict) -> None:
        self.lambd = None if state["lambd"] is None else state["lambd"].clone()
