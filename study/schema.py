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

One Ray Tune experiment runs per (dataset, method) group, in file order, so the scheduler compares like
with like and each method has its own search space. Seeds: with ``optuna`` every sampled configuration
runs once per seed (Tune's Repeater; Optuna sees the mean); with ``random``/``grid`` the seed is a grid
dimension. A group with an empty search space runs each seed once.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from mtl.errors import ConfigError, MTLError
from study.results import infer_hp_type
from study.space import KWARG_PREFIXES, RESERVED_HPARAMS, TRAIN_HPARAMS, apply_hparams, destination

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
PARAM_KINDS = ("choice", "grid", "uniform", "loguniform", "int")
DEFAULT_NUM_SAMPLES = 8
DEFAULT_WORKER_ENV = {
    # DESIGN §7: glibc returns memory too eagerly for the MPNN; these made its steps ~1.5x faster.
    "MALLOC_TRIM_THRESHOLD_": "1000000000",
    "MALLOC_MMAP_THRESHOLD_": "1000000000",
}
Scalar = bool | int | float | str


class StudyError(ConfigError):
    """A study file is invalid; the message lists every problem as ``field: reason``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        head = f"invalid study {source}" + (f" ({len(problems)} problems)" if len(problems) > 1 else "")
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in problems))


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Strict(BaseModel):
    """Rejects unknown fields; :func:`format_errors` names them and lists the allowed ones."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @classmethod
    def allowed_fields(cls) -> list[str]:
        return [f.alias or name for name, f in cls.model_fields.items()]


class Param(Strict):
    """One searched hyperparameter: exactly one of the distribution keys (see :mod:`study.space`)."""

    choice: list[Scalar] | None = None
    grid: list[Scalar] | None = None
    uniform: list[float] | None = None
    loguniform: list[float] | None = None
    int_: list[int] | None = Field(default=None, alias="int")
    log: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(
                f"a search-space entry must be a mapping with one of {', '.join(PARAM_KINDS)} "
                f"(e.g. {{choice: [0.1, 0.5]}}), got {data!r}"
            )
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> Param:
        given = [k for k in PARAM_KINDS if getattr(self, "int_" if k == "int" else k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(PARAM_KINDS)}; got {given or 'none'}")
        kind = given[0]
        if kind in ("choice", "grid"):
            values = self.values
            if not values:
                raise ValueError(f"{kind} needs at least one value")
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"{kind} values must be distinct, got {values}")
        else:
            bounds = getattr(self, "int_" if kind == "int" else kind)
            if len(bounds) != 2:
                raise ValueError(f"{kind} needs [low, high], got {bounds}")
            lo, hi = bounds
            if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
                raise ValueError(f"{kind} needs finite low < high, got {bounds}")
            if kind == "loguniform" and lo <= 0:
                raise ValueError(f"loguniform needs low > 0, got {bounds}")
            if kind == "int" and self.log and lo <= 0:
                raise ValueError(f"int with log: true needs low > 0, got {bounds}")
        if self.log and kind != "int":
            raise ValueError("log applies to int only (use loguniform for floats)")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in PARAM_KINDS if getattr(self, "int_" if k == "int" else k) is not None)

    @property
    def values(self) -> list[Any]:
        """The values of a ``choice``/``grid``."""
        return list(self.choice if self.choice is not None else self.grid or [])

    @property
    def bounds(self) -> tuple[float, float]:
        raw = {"uniform": self.uniform, "loguniform": self.loguniform, "int": self.int_}[self.kind]
        return raw[0], raw[1]

    @property
    def discrete(self) -> bool:
        return self.kind in ("choice", "grid")

    def probe_values(self) -> list[Any]:
        """Values that exercise validation: every discrete value, or both bounds."""
        if self.discrete:
            return self.values
        lo, hi = self.bounds
        return [int(lo), int(hi)] if self.kind == "int" else [float(lo), float(hi)]

    def column_type(self) -> str:
        if self.kind == "int":
            return "int"
        if self.kind in ("uniform", "loguniform"):
            return "float"
        return infer_hp_type(self.values)


Space = dict[str, Param]


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


