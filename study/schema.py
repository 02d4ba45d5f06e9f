"""The study file: a YAML document validated with pydantic before any compute is spent.

Every error names the field (``methods[1].space.beta``) and, where the choices are closed, the allowed
values. A minimal study::

    name: quickstart                 # default: the file name without extension
    datasets: [synthetic]            # or [{name: synthetic, kwargs: {n_train: 512}}]
    methods:                         # a name, or {name, kwargs (fixed), space (searched)}
      - ew
      - name: db_mtl
        space:
          beta: {choice: [0.1, 0.5, 0.9]}
          beta_sigma: {choice: [0.0, 0.5]}
    seeds: [0]
    space: {lr: {loguniform: [1.0e-4, 1.0e-2]}}   # searched for every method (a method's own wins)
    train: {epochs: 4, batch_size: 64}            # fixed mtl TrainConfig settings
    search: {algorithm: optuna, seed: 0, num_samples: 4}   # optuna | random | grid
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}   # asha | none; on val_delta_p, max
    resources: {cpus_per_trial: 1, gpus_per_trial: 0, max_concurrent_trials: 2}
    storage: results                 # a local folder or any pyarrow filesystem URI (s3://..., gs://...)
    ray: {address: null}             # null: start Ray on this machine; auto or ray://host:10001: join
    max_failures: 2                  # retries of a crashed trial (it resumes from its last epoch)
    loggers: [tensorboard, mlflow]   # optional: Ray Tune's logger callbacks (study.loggers)

A fair comparison (issue 22) gives every (dataset, method) group the same budget with a ``tune:`` block
instead of ``space:`` and ``search.num_samples``::

    tune:
      space:                         # common space, merged with each method's own (a key in both: error)
        lr: {loguniform: [1.0e-4, 3.0e-3]}
        weight_decay: {loguniform: [1.0e-6, 1.0e-3]}
        scheduler_kwargs.patience: {int: [2, 10]}   # an argument of the LR scheduler in use
      num_samples: 8                 # configurations per group (x seeds), the equal budget
      defaults: true                 # configuration 1 of each group: the method's paper defaults
      allow_unequal: false           # a finite space with fewer configurations than num_samples: error

``defaults: true`` makes each group's first configuration its paper default: nothing searched is set (the
method's keyword defaults, ``mtl.methods.method_parameters``; the dataset's paper training settings; fixed
``kwargs``/``train`` still apply, they define the method and the study); it counts in ``num_samples``.
Every trial row carries ``paper_default`` and ``config_id`` (:mod:`results_store`). A group whose space
has fewer configurations than ``num_samples`` (``choice``/``int`` only, plus the default) makes the budgets
unequal: an error, unless ``allow_unequal: true`` (that group then runs all it has). ``grid`` values (which
multiply configurations), ``search.algorithm: grid`` and ``search.num_samples`` do not go with ``tune``.

Every (dataset, method) group shares one Ray Tune experiment and one pool of trial slots
(``resources.max_concurrent_trials`` for the study, ``max_concurrent_per_group`` per group); each group
keeps its own search (:mod:`study.searcher`) and its own ASHA brackets (:mod:`study.scheduler`), so the
scheduler compares like with like. Seeds: with ``optuna`` every sampled configuration runs once per seed
(Optuna sees the mean); with ``random``/``grid`` the seed is a grid dimension; a space whose parameters are
all ``grid`` is enumerated whatever the algorithm (e.g. ``stl`` over its tasks). A group with an empty
search space runs each seed once.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mtl.errors import ConfigError, MTLError
from study.schema_errors import UniqueKeyLoader, format_errors
from study.search import ALGORITHMS, DEFAULT_ALGORITHM, Param, SearchAlgorithm, Space, space_size
from study.search.distribution import Int
from study.space import KWARG_PREFIXES, RESERVED_HPARAMS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
DEFAULT_WORKER_ENV = {
    # DESIGN §7: glibc returns memory too eagerly for the MPNN; these made its steps ~1.5x faster.
    "MALLOC_TRIM_THRESHOLD_": "1000000000",
    "MALLOC_MMAP_THRESHOLD_": "1000000000",
}
MAX_SEED = 2**32 - 1  # numpy's and Optuna's samplers take seeds in [0, 2**32 - 1]; trial seeds alike
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
"""The filesystem URI schemes pyarrow reads and writes (a local folder needs none)."""
MAX_SEEDS = 1000  # seeds per study: each is a full repetition of every configuration


class StudyError(ConfigError):
    """A study file is invalid; the message lists every problem as ``field: reason``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        head = f"invalid study {source}" + (f" ({len(problems)} problems)" if len(problems) > 1 else "")
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in problems))


