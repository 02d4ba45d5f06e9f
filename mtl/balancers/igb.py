"""Improvable Gap Balancing v1 (Dai et al. 2023, IGB paper Alg. 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.balancers.base import Balancer
from mtl.balancers.registry import BALANCERS
from mtl.context import StepContext
from mtl.errors import ConfigError


@BALANCERS.register("igbv1", "igb_v1")
class IGBv1(Balancer):
    """IGBv1: loss ``Σ_t λ_t log L_t``.

    ``λ = 1`` until the base losses are known. At the end of epoch ``base_epoch`` (default 1, i.e. the
    second epoch) ``L_base`` = mean raw training loss per task over that epoch, fixed thereafter; from
    then on ``λ = T · softmax(L_batch / L_base)`` (IGB paper Eq. 7-8).
    """

    def __init__(self, num_tasks: int, base_epoch: int = 1) -> None:
        super().__init__(num_tasks, log=True)
        if base_epoch < 0:
            raise ConfigError(f"igbv1 base_epoch must be >= 0, got {base_epoch}")
        self.base_epoch = int(base_epoch)
        self.base_losses: Tensor | None = None

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        if self.base_losses is None:
            return torch.ones_like(losses)
        base = self.base_losses.to(losses.device, losses.dtype)
        return self.num_tasks * torch.softmax(losses / base, dim=0)

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        if epoch == self.base_epoch and self.base_losses is None:
            self.base_losses = mean_losses.detach().cpu().clone()

    def get_extra_state(self) -> dict:
        return {"base_losses": None if self.base_losses is None else self.base_losses.clone()}

    def set_extra_state(self, state: dict) -> None:
        base = state["base_losses"]
        self.base_losses = None if base is None else base.clone()
