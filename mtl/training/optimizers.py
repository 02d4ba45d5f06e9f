"""The optimisers a trial may train with (``TrainConfig.optimizer``), by name, each on its fused path.

Fused: one kernel per step for all parameters instead of about eight per parameter tensor, and no host read
of the step count (the for-loop Adam read it once per tensor: 40 device-to-host copies a step for the QM9
MPNN; ``benchmarks/op_count.py``). The fused implementations compute the same update up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mtl.training.choices import Choices

if TYPE_CHECKING:
    import torch

OptimizerFactory = Callable[..., "torch.optim.Optimizer"]
"""``factory(params, lr=, weight_decay=, fused=)`` -> the optimiser."""


def _adam(params: Sequence[Any], **kwargs: Any) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, **kwargs)


def _adamw(params: Sequence[Any], **kwargs: Any) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(params, **kwargs)


def _sgd(params: Sequence[Any], **kwargs: Any) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, momentum=0.9, **kwargs)


OPTIMIZERS: Choices[OptimizerFactory] = Choices("optimizer", {"adam": _adam, "adamw": _adamw, "sgd": _sgd})
"""``TrainConfig.optimizer`` -> its factory (SGD with momentum 0.9)."""


def build_optimizer(
    name: str, params: Sequence[torch.nn.Parameter], *, lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``params``, fused when every parameter is a floating-point tensor on the
    CPU or a CUDA device (the fused kernels' condition)."""
    factory = OPTIMIZERS[name]
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return factory(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
