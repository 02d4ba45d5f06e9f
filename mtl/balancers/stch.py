"""STCH (Lin et al. 2024, "Smooth Tchebycheff Scalarization for Multi-Objective Optimization", ICML)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.balancers.base import Balancer, BalanceResult
from mtl.balancers.registry import BALANCERS
from mtl.checks import check_range
from mtl.context import StepContext
from mtl.errors import ConfigError

STCH_EPS = 1e-20  # the ε of log(L + ε) and log(L / nadir + ε) in the authors' code


@BALANCERS.register("stch")
class SmoothTchebycheff(Balancer):
    """STCH for multi-task learning, as the authors run it (Xi-L/STCH ``STCH_MTL/LibMTL/weighting/STCH.py``
    @73898cc, the same code as LibMTL's ``weighting/STCH.py`` @ea8b8b7).

    * Epochs ``0 … warmup_epoch``: the log-sum ``Σ_t log(L_t + ε)`` (λ = 1); the mean raw training losses of
      epoch ``warmup_epoch`` become the fixed normaliser ``n`` (the "nadir vector"), read in
      :meth:`end_epoch`.
    * Afterwards, with ``l_t = log(L_t / n_t + ε)``: the smooth Tchebycheff scalarisation (paper Eq. 9 with
      preference ``λ_t = 1`` and ideal point 0 in log-normalised space), scaled by T as the reference does:
      ``T μ log Σ_t exp(l_t / μ)``, computed stably as a log-sum-exp. Its gradient is ``Σ_t w_t ∇l_t`` with
      ``w = T softmax(l / μ)``; the terms are ``ℓ_t = w_t l_t`` plus a detached constant that makes their sum
      the objective's value, and the reported weights are ``w`` (sum T, all 1 when the tasks are balanced).

    Equal to ``T · torchjd.scalarization.STCH(mu, weights=1)(l)`` (torchjd 0.18) in value and gradient. The
    reference's value omits the detached shift ``T max_t l_t`` (it computes ``T μ log Σ exp((l − max l)/μ)``);
    the gradient is the same. The reference accumulates the warm-up epoch's losses per step in float32; the
    trainer's epoch mean (float64 sums) may differ from it in the last bits.
    """

    def __init__(self, num_tasks: int, mu: float = 1.0, warmup_epoch: int = 4) -> None:
        super().__init__(num_tasks, log=False)
        self.mu = check_range("stch", "mu", mu, 0.0, float("inf"))
        if not self.mu > 0:
            raise ConfigError(f"stch mu must be > 0, got {mu}")
        self.warmup_epoch = int(check_range("stch", "warmup_epoch", warmup_epoch, 0, float("inf")))
        self.register_buffer("nadir", torch.ones(num_tasks))
        self.ready = False

    def forward(self, losses: Tensor, ctx: StepContext) -> BalanceResult:
        if ctx.epoch <= self.warmup_epoch:
            return BalanceResult(terms=torch.log(losses + STCH_EPS), weights=torch.ones_like(losses.detach()))
        if not self.ready:
            raise RuntimeError(
                f"stch: no normaliser at epoch {ctx.epoch}: end_epoch({self.warmup_epoch}) was never called"
            )
        return self.scalarize(losses)

    def scalarize(self, losses: Tensor) -> BalanceResult:
        """``T μ logsumexp(l / μ)`` with ``l = log(L / n + ε)`` as per-task terms (class docstring)."""
        T = self.num_tasks
        logs = torch.log(losses / self.nadir.to(losses) + STCH_EPS)
        value = T * self.mu * torch.logsumexp(logs.detach() / self.mu, dim=-1)
        weights = T * torch.softmax(logs.detach() / self.mu, dim=-1)
        weighted = weights * logs
        terms = weighted + (value - weighted.detach().sum()) / T
        return BalanceResult(terms=terms, weights=weights)

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        if epoch == self.warmup_epoch:
            self.nadir.copy_(mean_losses.to(self.nadir))
            self.ready = True

    def get_extra_state(self) -> dict:
        return {"ready": self.ready}

    def set_extra_state(self, state: dict) -> None:
        self.ready = bool(state["ready"])
