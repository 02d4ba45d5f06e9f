"""MGDA (Sener & Koltun 2018): the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, require_losses
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext

MGDA_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def min_norm_weights(gram: Tensor, tol: float = 1e-12, max_iter: int = 1000) -> Tensor:
    """Weights ``w`` on the simplex minimising ``‖Σ_t w_t g_t‖² = wᵀ K w`` for the Gram matrix ``K = G Gᵀ``.

    Solves MGDA's QP (Sener & Koltun 2018, Eq. 3 / Désidéri's MGDA) exactly with Wolfe's (1976) finite
    algorithm for the minimum-norm point of a polytope, working on ``K`` only (float64). Optimality
    certificate: ``x = Σ w_t g_t`` satisfies ``⟨g_j, x⟩ ≥ ‖x‖²`` for every ``j``.
    """
    k = gram.detach().to(device="cpu", dtype=torch.float64)
    n = k.shape[0]
    scale = float(k.diagonal().max())
    if n == 1 or not scale > 0.0:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    k = k / scale
    active = [int(torch.argmin(k.diagonal()))]
    lam = torch.ones(1, dtype=torch.float64)
    for _ in range(max_iter):
        kx = k[:, active] @ lam  # ⟨g_j, x⟩ for every j
        xx = float(lam @ kx[active])
        j = int(torch.argmin(kx))
        if float(kx[j]) >= xx - tol or j in active:
            break
        active.append(j)
        lam = torch.cat([lam, lam.new_zeros(1)])
        for _minor in range(n + 1):
            m = len(active)
            system = torch.zeros(m + 1, m + 1, dtype=torch.float64)
            system[:m, :m] = k[active][:, active]
            system[:m, m] = 1.0
            system[m, :m] = 1.0
            rhs = torch.zeros(m + 1, dtype=torch.float64)
            rhs[m] = 1.0
            alpha = torch.linalg.lstsq(system, rhs.unsqueeze(1)).solution.squeeze(1)[:m]
            if bool((alpha > tol).all()):
                lam = alpha
                break
            # Move from lam towards the affine minimiser until a weight hits zero, then drop it.
            blocking = (alpha <= tol) & (lam - alpha > 0)
            ratios = lam[blocking] / (lam[blocking] - alpha[blocking])
            theta = float(ratios.min()) if ratios.numel() else 1.0
            theta = min(max(theta, 0.0), 1.0)
            lam = theta * alpha + (1.0 - theta) * lam
            keep = lam > tol
            if bool(keep.all()):
                keep[int(torch.argmin(lam))] = False
            active = [a for a, kept in zip(active, keep.tolist()) if kept]
            lam = lam[keep]
            lam = lam / lam.sum()
    weights = torch.zeros(n, dtype=torch.float64)
    weights[active] = lam.clamp_min(0.0)
    return weights / weights.sum()


@AGGREGATORS.register("mgda", "mgda_ub")
class MGDA(Aggregator):
    """MGDA (Sener & Koltun 2018, Eq. 3 and Alg. 2): ``w = argmin_{w ∈ Δ} ‖Σ_t w_t ĝ_t‖`` over the
    (optionally normalised) task gradients ``ĝ_t = g_t / n_t``; the update is ``T Σ_t w_t g_t`` and the heads
    are weighted by ``T w_t`` too.

    ``normalization`` (Sener & Koltun's ``gradient_normalizers``): ``none`` (default), ``l2`` (‖g_t‖),
    ``loss`` (the raw loss L_t) or ``loss+`` (L_t ‖g_t‖). As in the authors' and the Nash-MTL/IGB reference
    code the weights found on the normalised gradients multiply the raw gradients, and they are scaled to sum
    to T (as in the IGB reference code) so the update has EW's scale; LibMTL leaves them summing to 1.
    """

    weights_heads = True

    def __init__(self, num_tasks: int, normalization: str = "none") -> None:
        super().__init__(num_tasks)
        self.normalization = check_choice("mgda", "normalization", normalization, MGDA_NORMALIZATIONS)

    def normalizers(self, grads: Tensor, ctx: StepContext) -> Tensor:
        """``n_t`` of the chosen normalisation."""
        if self.normalization == "none":
            return grads.new_ones(grads.shape[0])
        norms = grads.norm(dim=1)
        if self.normalization == "l2":
            return norms
        losses = require_losses("mgda", ctx, grads.shape[0]).to(grads.device, grads.dtype)
        return losses if self.normalization == "loss" else losses * norms

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        scaled = grads / self.normalizers(grads, ctx).clamp_min(1e-12).unsqueeze(1)
        w = min_norm_weights(scaled @ scaled.T).to(grads.device, grads.dtype)
        weights = grads.shape[0] * w
        return AggregationResult(shared=weights @ grads, task_weights=weights)
