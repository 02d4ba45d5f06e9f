"""IMTL-G (Liu et al. 2021): the update with equal projections on every unit task gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.aggregators._common import NORM_EPS, weighted_sum
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext


def imtl_g_weights(grads: Tensor) -> Tensor:
    """IMTL-G's closed form (Liu et al. 2021, Eq. 10-11): with ``u_t = g_t / ‖g_t‖``,
    ``D = [g_1 − g_t]_{t≥2}`` and ``U = [u_1 − u_t]_{t≥2}``, ``α_{2:T} = g_1 Uᵀ (D Uᵀ)^{-1}`` and
    ``α_1 = 1 − Σ_{t≥2} α_t``, so that ``g = Σ_t α_t g_t`` has ``g·u_t`` equal for all ``t``.

    The (T−1)×(T−1) system is solved in float64 with a pseudo-inverse, which also covers the singular cases
    (identical gradients) where the reference code adds ``1e-8 I``.

    Fewer shared coordinates than tasks (``P < T``, so ``rank G < T``; e.g. ``rep`` mode with a small
    representation): ``g = Σ_t α_t g_t`` lies in the ``rank G``-dimensional row space of ``G`` and must
    satisfy the ``T − 1`` conditions ``g·(u_1 − u_t) = 0``; for gradients in general position those leave only
    ``g = 0``. What is returned then is an affine combination (``Σ_t α_t = 1``; entries may be negative; the
    pseudo-inverse picks the minimum-norm solution of the reduced system) with ``Σ_t α_t g_t = 0``: every
    projection ``g·u_t`` is equal because all are zero, the shared update is zero and only the heads learn
    on such a step. (The reference code's ``torch.inverse`` gives the same zero update for ``P = T − 1`` and
    fails or returns noise for ``P < T − 1``.) With ``P ≥ T`` and independent gradients the solution is
    unique and the common projection is positive.
    """
    num_tasks = grads.shape[0]
    if num_tasks == 1:
        return grads.new_ones(1)
    g = grads.double()
    unit = g / (g.norm(dim=1, keepdim=True) + NORM_EPS)
    d = g[:1] - g[1:]
    u = unit[:1] - unit[1:]
    rest = (g[0] @ u.T) @ torch.linalg.pinv(d @ u.T)
    return torch.cat([(1.0 - rest.sum()).reshape(1), rest]).to(grads.dtype)


@AGGREGATORS.register("imtl_g", "imtlg")
class IMTLG(Aggregator):
    """IMTL-G (Liu et al. 2021, Alg. 1 "gradient balance"): shared update ``Σ_t α_t g_t`` with α from
    :func:`imtl_g_weights`. Heads keep the gradient of ``Σ_t ℓ_t`` (IMTL paper and LibMTL; the Nash-MTL/IGB
    reference code also scales the heads by α). The reported task weights are α. ``imtl`` = ``imtl_l+imtl_g``.
    """

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        alpha = imtl_g_weights(grads)
        return weighted_sum(alpha, grads)
