"""Nash-MTL (Navon et al. 2022): task weights of the Nash bargaining solution. Needs the optional cvxpy."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtl.aggregators._common import clip_norm, gramian
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError, MTLError

SOLVER_PREFERENCE = ("ECOS", "CLARABEL")
SOLVED = ("optimal", "optimal_inaccurate")
NO_SOLUTION = ("infeasible", "infeasible_inaccurate", "unbounded", "unbounded_inaccurate")
ON_UNSOLVED = ("keep", "raise")


class SolverError(MTLError, RuntimeError):
    """A convex solve inside an aggregator failed (never silently replaced by other weights)."""


def _import_cvxpy() -> Any:
    try:
        import cvxpy
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching sys.modules
        raise ConfigError(
            "method nash_mtl needs the optional dependency cvxpy (with a conic solver): "
            "pip install cvxpy ecos"
        ) from exc
    return cvxpy


def resolve_solver(cp: Any, solver: str | None) -> str:
    """The cvxpy solver to use: ``solver`` if installed, else ECOS (the reference's) or CLARABEL."""
    installed = set(cp.installed_solvers())
    if solver is not None:
        name = str(solver).upper()
        if name not in installed:
            raise ConfigError(
                f"nash_mtl solver '{solver}' is not installed; installed cvxpy solvers: "
                f"{', '.join(sorted(installed)) or 'none'}"
            )
        return name
    for name in SOLVER_PREFERENCE:
        if name in installed:
            return name
    raise ConfigError(
        f"nash_mtl needs the ECOS or CLARABEL solver for cvxpy (pip install ecos); installed: "
        f"{', '.join(sorted(installed)) or 'none'}"
    )


@AGGREGATORS.register("nash_mtl", "nashmtl", "nash")
class NashMTL(Aggregator):
    """Nash-MTL (Navon et al. 2022, Eq. 4, Alg. 1 and Sec. 3.2-3.3).

    ``α`` solves the bargaining equation ``G Gᵀ α = 1/α`` (Eq. 4) by a sequence of at most ``optim_niter``
    convex problems (Sec. 3.3), written as the reference with ``G̃ = G Gᵀ / ν``, ``ν = ‖G Gᵀ‖_F`` for
    conditioning: minimise ``Σ_t (G̃α)_t + φ'(α_prev)·(α − α_prev) / ν`` s.t.
    ``−log(α_t ν) − log((G̃α)_t) ≤ 0`` (i.e. ``α_t (G Gᵀ α)_t ≥ 1``), ``α ≥ 0``, linearising
    ``φ(α) = Σ_t log α_t + log (G̃α)_t`` around the previous iterate; it stops when
    ``‖G̃α − 1/α‖ < 1e-3`` or the iterate moves less than 1e-6 (the reference's criterion). ``α`` is
    recomputed every ``update_weights_every`` steps and warm-started from the previous one; the update is
    ``Σ_t α_t g_t``, clipped to norm ``max_norm`` (> 0; 0 disables), and the heads are weighted by α (as
    the reference ``Σ_t α_t ℓ_t``).

    cvxpy is optional: a missing cvxpy or solver fails at construction. ``solver`` defaults to ECOS (the
    reference's) when installed, else CLARABEL. A solver error raises :class:`SolverError` — the reference
    code catches every exception and keeps the previous α, which with cvxpy ≥ 1.6 (no ECOS) silently gives
    equal weights forever.

    A sub-problem can also be *unbounded* (or infeasible): the linearisation at ``α_prev`` breaks down when
    some ``(G̃ α_prev)_t < 0``, i.e. a task conflicts with the current combined direction (common with
    conflicting tasks; it happens on the QM9 MPNN at initialisation from ``α = 1``). The reference's stop
    criterion (``alpha.value is None``) then keeps the previous iterate. ``on_unsolved="keep"`` (default) does
    the same, but never silently: it counts these steps (``unsolved``, in the state dict) and issues a
    :class:`RuntimeWarning` on the 1st, 10th, 100th, ... occurrence; ``on_unsolved="raise"`` raises
    :class:`SolverError` instead.
    """

    weights_heads = True

    def __init__(
        self,
        num_tasks: int,
        update_weights_every: int = 1,
        optim_niter: int = 20,
        max_norm: float = 1.0,
        solver: str | None = None,
        on_unsolved: str = "keep",
    ) -> None:
        super().__init__(num_tasks)
        if int(update_weights_every) < 1:
            raise ConfigError(f"nash_mtl update_weights_every must be >= 1, got {update_weights_every}")
        if int(optim_niter) < 1:
            raise ConfigError(f"nash_mtl optim_niter must be >= 1, got {optim_niter}")
        if not max_norm >= 0:
            raise ConfigError(f"nash_mtl max_norm must be >= 0, got {max_norm}")
        if on_unsolved not in ON_UNSOLVED:
            raise ConfigError(f"nash_mtl on_unsolved must be one of keep, raise; got {on_unsolved!r}")
        self.on_unsolved = on_unsolved
        self.solver = resolve_solver(_import_cvxpy(), solver)
        self.update_weights_every = int(update_weights_every)
        self.optim_niter = int(optim_niter)
        self.max_norm = float(max_norm)
        self.step = 0
        self.unsolved = 0  # sub-problems without a solution (the previous α was kept)
        self.prvs_alpha = np.ones(num_tasks, dtype=np.float64)
        self._problem: Any = None

    # -- the convex sub-problem ---------------------------------------------------------------------
    def _build_problem(self) -> None:
        cp, n = _import_cvxpy(), self.num_tasks
        self._alpha = cp.Variable(shape=(n,), nonneg=True)
        self._prvs = cp.Parameter(shape=(n,), value=self.prvs_alpha.copy())
        self._gtg = cp.Parameter(shape=(n, n), value=np.eye(n))
        self._norm = cp.Parameter(shape=(1,), value=np.ones(1))
        g_prvs = self._gtg @ self._prvs
        phi_grad = 1 / self._prvs + (1 / g_prvs) @ self._gtg
        phi = phi_grad @ (self._alpha - self._prvs)
        g_alpha = self._gtg @ self._alpha
        constraints = [-cp.log(self._alpha[i] * self._norm) - cp.log(g_alpha[i]) <= 0 for i in range(n)]
        self._problem = cp.Problem(cp.Minimize(cp.sum(g_alpha) + phi / self._norm), constraints)

    def _solve_once(self) -> bool:
        """One convex sub-problem; False when it has no solution (unbounded or infeasible)."""
        options: dict[str, Any] = {"max_iters": 100} if self.solver == "ECOS" else {}
        try:
            with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
                # the reference's problem is not DPP (1 / parameter): cvxpy re-canonicalises each solve
                warnings.filterwarnings("ignore", message=".*not DPP.*")
                self._problem.solve(solver=self.solver, warm_start=True, **options)
        except Exception as exc:  # cvxpy raises SolverError, ValueError, ArithmeticError, ...
            raise SolverError(
                f"nash_mtl: the {self.solver} solve failed at step {self.step}: {type(exc).__name__}: {exc}"
            ) from exc
        status = self._problem.status
        if status in SOLVED and self._alpha.value is not None:
            return True
        message = f"nash_mtl: the {self.solver} solve ended with status '{status}' at step {self.step}"
        if status not in NO_SOLUTION or self.on_unsolved == "raise":
            raise SolverError(message + " (a task conflicts with the current weighted direction?)")
        self.unsolved += 1
        if math.log10(self.unsolved).is_integer():
            warnings.warn(
                f"{message}: keeping the previous weights, as the reference does "
                f"({self.unsolved} such sub-problems so far)",
                RuntimeWarning,
                stacklevel=2,
            )
        return False

    def solve(self, gtg: np.ndarray, normalization: float) -> np.ndarray:
        """The reference's ``solve_optimization``: iterate the convex sub-problem from the previous α."""
        if self._problem is None:
            self._build_problem()
        self._gtg.value = gtg
        self._norm.value = np.array([normalization])
        alpha_t = self.prvs_alpha
        for _ in range(self.optim_niter):
            self._alpha.value = alpha_t
            self._prvs.value = alpha_t
            if not self._solve_once():
                break  # the reference's stop criterion `alpha.value is None`: keep alpha_t
            new = self._alpha.value
            if (
                np.linalg.norm(gtg @ alpha_t - 1 / (alpha_t + 1e-10)) < 1e-3
                or np.linalg.norm(new - alpha_t) < 1e-6
            ):
                break
            alpha_t = np.asarray(new, dtype=np.float64).copy()
        self.prvs_alpha = np.asarray(alpha_t, dtype=np.float64).copy()
        return self.prvs_alpha

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        if grads.shape[0] != self.num_tasks:
            raise ValueError(f"nash_mtl built for {self.num_tasks} tasks, got {grads.shape[0]}")
        if self.step % self.update_weights_every == 0:
            gtg = gramian(grads)
            normalization = float(torch.linalg.norm(gtg))
            if not normalization > 0:
                raise SolverError(f"nash_mtl: all task gradients are zero at step {self.step}")
            alpha = self.solve((gtg / normalization).double().cpu().numpy(), normalization)
        else:
            alpha = self.prvs_alpha
        self.step += 1
        weights = torch.from_numpy(np.array(alpha, dtype=np.float64)).to(grads.device, grads.dtype)
        shared = weights @ grads
        shared = clip_norm(shared, self.max_norm)
        return AggregationResult(shared=shared, task_weights=weights)

    def __getstate__(self) -> dict:
        """Pickle without the cvxpy problem (rebuilt on the next solve)."""
        state = dict(self.__dict__)
        for key in ("_problem", "_alpha", "_prvs", "_gtg", "_norm"):
            state.pop(key, None)
        state["_problem"] = None
        return state

    def get_extra_state(self) -> dict:
        return {
            "step": self.step,
            "unsolved": self.unsolved,
            "prvs_alpha": torch.from_numpy(self.prvs_alpha.copy()),
        }

    def set_extra_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.unsolved = int(state["unsolved"])
        self.prvs_alpha = state["prvs_alpha"].double().numpy().copy()
