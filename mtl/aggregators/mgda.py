"""MGDA (Sener & Koltun 2018): the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, gramian, require_losses, weighted_sum
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext

MGDA_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def _affine_minimiser(block: Tensor) -> Tensor:
    """``argmin_{1ᵀα = 1} αᵀ K α`` for a Gram block ``K`` (the minimum-norm point of the affine hull),
    solved in equilibrated coordinates so that every weight keeps its relative accuracy when the gradients'
    norms differ by many orders of magnitude: with ``s_i = ‖g_i‖``, ``K = S C S`` (``C`` the cosine
    matrix) and ``β = S α``, the KKT system ``K α + μ 1 = 0, 1ᵀ α = 1`` becomes
    ``C β + μ' r = 0, rᵀ β = 1/ρ`` with ``r = S⁻¹ 1 / ρ``, ``ρ = max_i 1/s_i``: entries of order one.
    Least squares covers a singular ``C`` (repeated or collinear gradients)."""
    s = block.diagonal().clamp_min(0.0).sqrt()
    m = block.shape[0]
    cos = block / (s[:, None] * s[None, :])
    inv = 1.0 / s
    rho = float(inv.max())
    r = inv / rho
    system = torch.zeros(m + 1, m + 1, dtype=torch.float64)
    system[:m, :m] = cos
    system[:m, m] = r
    system[m, :m] = r
    rhs = torch.zeros(m + 1, 1, dtype=torch.float64)
    rhs[m] = 1.0 / rho
    beta = torch.linalg.lstsq(system, rhs).solution.squeeze(1)[:m]
    return beta / s


def min_norm_weights(gram: Tensor, rtol: float = 1e-10, max_iter: int = 1000) -> Tensor:
    """Weights ``w`` on the simplex minimising ``‖Σ_t w_t g_t‖² = wᵀ K w`` for the Gram matrix ``K = G Gᵀ``.

    Solves MGDA's QP (Sener & Koltun 2018, Eq. 3 / Désidéri's MGDA) exactly with Wolfe's (1976) finite
    algorithm for the minimum-norm point of a polytope, working on ``K`` only (float64). Optimality
    certificate (the QP's KKT conditions): ``x = Σ w_t g_t`` satisfies ``⟨g_j, x⟩ ≥ ‖x‖²`` for every ``j``,
    with equality where ``w_j > 0``.

    Every test is scale-free, so the result does not depend on the gradients' scales (norms spanning many
    orders of magnitude): the stopping test is ``⟨g_j, x⟩ ≥ ‖x‖² − rtol ‖g_j‖ Σ_i w_i ‖g_i‖`` (the rounding
    error of ``⟨g_j, x⟩`` computed from ``K`` is of order ε ‖g_j‖ Σ_i w_i ‖g_i‖), the entering task is the
    one with the largest violation relative to that scale, weights are tested by sign, and each affine
    minimiser is solved in equilibrated coordinates (:func:`_affine_minimiser`). The former absolute test
    (``⟨g_j, x⟩ ≥ ‖x‖² − 10⁻¹²`` after scaling ``K`` by its largest diagonal) stopped at once when the
    smallest gradients were 10⁻⁶ of the largest: for ``G = [[1e-3, 0], [0, 1e-3], [1e3, 1e3]]`` it returned
    the vertex ``(1, 0, 0)`` (‖x‖ = 10⁻³) instead of ``(½, ½, 0)`` (‖x‖ = 7.07·10⁻⁴).
    """
    k = gram.detach().to(device="cpu", dtype=torch.float64)
    n = k.shape[0]
    scale = float(k.diagonal().max())
    if n == 1 or not scale > 0.0:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    k = k / scale
    norms = k.diagonal().clamp_min(0.0).sqrt()
    start = int(torch.argmin(k.diagonal()))
    if not float(norms[start]) > 0.0:  # a zero gradient: x = 0 is the minimum
        weights = torch.zeros(n, dtype=torch.float64)
        weights[start] = 1.0
        return weights
    active = [start]
    lam = torch.ones(1, dtype=torch.float64)
    for _ in range(max_iter):
        kx = k[:, active] @ lam  # ⟨g_j, x⟩ for every j
        xx = float(lam @ kx[active])
        violation = (xx - kx) / (
            norms * float(lam @ norms[active])
        )  # > rtol: ⟨g_j, x⟩ < ‖x‖² beyond rounding
        j = int(torch.argmax(violation))
        if float(violation[j]) <= rtol or j in active:
            break
        active.append(j)
        lam = torch.cat([lam, lam.new_zeros(1)])
        for _minor in range(n + 1):
            alpha = _affine_minimiser(k[active][:, active])
            if bool((alpha > 0).all()):
                lam = alpha
                break
            # Move from lam towards the affine minimiser until a weight hits zero, then drop it.
            blocking = (alpha <= 0) & (lam - alpha > 0)
            ratios = lam[blocking] / (lam[blocking] - alpha[blocking])
            theta = float(ratios.min()) if ratios.numel() else 1.0
            theta = min(max(theta, 0.0), 1.0)
            lam = theta * alpha + (1.0 - theta) * lam
            keep = lam > 0
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
        w = min_norm_weights(gramian(scaled)).to(grads.device, grads.dtype)
        weights = grads.shape[0] * w
        return weighted_sum(weights, grads)
