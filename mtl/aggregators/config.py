"""ConFIG and M-ConFIG (Liu et al. 2024, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks"): the conflict-free direction with equal cosine to every task gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, check_range
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.context import StepContext

SCHEDULES = ("all", "cyclic")


def config_direction(grads: Tensor) -> Tensor:
    """ConFIG's update (Liu et al. 2024, Eq. 2, equal weights): with the unit gradients ``U`` [T, P] (rows
    ``g_t/‖g_t‖``, zero for a zero gradient), ``g_u = normalise(U⁺ 1)`` is the minimum-norm direction with
    ``U g_u ∝ 1`` (equal cosine with every ``g_t``), and the update is ``(Σ_t g_tᵀ g_u) g_u`` (the
    projection length). ``U⁺`` by SVD (``torch.linalg.pinv``, as torchjd 0.18 ``ConFIG``; the conflictfree
    0.1.8 package's ``ConFIG_update`` uses ``torch.linalg.lstsq`` and, for two tasks,
    ``ConFIG_update_double``'s closed form, equal up to rounding). Computed in float64, returned in
    ``grads``' dtype."""
    g64 = grads.double()
    units = torch.nan_to_num(g64 / g64.norm(dim=1, keepdim=True), 0.0)
    direction = torch.linalg.pinv(units) @ units.new_ones(units.shape[0])
    unit = torch.nn.functional.normalize(direction, dim=0)
    return ((g64 @ unit).sum() * unit).to(grads.dtype)


@AGGREGATORS.register("config", "conflict_free")
class ConFIG(Aggregator):
    """ConFIG (Liu et al. 2024, Eq. 2 with equal weights and the projection length): see
    :func:`config_direction`. Stateless; the heads get the gradient of ``Σ_t ℓ_t``. Checked against torchjd
    0.18 ``ConFIG`` and conflictfree 0.1.8 ``ConFIG_update`` / ``ConFIGOperator``."""

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        return AggregationResult(shared=config_direction(grads))


@AGGREGATORS.register("m_config", "mconfig")
class MConFIG(Aggregator):
    """M-ConFIG (Liu et al. 2024, Sec. 3.3 / Alg. 2; conflictfree 0.1.8 ``PseudoMomentumOperator``).

    Per task a first momentum ``m_t ← β₁ m_t + (1 − β₁) g_t`` (bias-corrected by ``1 − β₁^{k_t}``, ``k_t``
    the task's update count); ConFIG (:func:`config_direction`) of the corrected momenta gives ``d``; a
    "pseudo gradient" ``ĝ = (d (1 − β₁^k) − β₁ m̃) / (1 − β₁)`` (``m̃`` the previous ``d (1 − β₁^{k−1})``)
    feeds a second momentum ``s ← β₂ s + (1 − β₂) ĝ²``, and the update is ``d / (√(s / (1 − β₂^k)) + 1e-8)``:
    an Adam-like step, so the authors recommend plain SGD as the optimiser.

    ``schedule``: ``all`` (default) updates every task's momentum at every step (this library computes all
    task gradients at every step anyway); ``cyclic`` updates only task ``(call − 1) mod T`` (the paper's
    cost-saving scheme, the package's ``OrderedSliceSelector``/``global_step % T`` example; the other rows of
    ``G`` are ignored, and the update is zero until every task has been seen once). ``beta_1 = 0.9``,
    ``beta_2 = 0.999`` are the package's defaults. The state (momenta, counters) is in the state dict.
    """

    def __init__(
        self, num_tasks: int, beta_1: float = 0.9, beta_2: float = 0.999, schedule: str = "all"
    ) -> None:
        super().__init__(num_tasks)
        self.beta_1 = check_range("m_config", "beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = check_range("m_config", "beta_2", beta_2, 0.0, 1.0, high_open=True)
        self.schedule = check_choice("m_config", "schedule", schedule, SCHEDULES)
        self.calls = 0
        self.t = 0
        self.counts = [0] * num_tasks
        self.m: Tensor | None = None  # [T, P]
        self.s: Tensor | None = None  # [P]
        self.fake_m: Tensor | None = None  # [P]

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        if grads.shape[0] != self.num_tasks:
            raise ValueError(f"m_config built for {self.num_tasks} tasks, got {grads.shape[0]}")
        if self.m is None or self.m.shape != grads.shape:
            self.m = torch.zeros_like(grads)
            self.s = torch.zeros_like(grads[0])
            self.fake_m = torch.zeros_like(grads[0])
        elif self.m.device != grads.device or self.m.dtype != grads.dtype:
            self.m, self.s, self.fake_m = (
                x.to(grads.device, grads.dtype) for x in (self.m, self.s, self.fake_m)
            )
        assert self.s is not None and self.fake_m is not None
        self.calls += 1
        tasks = range(self.num_tasks) if self.schedule == "all" else [(self.calls - 1) % self.num_tasks]
        b1, b2 = self.beta_1, self.beta_2
        for i in tasks:
            self.counts[i] += 1
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * grads[i]
        if min(self.counts) == 0:
            return AggregationResult(shared=torch.zeros_like(grads[0]))
        self.t += 1
        corrected = torch.stack([self.m[i] / (1.0 - b1 ** self.counts[i]) for i in range(self.num_tasks)])
        direction = config_direction(corrected)
        fake_m = direction * (1.0 - b1**self.t)
        fake_grad = (fake_m - b1 * self.fake_m) / (1.0 - b1)
        self.fake_m = fake_m
        self.s = b2 * self.s + (1.0 - b2) * fake_grad**2
        s_hat = self.s / (1.0 - b2**self.t)
        return AggregationResult(shared=direction / (torch.sqrt(s_hat) + 1e-8))

    def get_extra_state(self) -> dict:
        def copy(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.detach().cpu().clone()

        return {
            "calls": self.calls,
            "t": self.t,
            "counts": torch.tensor(self.counts, dtype=torch.int64),
            "m": copy(self.m),
            "s": copy(self.s),
            "fake_m": copy(self.fake_m),
        }

    def set_extra_state(self, state: dict) -> None:
        self.calls = int(state["calls"])
        self.t = int(state["t"])
        self.counts = [int(c) for c in state["counts"].tolist()]
        self.m, self.s, self.fake_m = (
            None if state[key] is None else state[key].clone() for key in ("m", "s", "fake_m")
        )
