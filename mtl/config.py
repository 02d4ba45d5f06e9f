"""The trial configuration: everything one training run needs, validated with clear errors."""

from __future__ import annotations

import dataclasses
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


def _setting(default: Any, *, searchable: bool = False, **bounds: float) -> Any:
    """A training setting's default, with what a study may do with it: search it (``searchable``) and the
    bounds its value must keep (``ge``/``gt``, as pydantic's ``Field`` takes them).
    :meth:`TrainConfig.validate` checks the same bounds for configs made in code."""
    return field(default=default, metadata={"searchable": searchable, "bounds": bounds})


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
    seed: int = 0
    epochs: int | None = _setting(None, ge=1)
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    architecture: str = _setting("hps", searchable=True)
    lr: float | None = _setting(None, searchable=True, gt=0)
    batch_size: int | None = _setting(None, searchable=True, ge=1)
    optimizer: str | None = _setting(None, searchable=True)
    weight_decay: float | None = _setting(None, searchable=True, ge=0)
    scheduler: str | None = _setting(None, searchable=True)
    scheduler_kwargs: dict[str, Any] | None = None
    grad_mode: str = _setting("exact", searchable=True)
    device: str = "auto"
    max_steps_per_epoch: int | None = _setting(None, searchable=True, ge=1)
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

        check(
            isinstance(self.seed, int) and not isinstance(self.seed, bool),
            f"seed must be an integer, got {self.seed!r}",
        )
        check(
            self.epochs is None or (isinstance(self.epochs, int) and self.epochs >= 1),
            f"epochs must be >= 1, got {self.epochs!r}",
        )
        check(
            self.lr is None or (isinstance(self.lr, (int, float)) and self.lr > 0),
            f"lr must be > 0, got {self.lr!r}",
        )
        check(
            self.batch_size is None or (isinstance(self.batch_size, int) and self.batch_size >= 1),
            f"batch_size must be >= 1, got {self.batch_size!r}",
        )
        check(
            self.optimizer is None or self.optimizer in OPTIMIZERS,
            f"optimizer '{self.optimizer}' unknown; valid: {', '.join(OPTIMIZERS)}",
        )
        check(
            self.scheduler is None or self.scheduler in SCHEDULERS,
            f"scheduler '{self.scheduler}' unknown; valid: {', '.join(SCHEDULERS)}",
        )
        check(
            self.weight_decay is None or self.weight_decay >= 0,
            f"weight_decay must be >= 0, got {self.weight_decay!r}",
        )
        check(
            self.grad_mode in TRAIN_GRAD_MODES,
            f"grad_mode '{self.grad_mode}' unknown; valid: {', '.join(TRAIN_GRAD_MODES)}",
        )
        check(
            self.device in DEVICES or self.device.startswith("cuda:"),
            f"device '{self.device}' unknown; valid: {', '.join(DEVICES)}, cuda:N",
        )
        check(
            self.max_steps_per_epoch is None
            or (isinstance(self.max_steps_per_epoch, int) and self.max_steps_per_epoch >= 1),
            f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch!r}",
        )
        check(
            self.device_batches is None or isinstance(self.device_batches, bool),
            f"device_batches must be true, false or null, got {self.device_batches!r}",
        )
        for key in ("dataset_kwargs", "method_kwargs", "model_kwargs"):
            check(isinstance(getattr(self, key), dict), f"{key} must be a mapping")
        self._check_reference_table()

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
