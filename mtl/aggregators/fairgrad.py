"""FairGrad (Ban & Ji 2024, "Fair Resource Allocation in Multi-Task Learning"): α-fair task weights."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, check_range, clip_norm, gramian
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError

SOLVERS = ("newton", "least_squares")


def fairgrad_residual(gram: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """The residual ``K w − w^{-1/α}`` of FairGrad's weight equation (Ban & Ji 2024, Eq. 4 / Alg. 1)."""
    return gram @ w - np.power(w, -1.0 / alpha)


def fairgrad_weights_least_squares(gram: np.ndarray, alpha: float, max_nfev: int | None = None) -> np.ndarray:
    """The reference solve: ``scipy.optimize.least_squares`` of the residual from ``w = 1/T`` with bounds
    ``(0, ∞)`` and scipy's defaults (``trf``, ``ftol = xtol = gtol = 1e-8``, ``max_nfev = 100 T``), as the
    authors' ``FairGrad.fairgrad`` (OptMN-Lab/fairgrad ``methods/weight_methods.py``) and torchjd 0.18's
    ``FairGradWeighting``. It stops on those tolerances (or the evaluation budget), so its residual is not
    zero; :func:`fairgrad_weights_newton` solves the same equation to rounding."""
    from scipy.optimize import least_squares

    n = gram.shape[0]
    start = np.full(n, 1.0 / n)
    res = least_squares(
        lambda x: fairgrad_residual(gram, x, alpha), start, bounds=(0, np.inf), max_nfev=max_nfev
    )
    return np.asarray(res.x, dtype=np.float64)


def _potential(k: np.ndarray, v: np.ndarray, alpha: float) -> float:
    """``f(v) = ½ vᵀ K v − Σ_t h(v_t)`` with ``h' = v^{-1/α}`` (``h = log`` for α = 1)."""
    if alpha == 1.0:
        concave = float(np.sum(np.log(v)))
    else:
        p = 1.0 - 1.0 / alpha
        concave = float(np.sum(np.power(v, p)) / p)
    return 0.5 * float(v @ k @ v) - concave


def fairgrad_weights_newton(
    gram: np.ndarray, alpha: float, rtol: float = 1e-12, max_iter: int = 100
) -> tuple[np.ndarray, bool]:
    """``w > 0`` with ``K w = w^{-1/α}`` (Ban & Ji 2024, Eq. 4) by damped Newton; returns ``(w, converged)``.

    The equation is the stationarity condition of ``f(w) = ½ wᵀ K w − Σ_t h(w_t)``, ``h'(w) = w^{-1/α}``,
    which is strictly convex on ``w > 0`` for α > 0 (``K ⪰ 0``, ``h`` concave), so its root is unique and
    Newton's method with a backtracking (Armijo) line search that keeps ``w > 0`` converges to it
    quadratically. The Hessian ``K + (1/α) diag(w^{-1/α-1})`` is positive definite at every iterate. To be
    free of the gradients' overall scale it solves ``K̃ v = v^{-1/α}`` with ``K̃ = K / s``, ``s = max_t K_tt``,
    and returns ``w = s^{-α/(1+α)} v``. Converged means ``‖K̃ v − v^{-1/α}‖ ≤ rtol · ‖v^{-1/α}‖`` (or within
    10³ rtol once no decrease of ``f`` is measurable). No root exists when ``f`` has no minimiser, e.g. for
    exactly opposite gradients (``K (1, 1)ᵀ = 0``: ``f`` decreases without end along ``(1, 1)``); then
    ``converged`` is False."""
    k = np.asarray(gram, dtype=np.float64)
    k = 0.5 * (k + k.T)
    n = k.shape[0]
    scale = float(np.max(np.diag(k)))
    if not scale > 0.0:
        return np.full(n, 1.0 / n), False
    k = k / scale
    v = np.ones(n)
    converged = False
    for _ in range(max_iter):
        power = np.power(v, -1.0 / alpha)
        grad = k @ v - power
        grad_norm = float(np.linalg.norm(grad))
        if grad_norm <= rtol * float(np.linalg.norm(power)):
            converged = True
            break
        try:
            step = -np.linalg.solve(k + np.diag(power / (alpha * v)), grad)
        except np.linalg.LinAlgError:  # the iterates ran off to infinity: no root
            break
        slope = float(grad @ step)  # −(Newton decrement)² < 0
        t = 1.0
        while np.any(v + t * step <= 0.0):
            t *= 0.5
        f0 = _potential(k, v, alpha)
        while t > 1e-12:
            trial = v + t * step
            # Armijo on f, or (near the root, where f's decrease drowns in rounding) a smaller residual
            if (
                _potential(k, trial, alpha) <= f0 + 0.25 * t * slope
                or float(np.linalg.norm(k @ trial - np.power(trial, -1.0 / alpha)))
                <= (1.0 - 0.25 * t) * grad_norm
            ):
                break
            t *= 0.5
        if t <= 1e-12:  # no measurable progress: rounding level reached
            break
        v = v + t * step
    if not converged:
        power = np.power(v, -1.0 / alpha)
        converged = bool(np.linalg.norm(k @ v - power) <= 1e3 * rtol * np.linalg.norm(power))
    return v * scale ** (-alpha / (1.0 + alpha)), converged