class TrainSettings(Strict):
    """Fixed ``mtl`` TrainConfig settings shared by every trial (unset = the dataset's paper default)."""

    epochs: int = Field(ge=1)
    lr: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, ge=1)
    optimizer: str | None = None
    weight_decay: float | None = Field(default=None, ge=0)
    scheduler: str | None = None
    scheduler_kwargs: dict[str, Any] | None = None
    grad_mode: str = "exact"
    device: str = "auto"
    max_steps_per_epoch: int | None = Field(default=None, ge=1)
    architecture: str = "hps"
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    grad_diagnostics: bool = True
    reference: dict[str, dict[str, float]] | None = None

    @model_validator(mode="after")
    def _valid_for_mtl(self) -> TrainSettings:
        from mtl.config import TrainConfig

        try:
            TrainConfig.from_dict(self.model_dump())
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class SearchSettings(Strict):
    """How configurations are proposed. ``num_samples``: configurations per (dataset, method) group."""

    algorithm: Literal["optuna", "random", "grid"] = "optuna"
    seed: int | None = 0
    num_samples: int | None = Field(default=None, ge=1)

    @property
    def samples(self) -> int:
        return self.num_samples or (1 if self.algorithm == "grid" else DEFAULT_NUM_SAMPLES)


class SchedulerSettings(Strict):
    """Early stopping: ASHA on validation Δp (higher is better), or none."""

    type: Literal["asha", "none"] = "asha"
    metric: Literal["val_delta_p"] = "val_delta_p"
    mode: Literal["max"] = "max"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=3.0, gt=1)
    max_t: int | None = Field(default=None, ge=1)


class Resources(Strict):
    """Per-trial resources (fractional GPUs allowed) and how many trials run at once."""

    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    max_concurrent_trials: int | None = Field(default=None, ge=1)

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
    num_cpus: int | None = Field(default=None, ge=1)
    num_gpus: int | None = Field(default=None, ge=0)
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