class Strict(BaseModel):
    """Rejects unknown fields; :func:`format_errors` names them and lists the allowed ones."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @classmethod
    def allowed_fields(cls) -> list[str]:
        return [f.alias or name for name, f in cls.model_fields.items()]


class DatasetEntry(Strict):
    """A dataset: its registry name and fixed constructor keyword arguments."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class MethodEntry(Strict):
    """A method: its name, fixed keyword arguments and its own search space."""

    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    space: Space = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class _TrainSettingsBase(Strict):
    """Fixed ``mtl`` TrainConfig settings shared by every trial (unset = the dataset's paper default). The
    fields are derived from :class:`mtl.config.TrainConfig` (:func:`_train_settings_model`)."""

    @model_validator(mode="after")
    def _valid_for_mtl(self, info: ValidationInfo) -> _TrainSettingsBase:
        if not (info.context or {}).get("check_registry", True):
            return self  # a saved study, validated in full when it was written: no torch needed to read it
        from mtl.config import TrainConfig

        try:
            TrainConfig.from_dict(self.model_dump())
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


def _strict_ints(annotation: Any) -> Any:
    """``annotation`` with ``int`` as :data:`Int` (a bool is not an integer here)."""
    if annotation is int:
        return Int
    args = get_args(annotation)
    if args and get_origin(annotation) in (types.UnionType, Union):
        return functools.reduce(operator.or_, [_strict_ints(a) for a in args])
    return annotation


def _train_settings_model() -> type[_TrainSettingsBase]:
    """``train:`` of a study: every training setting of :class:`mtl.config.TrainConfig`
    (:func:`mtl.config.setting_fields`) with its type, default, bounds and help text; ``epochs`` is required
    (a study says how long its trials train)."""
    from mtl.config import TrainConfig, setting_fields, spec_of

    hints = typing.get_type_hints(TrainConfig)
    fields: dict[str, Any] = {}
    for f in setting_fields():
        spec = spec_of(f)
        args = {**spec.bounds, "description": spec.help}
        annotation = _strict_ints(hints[f.name])
        if f.name == "epochs":
            fields[f.name] = (Int, Field(**args))
        elif f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (annotation, Field(default_factory=f.default_factory, **args))
        else:
            fields[f.name] = (annotation, Field(default=f.default, **args))
    return create_model("TrainSettings", __base__=_TrainSettingsBase, **fields)


TrainSettings = _train_settings_model()


def _known_algorithm(value: Any) -> Any:
    """``search.algorithm``: a name of :data:`study.search.ALGORITHMS` (refused as pydantic refuses a
    literal, listing the registered names)."""
    names = ALGORITHMS.in_order()
    if value not in names:
        quoted = [repr(n) for n in names]
        expected = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return value


class SearchSettings(Strict):
    """How configurations are proposed: ``algorithm`` is a name of :data:`study.search.ALGORITHMS` (each
    algorithm's defaults and rules come from its class). ``num_samples``: configurations per (dataset,
    method) group."""

    algorithm: Annotated[str, BeforeValidator(_known_algorithm)] = DEFAULT_ALGORITHM
    seed: Int | None = Field(default=0, ge=0, le=MAX_SEED)
    num_samples: Int | None = Field(default=None, ge=1)

    @property
    def strategy(self) -> type[SearchAlgorithm]:
        """The class of :attr:`algorithm`."""
        return ALGORITHMS.algorithm(self.algorithm)

    @property
    def samples(self) -> int:
        return self.num_samples or self.strategy.default_samples


