"""CAGrad (Liu et al. 2021): conflict-averse gradient descent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, gramian, weighted_sum
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError

RESCALES = (0, 1, 2)
SOLVERS = ("exact", "slsqp")


def cagrad_objective(w: np.ndarray, gram: np.ndarray, c: float) -> float:
    """CAGrad's dual objective (Liu et al. 2021, Eq. 6 / Alg. 1 line 4) at ``w``:
    ``F(w) = g_wᵀ g_0 + c ‖g_0‖ ‖g_w‖ = wᵀ K b + c ‖g_0‖ √(wᵀ K w)``, ``b = 1/T``, ``‖g_0‖ = √(bᵀ K b)``."""
    b = np.full(gram.shape[0], 1.0 / gram.shape[0])
    return float(w @ gram @ b + c * np.sqrt(max(b @ gram @ b, 0.0)) * np.sqrt(max(w @ gram @ w, 0.0)))


def cagrad_gap(w: np.ndarray, gram: np.ndarray, c: float) -> float:
    """The duality gap of ``w``: an upper bound of ``F(w) − min_Δ F`` (0 at the optimum).

    CAGrad's primal is ``max_d min_i ⟨g_i, d⟩`` s.t. ``‖d − g_0‖ ≤ ρ = c‖g_0‖``, and its dual is
    ``min_{w ∈ Δ} F(w)`` (Liu et al. 2021, Eq. 5-6; strong duality). The primal point of ``w`` is
    ``d(w) = g_0 + ρ g_w / ‖g_w‖``, feasible, so ``min_i ⟨g_i, d(w)⟩ ≤ max_d ... = min_Δ F ≤ F(w)``. With
    ``h_i = ⟨g_i, d(w)⟩ = (K b)_i + ρ (K w)_i / ‖g_w‖ = ∂F/∂w_i`` and ``F(w) = wᵀ h`` the gap is
    ``wᵀ h − min_i h_i`` (the Frank-Wolfe gap). When ``g_w = 0`` the bound uses ``d = g_0``."""
    n_tasks = gram.shape[0]
    b = np.full(n_tasks, 1.0 / n_tasks)
    rho = c * np.sqrt(max(b @ gram @ b, 0.0))
    kw = gram @ w
    norm = np.sqrt(max(w @ kw, 0.0))
    h = gram @ b + (rho * kw / norm if norm > 0 else 0.0)
    return float(cagrad_objective(w, gram, c) - h.min())


@dataclass
class CAGradSolution:
    """The weights, the objective ``F(w)`` and the certified gap ``F(w) − min F ≤ gap``."""

    weights: np.ndarray
    objective: float
    gap: float


def _support_solution(k: np.ndarray, a: np.ndarray, rho: float, support: np.ndarray) -> np.ndarray | None:
    """The stationary point of ``F`` with support ``S`` in closed form, or None (``K_SS`` singular, or no
    solution with positive weights). On ``S`` the KKT conditions read ``a_S + μ K_SS w_S = λ 1``,
    ``1ᵀ w_S = 1``, ``μ = ρ / ‖g_w‖``. With ``p = K_SS⁻¹ 1``, ``q = K_SS⁻¹ a_S``, ``α = 1ᵀp``, ``β = 1ᵀq``,
    ``γ = a_Sᵀq``: ``w_S = (λ p − q)/μ``, ``μ = λα − β`` and ``‖g_w‖² μ² = ρ²`` give
    ``μ = √(β² − α γ + α ρ²)`` and ``λ = (β + μ)/α``."""
    idx = np.flatnonzero(support)
    block = k[np.ix_(idx, idx)]
    s = np.sqrt(np.diag(block))
    if not np.all(s > 0):
        return None
    cos = block / np.outer(s, s)  # equilibrated: K_SS = S C S
    try:
        sol = np.linalg.solve(cos, np.stack([1.0 / s, a[idx] / s], axis=1))
    except np.linalg.LinAlgError:
        return None
    p, q = sol[:, 0] / s, sol[:, 1] / s
    alpha, beta, gamma = p.sum(), q.sum(), a[idx] @ q
    disc = beta * beta - alpha * gamma + alpha * rho * rho
    if not (alpha > 0 and disc > 0 and np.all(np.isfinite(sol))):
        return None
    mu = np.sqrt(disc)
    w_s = ((beta + mu) / alpha * p - q) / mu
    if np.any(w_s < 0):
        return None
    w = np.zeros(k.shape[0])
    w[idx] = w_s / w_s.sum()
    return w


def solve_cagrad_exact(
    gram: np.ndarray, c: float, rtol: float = 1e-10, max_iter: int = 200
) -> CAGradSolution:
    """``argmin_{w ∈ Δ} F(w)`` (:func:`cagrad_objective`) to a certified relative tolerance.

    ``F(w) = ⟨g_w, g_0⟩ + ρ ‖g_w‖`` (``ρ = c ‖g_0‖``) is convex but not a QP. For a fixed ``μ > 0`` the QP
    ``min_Δ ⟨g_w, g_0⟩ + (μ/2) ‖g_w‖²`` equals ``(μ/2) ‖Σ_i w_i (g_i + g_0/μ)‖² − ‖g_0‖²/(2μ)``: a
    minimum-norm problem over the shifted gradients, solved exactly by MGDA's solver
    (:func:`mtl.aggregators.mgda.min_norm_weights`). Its KKT conditions are those of ``F`` when
    ``μ = ρ / ‖g_w‖``, so ``μ`` is found by bisection (in log μ) of ``μ ‖g_{w(μ)}‖ − ρ`` on the bracket
    ``[ρ / max_i ‖g_i‖, ρ / min_Δ ‖g_w‖]``; at each iterate the support of ``w(μ)`` gives the exact
    stationary point on that support in closed form (:func:`_support_solution`). It stops when the duality
    gap :func:`cagrad_gap` (an independent certificate: ``F(w) − min F ≤ gap``) is below ``rtol`` × the
    problem's scale ``max_i ‖g_i‖ · ‖g_0‖``, and returns the best iterate with its gap otherwise. Works on
    ``K`` scaled by its largest diagonal, in float64."""
    from mtl.aggregators.mgda import min_norm_weights

    k_raw = np.asarray(gram, dtype=np.float64)
    n_tasks = k_raw.shape[0]
    k_raw = 0.5 * (k_raw + k_raw.T)
    scale = float(np.max(np.diag(k_raw)))
    if n_tasks == 1 or not scale > 0.0:
        w = np.full(n_tasks, 1.0 / n_tasks)
        return CAGradSolution(w, cagrad_objective(w, k_raw, c), 0.0)
    k = k_raw / scale
    b = np.full(n_tasks, 1.0 / n_tasks)
    a = k @ b
    g0_sq = max(float(b @ a), 0.0)
    rho = c * np.sqrt(g0_sq)
    tol = rtol * max(np.sqrt(g0_sq), 1e-300)  # max_i ‖g_i‖ = 1 after scaling

    best: tuple[np.ndarray, float] | None = None  # (weights, gap) of the best iterate so far

    def consider(w: np.ndarray | None) -> bool:
        nonlocal best
        if w is None:
            return False
        gap = cagrad_gap(w, k, c)
        if best is None or gap < best[1]:
            best = (w, gap)
        return gap <= tol

    def norm_of(w: np.ndarray) -> float:
        return float(np.sqrt(max(w @ k @ w, 0.0)))

    if rho == 0.0:  # F = wᵀ K b is linear: its minimisers are the face of the smallest (K b)_i; take that
        # face's min-norm point (for g_0 = 0, e.g. opposite gradients, every w is optimal: g_w = 0 if it can)
        face = np.flatnonzero(a <= a.min() + tol)
        w = np.zeros(n_tasks)
        w[face] = min_norm_weights(torch.from_numpy(k[np.ix_(face, face)])).numpy()
        consider(w)
    else:
        w_min = min_norm_weights(torch.from_numpy(k)).numpy()
        n_min = norm_of(w_min)
        if not consider(w_min):
            ones = np.ones(n_tasks)
            lo, hi = np.log(rho), np.log(rho / max(n_min, 1e-12))
            for _ in range(max_iter):
                mu = float(np.exp(0.5 * (lo + hi)))
                shifted = k + (np.outer(a, ones) + np.outer(ones, a)) / mu + g0_sq / mu**2
                w = min_norm_weights(torch.from_numpy(shifted)).numpy()
                if consider(w) or consider(_support_solution(k, a, rho, w > 0)):
                    break
                if mu * norm_of(w) < rho:
                    lo = np.log(mu)
                else:
                    hi = np.log(mu)
                if hi - lo < 1e-15:
                    break
    assert best is not None
    w, gap = best
    return CAGradSolution(w, cagrad_objective(w, k_raw, c), gap * scale)


def cagrad_weights_slsqp(gram: np.ndarray, c: float) -> np.ndarray:
    """The reference code's solve of CAGrad's dual (SLSQP from ``w = 1/T`` on the raw Gram matrix, with
    its ``1e-8`` offsets), kept to reproduce the reference: SLSQP reports success at non-optimal points on
    badly scaled problems (see :func:`solve_cagrad_exact`)."""
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


def cagrad_weights(gram: np.ndarray, c: float, solver: str = "exact") -> np.ndarray:
    """The dual of CAGrad (Liu et al. 2021, Eq. 6 / Alg. 1 line 4): ``w ∈ Δ`` minimising
    ``w^T K b + c‖g_0‖ √(w^T K w)`` with ``b = 1/T`` and ``‖g_0‖ = √(bᵀ K b)``; ``solver``: ``exact``
    (:func:`solve_cagrad_exact`, certified) or ``slsqp`` (the reference code's:
    :func:`cagrad_weights_slsqp`)."""
    check_choice("cagrad", "solver", solver, SOLVERS)
    if solver == "slsqp":
        return cagrad_weights_slsqp(gram, c)
    return solve_cagrad_exact(gram, c).weights


@AGGREGATORS.register("cagrad", "ca_grad")
class CAGrad(Aggregator):
    """CAGrad (Liu et al. 2021, Alg. 1): with ``g_0`` the average gradient and ``w`` from
    :func:`cagrad_weights`, ``g_w = Σ_t w_t g_t``, the update is
    ``d = g_0 + (c‖g_0‖ / ‖g_w‖) g_w``, divided by ``1 + c²`` (``rescale=1``, default), ``1 + c``
    (``rescale=2``) or not (``rescale=0``), then multiplied by T so its scale matches the EW sum (as in the
    Nash-MTL/IGB reference code; LibMTL leaves the mean scale).

    ``c`` defaults to 0.4, the Nash-MTL/IGB reference's value for QM9 (LibMTL's default is 0.5). The reported
    task weights are the coefficients of ``d`` on the ``g_t``; heads get the gradient of ``Σ_t ℓ_t``.

    ``solver``: ``exact`` (default; the dual solved to a certified tolerance, :func:`solve_cagrad_exact`) or
    ``slsqp`` (the reference code's SLSQP solve, which can stop at non-optimal points; for reproducing it).
    """

    def __init__(self, num_tasks: int, c: float = 0.4, rescale: int = 1, solver: str = "exact") -> None:
        super().__init__(num_tasks)
        if not c >= 0:
            raise ConfigError(f"cagrad c must be >= 0, got {c}")
        if rescale not in RESCALES:
            raise ConfigError(f"cagrad rescale must be one of 0, 1, 2; got {rescale!r}")
        self.solver = check_choice("cagrad", "solver", solver, SOLVERS)
        if self.solver == "slsqp":
            try:
                import scipy.optimize  # noqa: F401  (SLSQP; fail now rather than at the first step)
            except ImportError as exc:
                raise ConfigError("cagrad solver 'slsqp' needs scipy (pip install scipy)") from exc
        self.c = float(c)
        self.rescale = int(rescale)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        num_tasks = grads.shape[0]
        g64 = grads.double()  # the Gram in float64: a float32 Gram is asymmetric/noisy at ~1e-7 relative
        gram = gramian(g64).cpu().numpy()
        w = torch.from_numpy(cagrad_weights(gram, self.c, self.solver)).to(grads.device, torch.float64)
        g0_norm = float(np.sqrt(gram.mean() + 1e-8))
        gw_norm = float(torch.sqrt(w @ torch.from_numpy(gram).to(w.device) @ w).clamp_min(0))
        lam = (self.c * g0_norm + 1e-8) / (gw_norm + 1e-8)
        coefs = 1.0 / num_tasks + lam * w
        divisor = {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
        coefs = (num_tasks * coefs / divisor).to(grads.dtype)
        return weighted_sum(coefs, grads)
