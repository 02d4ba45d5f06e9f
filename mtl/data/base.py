"""The dataset contract: tasks, loaders, losses, metrics, model factory and the shipped STL reference."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mtl.models.base import MultiTaskModel

Nested = dict[str, dict[str, float]]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskSpec:
    """A task: its name and its metrics, each mapped to ``higher_is_better``."""

    name: str
    metrics: Mapping[str, bool]


@dataclass(frozen=True)
class TrainDefaults:
    """The papers' training settings for a dataset (used where the trial config leaves them unset)."""

    lr: float = 1e-3
    batch_size: int = 128
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str = "none"
    scheduler_kwargs: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 100


class MetricAccumulator(ABC):
    """Accumulates predictions over a split and computes ``{task: {metric: value}}`` at the end."""

    @abstractmethod
    def update(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None: ...

    @abstractmethod
    def compute(self) -> Nested: ...


class MTLDataset(ABC):
    """A multi-task dataset with everything the trainer needs."""

    name: str = ""
    tasks: tuple[TaskSpec, ...] = ()
    defaults: TrainDefaults = TrainDefaults()
    architectures: tuple[str, ...] = ("hps",)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def higher_is_better(self) -> dict[str, dict[str, bool]]:
        return {t.name: dict(t.metrics) for t in self.tasks}

    @property
    def reference(self) -> Nested | None:
        """The shipped STL reference (test metrics of the papers' STL rows), or None."""
        return None

    @abstractmethod
    def split_size(self, split: str) -> int: ...

    @abstractmethod
    def loader(self, split: str, batch_size: int, shuffle: bool, seed: int, epoch: int) -> Iterable[Any]:
        """Batches ``(inputs, {task: target})``. With ``shuffle`` the order depends only on (seed, epoch),
        so a resumed run sees the same batches as an uninterrupted one."""

    @abstractmethod
    def build_model(self, architecture: str = "hps", **kwargs: Any) -> MultiTaskModel: ...

    @abstractmethod
    def losses(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        """Per-task training losses [T] in task order."""

    @abstractmethod
    def metric_accumulator(self) -> MetricAccumulator: ...

    def to_device(self, batch: Any, device: torch.device) -> Any:
        """Move a batch (tensors, dicts, tuples, objects with ``.to``) to ``device``."""
        return move_to(batch, device)


def move_to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor) or (hasattr(obj, "to") and callable(obj.to)):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to(v, device) for v in obj)
    return obj


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffling generator of one epoch: a pure function of (seed, epoch)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1))
