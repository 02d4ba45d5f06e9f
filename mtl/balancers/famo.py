"""FAMO (Liu et al. 2023, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS; Alg. 1 / Alg. 2)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.balancers.base import Balancer
from mtl.balancers.inner_adam import InnerAdam
from mtl.balancers.registry import BALANCERS
from mtl.checks import check_range
from mtl.context import StepContext
from mtl.step_hooks import StepProbe

FAMO_EPS = 1e-8  # the ε of log(L − L* + ε) in every reference


@BALANCERS.register("famo")
class FAMO(Balancer):
    """FAMO: task logits ``ξ`` (init 0), ``z = softmax(ξ)``, ``D_t = L_t − L_t* + ε``.

    Step (Alg. 2): the model descends ``Σ_t z_t log D_t / c`` with ``c = Σ_s z_s / D_s`` detached, whose
    gradient is ``Σ_t λ_t ∇L_t`` with ``λ_t = z_t / (c D_t)`` (a convex combination of the ``∇ log L_t``);
    in the balancer contract ``ℓ_t = λ_t L_t`` with λ detached (same gradient, not the same value).
    After the optimiser step (:meth:`after_step`, one extra forward on the same batch without gradients):
    ``δ_t = log D_t(before) − log D_t(after)``, the logits' gradient is ``J_softmax(ξ)ᵀ δ`` and ``ξ`` takes
    one Adam step (lr ``w_lr``, L2 weight decay ``gamma``); the Adam state is in the state dict. The extra
    forward runs in the model's training mode, as the references' does (BatchNorm running statistics see the
    batch twice).

    Checked against the authors' ``famo.py`` (Cranial-XIX/FAMO @250873e), torchjd 0.18
    ``torchjd.scalarization.FAMO`` and LibMTL ``weighting/FAMO.py`` (@8bc7605); all three have this formula.
    Differences: the authors' class defaults to ``gamma=0.01`` (torchjd says their experiments use 1e-5)
    while the paper's Alg. 2, LibMTL and torchjd use 1e-3 (our default); the authors' ``backward`` also clips
    the shared gradient norm to ``max_norm=1`` when given the shared parameters, which is not part of the
    method's weighting and is not done here. ``min_loss`` is one lower bound ``L*`` for every task (the
    references' ``min_losses`` default 0).
    """

    def __init__(
        self, num_tasks: int, w_lr: float = 0.025, gamma: float = 1e-3, min_loss: float = 0.0
    ) -> None:
        super().__init__(num_tasks, log=False)
        self.w_lr = check_range("famo", "w_lr", w_lr, 0.0, float("inf"))
        self.gamma = check_range("famo", "gamma", gamma, 0.0, float("inf"))
        self.min_loss = check_range("famo", "min_loss", min_loss, float("-inf"), float("inf"))
        self.register_buffer("logits", torch.zeros(num_tasks))
        self.logit_adam = InnerAdam(num_tasks, lr=self.w_lr, weight_decay=self.gamma)

    def _shifted(self, losses: Tensor) -> Tensor:
        return losses - self.min_loss + FAMO_EPS

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        """``λ_t = z_t / (D_t Σ_s z_s / D_s)`` (FAMO Alg. 2, the gradient of the log-sum objective)."""
        z = torch.softmax(self.logits.to(losses), dim=-1)
        shifted = self._shifted(losses)
        return z / (shifted * (z / shifted).sum())

    def after_step(self, probe: StepProbe) -> None:
        """The logit update of FAMO Alg. 2 from the same batch's losses after the step."""
        with torch.no_grad():
            after = probe.compute_losses(probe.inputs, probe.targets).detach()
        before = probe.losses.detach()
        delta = torch.log(self._shifted(before)) - torch.log(self._shifted(after))
        self.update_logits(delta)

    def update_logits(self, delta: Tensor) -> None:
        """``ξ ← Adam(ξ, J_softmax(ξ)ᵀ δ)``."""
        with torch.enable_grad():
            xi = self.logits.detach().requires_grad_(True)
            grad = torch.autograd.grad(torch.softmax(xi, dim=-1), xi, grad_outputs=delta.to(xi))[0]
        self.logit_adam.step(self.logits, grad)
