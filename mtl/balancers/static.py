"""Static (linear) scalarisation: fixed per-task weights, the tuned baseline of the re-tuning papers.

Xin et al. 2022 ("Do current multi-task optimization methods in deep learning even help?", NeurIPS) and
Kurin et al. 2022 ("In defense of the unitary scalarization for deep multi-task learning", NeurIPS) find
that a weighted sum ``Σ_t w_t L_t`` whose weights are tuned like any other hyperparameter matches most
balancing methods. A study tunes it by searching each weight (``weight.<task>``, e.g. log-uniform).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from mtl.balancers.base import Balancer
from mtl.balancers.registry import BALANCERS
from mtl.context import StepContext
from mtl.errors import ConfigError


@BALANCERS.register("static", "linear", "weighted_sum")
class StaticWeighting(Balancer):
    """``Σ_t λ_t L_t`` with fixed ``λ_t = T · w_t / Σ_s w_s`` (weights normalised to sum to T, so the loss
    scale and the learning rate mean what they mean for EW, whatever scale the searched weights have).

    ``weight`` maps task names to positive raw weights; a task not named keeps raw weight 1, so
    ``static`` with no weights is EW. Written per task as ``weight.<task>=<value>`` (CLI ``-m``, study
    kwargs and search spaces), which :func:`mtl.methods.build_method` folds into this mapping.
    """

    mapping_kwargs = ("weight",)

    def __init__(
        self, num_tasks: int, task_names: list[str], weight: Mapping[str, float] | None = None
    ) -> None:
        super().__init__(num_tasks, log=False)
        given = dict(weight or {})
        unknown = sorted(set(given) - set(task_names))
        if unknown:
            raise ConfigError(
                f"static weight for {unknown}: not a task of this dataset; tasks: {', '.join(task_names)}"
            )
        raw = []
        for task in task_names:
            value = given.get(task, 1.0)
            if isinstance(value, str):  # the CLI's -m weight.t0=2, YAML 1.1's 1e-1
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"static weight.{task} must be a number, got {value!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"static weight.{task} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"static weight.{task} must be a finite number > 0, got {value}")
            raw.append(float(value))
        total = math.fsum(raw)
        self.raw_weights = dict(zip(task_names, raw))
        self.register_buffer(
            "lam", torch.tensor([num_tasks * w / total for w in raw], dtype=torch.float64), persistent=False
        )

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        return self.lam.to(losses.device, losses.dtype)
