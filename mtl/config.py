"""The trial configuration: everything one training run needs, validated with clear errors."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from mtl.errors import ConfigError
from mtl.grad_modes import TRAIN_GRAD_MODES

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "step", "cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda")


TRIAL_FIELDS = ("dataset", "method", "seed", "dataset_kwargs", "method_kwargs")
"""The fields that make one trial what it is; every other field is a training *setting* a study fixes for
all its trials (``train:`` in a study file, :func:`training_settings`)."""


MAX_SEED = 2**63 - 1
"""The largest seed a trial may have: seeds are stored as Parquet int64 and torch takes them as 64-bit."""
MAX_INT = 2**31 - 1
"""Bound of the counts (batch size, steps) no machine could mean more of."""
MAX_BATCH = 1_000_000
"""Samples per step: a million (QM9 has 110k training molecules, NYUv2 795 images)."""
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _setting(default: Any, *, searchable: bool = False, **bounds: Any) -> Any:
    """A training setting's default, with what a study may do with it: search it (``searchable``) and the
    bounds its value must keep (``ge``/``gt``/``le``/``lt`` and ``allow_inf_nan``, as pydantic's ``Field``
    takes them). :meth:`TrainConfig.validate` checks the same bounds (:func:`check_bounds`) for configs made
    in code, so the bounds are written once, here."""
    return field(default=default, metadata={"searchable": searchable, "bounds": bounds})


def _bounded(default: Any, **bounds: Any) -> Any:
    """A trial field (not a setting) with bounds, checked like a setting's."""
    return field(default=default, metadata={"bounds": bounds})