class SchedulerSettings(Strict):
    """Early stopping: ASHA on validation Δp (higher is better), or none. ``metric`` and ``mode`` are the
    study's objective, declared here once: ASHA and the searchers (Optuna is told it) read them from here
    (the trial reports ``best_val_delta_p`` alongside for the progress table)."""

    type: Literal["asha", "none"] = "asha"
    metric: Literal["val_delta_p"] = "val_delta_p"
    mode: Literal["max"] = "max"
    grace_period: Int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3.0, gt=1)
    max_t: Int | None = Field(default=None, ge=1)


class TuneSettings(Strict):
    """A fair comparison: one common space and one budget for every (dataset, method) group (module
    docstring). ``num_samples`` counts configurations per group (each run once per seed), the paper
    default included when ``defaults`` is true."""

    space: Space = Field(default_factory=dict)
    num_samples: Int = Field(ge=1)
    defaults: bool = False
    allow_unequal: bool = False


class Resources(Strict):
    """Per-trial resources (fractional GPUs allowed) and how many trials run at once."""

    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    max_concurrent_trials: Int | None = Field(default=None, ge=1)  # the whole study (all groups at once)
    max_concurrent_per_group: Int | None = Field(default=None, ge=1)  # each (dataset, method) group

    @model_validator(mode="after")
    def _whole_gpus_above_one(self) -> Resources:
        if self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ValueError(f"gpus_per_trial above 1 must be a whole number, got {self.gpus_per_trial}")
        return self


class RaySettings(Strict):
    """Where trials run. ``address``: null = start a local Ray on this machine (the default);
    ``auto`` = join the cluster this machine belongs to; ``ray://host:10001`` = Ray Client.
    ``num_cpus``/``num_gpus``/``object_store_memory`` size a local Ray (ignored when joining)."""

    address: str | None = None
    num_cpus: Int | None = Field(default=None, ge=1)
    num_gpus: Int | None = Field(default=None, ge=0)
    object_store_memory: int | None = Field(default=None, ge=80 * 1024**2)
    env: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_WORKER_ENV))

    @model_validator(mode="after")
    def _address(self) -> RaySettings:
        a = self.address
        if a is not None and not (
            a in ("auto", "local") or a.startswith("ray://") or re.match(r"^[\w.\-]+:\d+$", a)
        ):
            raise ValueError(
                f"address must be null (local Ray), 'auto', 'ray://host:port' or 'host:port'; got {a!r}"
            )
        return self

    @model_validator(mode="after")
    def _object_store_fits(self) -> RaySettings:
        """A local Ray's object store must fit in this machine's memory (Ray would fail after starting)."""
        size = self.object_store_memory
        if size is not None and self.local:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            if size > total:
                raise ValueError(
                    f"object_store_memory {size:,} bytes exceeds this machine's memory "
                    f"({total / 2**30:.1f} GiB)"
                )
        return self

    @property
    def local(self) -> bool:
        return self.address in (None, "local")


@dataclass(frozen=True)
class Group:
    """One (dataset, method) pair: one Ray Tune experiment."""

    dataset: str
    dataset_kwargs: dict[str, Any]
    method: str
    method_kwargs: dict[str, Any]
    space: Space
    samples: int | None = None  # configurations of this group (None: search.samples)
    defaults: bool = False  # its first configuration is the paper default (tune.defaults)

    @property
    def name(self) -> str:
        """A file-system safe experiment name, e.g. ``synthetic__igbv1_plus_max_norm``."""

        def safe(s: str) -> str:
            return re.sub(
                r"[^A-Za-z0-9_.\-]", lambda m: "_plus_" if m.group() == "+" else f"_{ord(m.group()):x}_", s
            )

        return f"{safe(self.dataset)}__{safe(self.method)}"

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.method}"


