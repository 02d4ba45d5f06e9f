"""The trial configuration: everything one training run needs, validated with clear errors.

:class:`TrainConfig` is the one source of the training settings: each field declares, besides its type and
default, a :class:`FieldSpec` (help text, bounds, valid names, its ``mtl train`` flag, whether a study may
search it, the value it falls back to when a dataset declares none). Its checks
(:meth:`TrainConfig.validate`), the ``mtl train`` flags (:func:`flag_fields`), a study's ``train:`` block
(``study.schema.TrainSettings``) and a dataset's paper settings (:data:`TrainDefaults`) derive from them.
The valid names come from the registries of :mod:`mtl.training` (optimisers, LR schedulers, gradient modes,
devices).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mtl.errors import ConfigError
from mtl.training.devices import DEVICES, is_device_name
from mtl.training.grad_modes import TRAIN_GRAD_MODES
from mtl.training.lr_schedulers import LR_SCHEDULERS, check_lr_scheduler_kwargs
from mtl.training.optimizers import OPTIMIZERS

MAX_SEED = 2**63 - 1
"""The largest seed a trial may have: seeds are stored as Parquet int64 and torch takes them as 64-bit."""
MAX_INT = 2**31 - 1
"""Bound of the counts (batch size, steps) no machine could mean more of."""
MAX_BATCH = 1_000_000
"""Samples per step: a million (QM9 has 110k training molecules, NYUv2 795 images)."""
NO_DEFAULT: Any = object()
""":attr:`FieldSpec.paper_default` of a field no dataset gives a default for."""


@dataclass(frozen=True)
class FieldSpec:
    """What :class:`TrainConfig` declares about one field besides its type and default.

    ``trial``: the field makes the trial what it is (dataset, method, seed and their arguments); every other
    field is a training *setting* a study fixes for all its trials (``train:`` in a study file).
    ``searchable``: a study may search it. ``bounds``: the ``ge``/``gt``/``le``/``lt``/``allow_inf_nan`` a
    number keeps (as pydantic's ``Field`` takes them). ``choices``: the valid names, as listed in messages;
    ``accepts`` decides validity instead where the names follow a pattern (``cuda:N``). ``flag``: its
    ``mtl train`` option (``True``: ``--`` and the name with dashes). ``paper_default``: the value when
    neither the trial nor the dataset's :data:`TrainDefaults` sets it.
    """

    help: str
    trial: bool = False
    searchable: bool = False
    bounds: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple[str, ...] = ()
    accepts: Callable[[Any], bool] | None = None
    flag: str | bool = False
    paper_default: Any = NO_DEFAULT

    def flag_name(self, name: str) -> str | None:
        """The ``mtl train`` option of the field ``name``, or None."""
        if self.flag is True:
            return "--" + name.replace("_", "-")
        return self.flag or None


def _spec(help: str, **spec: Any) -> dict[str, FieldSpec]:
    """The ``metadata`` of a :class:`TrainConfig` field: its :class:`FieldSpec` (bounds given by name)."""
    bounds = {k: spec.pop(k) for k in ("ge", "gt", "le", "lt", "allow_inf_nan") if k in spec}
    return {"spec": FieldSpec(help=help, bounds=bounds, **spec)}


_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def check_bounds(name: str, value: Any, bounds: Mapping[str, Any], integer: bool) -> None:
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
    """One trial. Fields left ``None`` take the dataset's paper defaults (:data:`TrainDefaults`).

    ``reference_table`` names the published STL row Δp and Δm are measured against (a name of
    :mod:`mtl.data.references`, or ``"none"``); ``None`` takes the (dataset, architecture) defaults, which
    may differ for Δp and Δm (:data:`mtl.data.references.DEFAULTS`). ``reference`` (``{task: {metric:
    value}}``, e.g. STL results measured by the study) replaces the published rows for both.
    ``grad_mode``: a mode of :func:`mtl.gradients.task_gradients`, or ``auto`` (the fastest exact mode, chosen
    by a short probe at trial start: :mod:`mtl.grad_probe`). ``device_batches``: gather batches on the
    training device from tensors resident there (datasets with a ``device_loader``, e.g. QM9); ``None`` = on
    when training on CUDA and the dataset offers it.
    """

    dataset: str = field(
        default="synthetic", metadata=_spec("the dataset (`mtl datasets` lists them)", trial=True, flag=True)
    )
    method: str = field(
        default="ew",
        metadata=_spec("the method, e.g. db_mtl (`mtl methods` lists them)", trial=True, flag=True),
    )
    seed: int = field(default=0, metadata=_spec("the run's seed", trial=True, flag=True, ge=0, le=MAX_SEED))
    epochs: int | None = field(
        default=None,
        metadata=_spec(
            "epochs to train (default: the dataset's)", flag=True, paper_default=100, ge=1, le=100_000
        ),
    )
    dataset_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_spec("the dataset's keyword arguments", trial=True)
    )
    method_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_spec("the method's keyword arguments", trial=True)
    )
    model_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_spec("the model's keyword arguments")
    )
    architecture: str = field(
        default="hps", metadata=_spec("the multi-task architecture (hps, mtan, ...)", searchable=True)
    )
    lr: float | None = field(
        default=None,
        metadata=_spec(
            "the learning rate (default: the dataset's)",
            searchable=True,
            flag=True,
            paper_default=1e-3,
            gt=0,
            le=10.0,
            allow_inf_nan=False,
        ),
    )
    batch_size: int | None = field(
        default=None,
        metadata=_spec(
            "samples per step (default: the dataset's)",
            searchable=True,
            flag=True,
            paper_default=128,
            ge=1,
            le=MAX_BATCH,
        ),
    )
    optimizer: str | None = field(
        default=None,
        metadata=_spec("the optimiser", searchable=True, choices=OPTIMIZERS.names(), paper_default="adam"),
    )
    weight_decay: float | None = field(
        default=None,
        metadata=_spec(
            "the weight decay", searchable=True, paper_default=0.0, ge=0, le=10.0, allow_inf_nan=False
        ),
    )
    scheduler: str | None = field(
        default=None,
        metadata=_spec(
            "the LR scheduler", searchable=True, choices=LR_SCHEDULERS.names(), paper_default="none"
        ),
    )
    scheduler_kwargs: dict[str, Any] | None = field(
        default=None, metadata=_spec("the LR scheduler's arguments (over its own defaults)", paper_default={})
    )
    grad_mode: str = field(
        default="exact",
        metadata=_spec(
            "how per-task gradients are computed (auto: the fastest exact mode, by a short probe)",
            searchable=True,
            flag=True,
            choices=TRAIN_GRAD_MODES,
        ),
    )
    device: str = field(
        default="auto",
        metadata=_spec("auto, cpu, cuda or cuda:N", flag=True, choices=DEVICES, accepts=is_device_name),
    )
    max_steps_per_epoch: int | None = field(
        default=None,
        metadata=_spec("cap the batches per epoch", searchable=True, flag="--max-steps", ge=1, le=MAX_INT),
    )
    reference: dict[str, dict[str, float]] | None = field(
        default=None,
        metadata=_spec("measured STL results to measure Δp and Δm against, {task: {metric: value}}"),
    )
    reference_table: str | None = field(
        default=None, metadata=_spec("the published STL row to measure Δp and Δm against")
    )
    grad_diagnostics: bool = field(
        default=True, metadata=_spec("measure per-task gradient norms and cosines once an epoch")
    )
    device_batches: bool | None = field(default=None, metadata=_spec("gather batches on the training device"))

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
        """Each field against its :class:`FieldSpec` and type (:func:`check_field`), then the rules that
        join two fields."""
        hints = _hints()
        for f in dataclasses.fields(self):
            check_field(f.name, getattr(self, f.name), spec_of(f), hints[f.name])
        check_lr_scheduler_kwargs(self.scheduler, self.scheduler_kwargs)
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


def spec_of(f: dataclasses.Field) -> FieldSpec:
    """The :class:`FieldSpec` of a :class:`TrainConfig` field."""
    return f.metadata["spec"]


@functools.cache
def _hints() -> dict[str, Any]:
    """:class:`TrainConfig`'s resolved type hints (by field name)."""
    return typing.get_type_hints(TrainConfig)


def value_types(hint: Any) -> tuple[Any, ...]:
    """The types a field's value may have, less None (``int | None`` -> ``(int,)``)."""
    return tuple(typing.get_origin(a) or a for a in _union_args(hint) if a is not type(None))


def _union_args(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def check_field(name: str, value: Any, spec: FieldSpec, hint: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` fits the field ``name``: None where its type allows it; a
    number within :attr:`FieldSpec.bounds`; one of :attr:`FieldSpec.choices`; a mapping or a bool where the
    type says so."""
    kinds, optional = value_types(hint), type(None) in _union_args(hint)
    if value is None and optional:
        return
    if spec.bounds:
        check_bounds(name, value, spec.bounds, int in kinds)
    elif spec.choices:
        if not (spec.accepts(value) if spec.accepts is not None else value in spec.choices):
            raise ConfigError(f"{name} {value!r} unknown; valid: {', '.join(spec.choices)}")
    elif dict in kinds and not isinstance(value, dict):
        raise ConfigError(f"{name} must be a mapping, got {value!r}")
    elif bool in kinds and not isinstance(value, bool):
        valid = "true, false or null" if optional else "true or false"
        raise ConfigError(f"{name} must be {valid}, got {value!r}")


TRIAL_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if spec_of(f).trial)
"""The fields that make one trial what it is; every other field is a training *setting* a study fixes for
all its trials (``train:`` in a study file, :func:`setting_fields`)."""


def setting_fields() -> list[dataclasses.Field]:
    """The training settings of :class:`TrainConfig` (its fields but the :data:`TRIAL_FIELDS`), in order: the
    one definition the study schema (``train:``) and the search space (:func:`searchable_settings`) derive
    from."""
    return [f for f in dataclasses.fields(TrainConfig) if not spec_of(f).trial]


def searchable_settings() -> tuple[str, ...]:
    """The training settings a study may search (``lr``, ``batch_size``, ...)."""
    return tuple(f.name for f in setting_fields() if spec_of(f).searchable)


def flag_fields() -> list[tuple[str, dataclasses.Field, type]]:
    """``(flag, field, value type)`` of every :class:`TrainConfig` field with an ``mtl train`` option, in
    field order: the command line derives its options from these."""
    hints = _hints()
    out = []
    for f in dataclasses.fields(TrainConfig):
        flag = spec_of(f).flag_name(f.name)
        if flag is not None:
            out.append((flag, f, value_types(hints[f.name])[0]))
    return out


def _train_defaults_class() -> type:
    """:data:`TrainDefaults`: a frozen dataclass of the settings with a :attr:`FieldSpec.paper_default`."""
    hints = _hints()
    fields = []
    for f in setting_fields():
        default = spec_of(f).paper_default
        if default is NO_DEFAULT:
            continue
        kind = value_types(hints[f.name])[0]
        if isinstance(default, Mapping):
            fields.append((f.name, Mapping[str, Any], field(default_factory=lambda d=default: dict(d))))
        else:
            fields.append((f.name, kind, field(default=default)))

    def __post_init__(self: Any) -> None:  # the values are checked as a trial's would be
        config = TrainConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        config.validate()

    namespace = {
        "__post_init__": __post_init__,
        "__doc__": "The papers' training settings for a dataset (used where the trial config leaves them "
        "unset): a dataset gives those that differ from the settings' own paper defaults "
        "(:attr:`FieldSpec.paper_default`); checked as a trial config is.",
        "__module__": __name__,
    }
    return dataclasses.make_dataclass("TrainDefaults", fields, frozen=True, namespace=namespace)


TrainDefaults = _train_defaults_class()


class HasTrainDefaults(Protocol):
    defaults: Any


def resolve_config(config: TrainConfig, dataset: HasTrainDefaults) -> TrainConfig:
    """``config`` with its unset training settings filled from the dataset's paper defaults
    (``dataset.defaults``, a :data:`TrainDefaults`)."""
    filled = {}
    for f in dataclasses.fields(dataset.defaults):  # every setting a dataset has a paper default for
        if getattr(config, f.name) is None:
            default = getattr(dataset.defaults, f.name)
            filled[f.name] = dict(default) if isinstance(default, Mapping) else default
    if config.scheduler is not None and config.scheduler_kwargs is None:
        # the dataset's scheduler arguments belong to the dataset's scheduler: a chosen scheduler starts from
        # its own defaults (QM9's plateau factor/patience mean nothing to `none` or `cosine`)
        filled["scheduler_kwargs"] = {}
    if not filled:
        return config
    config.ensure_valid()
    resolved = dataclasses.replace(config, **filled)
    # valid: a valid config whose unset fields took the dataset's paper defaults (code, checked by the
    # datasets' tests), so a trial's config is validated once, not again here
    resolved.mark_valid()
    return resolved
