"""Hard parameter sharing (Caruana 1993): one shared encoder, one head per task."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor, nn

from mtl.models.base import MultiTaskModel
from mtl.models.heads import LinearHeads


class HPS(MultiTaskModel):
    """``encoder`` is shared; ``heads[task]`` maps the representation to that task's prediction."""

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module] | LinearHeads) -> None:
        super().__init__()
        if not heads:
            raise ValueError("HPS needs at least one head")
        self.encoder = encoder
        # stacked heads (one layer for every task, mtl.models.heads) or one module per task
        self.heads = heads if isinstance(heads, LinearHeads) else nn.ModuleDict(dict(heads))

    def encode(self, x: Any) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        if isinstance(self.heads, LinearHeads):
            return self.heads(z)
        return {task: head(z) for task, head in self.heads.items()}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def task_parameters(self) -> Iterator[nn.Parameter]:
        return self.heads.parameters()


def mlp(
    sizes: list[int], activation: type[nn.Module] = nn.ReLU, last_activation: bool = True
) -> nn.Sequential:
    """A plain MLP ``sizes[0] -> ... -> sizes[-1]``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if last_activation or i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
