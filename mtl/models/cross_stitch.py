"""Cross-stitch networks (Misra et al., CVPR 2016) over ResNet trunks.

One ResNet column per task; after residual stages 1, 2 and 3 (the inputs of stages 2-4, where LibMTL places
them) a cross-stitch unit replaces each column's features by a learned linear combination of all columns'
features: ``x̃_t = Σ_s α[t, s] x_s``, one scalar per (t, s) pair and location. The units are initialised to the
paper's convex combination, ``α[t, t] = 0.9`` and ``α[t, s] = 0.1 / (T − 1)`` (LibMTL initialises all to 1).

Parameter split for gradient methods: every column and every unit affects every task, so they are all
*shared* (as in LibMTL, which treats the whole encoder as shared); the heads are task-specific. There is no
single shared representation: ``encode`` returns ``{task: features}`` and ``has_shared_representation`` is
False (use the ``exact`` gradient mode). Single-input only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.models.base import MultiTaskModel
from mtl.models.resnet import ResNetTrunk


class CrossStitchUnit(nn.Module):
    """``out_t = Σ_s alpha[t, s] · in_s`` for T same-shaped feature maps."""

    def __init__(self, num_tasks: int, same: float = 0.9) -> None:
        super().__init__()
        if num_tasks < 1:
            raise ValueError("a cross-stitch unit needs at least one task")
        other = (1.0 - same) / (num_tasks - 1) if num_tasks > 1 else 0.0
        alpha = torch.full((num_tasks, num_tasks), other)
        alpha.fill_diagonal_(same if num_tasks > 1 else 1.0)
        self.alpha = nn.Parameter(alpha)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        stacked = torch.stack(list(feats), dim=0)  # [T, B, C, H, W]
        mixed = torch.einsum("ts,sbchw->tbchw", self.alpha, stacked)
        return list(mixed.unbind(0))


class CrossStitchNetwork(MultiTaskModel):
    """Per-task ResNet columns joined by cross-stitch units, and one head per task."""

    has_shared_representation = False

    def __init__(
        self,
        columns: Mapping[str, ResNetTrunk],
        heads: Mapping[str, nn.Module],
        stitch_after: Sequence[int] = (0, 1, 2),
        same: float = 0.9,
    ) -> None:
        super().__init__()
        if list(columns) != list(heads):
            raise ValueError(
                f"columns {list(columns)} and heads {list(heads)} must name the same tasks in order"
            )
        self.task_names = list(columns)
        self.columns = nn.ModuleDict(dict(columns))
        self.heads = nn.ModuleDict(dict(heads))
        self.stitch_after = tuple(int(i) for i in stitch_after)
        self.units = nn.ModuleDict(
            {str(i): CrossStitchUnit(len(self.task_names), same) for i in self.stitch_after}
        )

    def encode(self, x: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        feats = [self.columns[t].stem(x) for t in self.task_names]
        for i in range(4):
            feats = [self.columns[t].layers[i](f) for t, f in zip(self.task_names, feats)]
            if i in self.stitch_after:
                feats = self.units[str(i)](feats)
        return dict(zip(self.task_names, feats))

    def decode(self, z: Mapping[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        return {t: self.heads[t](z[t]) for t in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.columns.parameters()
        yield from self.units.parameters()

    def task_parameters(self) -> Iterator[nn.Parameter]:
        return self.heads.parameters()
