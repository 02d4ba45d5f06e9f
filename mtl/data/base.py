"""The dataset contract: tasks, loaders, losses, metrics, model factory and the shipped STL reference."""

from __future__ import annotations

import os
import types
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin, get_type_hints

import torch
from torch import Tensor

from mtl.checks import check_architecture
from mtl.config import TrainDefaults
from mtl.errors import ConfigError
from mtl.models.base import MultiTaskModel
from mtl.registry import did_you_mean

Nested = dict[str, dict[str, float]]
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TaskSpec:
    """A task: its name and its metrics, each mapped to ``higher_is_better``."""

    name: str
    metrics: Mapping[str, bool]


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
    model_arguments: tuple[str, ...] = ()
    """The keyword arguments :meth:`build_model` accepts (checked by :meth:`check_model_arguments`)."""
    reference_note: str = "the published single-task (STL) row of its setting (mtl.data.references)"
    """What Δp and Δm are measured against by default, in words (printed under a study's results)."""

    @classmethod
    def check_arguments(cls, args: Mapping[str, Any]) -> None:
        """Check constructor arguments (``args``: any of them, by name) without reading data or building
        anything: each value against the constructor's type hint, then the dataset's own ranges (subclasses
        extend this). The constructor calls it, and so does a study's validation (:func:`check_dataset`),
        so a bad value fails before any compute. Raises :class:`~mtl.errors.ConfigError`."""
        hints = _constructor_hints(cls)
        for key, value in args.items():
            hint = hints.get(key)
            if hint is not None and not _matches(value, hint):
                raise ConfigError(f"{cls.name} {key} must be {_describe(hint)}, got {value!r}")

    @classmethod
    def check_model_arguments(cls, architecture: str, kwargs: Mapping[str, Any]) -> None:
        """Check the architecture and :meth:`build_model` keyword arguments without building the model
        (subclasses extend this with value ranges). Raises :class:`~mtl.errors.ConfigError`."""
        architecture = check_architecture(cls.name, architecture, cls.architectures)
        valid = cls.model_arguments_for(architecture)
        unknown = sorted(set(kwargs) - set(cls.model_arguments))
        if unknown:
            raise ConfigError(
                f"unknown model argument(s) {unknown} for {cls.name}"
                f"{did_you_mean(unknown[0], valid)}; valid: {', '.join(sorted(valid)) or 'none'}"
                + (f" (with architecture '{architecture}')" if len(cls.architectures) > 1 else "")
            )

    @classmethod
    def model_arguments_for(cls, architecture: str) -> tuple[str, ...]:
        """The :attr:`model_arguments` that ``architecture`` takes: the dataset's own, plus the MoE
        arguments of a mixture-of-experts architecture (:data:`mtl.models.moe.MOE_DEFAULTS`)."""
        from mtl.models.moe import MOE_ARGUMENTS, MOE_DEFAULTS

        own = tuple(a for a in cls.model_arguments if a not in MOE_ARGUMENTS)
        return own + tuple(MOE_DEFAULTS.get(architecture, {}))

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @classmethod
    def task_names_for(cls, args: Mapping[str, Any]) -> list[str]:
        """The task names a dataset built with constructor arguments ``args`` has, without building it
        (a study checks ``stl``'s task against them)."""
        return [t.name for t in cls.tasks]

    @property
    def higher_is_better(self) -> dict[str, dict[str, bool]]:
        return {t.name: dict(t.metrics) for t in self.tasks}

    @property
    def reference(self) -> Nested | None:
        """The default published STL row of this dataset's default architecture (``hps``), from
        :mod:`mtl.data.references`, or None. The trainer picks the table per architecture and per metric
        (Δp / Δm): :func:`mtl.data.references.resolve`."""
        from mtl.data.references import DEFAULTS, reference

        name = DEFAULTS.get((self.name, "hps"))
        return reference(name.delta_p) if name is not None and name.delta_p is not None else None

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


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> torch.Tensor:
    """The order of ``n`` examples in one epoch: a seeded permutation (:func:`epoch_generator`), or
    ``0 … n−1`` without shuffling. Every loader that batches by index takes its order from here, so the host
    and device QM9 loaders give the same batches."""
    return torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)


def _constructor_hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of ``cls.__init__`` ({} when they cannot be resolved)."""
    try:
        return get_type_hints(cls.__init__)
    except Exception:  # a hint naming something only imported for type checkers: skip the type check
        return {}


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the type hint ``hint`` (the hints datasets use: int, float, bool, str,
    os.PathLike, sequences of those, unions with None); unknown hints accept anything."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is os.PathLike or hint is os.PathLike:
        return isinstance(value, os.PathLike)
    if origin in (list, tuple, Sequence, Iterable) or hint in (list, tuple, Sequence):
        args = get_args(hint)
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value if args)
    return True


def _describe(hint: Any) -> str:
    """``int | None`` -> 'an integer or null', for error messages."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in get_args(hint)))
    if hint is type(None):
        return "null"
    if origin is os.PathLike or hint is str:
        return "a string" if hint is str else "a path"
    if origin in (list, tuple, Sequence, Iterable):
        args = get_args(hint)
        return f"a list ({_describe(args[0])} each)" if args else "a list"
    names = {bool: "true or false", int: "an integer", float: "a number"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
