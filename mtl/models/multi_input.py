"""Hard parameter sharing in the multi-input setting (Office-31 / Office-Home, LibMTL's ``multi_input``).

Each task has its own input batch: the input is ``{task: images}``, the shared encoder is applied to each
task's batch separately (as LibMTL does, so BatchNorm sees one domain at a time) and task t's head reads only
task t's features. ``encode`` returns ``{task: features}`` and ``decode`` maps them through the heads, so
``forward == decode(encode(x))`` and the ``exact`` per-task gradients of the shared encoder work as usual.
There is no single shared representation of all tasks (each task's loss depends on its own batch only), so
``has_shared_representation`` is False and the ``rep`` gradient mode is refused by the trainer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch import Tensor, nn

from mtl.models.base import MultiTaskModel


class MultiInputHPS(MultiTaskModel):
    """``encoder`` shared by all tasks, applied per task; ``heads[task]`` on that task's features."""

    has_shared_representation = False

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("MultiInputHPS needs at least one head")
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))

    def encode(self, x: Any) -> dict[str, Tensor]:  # type: ignore[override]
        if not isinstance(x, Mapping):
            raise TypeError(f"multi-input models take {{task: batch}}, got {type(x).__name__}")
        unknown = sorted(set(x) - set(self.heads))
        if unknown:
            raise KeyError(f"inputs for unknown task(s) {unknown}; tasks: {list(self.heads)}")
        return {t: self.encoder(x[t]) for t in self.heads if t in x}

    def decode(self, z: Mapping[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        return {t: self.heads[t](feat) for t, feat in z.items()}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.encoder.parameters()

    def task_parameters(self) -> Iterator[nn.Parameter]:
        return self.heads.parameters()
