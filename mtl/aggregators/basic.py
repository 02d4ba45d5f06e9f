"""The plain sum and DB-MTL's max-norm aggregation."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.aggregators._common import NORM_EPS, check_range
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError
from mtl.max_norm_settings import (
    ALPHA_STRATEGIES,
    DEFAULT_ALPHA_CONSTANT,
    DEFAULT_ALPHA_STRATEGY,
    DEFAULT_BETA,
    DEFAULT_BETA_SIGMA,
)


@AGGREGATORS.register("sum")
class Sum(Aggregator):
    """``Σ_t g_t``: the update a single backward of ``Σ_t ℓ_t`` gives."""

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        return AggregationResult(shared=grads.sum(dim=0))


def alpha_scale(norms: Tensor, strategy: str, constant: float = 1.0) -> Tensor:
    """α_k of DB-MTL Alg. 1 line 9 from the EMA gradient norms ‖ĝ_t‖ (paper Fig. 6 variants).

    ``median`` is the true median (mean of the two middle values for an even T).
    """
    if strategy == "max":
        return norms.max()
    if strategy == "min":
        return norms.min()
    if strategy == "mean":
        return norms.mean()
    if strategy == "median":
        return torch.quantile(norms, 0.5)
    if strategy == "constant":
        return norms.new_tensor(float(constant))
    raise ConfigError(f"unknown alpha_strategy '{strategy}'; valid: {', '.join(ALPHA_STRATEGIES)}")


@AGGREGATORS.register("max_norm", "maxnorm", "db_mtl_norm")
class MaxNorm(Aggregator):
    """DB-MTL gradient-magnitude balancing (DB-MTL paper Alg. 1, lines 6-10).

    ``β_k = β / k^σ``; ``ĝ_t ← β_k ĝ_t + (1 − β_k) g_t`` with ``ĝ_t = 0`` initially; update
    ``α_k Σ_t ĝ_t / (‖ĝ_t‖ + 1e-8)`` with ``α_k = max_t ‖ĝ_t‖`` (or min/mean/median/constant,
    ``alpha_strategy``). ``σ = 0`` is a constant β, ``σ = 0.5`` the ``β/√k`` schedule.

    Defaults ``β = 0.9``, ``σ = 0`` (constant β) are the reference code's (LibMTL's ``--DB_beta 0.9``,
    ``--DB_beta_sigma 0``): the paper grid-searches β ∈ {0.1, 0.5, 0.9} × σ ∈ {0, 0.5} and does not say which
    values its tables use, so where it is silent the reference code is followed. (The default was σ = 0.5.)
    They are declared in the torch-free :mod:`mtl.max_norm_settings`, which :mod:`analysis` reads too.
    """

    def __init__(
        self,
        num_tasks: int,
        beta: float = DEFAULT_BETA,
        beta_sigma: float = DEFAULT_BETA_SIGMA,
        alpha_strategy: str = DEFAULT_ALPHA_STRATEGY,
        alpha_constant: float = DEFAULT_ALPHA_CONSTANT,
    ) -> None:
        super().__init__(num_tasks)
        check_range("max_norm", "beta", beta, 0, 1, high_open=True)
        if beta_sigma < 0:
            raise ConfigError(f"max_norm beta_sigma must be >= 0, got {beta_sigma}")
        if alpha_strategy not in ALPHA_STRATEGIES:
            raise ConfigError(
                f"unknown alpha_strategy '{alpha_strategy}'; valid: {', '.join(ALPHA_STRATEGIES)}"
            )
        if alpha_strategy == "constant" and not alpha_constant > 0:
            raise ConfigError(f"alpha_constant must be > 0, got {alpha_constant}")
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.alpha_strategy = alpha_strategy
        self.alpha_constant = float(alpha_constant)
        self.ema: Tensor | None = None

    def beta_at(self, k: int) -> float:
        """β_k = β / k^σ (k from 1)."""
        return self.beta / float(k) ** self.beta_sigma

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        if ctx.step < 1:
            raise ValueError(f"step must count from 1, got {ctx.step}")
        if self.ema is None or self.ema.shape != grads.shape:
            self.ema = torch.zeros_like(grads)
        elif self.ema.device != grads.device or self.ema.dtype != grads.dtype:
            self.ema = self.ema.to(grads.device, grads.dtype)
        beta_k = self.beta_at(ctx.step)
        self.ema.mul_(beta_k).add_(grads, alpha=1.0 - beta_k)
        norms = self.ema.norm(dim=1)
        alpha = alpha_scale(norms, self.alpha_strategy, self.alpha_constant)
        shared = (alpha / (norms + NORM_EPS)) @ self.ema
        return AggregationResult(shared=shared)

    def get_extra_state(self) -> dict:
        return {"ema": None if self.ema is None else self.ema.detach().cpu().clone()}

    def set_extra_state(self, state: dict) -> None:
        self.ema = None if state["ema"] is None else state["ema"].clone()
