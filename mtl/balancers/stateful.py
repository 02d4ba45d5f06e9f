"""Loss-balancing baselines with state: RLW, UW, DWA, IMTL-L."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl.balancers.base import Balancer, BalanceResult
from mtl.balancers.registry import BALANCERS
from mtl.context import StepContext
from mtl.errors import ConfigError


@BALANCERS.register("rlw")
class RandomLossWeighting(Balancer):
    """RLW (Lin et al. 2022): ``λ = T · softmax(u)``, ``u ~ N(0, I)`` drawn afresh every step.

    The weights are scaled to sum to T (as the IGB reference code does) so the loss scale matches EW.
    The draw uses its own seeded generator, saved in the state dict.
    """

    def __init__(self, num_tasks: int, seed: int = 0, log: bool = False) -> None:
        super().__init__(num_tasks, log=log)
        self.generator = torch.Generator().manual_seed(int(seed))

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        u = torch.randn(self.num_tasks, generator=self.generator)
        return (self.num_tasks * torch.softmax(u, dim=0)).to(losses.device, losses.dtype)

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


@BALANCERS.register("uw", "uncertainty")
class UncertaintyWeighting(Balancer):
    """UW (Kendall et al. 2018, Eq. 7 as implemented by the authors):
    ``ℓ_t = f(L_t) / (2 e^{s_t}) + s_t / 2`` with learnable ``s_t = log σ_t²`` (init 0).
    Reported weights are ``1 / (2 e^{s_t})``.
    """

    def __init__(self, num_tasks: int, log: bool = False) -> None:
        super().__init__(num_tasks, log=log)
        self.log_var = nn.Parameter(torch.zeros(num_tasks))

    def forward(self, losses: Tensor, ctx: StepContext) -> BalanceResult:
        s = self.log_var.to(losses.dtype)
        precision = 0.5 * torch.exp(-s)
        terms = precision * self.transform(losses) + 0.5 * s
        return BalanceResult(terms=terms, weights=precision.detach())


@BALANCERS.register("imtl_l")
class IMTLLoss(Balancer):
    """IMTL-L (Liu et al. 2021, Eq. 8): ``ℓ_t = e^{s_t} L_t − s_t`` with learnable ``s_t`` (init 0);
    the optimum makes every scaled loss equal to 1. Reported weights are ``e^{s_t}``."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks, log=False)
        self.scale = nn.Parameter(torch.zeros(num_tasks))

    def forward(self, losses: Tensor, ctx: StepContext) -> BalanceResult:
        s = self.scale.to(losses.dtype)
        weights = torch.exp(s)
        return BalanceResult(terms=weights * losses - s, weights=weights.detach())


@BALANCERS.register("dwa")
class DynamicWeightAverage(Balancer):
    """DWA (Liu et al. 2019, Eq. 1-2), with epoch-mean losses as in the MTAN paper:
    ``w_t(e) = L_t(e−1) / L_t(e−2)``, ``λ_t = T exp(w_t / temp) / Σ_s exp(w_s / temp)``; λ = 1 for
    the first two epochs."""

    def __init__(self, num_tasks: int, temperature: float = 2.0, log: bool = False) -> None:
        super().__init__(num_tasks, log=log)
        if not temperature > 0:
            raise ConfigError(f"dwa temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.history: list[Tensor] = []  # epoch-mean losses of the last two epochs

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        if len(self.history) < 2:
            return torch.ones_like(losses)
        ratio = (self.history[-1] / self.history[-2]).to(losses.device, losses.dtype)
        return self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        self.history = [*self.history, mean_losses.detach().cpu().clone()][-2:]

    def get_extra_state(self) -> dict:
        return {"history": [h.clone() for h in self.history]}

    def set_extra_state(self, state: dict) -> None:
        self.history = [h.clone() for h in state["history"]]