_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def check_bounds(name: str, value: Any, bounds: dict[str, Any], integer: bool) -> None:
    """Raise :class:`ConfigError` unless ``value`` (not None) is a number of the right kind (an integer for
    ``integer``; never a bool; finite unless ``allow_inf_nan``) within ``bounds``."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    if not integer and not bounds.get("allow_inf_nan", True) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    for key, op in _BOUND_TEXT.items():
        if key not in bounds:
            continue
        limit = bounds[key]
        ok = {"ge": value >= limit, "gt": value > limit, "le": value <= limit, "lt": value < limit}[key]
        if not ok:
            raise ConfigError(f"{name} must be {op} {limit}, got {value!r}")


@dataclass
class TrainConfig:
    """One trial. Fields left ``None`` take the dataset's paper defaults (:class:`mtl.data.TrainDefaults`).

    ``reference_table`` names the published STL row Δp and Δm are measured against (a name of
    :mod:`mtl.data.references`, or ``"none"``); ``None`` takes the (dataset, architecture) defaults, which
    may differ for Δp and Δm (:data:`mtl.data.references.DEFAULTS`). ``reference`` (``{task: {metric:
    value}}``, e.g. STL results measured by the study) replaces the published rows for both.
    ``max_steps_per_epoch`` caps the batches per epoch for quick runs.
    ``grad_mode``: a mode of :func:`mtl.gradients.task_gradients`, or ``auto`` (the fastest exact mode, chosen
    by a short probe at trial start: :mod:`mtl.grad_probe`). ``device_batches``: gather batches on the
    training device from tensors resident there (datasets with a ``device_loader``, e.g. QM9); ``None`` = on
    when training on CUDA and the dataset offers it.
    """

    dataset: str = "synthetic"
    method: str = "ew"
    seed: int = _bounded(0, ge=0, le=MAX_SEED)
    epochs: int | None = _setting(None, ge=1, le=100_000)
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    architecture: str = _setting("hps", searchable=True)
    lr: float | None = _setting(None, searchable=True, gt=0, le=10.0, allow_inf_nan=False)
    batch_size: int | None = _setting(None, searchable=True, ge=1, le=MAX_BATCH)
    optimizer: str | None = _setting(None, searchable=True)
    weight_decay: float | None = _setting(None, searchable=True, ge=0, le=10.0, allow_inf_nan=False)
    scheduler: str | None = _setting(None, searchable=True)
    scheduler_kwargs: dict[str, Any] | None = None
    grad_mode: str = _setting("exact", searchable=True)
    device: str = "auto"
    max_steps_per_epoch: int | None = _setting(None, searchable=True, ge=1, le=MAX_INT)
    reference: dict[str, dict[str, float]] | None = None
    reference_table: str | None = None
    grad_diagnostics: bool = True
    device_batches: bool | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a trial config must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown trial config key(s) {unknown}; valid: {', '.join(sorted(names))}")
        config = cls(**data)
        config.validate()
        return config

    def ensure_valid(self) -> None:
        """:meth:`validate`, unless this config was validated as it is now (a trial's config is checked once
        as it starts: by :meth:`from_dict`, not again by the trainer)."""
        if getattr(self, "_valid_as", None) != self._identity():
            self.validate()

    def mark_valid(self) -> None:
        """Record this config as valid as it is now (for code that derived it from a valid one)."""
        self._valid_as = self._identity()

    def _identity(self) -> str:
        return repr(dataclasses.astuple(self))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check every field (types, ranges, names); raises :class:`ConfigError` naming the first bad one."""
        self._check_fields()
        self._valid_as = self._identity()

    def _check_fields(self) -> None:
        def check(cond: bool, message: str) -> None:
            if not cond:
                raise ConfigError(message)

        self._check_numbers()
        check(
            self.optimizer is None or self.optimizer in OPTIMIZERS,
            f"optimizer '{self.optimizer}' unknown; valid: {', '.join(OPTIMIZERS)}",
        )
        check(
            self.scheduler is None or self.scheduler in SCHEDULERS,
            f"scheduler '{self.scheduler}' unknown; valid: {', '.join(SCHEDULERS)}",
        )
        check(
            self.grad_mode in TRAIN_GRAD_MODES,
            f"grad_mode '{self.grad_mode}' unknown; valid: {', '.join(TRAIN_GRAD_MODES)}",
        )
        check(
            isinstance(self.device, str) and DEVICE_PATTERN.match(self.device) is not None,
            f"device {self.device!r} unknown; valid: {', '.join(DEVICES)}, cuda:N (N a GPU index)",
        )
        check(
            self.scheduler_kwargs is None or isinstance(self.scheduler_kwargs, dict),
            f"scheduler_kwargs must be a mapping, got {self.scheduler_kwargs!r}",
        )
        check(
            not (self.scheduler == "none" and self.scheduler_kwargs),
            f"scheduler 'none' takes no scheduler_kwargs, got {sorted(self.scheduler_kwargs or {})}",
        )
        check(
            self.device_batches is None or isinstance(self.device_batches, bool),
            f"device_batches must be true, false or null, got {self.device_batches!r}",
        )
        for key in ("dataset_kwargs", "method_kwargs", "model_kwargs"):
            check(isinstance(getattr(self, key), dict), f"{key} must be a mapping")
        self._check_reference_table()

    def _check_numbers(self) -> None:
        """Every bounded field (:func:`_setting`/:func:`_bounded` metadata) by :func:`check_bounds`."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            bounds = f.metadata.get("bounds")
            value = getattr(self, f.name)
            if not bounds or value is None:  # no bounds: a name or a mapping, checked below
                continue
            integer = int in (typing.get_args(hints[f.name]) or (hints[f.name],))
            check_bounds(f.name, value, bounds, integer)

    def __post_init__(self) -> None:
        self._check_reference_table()  # a misspelt table name fails where the config is made

    def _check_reference_table(self) -> None:
        if self.reference_table is None:
            return
        from mtl.data.references import check_table_name

        check_table_name(self.reference_table, allow_none=True)
        if self.reference is not None:
            raise ConfigError(
                "give either reference (measured STL results) or reference_table (a published row), not both"
            )


def training_settings() -> list[dataclasses.Field]:
    """The training settings of :class:`TrainConfig` (its fields but the :data:`TRIAL_FIELDS`), in order: the
    one definition the study schema (``train:``) and the search space (:data:`searchable_settings`) derive
    from."""
    return [f for f in dataclasses.fields(TrainConfig) if f.name not in TRIAL_FIELDS]


def searchable_settings() -> tuple[str, ...]:
    """The training settings a study may search (``lr``, ``batch_size``, ...)."""
    return tuple(f.name for f in training_settings() if f.metadata.get("searchable"))