class LoggerEntry(Strict):
    """An experiment logger (:mod:`study.loggers`): ``tensorboard`` or ``mlflow`` (with an optional
    ``tracking_uri`` and ``experiment`` name)."""

    name: Literal["tensorboard", "mlflow"]
    tracking_uri: str | None = None
    experiment: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class Study(Strict):
    """A whole study file (see the module docstring)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    datasets: list[DatasetEntry] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    seeds: list[Annotated[Int, Field(ge=0, le=MAX_SEED)]] = Field(
        default_factory=lambda: [0], min_length=1, max_length=MAX_SEEDS
    )
    space: Space = Field(default_factory=dict)
    tune: TuneSettings | None = None
    train: TrainSettings
    search: SearchSettings = Field(default_factory=SearchSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    resources: Resources = Field(default_factory=Resources)
    storage: str = "results"
    ray: RaySettings = Field(default_factory=RaySettings)
    max_failures: Int = Field(default=2, ge=0)
    loggers: list[LoggerEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Study:
        problems: list[str] = []
        check_registry = (info.context or {}).get("check_registry", True)
        for key, items in (
            ("datasets", [d.name for d in self.datasets]),
            ("methods", [m.name for m in self.methods]),
        ):
            dupes = sorted({x for x in items if items.count(x) > 1})
            if dupes:
                problems.append(f"{key}: {dupes} listed more than once")
        if len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds: values must be distinct, got {self.seeds}")
        max_t = self.scheduler.max_t
        if max_t is not None and max_t > self.train.epochs:
            problems.append(f"scheduler.max_t: {max_t} exceeds train.epochs ({self.train.epochs})")
        if self.scheduler.type == "asha" and self.scheduler.grace_period > (max_t or self.train.epochs):
            limit = max_t or self.train.epochs
            problems.append(f"scheduler.grace_period: {self.scheduler.grace_period} exceeds max_t ({limit})")
        device = self.train.device
        if device.startswith("cuda") and self.resources.gpus_per_trial == 0:
            problems.append(
                f"train.device: '{device}' needs resources.gpus_per_trial > 0 (Ray hides GPUs otherwise)"
            )
        if device == "cpu" and self.resources.gpus_per_trial > 0:
            problems.append(
                "resources.gpus_per_trial: > 0 but train.device is 'cpu'; the GPU would sit idle: write "
                "train.device: auto (the trial's GPU where it has one) or cuda, or gpus_per_trial: 0"
            )
        problems += self._check_storage()
        problems += self._check_tune()
        problems += self._check_spaces()
        if self.loggers:
            from study.loggers import logger_problems

            problems += logger_problems(self.loggers, self.storage)
        if check_registry:
            from study.schema_registry import canonicalise_methods, registry_problems

            problems += registry_problems(self)
            problems += canonicalise_methods(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _check_storage(self) -> list[str]:
        """``storage`` names a folder (created when missing) or a URI; a local path must not run into an
        existing file, which would only fail once Ray has started."""
        if not self.storage.strip():
            return ["storage: empty; give a folder (created if missing) or a URI such as s3://bucket/prefix"]
        if "$" in self.storage or self.storage.startswith("~"):
            return [
                f"storage: {self.storage!r} holds a shell variable or '~', which is not expanded here (it "
                f"would create a folder literally named so): write the path itself"
                + (
                    f", e.g. {os.path.expanduser(os.path.expandvars(self.storage))!r}"
                    if "$" not in os.path.expanduser(os.path.expandvars(self.storage))
                    else ""
                )
            ]
        if "://" in self.storage:
            scheme = self.storage.split("://", 1)[0].lower()
            if scheme not in STORAGE_SCHEMES:
                return [
                    f"storage: unknown filesystem scheme '{scheme}://'; valid: a folder, or a URI of "
                    f"{', '.join(s + '://' for s in STORAGE_SCHEMES)}"
                ]
            if scheme != "file":
                return []
        from results_store.location import resolve_storage

        _, root = resolve_storage(self.storage)
        folder = Path(root) / self.name  # where this study's results go
        for path in (folder, *folder.parents):
            if path.exists() and not path.is_dir():
                where = "" if path == Path(root) else f" (the study's folder is {folder})"
                return [f"storage: '{path}' is a file, not a folder{where}; give a folder or a URI"]
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            return [
                f"storage: '{existing}' is not writable, so the study's folder {folder} cannot be made there"
            ]
        return []

    def _check_tune(self) -> list[str]:
        """``tune`` replaces ``space`` and ``search.num_samples``; a name is searched in one place; every
        group can run ``tune.num_samples`` distinct configurations (or ``allow_unequal``)."""
        if self.tune is None:
            return []
        problems = []
        if self.space:
            problems.append(
                f"space: {sorted(self.space)} given beside tune.space; with tune the common space is "
                "tune.space (one place, merged with each method's own)"
            )
        if self.search.num_samples is not None:
            problems.append(
                f"search.num_samples: {self.search.num_samples} given beside tune.num_samples "
                f"({self.tune.num_samples}); with tune the budget per group is tune.num_samples"
            )
        conflict = self.search.strategy.tune_conflict
        if conflict is not None:
            fair = [n for n in ALGORITHMS.in_order() if ALGORITHMS.algorithm(n).tune_conflict is None]
            problems.append(
                f"search.algorithm: {self.search.algorithm} {conflict}; with tune use {' or '.join(fair)} "
                "(tune.num_samples configurations per group)"
            )
        for i, m in enumerate(self.methods):
            for name in sorted(set(m.space) & set(self.tune.space)):
                problems.append(
                    f"methods[{i}].space.{name}: also in tune.space; a name is searched in one place "
                    f"(drop it from tune.space to give '{m.name}' its own range, or from methods[{i}].space)"
                )
        for where, _, p in self._spaces():
            if p.dist.enumerated and (where.startswith("tune.") or where.startswith("methods[")):
                problems.append(
                    f"{where}: 'grid' multiplies the configurations of a group; with tune every group runs "
                    "tune.num_samples configurations: use 'choice'"
                )
        if not self.tune.allow_unequal and not problems:
            for i, m in enumerate(self.methods):
                available = self.configurations_available(m)
                if available is not None and available < self.tune.num_samples:
                    problems.append(
                        f"tune.num_samples: {self.tune.num_samples} configurations per group, but "
                        f"methods[{i}] '{m.name}' has only {available} (its space "
                        f"{sorted(self.group_space(m)) or '{}'}"
                        + (" plus the paper default" if self.tune.defaults and self.group_space(m) else "")
                        + "); lower num_samples, widen the space, or set tune.allow_unequal: true"
                    )
        return problems

    def configurations_available(self, method: MethodEntry) -> int | None:
        """How many distinct configurations ``method``'s group can run under ``tune`` (None: unbounded)."""
        space = self.group_space(method)
        if not space:
            return 1
        size = space_size(space)
        return None if size is None else size + (1 if self.tune is not None and self.tune.defaults else 0)

    def where_searched(self, i: int, method: MethodEntry, name: str) -> str:
        """The field path of searched ``name`` in ``methods[i]``'s group (for messages)."""
        if name in method.space:
            return f"methods[{i}].space.{name}"
        return f"tune.space.{name}" if self.tune is not None else f"space.{name}"

    def _spaces(self) -> list[tuple[str, str, Param]]:
        out = [(f"space.{name}", name, p) for name, p in self.space.items()]
        if self.tune is not None:
            out += [(f"tune.space.{name}", name, p) for name, p in self.tune.space.items()]
        for i, m in enumerate(self.methods):
            out += [(f"methods[{i}].space.{name}", name, p) for name, p in m.space.items()]
        return out

    def _check_spaces(self) -> list[str]:
        problems = self.search.strategy.study_problems(self)
        continuous_ok = [n for n in ALGORITHMS.in_order() if ALGORITHMS.algorithm(n).takes_continuous]
        types: dict[str, tuple[str, str]] = {}
        for where, name, p in self._spaces():
            if name in RESERVED_HPARAMS:
                problems.append(
                    f"{where}: '{name}' cannot be searched (reserved: {', '.join(RESERVED_HPARAMS)})"
                )
            if "/" in name or not name:
                problems.append(f"{where}: hyperparameter names may not be empty or contain '/'")
            if not self.search.strategy.takes_continuous and not p.discrete:
                problems.append(
                    f"{where}: search.algorithm {self.search.algorithm} needs choice/grid values, got "
                    f"{p.kind}; use search.algorithm {' or '.join(continuous_ok)}"
                )
            kind = p.column_type()
            if name in types and types[name][0] != kind:
                problems.append(f"{where}: type {kind} differs from {types[name][1]} ({types[name][0]})")
            types.setdefault(name, (kind, where))
        for i, m in enumerate(self.methods):
            clash = sorted(set(m.kwargs) & set(m.space))
            if clash:
                problems.append(f"methods[{i}]: {clash} are both fixed (kwargs) and searched (space)")
        return problems

    # -- derived ---------------------------------------------------------------------------------------
    def group_space(self, method: MethodEntry) -> Space:
        """The study-wide space (``space``, or ``tune.space``) overridden by the method's own."""
        common = self.tune.space if self.tune is not None else self.space
        return {**common, **method.space}

    def group_samples(self, method: MethodEntry) -> int:
        """Configurations ``method``'s group runs: ``tune.num_samples`` (capped by what its space has, which
        validation allows only with ``allow_unequal``), else ``search.samples``."""
        if self.tune is None:
            return self.search.samples
        available = self.configurations_available(method)
        return self.tune.num_samples if available is None else min(self.tune.num_samples, available)

    def groups(self) -> list[Group]:
        """(dataset, method) groups in file order: datasets outer, methods inner."""
        defaults = self.tune is not None and self.tune.defaults
        return [
            Group(
                d.name,
                dict(d.kwargs),
                m.name,
                dict(m.kwargs),
                self.group_space(m),
                samples=self.group_samples(m),
                defaults=defaults,
            )
            for d in self.datasets
            for m in self.methods
        ]

    def hp_types(self) -> dict[str, str]:
        """Column type of every searched hyperparameter of the study (the ``hp/<name>`` columns)."""
        return {name: p.column_type() for _, name, p in self._spaces()}

    @property
    def max_t(self) -> int:
        return self.scheduler.max_t or self.train.epochs

    def to_yaml(self) -> str:
        return yaml.safe_dump(
            self.model_dump(mode="json", by_alias=True, exclude_none=False), sort_keys=False
        )


