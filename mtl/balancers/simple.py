"""Stateless loss-balancing baselines: EW, SI (log), GLS and STL."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.balancers.base import Balancer
from mtl.balancers.registry import BALANCERS
from mtl.checks import task_index
from mtl.context import StepContext


@BALANCERS.register("ew", "ls", "equal")
class EqualWeighting(Balancer):
    """EW: ``Σ_t L_t`` (λ_t = 1). With ``log=True`` it is SI."""

    def __init__(self, num_tasks: int, log: bool = False) -> None:
        super().__init__(num_tasks, log=log)


@BALANCERS.register("si", "log")
class ScaleInvariant(Balancer):
    """SI / log: ``Σ_t log(L_t + 1e-8)`` (DB-MTL paper Eq. 5; Table 5 "log only")."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks, log=True)


@BALANCERS.register("gls")
class GeometricLossStrategy(Balancer):
    """GLS (Chennupati et al. 2019): minimise ``(Π_t L_t)^{1/T}``.

    Written in the balancer contract: ``∇(Π L)^{1/T} = Σ_t λ_t ∇L_t`` with
    ``λ_t = (Π_s L_s)^{1/T} / (T · L_t)`` (detached), so ``ℓ_t = λ_t L_t``.
    """

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks, log=False)

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        geo = torch.exp(torch.log(losses).mean())
        return geo / (self.num_tasks * losses)


@BALANCERS.register("stl", "single_task")
class SingleTask(Balancer):
    """STL: train one task only (λ = one-hot). ``task`` is a task name or index."""

    def __init__(self, num_tasks: int, task_names: list[str], task: str | int = 0) -> None:
        super().__init__(num_tasks, log=False)
        index = task_index("stl", task, task_names)
        self.task_index = index
        self.task_name = task_names[index]

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        weights = torch.zeros_like(losses)
        weights[self.task_index] = 1.0
        return weights
