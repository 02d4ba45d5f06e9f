"""CAGrad (Liu et al. 2021): conflict-averse gradient descent."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError

RESCALES = (0, 1, 2)


def cagrad_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """The dual of CAGrad (Liu et al. 2021, Eq. 6 / Alg. 1 line 4): ``w ∈ Δ`` minimising
    ``w^T K b + c‖g_0‖ √(w^T K w)`` with ``b = 1/T`` and ``‖g_0‖ = √(mean K)`` (SLSQP, as the authors)."""
    from scipy.optimize import minimize

    n = gram.shape[0]
    x0 = np.full(n, 1.0 / n)
    g0_norm = np.sqrt(gram.mean() + 1e-8)
    coef = c * g0_norm + 1e-8
    kb = gram @ x0

    def objective(x: np.ndarray) -> float:
        return float(x @ kb + coef * np.sqrt(x @ gram @ x + 1e-8))

    res = minimize(
        objective,
        x0,
        bounds=[(0.0, 1.0)] * n,
        constraints={"type": "eq", "fun": lambda x: 1.0 - x.sum()},
        method="SLSQP",
    )
    if not np.all(np.isfinite(res.x)):
        raise FloatingPointError(f"cagrad: the SLSQP solve returned non-finite weights ({res.message})")
    return res.x


@AGGREGATORS.register("cagrad", "ca_grad")
class CAGrad(Aggregator):
    """CAGrad (Liu et al. 2021, Alg. 1): with ``g_0`` the average gradient and ``w`` from
    :func:`cagrad_weights`, ``g_w = Σ_t w_t g_t``, the update is
    ``d = g_0 + (c‖g_0‖ / ‖g_w‖) g_w``, divided by ``1 + c²`` (``rescale=1``, default), ``1 + c``
    (``rescale=2``) or not (``rescale=0``), then multiplied by T so its scale matches the EW sum (as in the
    Nash-MTL/IGB reference code; LibMTL leaves the mean scale).

    ``c`` defaults to 0.4, the Nash-MTL/IGB reference's value for QM9 (LibMTL's default is 0.5). The reported
    task weights are the coefficients of ``d`` on the ``g_t``; heads get the gradient of ``Σ_t ℓ_t``.
    """

    def __init__(self, num_tasks: int, c: float = 0.4, rescale: int = 1) -> None:
        super().__init__(num_tasks)
        if not c >= 0:
            raise ConfigError(f"cagrad c must be >= 0, got {c}")
        if rescale not in RESCALES:
            raise ConfigError(f"cagrad rescale must be one of 0, 1, 2; got {rescale!r}")
        try:
            import scipy.optimize  # noqa: F401  (SLSQP; fail now rather than at the first step)
        except ImportError as exc:
            raise ConfigError("method cagrad needs scipy (pip install scipy)") from exc
        self.c = float(c)
        self.rescale = int(rescale)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        num_tasks = grads.shape[0]
        gram = (grads @ grads.T).double().cpu().numpy()
        w = torch.from_numpy(cagrad_weights(gram, self.c)).to(grads.device, torch.float64)
        g0_norm = float(np.sqrt(gram.mean() + 1e-8))
        gw_norm = float(torch.sqrt(w @ torch.from_numpy(gram).to(w.device) @ w).clamp_min(0))
        lam = (self.c * g0_norm + 1e-8) / (gw_norm + 1e-8)
        coefs = 1.0 / num_tasks + lam * w
        divisor = {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
        coefs = (num_tasks * coefs / divisor).to(grads.dtype)
        return AggregationResult(shared=coefs @ grads, task_weights=coefs)
