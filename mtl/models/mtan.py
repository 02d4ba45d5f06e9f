"""MTAN over a shared ResNet (Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019),
in the ResNet form LibMTL uses for NYUv2/Cityscapes (dilated ResNet-50) and Office (ResNet-18).

In every residual stage i the shared trunk gives ``u_i`` (output of all blocks but the last) and ``p_i``
(output of the stage). Task t's attention mask is ``a = g_i^t([u_i, f_{i-1}^t])`` (``g_0^t(u_0)`` in the first
stage), a 1×1-conv / BN / ReLU / 1×1-conv / BN / sigmoid block; the task feature is ``a ⊙ p_i``, which a
residual block ``h_i`` (shared among tasks, stages 0-2) maps to the next stage's width, max-pooled to the next
stage's resolution when it changes. The last stage's ``a ⊙ p_3`` (optionally through a shared ``neck``) goes
to the task's head.

Parameter split: the trunk, the ``h_i`` blocks and the neck are shared by all tasks (gradient methods act on
them; LibMTL leaves ``h_i`` out of its shared set); the attention masks and heads are task-specific. There is
no single shared representation (``has_shared_representation = False``; use the ``exact`` gradient mode).

``multi_input=True`` (Office): the input is ``{task: images}`` and each task's images pass through the shared
trunk with only that task's attention.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.models.base import MultiTaskModel
from mtl.models.resnet import ResNetTrunk


def attention_block(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """MTAN's attention mask ``g``: 1×1 conv, BN, ReLU, 1×1 conv, BN, sigmoid."""
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, kernel_size=1),
        nn.BatchNorm2d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid_channels, out_channels, kernel_size=1),
        nn.BatchNorm2d(out_channels),
        nn.Sigmoid(),
    )


def _residual_block(trunk: ResNetTrunk, in_channels: int, out_channels: int) -> nn.Module:
    """A torchvision residual block of the trunk's kind mapping ``in_channels`` to ``out_channels``."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

    downsample = nn.Sequential(conv1x1(in_channels, out_channels), nn.BatchNorm2d(out_channels))
    if trunk.expansion == 4:
        return Bottleneck(in_channels, out_channels // 4, downsample=downsample)
    return BasicBlock(in_channels, out_channels, downsample=downsample)


def match_resolution(x: Tensor, like: Tensor) -> Tensor:
    """Max-pool ``x`` to the spatial size of ``like`` (no-op when equal)."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.adaptive_max_pool2d(x, like.shape[-2:])


class MTANResNet(MultiTaskModel):
    """A shared :class:`ResNetTrunk` with per-task attention modules and per-task heads."""

    has_shared_representation = False

    def __init__(
        self,
        trunk: ResNetTrunk,
        heads: Mapping[str, nn.Module],
        neck: nn.Module | None = None,
        multi_input: bool = False,
    ) -> None:
        super().__init__()
        self.task_names = list(heads)
        if not self.task_names:
            raise ValueError("MTAN needs at least one head")
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))
        self.neck = neck
        self.multi_input = multi_input
        ch, e = trunk.channels, trunk.expansion
        self.attention = nn.ModuleList()
        for i in range(4):
            in_ch = ch[i] if i == 0 else 2 * ch[i]
            self.attention.append(
                nn.ModuleDict({t: attention_block(in_ch, ch[i] // e, ch[i]) for t in self.task_names})
            )
        self.block_att = nn.ModuleList([_residual_block(trunk, ch[i], ch[i + 1]) for i in range(3)])

    def _features(self, x: Tensor, tasks: Sequence[str]) -> dict[str, Tensor]:
        h = self.trunk.stem(x)
        att: dict[str, Tensor] = {}
        for i, layer in enumerate(self.trunk.layers):
            u = layer[:-1](h)
            h = layer[-1](u)
            for t in tasks:
                if i == 0:
                    mask = self.attention[i][t](u)
                else:
                    mask = self.attention[i][t](torch.cat([u, match_resolution(att[t], u)], dim=1))
                feat = mask * h
                att[t] = self.block_att[i](feat) if i < 3 else feat
        return att

    def encode(self, x: Any) -> dict[str, Tensor]:  # type: ignore[override]
        if self.multi_input:
            return {t: self._features(x[t], [t])[t] for t in self.task_names if t in x}
        return self._features(x, self.task_names)

    def decode(self, z: Mapping[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        out = {}
        for t, feat in z.items():
            out[t] = self.heads[t](self.neck(feat) if self.neck is not None else feat)
        return out

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.trunk.parameters()
        yield from self.block_att.parameters()
        if self.neck is not None:
            yield from self.neck.parameters()

    def task_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.attention.parameters()
        yield from self.heads.parameters()
