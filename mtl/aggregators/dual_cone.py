"""Projection onto the dual cone of the task gradients, in the weight space (Quinton & Rey 2024).

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization" (2024), Eq. 3 defines the projection
``π_J(x)`` of a vector ``x`` onto the dual cone ``{y : J y ≥ 0}`` of the rows of the Jacobian ``J`` [T, P].
Their Proposition 1 states that for ``x = Jᵀ u`` the projection is ``π_J(Jᵀ u) = Jᵀ v`` where ``v`` solves
the small quadratic program

    min_v  vᵀ G v   subject to   v ≥ u,          G = J Jᵀ  (the T × T Gramian),

so everything happens in ``R^T``. :func:`solve_dual_cone_qp` solves it exactly with the Lawson-Hanson
active-set method for non-negative least squares, written on the Gramian (the "fast NNLS" form of Bro & de
Jong 1997): with ``v = u + x`` and ``G = L Lᵀ`` the problem is ``min_{x ≥ 0} ‖A x − b‖²`` with ``A = Lᵀ``,
``b = −Lᵀ u``, an NNLS problem whose normal-equation data ``AᵀA = G`` and ``Aᵀb = −G u`` are all the method
needs (no factor ``L`` is formed). It terminates in finitely many
steps on the exact optimal active set; each passive-set system is solved in equilibrated coordinates (the
cosine matrix) with one step of iterative refinement, in float64.

Optimality (the KKT conditions of the QP): ``λ = G v ≥ 0``, ``v − u ≥ 0`` and ``λ_i (v_i − u_i) = 0``;
:func:`kkt_residuals` measures them. ``λ = G v ≥ 0`` is the statement that ``Jᵀ v`` has a non-negative inner
product with every row of ``J`` (it lies in the dual cone). For a positive definite ``G`` the solution is
unique; for a singular ``G`` the update ``Jᵀ v`` still is (``‖Lᵀ v‖`` is strictly convex in ``Lᵀ v``) and one
minimiser ``v`` is returned.

Checked against torchjd 0.18's ``QuadprogProjector`` (quadprog 0.1.14 through qpsolvers 4.13), which solves
the same QP; neither is needed here at runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DualConeSolution:
    """``v`` (the projection weights), ``multipliers`` ``λ = G v`` and the number of outer iterations."""

    v: np.ndarray
    multipliers: np.ndarray
    iterations: int


def _solve_passive(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``G_PP⁻¹ rhs`` for a (P × P) PSD block, solved on its cosine matrix ``C = D G_PP D``
    (``D = diag^{-1/2}``) through its Cholesky factor (a least-squares solve when ``C`` is singular), with one
    step of iterative refinement."""
    d = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    d = np.where(d > 0.0, 1.0 / np.where(d > 0.0, d, 1.0), 1.0)
    cos = gram * np.outer(d, d)
    b = d * rhs
    try:
        inv_chol = np.linalg.inv(np.linalg.cholesky(cos))  # C⁻¹ = L⁻ᵀ L⁻¹
        y = inv_chol.T @ (inv_chol @ b)
        y = y + inv_chol.T @ (inv_chol @ (b - cos @ y))  # refinement: solve for the residual again
    except np.linalg.LinAlgError:
        y = np.linalg.lstsq(cos, b, rcond=None)[0]
        y = y + np.linalg.lstsq(cos, b - cos @ y, rcond=None)[0]
    return d * y


def _tolerance(gram: np.ndarray, u: np.ndarray, x: np.ndarray, rtol: float) -> np.ndarray:
    """Per-row rounding scale of ``λ_j = (G u)_j + (G x)_j``: ``rtol · √G_jj · Σ_i √G_ii (|u_i| + |x_i|)``
    (Cauchy-Schwarz bound of ``Σ_i |G_ji| (|u_i| + |x_i|)``), so the stopping test does not depend on the
    scale of ``G`` or ``u``, and stays meaningful when ``v = u + x`` is itself ≈ 0 by cancellation."""
    s = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    return rtol * s * float(s @ (np.abs(u) + np.abs(x))) + np.finfo(np.float64).tiny


