"""Aggregators with learned task weights: GradNorm and MoCo. Their state lives in the aggregator."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from mtl.aggregators._common import NORM_EPS, check_range, require_losses
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError


@AGGREGATORS.register("gradnorm", "grad_norm")
class GradNorm(Aggregator):
    """GradNorm (Chen et al. 2018, Eq. 1-2 and Alg. 1) with its own weight update.

    Step ``t`` uses the current weights ``w(t)`` (initially 1): shared update ``Σ_i w_i g_i``, heads weighted
    by ``w_i``. Then, with ``G_i = w_i ‖g_i‖``, ``Ḡ = mean_i G_i``, ``L̃_i = L_i(t) / L_i(0)`` (raw losses;
    ``L_i(0)`` from the first step), ``r_i = L̃_i / mean L̃`` and the target ``Ḡ r_i^α`` held constant,
    ``L_grad = Σ_i |G_i − Ḡ r_i^α|`` (Eq. 2) is differentiated w.r.t. ``w`` (``∂/∂w_i = sign(·) ‖g_i‖``),
    ``w`` takes one Adam step of rate ``weight_lr`` (the aggregator's own optimiser, in its state dict) and is
    renormalised to ``Σ_i w_i = T`` (Alg. 1), with ``w_i ≥ 1e-6``.

    Deviations: ``‖g_i‖`` is over all shared parameters (as LibMTL; the paper uses the last shared layer),
    and the weights start moving at the first step (LibMTL waits one epoch with equal weights).
    """

    weights_heads = True

    def __init__(self, num_tasks: int, alpha: float = 1.5, weight_lr: float = 0.025) -> None:
        super().__init__(num_tasks)
        if not alpha >= 0:
            raise ConfigError(f"gradnorm alpha must be >= 0, got {alpha}")
        if not weight_lr > 0:
            raise ConfigError(f"gradnorm weight_lr must be > 0, got {weight_lr}")
        self.alpha = float(alpha)
        self.weight_lr = float(weight_lr)
        self.weights = torch.ones(num_tasks, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.weights], lr=self.weight_lr)
        self.initial_losses: Tensor | None = None

    def weight_gradient(self, norms: Tensor, losses: Tensor) -> Tensor:
        """``∂L_grad / ∂w`` (GradNorm Eq. 2 with the target held constant)."""
        w = self.weights.detach()
        g = w * norms
        ratio = losses / self.initial_losses
        target = g.mean() * (ratio / ratio.mean()) ** self.alpha
        return torch.sign(g - target) * norms

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        losses = require_losses("gradnorm", ctx, grads.shape[0]).detach().double().cpu()
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        weights = self.weights.detach().clone()
        shared = weights.to(grads.device, grads.dtype) @ grads
        norms = grads.norm(dim=1).double().cpu()
        self.optimizer.zero_grad(set_to_none=True)
        self.weights.grad = self.weight_gradient(norms, losses)
        self.optimizer.step()
        with torch.no_grad():
            self.weights.clamp_(min=1e-6)
            self.weights.mul_(self.num_tasks / self.weights.sum())
        return AggregationResult(shared=shared, task_weights=weights.to(grads.device, grads.dtype))

    def get_extra_state(self) -> dict:
        return {
            "weights": self.weights.detach().clone(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "initial_losses": None if self.initial_losses is None else self.initial_losses.clone(),
        }

    def set_extra_state(self, state: dict) -> None:
        with torch.no_grad():
            self.weights.copy_(state["weights"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        init = state["initial_losses"]
        self.initial_losses = None if init is None else init.clone()


@AGGREGATORS.register("moco")
class MoCo(Aggregator):
    """MoCo (Fernando et al. 2023, Alg. 1, as LibMTL implements the authors' code).

    ``k`` counts steps from 1. Each task gradient is rescaled to the raw loss,
    ``g̃_t = L_t g_t / (‖g_t‖ + 1e-8)``; the tracking variable ``y_t ← y_t − β_k (y_t − g̃_t)`` (``y = 0``
    initially, ``β_k = β / k^{σ_β}``); the weights ``λ ← softmax(λ − γ_k (Y Yᵀ + ρ I) λ)`` (``λ = 1/T``
    initially, ``γ_k = γ / k^{σ_γ}``); the update is ``Yᵀ λ``. The reported task weights are λ (summing to
    1); heads get the gradient of ``Σ_t ℓ_t``.
    """

    def __init__(
        self,
        num_tasks: int,
        beta: float = 0.5,
        beta_sigma: float = 0.5,
        gamma: float = 0.1,
        gamma_sigma: float = 0.5,
        rho: float = 0.0,
    ) -> None:
        super().__init__(num_tasks)
        self.beta = check_range("moco", "beta", beta, 0.0, 1.0)
        self.beta_sigma = check_range("moco", "beta_sigma", beta_sigma, 0.0, float("inf"))
        self.gamma = check_range("moco", "gamma", gamma, 0.0, float("inf"))
        self.gamma_sigma = check_range("moco", "gamma_sigma", gamma_sigma, 0.0, float("inf"))
        self.rho = check_range("moco", "rho", rho, 0.0, float("inf"))
        self.step = 0
        self.y: Tensor | None = None
        self.lambd = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        losses = require_losses("moco", ctx, grads.shape[0]).detach().to(grads.device, grads.dtype)
        self.step += 1
        if self.y is None:
            self.y = torch.zeros_like(grads)
        elif self.y.device != grads.device or self.y.dtype != grads.dtype:
            self.y = self.y.to(grads.device, grads.dtype)
        scaled = grads / (grads.norm(dim=1, keepdim=True) + NORM_EPS) * losses.unsqueeze(1)
        beta_k = self.beta / self.step**self.beta_sigma
        gamma_k = self.gamma / self.step**self.gamma_sigma
        self.y = self.y - beta_k * (self.y - scaled)
        yy = (self.y @ self.y.T).double().cpu() + self.rho * torch.eye(grads.shape[0], dtype=torch.float64)
        self.lambd = torch.softmax(self.lambd - gamma_k * (yy @ self.lambd), dim=0)
        weights = self.lambd.to(grads.device, grads.dtype)
        return AggregationResult(shared=weights @ self.y, task_weights=weights)

    def get_extra_state(self) -> dict:
        return {
            "step": self.step,
            "y": None if self.y is None else self.y.detach().cpu().clone(),
            "lambd": self.lambd.clone(),
        }

    def set_extra_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.y = None if state["y"] is None else state["y"].clone()
        self.lambd = state["lambd"].clone()
