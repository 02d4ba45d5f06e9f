"""UPGrad and DualProj (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, check_range, gramian, weighted_sum
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.dual_cone import project_weights
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError

SCALES = ("mean", "sum")


def jd_gramian(grads: Tensor, norm_eps: float, reg_eps: float) -> np.ndarray:
    """torchjd 0.18's normalised, regularised Gramian (``_linalg._gramian.normalize`` then ``regularize``),
    computed in ``grads``' dtype exactly as torchjd does, then float64: ``K = G Gᵀ``; ``K / tr K`` (the
    Gramian of ``G / ‖G‖_F``), or 0 when ``tr K < norm_eps``; plus ``reg_eps · I`` so that it is positive
    definite. A float32 product ``G Gᵀ`` is symmetric only up to rounding; the upper triangle is kept (the
    one quadprog reads from torchjd's array), which matters on ill-conditioned Gramians.

    ``norm_eps`` is an absolute threshold on ``Σ_t ‖g_t‖²``, not a relative one: below it (all gradient
    norms ≲ 10⁻² with the default 10⁻⁴) the Gramian is replaced by ``reg_eps · I`` and UPGrad and DualProj
    return the preference combination itself (the mean by default) — torchjd's behaviour, kept so the
    result equals torchjd's; ``norm_eps=0`` turns it off. A zero Gramian with ``norm_eps = 0`` (torchjd: 0/0,
    NaN) is treated as below the threshold.
    """
    k = gramian(grads.detach())
    trace = k.diagonal().sum()
    if not float(trace) > 0.0 or float(trace) < norm_eps:
        k = torch.zeros_like(k)
    else:
        k = k / trace
    k = k + reg_eps * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    k = k.cpu().double()
    return (torch.triu(k) + torch.triu(k, 1).T).numpy()


class _DualConeAggregator(Aggregator):
    """Shared arguments of UPGrad and DualProj (torchjd 0.18 names and defaults).

    ``pref_vector``: the preference weights ``p`` [T] (torchjd's ``pref_vector``; default ``1/T`` each, its
    ``MeanWeighting``). ``norm_eps``, ``reg_eps``: torchjd's ``QuadprogProjector`` arguments
    (:func:`jd_gramian`). ``scale``: ``mean`` (default; torchjd's scale: for the default ``p`` the update is a
    combination with weights near ``1/T``) or ``sum`` (the weights times ``T``, the scale of the EW sum
    ``Σ_t g_t`` that MGDA and CAGrad use here, so that learning rates carry over).

    The dual-cone QP is solved by :func:`mtl.aggregators.dual_cone.solve_dual_cone_qp` (exact active set, no
    quadprog). The weights are returned as ``task_weights`` for logging; the heads get the gradient of
    ``Σ_t ℓ_t`` (``weights_heads`` is False).
    """

    method = ""

    def __init__(
        self,
        num_tasks: int,
        pref_vector: Sequence[float] | None = None,
        norm_eps: float = 1e-4,
        reg_eps: float = 1e-4,
        scale: str = "mean",
    ) -> None:
        super().__init__(num_tasks)
        self.norm_eps = check_range(self.method, "norm_eps", norm_eps, 0.0, math.inf)
        self.reg_eps = check_range(self.method, "reg_eps", reg_eps, 0.0, math.inf)
        self.scale = check_choice(self.method, "scale", scale, SCALES)
        if pref_vector is None:
            self.pref_vector: tuple[float, ...] | None = None
        else:
            if isinstance(pref_vector, (str, bytes)) or not isinstance(pref_vector, Sequence):
                raise ConfigError(f"{self.method} pref_vector must be a list of {num_tasks} numbers")
            try:
                values = tuple(float(p) for p in pref_vector)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{self.method} pref_vector must be numbers, got {list(pref_vector)}"
                ) from exc
            if len(values) != num_tasks or not all(math.isfinite(p) for p in values):
                raise ConfigError(
                    f"{self.method} pref_vector must be {num_tasks} finite numbers, got {list(pref_vector)}"
                )
            self.pref_vector = values

    def preference(self, grads: Tensor) -> np.ndarray:
        """``p`` in float64, rounded through ``grads``' dtype as torchjd builds it (``1/T`` in float32)."""
        num_tasks = grads.shape[0]
        if self.pref_vector is not None and len(self.pref_vector) != num_tasks:
            raise ValueError(
                f"{self.method}: pref_vector has {len(self.pref_vector)} entries, G has {num_tasks}"
            )
        values = self.pref_vector if self.pref_vector is not None else [1.0 / num_tasks] * num_tasks
        return torch.tensor(values, dtype=grads.dtype).double().numpy()

    def weights(self, gram: np.ndarray, pref: np.ndarray, dtype: torch.dtype) -> Tensor:
        raise NotImplementedError

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        gram = jd_gramian(grads, self.norm_eps, self.reg_eps)
        w = self.weights(gram, self.preference(grads), grads.dtype)
        if self.scale == "sum":
            w = w * grads.shape[0]
        return weighted_sum(w.to(grads.device), grads)


@AGGREGATORS.register("upgrad")
class UPGrad(_DualConeAggregator):
    """UPGrad (Quinton & Rey 2024, Sec. 3, built on the projection ``π_J`` of their Eq. 3):
    ``Σ_t p_t π_J(g_t)``, each task gradient projected onto the dual cone ``{x : ⟨g_s, x⟩ ≥ 0 ∀ s}`` of all
    of them, then combined with the preference ``p``. By Prop. 1, ``π_J(p_t g_t) = Jᵀ v_t`` with
    ``v_t = argmin_{v ≥ p_t e_t} vᵀ K v``, so the weights are ``w = Σ_t v_t`` (torchjd 0.18
    ``UPGradWeighting``: ``U = diag(p)``, project each row, sum). The update has a non-negative inner product
    with every task gradient (up to the ``reg_eps`` regularisation: ``⟨d, g_t⟩ ≥ −reg_eps · tr K · w_t``),
    and is the mean of the projected gradients with the default ``p = 1/T`` (``scale="mean"``, torchjd's).

    Equal to ``torchjd.aggregation.UPGrad(pref_vector, QuadprogProjector(norm_eps, reg_eps))`` of torchjd
    0.18.0 on the same matrix (tests/mtl/aggregators/test_reference_jd.py).
    """

    method = "upgrad"

    def weights(self, gram: np.ndarray, pref: np.ndarray, dtype: torch.dtype) -> Tensor:
        projected = torch.from_numpy(project_weights(gram, np.diag(pref)))
        return projected.to(dtype).sum(dim=0)  # torchjd sums the rows after casting back to G's dtype


@AGGREGATORS.register("dualproj", "dual_proj")
class DualProj(_DualConeAggregator):
    """DualProj (a baseline aggregator of Quinton & Rey 2024; the projection of Lopez-Paz & Ranzato 2017,
    GEM Eq. 11): ``π_J(Σ_t p_t g_t)``, the preference combination (the mean by default) projected onto the
    dual cone of the task gradients: weights ``v = argmin_{v ≥ p} vᵀ K v`` (Prop. 1; torchjd 0.18
    ``DualProjWeighting``).

    Equal to ``torchjd.aggregation.DualProj(pref_vector, QuadprogProjector(norm_eps, reg_eps))`` of torchjd
    0.18.0 on the same matrix (tests/mtl/aggregators/test_reference_jd.py).
    """

    method = "dualproj"

    def weights(self, gram: np.ndarray, pref: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(project_weights(gram, pref)).to(dtype)
