"""Aligned-MTL (Senushkin et al. 2023): align the principal components of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, gramian, weighted_sum
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext

SCALE_MODES = ("min", "median", "rmse")


def alignment_matrix(grads: Tensor, scale_mode: str = "min") -> Tensor:
    """Aligned-MTL's ``B`` [T, T] (Senushkin et al. 2023, Eq. 9-11 and Alg. 1): the aligned gradients are
    ``B G``, whose rows are orthogonal with equal norms ``σ`` on the span of the task gradients.

    ``M = G Gᵀ = V Λ Vᵀ`` (``torch.linalg.eigh``; the reference's ``torch.symeig`` was removed from torch),
    restricted to the eigenvalues above ``max λ · T · eps``; ``B = σ V Λ^{-1/2} Vᵀ`` with
    ``σ = √λ_min`` (``min``), ``√median λ`` (``median``, the lower median as ``torch.median``) or
    ``√mean λ`` (``rmse``). The eigen-decomposition runs in float64; the rank tolerance uses the gradients'
    dtype eps, as the reference.
    """
    m = gramian(grads).double()
    lam, vec = torch.linalg.eigh(m)
    tol = lam.max() * m.shape[0] * torch.finfo(grads.dtype).eps
    keep = lam > tol
    if not bool(keep.any()):
        return torch.zeros_like(m)
    order = torch.argsort(lam, descending=True)
    order = order[keep[order]]
    lam, vec = lam[order], vec[:, order]
    if scale_mode == "min":
        sigma = lam[-1].sqrt()
    elif scale_mode == "median":
        sigma = torch.median(lam).sqrt()
    else:
        sigma = lam.mean().sqrt()
    return sigma * (vec / lam.sqrt()) @ vec.T


def aligned_mtl_weights(grads: Tensor, scale_mode: str = "min") -> Tensor:
    """The sum of the aligned gradients is ``(Σ_rows B) G``: the weights are ``α = B.sum(0)``."""
    return alignment_matrix(grads, scale_mode).sum(dim=0).to(grads.dtype)


@AGGREGATORS.register("aligned_mtl", "alignedmtl", "aligned")
class AlignedMTL(Aggregator):
    """Aligned-MTL (Senushkin et al. 2023): shared update ``Σ_t α_t g_t`` with α from
    :func:`aligned_mtl_weights`; ``scale_mode`` ∈ min (default, as LibMTL), median, rmse. Heads keep the
    gradient of ``Σ_t ℓ_t`` (as LibMTL); the reported task weights are α."""

    def __init__(self, num_tasks: int, scale_mode: str = "min") -> None:
        super().__init__(num_tasks)
        self.scale_mode = check_choice("aligned_mtl", "scale_mode", scale_mode, SCALE_MODES)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        alpha = aligned_mtl_weights(grads, self.scale_mode)
        return weighted_sum(alpha, grads)
