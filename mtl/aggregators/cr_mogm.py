"""CR-MOGM (Zhou et al. 2022, "On the Convergence of Stochastic Multi-Objective Gradient Manipulation and
Beyond"): an exponential moving average over another aggregator's task weights."""

from __future__ import annotations

from torch import Tensor

from mtl.aggregators._common import check_range
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext
from mtl.errors import ConfigError, UnknownNameError

# Aggregators whose update is (before any norm clipping) the task-weighted sum Σ_t w_t g_t of the task
# weights they report, so that smoothing the weights is meaningful. MoCo reports weights but its update is
# built from tracked gradients, not from G.
WEIGHTING_AGGREGATORS = (
    "aligned_mtl",
    "cagrad",
    "dualproj",
    "fairgrad",
    "gradnorm",
    "imtl_g",
    "mgda",
    "nash_mtl",
    "upgrad",
)


@AGGREGATORS.register("cr_mogm", "crmogm")
class CRMOGM(Aggregator):
    """CR-MOGM (Zhou et al. 2022, Alg. 2 / Eq. 8): with ``λ̂_k`` the task weights the ``inner`` aggregator
    reports at step ``k``, ``λ_k = β λ_{k−1} + (1 − β) λ̂_k`` and the update is ``Σ_t λ_{k,t} g_t``; the heads
    are weighted by ``λ_k`` when the inner aggregator weights them. ``λ_0 = λ̂_1``, so the first step is the
    inner aggregator's own weights (as torchjd 0.18 ``CRMOGMWeighting`` without ``initial_weights``, against
    which it is checked).

    ``inner`` must be one of :data:`WEIGHTING_AGGREGATORS` (default ``mgda``, the MOGM method the paper
    builds on); it runs with its own defaults (inner keyword arguments are not exposed, so that every
    hyperparameter stays a scalar a search space can set). Any norm clipping the inner aggregator applies to
    its own update (``nash_mtl``, ``fairgrad``: ``max_norm``) is not applied: CR-MOGM's update is ``λ_kᵀ G``.
    ``beta`` (torchjd's ``alpha``) defaults to torchjd's 0.9; the paper's Corollary 1 lets ``β_k`` grow
    towards 1 as the learning rate decays, which a fixed ``beta`` does not do.

    State: ``λ_{k−1}`` and the inner aggregator's state (its own state-dict entries, under ``inner.``).
    """

    def __init__(
        self,
        num_tasks: int,
        task_names: list[str] | None = None,
        seed: int = 0,
        inner: str = "mgda",
        beta: float = 0.9,
    ) -> None:
        super().__init__(num_tasks)
        try:
            name = AGGREGATORS.canonical(inner)
        except UnknownNameError:
            name = str(inner)
        if name not in WEIGHTING_AGGREGATORS:
            raise ConfigError(
                f"cr_mogm inner must be an aggregator that returns task weights, one of "
                f"{', '.join(WEIGHTING_AGGREGATORS)}; got {inner!r}"
            )
        self.beta = check_range("cr_mogm", "beta", beta, 0.0, 1.0)
        self.inner_name = name
        context = {"num_tasks": num_tasks, "task_names": task_names or [], "seed": seed}
        self.inner = AGGREGATORS.build(name, context=context)
        self.weights_heads = self.inner.weights_heads
        self.ema: Tensor | None = None

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        lam_hat = self.inner(grads, ctx).task_weights
        if lam_hat is None:
            raise ValueError(f"cr_mogm: inner aggregator {self.inner_name} returned no task weights")
        lam_hat = lam_hat.detach().to(grads.device, grads.dtype)
        if self.ema is None:
            prev = lam_hat
        else:
            if self.ema.shape != lam_hat.shape:
                raise ValueError(f"cr_mogm: {lam_hat.numel()} task weights after {self.ema.numel()}")
            prev = self.ema.to(grads.device, grads.dtype)
        self.ema = self.beta * prev + (1.0 - self.beta) * lam_hat
        return AggregationResult(shared=self.ema @ grads, task_weights=self.ema)

    def get_extra_state(self) -> dict:
        return {"ema": None if self.ema is None else self.ema.detach().cpu().clone()}

    def set_extra_state(self, state: dict) -> None:
        self.ema = None if state["ema"] is None else state["ema"].clone()
