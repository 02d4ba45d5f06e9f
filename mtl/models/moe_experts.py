"""Expert families for the MoE architectures (:mod:`mtl.models.moe`): fresh copies of a dataset's encoder.

An :class:`ExpertFamily` makes

* ``encoder()``: a fresh full encoder (one expert of MMoE / CGC / DSelect-k), called ``encoder(x)``;
* ``stages(L)``: a fresh encoder split into ``L`` consecutive stages (one expert per PLE level), each called
  ``stage(h, x)`` with ``h`` the level's input (``x`` itself at level 0) and ``x`` the batch (graphs need its
  edges);
* the gates' inputs: ``input_features(x)`` ``[B, input_dim]`` (a cheap per-sample summary of the input) and,
  for PLE, ``features(h, x, level)`` of a level's input (``level_dims(L)`` their widths);
* ``rows(weights, x, level, L)``: per-sample gate weights aligned with the rows of level ``level``'s expert
  outputs (per node for a graph's node-level stages, else unchanged).

Families hold only plain constructor arguments (no closures), so models that keep one stay picklable.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.models.hps import mlp


def chunk_sizes(n: int, parts: int) -> list[int]:
    """``n`` consecutive units split into ``parts`` contiguous groups, the first ones one larger."""
    if not 1 <= parts <= n:
        raise ValueError(f"cannot split {n} units into {parts} stages")
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _starts(sizes: Sequence[int]) -> list[int]:
    out, acc = [], 0
    for s in sizes:
        out.append(acc)
        acc += s
    return out


class Stage(nn.Module):
    """Consecutive encoder units applied to the level input ``h`` (the batch ``x`` is not needed)."""

    def __init__(self, units: Sequence[nn.Module]) -> None:
        super().__init__()
        self.body = nn.Sequential(*units)

    def forward(self, h: Tensor, x: Any = None) -> Tensor:
        return self.body(h)


class ExpertFamily(ABC):
    """Makes experts and summarises gate inputs for one dataset's encoder (see the module docstring)."""

    max_levels: int = 1
    input_dim: int = 0

    @abstractmethod
    def encoder(self) -> nn.Module: ...

    @abstractmethod
    def stages(self, num_levels: int) -> list[nn.Module]: ...

    @abstractmethod
    def level_dims(self, num_levels: int) -> list[int]: ...

    @abstractmethod
    def input_features(self, x: Any) -> Tensor: ...

    def features(self, h: Any, x: Any, level: int) -> Tensor:
        """The gate input of a level whose input is ``h`` (level 0: the batch summary)."""
        return self.input_features(x) if level == 0 else self.level_features(h, x)

    def level_features(self, h: Tensor, x: Any) -> Tensor:
        return h.flatten(1)

    def rows(self, weights: Tensor, x: Any, level: int, num_levels: int) -> Tensor:
        return weights