def solve_dual_cone_qp(
    gram: np.ndarray, u: np.ndarray, rtol: float = 1e-12, max_iter: int | None = None
) -> DualConeSolution:
    """``argmin_{v ≥ u} vᵀ G v`` (Quinton & Rey 2024, Prop. 1) by Lawson-Hanson NNLS on the Gramian.

    ``gram`` [T, T] symmetric PSD (symmetrised here), ``u`` [T]; float64 throughout. The variable is
    ``x = v − u ≥ 0``; ``λ = G v`` is half the gradient of the objective in ``x``. Starting from ``x = 0``
    (all constraints active), the constraint with the most negative ``λ_j`` (beyond the rounding scale
    :func:`_tolerance`) is released; the passive set's unconstrained minimiser is taken if it keeps every
    passive ``x_i > 0``, otherwise the step is cut at the first ``x_i`` that reaches zero and those leave the
    passive set (Lawson & Hanson 1974, Alg. NNLS). After ``max_iter`` (default ``10 T + 20``) outer
    iterations, which exact arithmetic never needs, the iterate is returned if its :func:`kkt_residuals` are
    ≤ 1e-9 (rounding noise at the optimum), and ``RuntimeError`` is raised otherwise.
    """
    g = np.asarray(gram, dtype=np.float64)
    g = 0.5 * (g + g.T)
    u = np.asarray(u, dtype=np.float64).reshape(-1)
    n = u.shape[0]
    if g.shape != (n, n):
        raise ValueError(f"gram must be [{n}, {n}] for u of length {n}, got {g.shape}")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(u))):
        raise ValueError("solve_dual_cone_qp: non-finite Gramian or u")
    max_iter = 10 * n + 20 if max_iter is None else max_iter
    gu = g @ u
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    barred = np.zeros(n, dtype=bool)  # entered and dropped at once by rounding: not re-entered this round
    for iteration in range(1, max_iter + 1):
        lam = gu + g @ x
        candidates = ~passive & ~barred & (lam < -_tolerance(g, u, x, rtol))
        if not candidates.any():
            return DualConeSolution(u + x, lam, iteration - 1)
        j = int(np.argmin(np.where(candidates, lam, np.inf)))
        passive[j] = True
        for inner in range(n + 1):
            idx = np.flatnonzero(passive)
            s = np.zeros(n)
            s[idx] = _solve_passive(g[np.ix_(idx, idx)], -gu[idx])
            if inner == 0 and s[j] <= 0.0:  # impossible in exact arithmetic: j cannot enter, try the others
                passive[j] = False
                barred[j] = True
                break
            if np.all(s[idx] > 0.0):
                x = s
                barred[:] = False
                break
            blocking = idx[s[idx] <= 0.0]
            steps = x[blocking] / (x[blocking] - s[blocking])
            alpha = float(np.clip(steps.min(), 0.0, 1.0))
            x = x + alpha * (s - x)
            leaving = passive & (x <= 0.0)
            leaving[blocking[np.argmin(steps)]] = (
                True  # the blocking variable leaves even if rounding keeps it
            )
            passive &= ~leaving
            x[~passive] = 0.0
    lam = gu + g @ x
    if max(kkt_residuals(g, u, u + x).values()) <= 1e-9:  # cycling on rounding noise at the optimum
        return DualConeSolution(u + x, lam, max_iter)
    raise RuntimeError(f"solve_dual_cone_qp did not converge in {max_iter} iterations (T = {n})")


def project_weights(gram: np.ndarray, weights: np.ndarray, rtol: float = 1e-12) -> np.ndarray:
    """The weights ``w`` with ``π_J(Jᵀ u) = Jᵀ w`` for each row ``u`` of ``weights`` ([T] or [K, T]), i.e.
    :func:`solve_dual_cone_qp` row by row (torchjd's ``DualConeProjector`` contract)."""
    u = np.asarray(weights, dtype=np.float64)
    rows = np.atleast_2d(u)
    out = np.stack([solve_dual_cone_qp(gram, row, rtol).v for row in rows])
    return out.reshape(u.shape)


def kkt_residuals(gram: np.ndarray, u: np.ndarray, v: np.ndarray) -> dict[str, float]:
    """The KKT violations of ``v`` for ``min_{v ≥ u} vᵀ G v``, scale-free: ``λ_j = (G v)_j`` is measured
    against ``√G_jj · Σ_i √G_ii (|u_i| + |v_i|)`` (its rounding scale, row by row, so tasks with tiny
    gradients are held to the same relative standard) and ``v − u`` against ``‖u‖_∞ + ‖v‖_∞``.
    ``dual`` = max(−λ)₊ (membership of ``Jᵀ v`` in the dual cone), ``primal`` = max(u − v)₊,
    ``complementarity`` = max |λ_i| over the free ``v_i > u_i`` (those must have ``λ_i = 0``)."""
    g = np.asarray(gram, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    lam = g @ v
    s = np.sqrt(np.clip(np.diag(g), 0.0, None))
    lam_scale = np.maximum(s * float(s @ (np.abs(u) + np.abs(v))), 1e-300)
    v_scale = max(float(np.abs(u).max()) + float(np.abs(v).max()), 1e-300)
    slack = v - u
    free = slack > 1e-12 * v_scale
    rel = lam / lam_scale
    return {
        "dual": max(float(-rel.min()), 0.0),
        "primal": max(float(-slack.min()), 0.0) / v_scale,
        "complementarity": float(np.abs(rel[free]).max()) if free.any() else 0.0,
    }