def validate_study(
    data: Any,
    *,
    source: str = "file",
    check_registry: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> Study:
    """Validate a parsed study document (``overrides`` replace top-level fields, e.g. name or storage)."""
    if not isinstance(data, dict):
        raise StudyError(source, [f"the document must be a mapping of fields, got {type(data).__name__}"])
    data = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    try:
        return Study.model_validate(data, context={"check_registry": check_registry})
    except ValidationError as exc:
        raise StudyError(source, format_errors(exc, Study)) from None


def load_study(
    path: str | Path,
    *,
    name: str | None = None,
    storage: str | None = None,
    check_registry: bool = True,
) -> Study:
    """Read and validate a study YAML file. ``name`` defaults to the file name without its extension."""
    from study.yaml_limits import YAMLLimitError, check_size

    path = Path(path)
    try:
        if path.is_file():
            check_size(path.stat().st_size)  # a huge file is refused before it is read
        text = path.read_text(encoding="utf-8")
    except YAMLLimitError as exc:
        raise StudyError(f"file '{path}'", [str(exc)]) from None
    except OSError as exc:
        raise StudyError(f"file '{path}'", [f"cannot read it: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise StudyError(
            f"file '{path}'",
            [f"not a text (UTF-8) file: byte {exc.object[exc.start]:#04x} at offset {exc.start}"],
        ) from None
    return parse_study(
        text,
        source=f"file '{path}'",
        default_name=path.stem,
        name=name,
        storage=storage,
        check_registry=check_registry,
    )


def parse_study(
    text: str,
    *,
    source: str = "text",
    default_name: str | None = None,
    name: str | None = None,
    storage: str | None = None,
    check_registry: bool = True,
) -> Study:
    """Validate a study given as YAML text."""
    from study.yaml_limits import YAMLLimitError, check_yaml_limits

    try:
        check_yaml_limits(text)  # size, nesting, alias expansion, list lengths: before anything is built
    except YAMLLimitError as exc:
        raise StudyError(source, [str(exc)]) from None
    if not text.strip():
        raise StudyError(
            source, ["the file is empty: a study needs at least datasets, methods and train.epochs"]
        )
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise StudyError(source, [f"not valid YAML: {where}{getattr(exc, 'problem', None) or exc}"]) from None
    if isinstance(data, dict) and "name" not in data and default_name is not None:
        data["name"] = default_name
    return validate_study(
        data, source=source, check_registry=check_registry, overrides={"name": name, "storage": storage}
    )


__all__ = [
    "KWARG_PREFIXES",
    "DatasetEntry",
    "Group",
    "LoggerEntry",
    "MTLError",
    "MethodEntry",
    "Study",
    "StudyError",
    "TuneSettings",
    "load_study",
    "parse_study",
    "validate_study",
]