class Study(Strict):
    """A whole study file (see the module docstring)."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    datasets: list[DatasetEntry] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    space: Space = Field(default_factory=dict)
    train: TrainSettings
    search: SearchSettings = Field(default_factory=SearchSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    resources: Resources = Field(default_factory=Resources)
    storage: str = "results"
    ray: RaySettings = Field(default_factory=RaySettings)
    max_failures: int = Field(default=2, ge=0)

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
            problems.append("resources.gpus_per_trial: > 0 but train.device is 'cpu'; the GPU would sit idle")
        problems += self._check_spaces()
        if check_registry:
            problems += self._check_registry()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _spaces(self) -> list[tuple[str, str, Param]]:
        out = [(f"space.{name}", name, p) for name, p in self.space.items()]
        for i, m in enumerate(self.methods):
            out += [(f"methods[{i}].space.{name}", name, p) for name, p in m.space.items()]
        return out

    def _check_spaces(self) -> list[str]:
        problems = []
        types: dict[str, tuple[str, str]] = {}
        for where, name, p in self._spaces():
            if name in RESERVED_HPARAMS:
                problems.append(
                    f"{where}: '{name}' cannot be searched (reserved: {', '.join(RESERVED_HPARAMS)})"
                )
            if "/" in name or not name:
                problems.append(f"{where}: hyperparameter names may not be empty or contain '/'")
            if self.search.algorithm == "optuna" and p.kind == "grid":
                problems.append(f"{where}: 'grid' is not supported by search.algorithm optuna; use 'choice'")
            if self.search.algorithm == "grid" and not p.discrete:
                problems.append(
                    f"{where}: search.algorithm grid needs choice/grid values, got {p.kind}; "
                    f"use search.algorithm optuna or random"
                )
            kind = p.column_type()
            if name in types and types[name][0] != kind:
                problems.append(f"{where}: type {kind} differs from {types[name][1]} ({types[name][0]})")
            types.setdefault(name, (kind, where))
        for i, m in enumerate(self.methods):
            clash = sorted(set(m.kwargs) & set(m.space))
            if clash:
                problems.append(f"methods[{i}]: {clash} are both fixed (kwargs) and searched (space)")
        if self.search.algorithm == "grid" and self.search.num_samples not in (None, 1):
            problems.append(
                "search.num_samples: grid search runs every combination once; use 1 (or leave it out)"
            )
        return problems

    def _check_registry(self) -> list[str]:
        from mtl.data import DATASETS
        from mtl.methods import build_method, parse_method

        problems = []
        for i, d in enumerate(self.datasets):
            try:
                DATASETS.canonical(d.name)
                DATASETS.check_kwargs(d.name, d.kwargs)
            except ConfigError as exc:
                problems.append(f"datasets[{i}]: {exc}")
        base = self.train.model_dump()
        for i, m in enumerate(self.methods):
            try:
                spec = parse_method(m.name)
            except ConfigError as exc:
                problems.append(f"methods[{i}].name: {exc}")
                continue
            space = self.group_space(m)
            method_hps = {k: p for k, p in space.items() if destination(k)[0] == "method_kwargs"}
            probes: list[tuple[str, dict[str, Any]]] = [(f"methods[{i}].kwargs", {})]
            for name, p in method_hps.items():
                where = f"methods[{i}].space.{name}" if name in m.space else f"space.{name}"
                probes += [(where, {name: v}) for v in p.probe_values()]
            failed: set[str] = set()
            for where, override in probes:
                if where in failed or f"methods[{i}].kwargs" in failed:
                    continue
                kwargs = {**m.kwargs, **override}
                if spec.balancer == "stl":  # its `task` depends on the dataset: check names only
                    kwargs.pop("task", None)
                try:
                    build_method(m.name, ["t0", "t1", "t2"], seed=0, **kwargs)
                except (ConfigError, TypeError, ValueError) as exc:
                    problems.append(f"{where}: {exc}")
                    failed.add(where)
            for name, p in space.items():
                field, key = destination(name)
                where = f"methods[{i}].space.{name}" if name in m.space else f"space.{name}"
                if field in TRAIN_HPARAMS:
                    problems += self._probe_train(where, base, name, p)
                elif field == "dataset_kwargs":
                    for d in self.datasets:
                        try:
                            DATASETS.check_kwargs(d.name, {key: p.probe_values()[0]})
                        except ConfigError as exc:
                            problems.append(f"{where}: {exc}")
        return sorted(set(problems), key=problems.index)

    @staticmethod
    def _probe_train(where: str, base: dict[str, Any], name: str, p: Param) -> list[str]:
        from mtl.config import TrainConfig

        for value in p.probe_values():
            try:
                TrainConfig.from_dict(apply_hparams(base, {name: value}))
            except ConfigError as exc:
                return [f"{where}: {exc}"]
        return []

    # -- derived ---------------------------------------------------------------------------------------
    def group_space(self, method: MethodEntry) -> Space:
        """The study-wide space overridden by the method's own."""
        return {**self.space, **method.space}

    def groups(self) -> list[Group]:
        """(dataset, method) groups in file order: datasets outer, methods inner."""
        return [
            Group(d.name, dict(d.kwargs), m.name, dict(m.kwargs), self.group_space(m))
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


def _unwrap(annotation: Any, key: Any) -> Any:
    """The type found under ``key`` inside a (possibly optional) list/dict/model annotation."""
    for arg in (annotation, *get_args(annotation)):
        origin = get_origin(arg)
        if isinstance(key, int) and origin is list:
            return get_args(arg)[0]
        if origin is dict and not isinstance(key, int):
            return get_args(arg)[1]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            fields = {f.alias or n: f for n, f in arg.model_fields.items()} | arg.model_fields
            if key in fields:
                return fields[key].annotation
    return None


def _model_at(loc: tuple[Any, ...]) -> type[Strict] | None:
    current: Any = Study
    for key in loc:
        current = _unwrap(current, key)
        if current is None:
            return None
    for arg in (current, *get_args(current)):
        if isinstance(arg, type) and issubclass(arg, Strict):
            return arg
    return None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def format_errors(exc: ValidationError) -> list[str]:
    """Pydantic errors as ``field: reason`` lines naming the allowed values or fields."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and ("function-" in p or p in _UNION_TAGS))
        )
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            if model is not None:
                allowed = model.allowed_fields()
                msg = f"unknown field{_suggest(str(loc[-1]), allowed)}; allowed: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "literal_error" or err["type"].endswith(("_type", "_parsing")):
            msg += f" (got {err['input']!r})"
        where = _loc(loc)
        for line in msg.split("\n"):
            if where and not re.match(r"^[\w.\[\]]+: ", line):
                lines.append(f"{where}: {line}")
            else:
                lines.append(line)
    return lines


_UNION_TAGS = ("str", "int", "float", "bool", "list[...]", "dict[str,...]")


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
        raise StudyError(source, format_errors(exc)) from None


def load_study(
    path: str | Path,
    *,
    name: str | None = None,
    storage: str | None = None,
    check_registry: bool = True,
) -> Study:
    """Read and validate a study YAML file. ``name`` defaults to the file name without its extension."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StudyError(f"file '{path}'", [f"cannot read it: {exc.strerror or exc}"]) from None
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
    try:
        data = yaml.safe_load(text)
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
    "MTLError",
    "MethodEntry",
    "Param",
    "Study",
    "StudyError",
    "load_study",
    "parse_study",
    "validate_study",
]