@AGGREGATORS.register("fairgrad", "fair_grad")
class FairGrad(Aggregator):
    """FairGrad (Ban & Ji 2024, Alg. 1): the weights ``w > 0`` solve ``G Gᵀ w = w^{-1/α}`` (Eq. 4, the
    α-fair utility maximisation's optimality condition) and the update is ``T Σ_t w_t g_t``, clipped to norm
    ``max_norm`` (> 0; 0 disables), as the authors' code (OptMN-Lab/fairgrad ``weight_methods.py``:
    ``newgrad * n_tasks`` "to match the sum loss", then ``clip_grad_norm_(shared, max_norm)``). α = 0 is
    linear scalarisation (equal weights 1/T, as torchjd). The heads get the gradient of ``Σ_t ℓ_t`` (as in the
    authors' code); the reported task weights are ``T w``.

    Defaults ``alpha = 1`` (proportional fairness) and ``max_norm = 1`` are the authors' argument defaults
    (``--alpha 1.0``, ``--max_norm 1.0``); the paper tunes α per benchmark.

    ``solver``: ``newton`` (default; :func:`fairgrad_weights_newton`, the root to rounding) or
    ``least_squares`` (the reference's scipy solve, :func:`fairgrad_weights_least_squares`, checked
    against torchjd 0.18 ``FairGrad``; it stops on scipy's 1e-8 tolerances, so its weights satisfy Eq. 4
    only approximately). Where Eq. 4 has no root (e.g. exactly opposite gradients) ``newton`` falls back to
    the least-squares weights and issues a :class:`RuntimeWarning` (counted in ``unsolved``).
    """

    def __init__(
        self, num_tasks: int, alpha: float = 1.0, max_norm: float = 1.0, solver: str = "newton"
    ) -> None:
        super().__init__(num_tasks)
        self.alpha = check_range("fairgrad", "alpha", alpha, 0.0, 1e6)
        if not max_norm >= 0:
            raise ConfigError(f"fairgrad max_norm must be >= 0, got {max_norm}")
        self.max_norm = float(max_norm)
        self.solver = check_choice("fairgrad", "solver", solver, SOLVERS)
        try:
            import scipy.optimize  # noqa: F401  (the reference solve and the fallback)
        except ImportError as exc:
            raise ConfigError("fairgrad needs scipy (pip install scipy)") from exc
        self.unsolved = 0

    def weights(self, gram: np.ndarray) -> np.ndarray:
        """``w`` of Eq. 4 for the float64 Gram matrix ``K`` (sums to anything; not normalised)."""
        n = gram.shape[0]
        if self.alpha == 0.0:
            return np.full(n, 1.0 / n)
        if self.solver == "least_squares":
            return fairgrad_weights_least_squares(gram, self.alpha)
        w, converged = fairgrad_weights_newton(gram, self.alpha)
        if converged:
            return w
        self.unsolved += 1
        if math.log10(self.unsolved).is_integer():
            warnings.warn(
                f"fairgrad: G Gᵀ w = w^(-1/α) has no positive root here (conflicting gradients?); using the "
                f"least-squares weights as the reference does ({self.unsolved} such steps so far)",
                RuntimeWarning,
                stacklevel=3,
            )
        return fairgrad_weights_least_squares(gram, self.alpha)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        num_tasks = grads.shape[0]
        gram = gramian(grads.double()).cpu().numpy()
        w = torch.from_numpy(self.weights(gram)).to(grads.device, torch.float64)
        coefs = (num_tasks * w).to(grads.dtype)
        shared = coefs @ grads
        shared = clip_norm(shared, self.max_norm)
        return AggregationResult(shared=shared, task_weights=coefs)

    def get_extra_state(self) -> dict:
        return {"unsolved": self.unsolved}

    def set_extra_state(self, state: dict) -> None:
        self.unsolved = int(state["unsolved"])
