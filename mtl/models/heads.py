"""Task heads of one shape evaluated as one batched layer: one kernel for all tasks instead of one per task.

A QM9 step on a GPU is launch-bound (DESIGN §10): its 11 ``Linear(64, 1)`` heads were 11 matrix products
forward and about 4 kernels each backward. :class:`LinearHeads` holds the same parameters stacked
(``weight`` [T·out, in], ``bias`` [T·out]) and computes every head with one ``addmm``; each task's prediction
is a view of that output, so nothing is copied. Task ``t``'s loss reaches only rows ``t·out … t·out+out−1`` of
the stacked parameters, so per-task head gradients (``mtl.gradients``) are what separate heads would give.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class LinearHeads(nn.Module):
    """``{task: Linear(in_features, out_features)}`` as one stacked layer (module docstring)."""

    def __init__(self, task_names: Sequence[str], in_features: int, out_features: int = 1) -> None:
        super().__init__()
        if not task_names:
            raise ValueError("LinearHeads needs at least one task")
        self.task_names = list(task_names)
        self.in_features, self.out_features = int(in_features), int(out_features)
        heads = {t: nn.Linear(in_features, out_features) for t in self.task_names}  # torch's init, in order
        self.weight = nn.Parameter(torch.cat([heads[t].weight.detach() for t in self.task_names]))
        self.bias = nn.Parameter(torch.cat([heads[t].bias.detach() for t in self.task_names]))

    @classmethod
    def from_linears(cls, heads: Mapping[str, nn.Linear]) -> LinearHeads:
        """Stacked copies of ``heads`` (all ``Linear`` of one shape, with biases), in their order."""
        first = next(iter(heads.values()))
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.task_names = list(heads)
        out.in_features, out.out_features = first.in_features, first.out_features
        out.weight = nn.Parameter(torch.cat([h.weight.detach() for h in heads.values()]).clone())
        out.bias = nn.Parameter(torch.cat([h.bias.detach() for h in heads.values()]).clone())
        return out

    def forward(self, z: Tensor) -> dict[str, Tensor]:
        y = F.linear(z, self.weight, self.bias).unflatten(-1, (len(self.task_names), self.out_features))
        return {t: y[..., i, :] for i, t in enumerate(self.task_names)}

    def __iter__(self) -> Iterator[str]:
        return iter(self.task_names)

    def __len__(self) -> int:
        return len(self.task_names)

    def extra_repr(self) -> str:
        return (
            f"tasks={len(self.task_names)}, in_features={self.in_features}, out_features={self.out_features}"
        )