class MLPFamily(ExpertFamily):
    """Experts ``mlp(sizes)`` (Linear + ReLU layers, :func:`mtl.models.hps.mlp`); gates read the input
    vector itself (as LibMTL's); PLE levels are groups of consecutive layers."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = [int(s) for s in sizes]
        self.max_levels = len(self.sizes) - 1
        self.input_dim = self.sizes[0]

    def encoder(self) -> nn.Module:
        return mlp(self.sizes)

    def stages(self, num_levels: int) -> list[nn.Module]:
        net = list(mlp(self.sizes))
        layers = [net[i : i + 2] for i in range(0, len(net), 2)]  # (Linear, ReLU) pairs
        sizes = chunk_sizes(len(layers), num_levels)
        return [Stage([m for pair in layers[s : s + n] for m in pair]) for s, n in zip(_starts(sizes), sizes)]

    def level_dims(self, num_levels: int) -> list[int]:
        return [self.sizes[s] for s in _starts(chunk_sizes(self.max_levels, num_levels))]

    def input_features(self, x: Any) -> Tensor:
        return x.flatten(1)


class ResNetFamily(ExpertFamily):
    """Experts: a torchvision ResNet trunk (:class:`mtl.models.resnet.ResNetTrunk`), optionally followed by
    a neck (Office's :class:`mtl.models.vision.OfficeNeck`). Gates read the image average-pooled to
    ``pool × pool`` per channel (LibMTL's read the whole flattened image); PLE levels group the 5 units
    stem, layer1..layer4 (LibMTL's PLE uses exactly these 5 levels) and higher levels' gates read the
    globally average-pooled level input."""

    max_levels = 5

    def __init__(
        self,
        arch: str = "resnet50",
        dilated: bool = True,
        pretrained_path: str | os.PathLike[str] | None = None,
        neck: dict[str, Any] | None = None,
        pool: int = 8,
    ) -> None:
        self.arch, self.dilated, self.pretrained_path = arch, dilated, pretrained_path
        self.neck_kwargs = dict(neck) if neck is not None else None
        self.pool = int(pool)
        self.input_dim = 3 * self.pool * self.pool
        expansion = 4 if arch in ("resnet50", "resnet101") else 1
        self.unit_inputs = [3, 64, 64 * expansion, 128 * expansion, 256 * expansion]
        """Input channels of the stem and layer1..layer4 (the PLE gates' widths above level 0)."""
        self.out_channels = 512 * expansion

    def _trunk(self) -> Any:
        from mtl.models.resnet import ResNetTrunk

        return ResNetTrunk(self.arch, dilated=self.dilated, pretrained_path=self.pretrained_path, warn=False)

    def _neck(self) -> nn.Module | None:
        if self.neck_kwargs is None:
            return None
        from mtl.models.vision import OfficeNeck

        return OfficeNeck(**self.neck_kwargs)

    def encoder(self) -> nn.Module:
        trunk, neck = self._trunk(), self._neck()
        return trunk if neck is None else nn.Sequential(trunk, neck)

    def stages(self, num_levels: int) -> list[nn.Module]:
        trunk, neck = self._trunk(), self._neck()
        units: list[nn.Module] = [trunk.stem, *trunk.layers]
        sizes = chunk_sizes(len(units), num_levels)
        groups = [list(units[s : s + n]) for s, n in zip(_starts(sizes), sizes)]
        if neck is not None:
            groups[-1].append(neck)
        return [Stage(g) for g in groups]

    def level_dims(self, num_levels: int) -> list[int]:
        dims = [self.unit_inputs[s] for s in _starts(chunk_sizes(self.max_levels, num_levels))]
        dims[0] = self.input_dim
        return dims

    def input_features(self, x: Any) -> Tensor:
        return F.adaptive_avg_pool2d(x, self.pool).flatten(1)

    def level_features(self, h: Tensor, x: Any) -> Tensor:
        return h.mean(dim=(2, 3))


def graph_mean(values: Tensor, data: Any) -> Tensor:
    """Per-graph mean of node rows ``values`` [N, F] → [B, F] (``data.batch`` assigns nodes to graphs)."""
    num_graphs = int(data.num_graphs)
    sums = values.new_zeros(num_graphs, values.shape[1]).index_add(0, data.batch, values)
    counts = torch.bincount(data.batch, minlength=num_graphs).clamp_(min=1).to(values.dtype)
    return sums / counts.unsqueeze(1)


class MPNNNodes(nn.Module):
    """The node-level part of :class:`mtl.models.mpnn.MPNNEncoder` (``lin0`` and the message-passing steps
    with the GRU): a batch → node features ``[N, dim]``. Mirrors ``MPNNEncoder.forward`` up to Set2Set, on
    the encoder's own modules (the equivalence is tested)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.lin0, self.conv, self.gru = encoder.lin0, encoder.conv, encoder.gru
        self.steps = int(encoder.steps)
        self.factorized = encoder.conv_impl == "factorized"

    def forward(self, h: Any, data: Any) -> Tensor:
        from mtl.models.mpnn import batch_grouping, group_by_source

        x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
        out = F.relu(self.lin0(x))
        state = out.unsqueeze(0)
        extra: dict[str, Any] = {}
        if self.factorized:
            extra = {
                "grouping": batch_grouping(data) or group_by_source(edge_index, x.shape[0]),
                "edge_hidden": self.conv.nn[:-1](edge_attr),
            }
        for _ in range(self.steps):
            m = F.relu(self.conv(out, edge_index, edge_attr, **extra))
            out, state = self.gru(m.unsqueeze(0), state)
            out = out.squeeze(0)
        return out


class MPNNReadout(nn.Module):
    """The graph-level part of :class:`mtl.models.mpnn.MPNNEncoder`: Set2Set, ``lin1``, ReLU → [B, dim]."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.set2set, self.lin1 = encoder.set2set, encoder.lin1

    def forward(self, h: Tensor, data: Any) -> Tensor:
        pooled = self.set2set(h, data.batch, dim_size=int(data.num_graphs))
        return F.relu(self.lin1(pooled))


class WholeEncoder(nn.Module):
    """A full encoder as a one-stage expert: ``stage(h, x) = encoder(x)``."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, h: Any, x: Any) -> Tensor:
        return self.encoder(x)


class MPNNFamily(ExpertFamily):
    """Experts: the Gilmer MPNN (:class:`mtl.models.mpnn.MPNNEncoder`, ``encoder_kwargs`` as the dataset
    builds it). Gates read the per-molecule mean of the input node features (LibMTL's MoE cannot take
    graphs); PLE has at most 2 levels: the node-level message passing, then the Set2Set readout, whose gates
    read the per-molecule mean of the node features and weigh every node of a molecule alike."""

    max_levels = 2

    def __init__(self, **encoder_kwargs: Any) -> None:
        self.encoder_kwargs = dict(encoder_kwargs)
        self.input_dim = int(encoder_kwargs.get("num_node_features", 11))
        self.dim = int(encoder_kwargs.get("dim", 64))

    def encoder(self) -> nn.Module:
        from mtl.models.mpnn import MPNNEncoder

        return MPNNEncoder(**self.encoder_kwargs)

    def stages(self, num_levels: int) -> list[nn.Module]:
        chunk_sizes(self.max_levels, num_levels)  # validates the count
        enc = self.encoder()
        return [WholeEncoder(enc)] if num_levels == 1 else [MPNNNodes(enc), MPNNReadout(enc)]

    def level_dims(self, num_levels: int) -> list[int]:
        return [self.input_dim] + [self.dim] * (num_levels - 1)

    def input_features(self, x: Any) -> Tensor:
        return graph_mean(x.x, x)

    def level_features(self, h: Tensor, x: Any) -> Tensor:
        return graph_mean(h, x)

    def rows(self, weights: Tensor, x: Any, level: int, num_levels: int) -> Tensor:
        return weights[x.batch] if level < num_levels - 1 else weights
