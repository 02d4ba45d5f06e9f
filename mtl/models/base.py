"""The multi-task model contract used by the trainer and the gradient engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import Tensor, nn


class MultiTaskModel(nn.Module):
    """A model with shared parameters and task-specific parameters.

    ``forward(x) == decode(encode(x))``; ``encode`` returns the shared representation ``z`` (a tensor,
    needed by the ``rep`` gradient mode) and ``decode`` returns ``{task: prediction}``. Architectures where
    no single shared representation exists (Cross-stitch, MTAN) set ``has_shared_representation = False``.
    """

    has_shared_representation: bool = True

    def encode(self, x: Any) -> Tensor:
        raise NotImplementedError

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def forward(self, x: Any) -> dict[str, Tensor]:
        return self.decode(self.encode(x))

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        raise NotImplementedError

    def task_parameters(self) -> Iterator[nn.Parameter]:
        raise NotImplementedError
