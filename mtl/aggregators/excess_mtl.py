"""ExcessMTL (He, Zhou, Zhao & Zhao 2024, "Robust Multi-Task Learning with Excess Risks", ICML 2024): task
weights driven by estimated excess risks."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, weighted_sum
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError

SCALES = ("mean", "sum")


def excess_risks(grads: Tensor, sq_grad_sum: Tensor) -> Tensor:
    """The excess-risk estimates ``Ê_t ≈ g_tᵀ H_t⁻¹ g_t`` [T] (He et al. 2024, Eq. 6-7), updating the running
    sum of squared gradients in place first: ``S += g ⊙ g`` (AdaGrad's diagonal Hessian proxy),
    ``H = sqrt(S + 1e-7)`` elementwise, ``Ê_t = Σ_p g_tp² / H_tp``. Same operations as torchjd 0.18
    ``ExcessMTLWeighting.forward`` (the authors' and LibMTL's code loop over tasks; same values)."""
    sq = grads**2
    sq_grad_sum.add_(sq)
    return (sq / torch.sqrt(sq_grad_sum + 1e-7)).sum(dim=1)


@AGGREGATORS.register("excess_mtl", "excessmtl")
class ExcessMTL(Aggregator):
    """ExcessMTL (He et al. 2024, Alg. 1): weights ``α`` on the simplex (``1/T`` initially), the update
    ``Σ_t α_t g_t``. Every step computes the excess risks ``Ê`` (:func:`excess_risks`), divides them by a
    baseline ``Ê⁰`` ("scale processing", Sec. 3.2: ``Ê / (Ê⁰ + 1e-7)``) and takes an exponentiated-gradient
    step ``α ← softmax(log α + η Ê / Ê⁰)`` (Eq. 9; in log space, as torchjd, so a huge ratio saturates the
    weights instead of overflowing; the authors' ``α·exp(η Ê/Ê⁰)`` renormalised is the same map).

    The baseline: with ``n_warmup_steps = 0`` (default) it is the first step's ``Ê``, and that first step
    leaves the weights unchanged (the authors' code, yifei-he/ExcessMTL ``LibMTL/weighting/ExcessMTL.py``, and
    LibMTL's ``ExcessMTL``; it is also what the scale processing gives, ``Ê⁰/Ê⁰ = 1`` for every task). With
    ``n_warmup_steps = n > 0`` the weights stay ``1/T`` for ``n`` steps, the baseline is the mean ``Ê`` over
    them (Appendix C.1 suggests three epochs of statistics) and the updates start at step ``n + 1``.

    Known flaw reproduced under an option: torchjd 0.18's ``ExcessMTLWeighting`` with ``n_warmup_steps = 0``
    takes a step with the *un-normalised* first ``Ê`` (its comment says this matches the official code; the
    official code takes no step). That step depends on the gradients' scale (``Ê`` grows like
    ``Σ_p |g_p|``) and can put almost all weight on one task at step 1. ``raw_first_step=True`` reproduces it
    (for the comparison with torchjd); the default ``False`` is the authors' behaviour. The two agree from
    the start when ``n_warmup_steps > 0``.

    Arguments: ``robust_step_size`` = η (1.0, torchjd's default; the authors set it per benchmark),
    ``n_warmup_steps`` (0), ``raw_first_step`` (False), ``scale`` (``mean``: weights sum to 1, torchjd's; or
    ``sum``: times ``T``, the authors' and LibMTL's scale, whose weights start at 1), ``weight_heads``
    (False: the heads get the gradient of ``Σ_t ℓ_t``, as torchjd's aggregator; True: the heads are weighted
    too, as the authors and LibMTL, who weight the losses — with ``scale="sum"`` that is their whole step,
    up to torchjd's ``1e-7`` guard on the baseline).

    State (in the state dict): ``α``, the running sum ``S`` of squared gradients — ``T × P`` numbers, one
    more copy of ``G``'s size — the baseline, the warm-up sum and the step count. ``S`` keeps ``G``'s dtype
    (a later dtype or device is cast to, where torchjd restarts the state). A change in ``G``'s shape raises
    a ValueError (torchjd silently restarts the whole state): in ``rep`` mode, whose columns scale with the
    batch size, a smaller last batch does that, so use an exact ``grad_mode`` (LibMTL's ``rep_grad`` sums
    the representation gradients over the batch first, which the flattened ``G`` here does not allow).

    Equal to ``torchjd.aggregation.ExcessMTL`` of torchjd 0.18.0 with
    ``raw_first_step=True`` (or ``n_warmup_steps > 0``), step after step
    (tests/mtl/aggregators/test_reference_sdmgrad_modo_excess.py).
    """

    def __init__(
        self,
        num_tasks: int,
        robust_step_size: float = 1.0,
        n_warmup_steps: int = 0,
        raw_first_step: bool = False,
        scale: str = "mean",
        weight_heads: bool = False,
    ) -> None:
        super().__init__(num_tasks)
        if not robust_step_size > 0 or not math.isfinite(robust_step_size):
            raise ConfigError(f"excess_mtl robust_step_size must be > 0, got {robust_step_size}")
        self.robust_step_size = float(robust_step_size)
        if isinstance(n_warmup_steps, bool) or not float(n_warmup_steps).is_integer() or n_warmup_steps < 0:
            raise ConfigError(f"excess_mtl n_warmup_steps must be an integer >= 0, got {n_warmup_steps!r}")
        self.n_warmup_steps = int(n_warmup_steps)
        for key, value in (("raw_first_step", raw_first_step), ("weight_heads", weight_heads)):
            if not isinstance(value, bool):
                raise ConfigError(f"excess_mtl {key} must be true or false, got {value!r}")
        self.raw_first_step = raw_first_step
        self.weights_heads = weight_heads
        self.scale = check_choice("excess_mtl", "scale", scale, SCALES)
        self.steps = 0
        self.alpha: Tensor | None = None
        self.sq_grad_sum: Tensor | None = None
        self.baseline: Tensor | None = None
        self.warmup_sum: Tensor | None = None

    def _state_like(self, grads: Tensor) -> None:
        """Create the state at the first step; afterwards check its shape and move it to ``grads``."""
        num_tasks, dim = grads.shape
        if self.sq_grad_sum is None:
            self.alpha = grads.new_full((num_tasks,), 1.0 / num_tasks)
            self.sq_grad_sum = grads.new_zeros(num_tasks, dim)
            self.warmup_sum = grads.new_zeros(num_tasks)
            return
        if self.sq_grad_sum.shape != grads.shape:
            raise ValueError(
                f"excess_mtl: G is {tuple(grads.shape)} after {tuple(self.sq_grad_sum.shape)}; its running "
                f"squared-gradient sum needs a fixed shape (in grad_mode 'rep' the columns scale with the "
                f"batch size: a smaller last batch changes them; use an exact grad_mode)"
            )
        move = {"device": grads.device, "dtype": grads.dtype}
        self.alpha = self.alpha.to(**move)
        self.sq_grad_sum = self.sq_grad_sum.to(**move)
        self.warmup_sum = self.warmup_sum.to(**move)
        if self.baseline is not None:
            self.baseline = self.baseline.to(**move)

    def update_weights(self, grads: Tensor) -> Tensor:
        """One step of Alg. 1 on the weights; returns the weights this step uses."""
        self._state_like(grads)
        risks = excess_risks(grads, self.sq_grad_sum)
        self.steps += 1
        if self.steps <= self.n_warmup_steps:
            self.warmup_sum.add_(risks)
            return self.alpha
        if self.baseline is None:
            if self.n_warmup_steps > 0:
                self.baseline = self.warmup_sum / self.n_warmup_steps
                risks = risks / (self.baseline + 1e-7)
            else:
                self.baseline = risks
                if not self.raw_first_step:
                    return self.alpha
        else:
            risks = risks / (self.baseline + 1e-7)
        self.alpha = torch.softmax(torch.log(self.alpha) + risks * self.robust_step_size, dim=0)
        return self.alpha

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        weights = self.update_weights(grads.detach()).clone()
        if self.scale == "sum":
            weights = weights * grads.shape[0]
        return weighted_sum(weights, grads)

    def get_extra_state(self) -> dict:
        def snapshot(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.detach().cpu().clone()

        return {
            "steps": self.steps,
            "alpha": snapshot(self.alpha),
            "sq_grad_sum": snapshot(self.sq_grad_sum),
            "baseline": snapshot(self.baseline),
            "warmup_sum": snapshot(self.warmup_sum),
        }

    def set_extra_state(self, state: dict) -> None:
        self.steps = int(state["steps"])
        for key in ("alpha", "sq_grad_sum", "baseline", "warmup_sum"):
            value = state[key]
            setattr(self, key, None if value is None else value.clone())
