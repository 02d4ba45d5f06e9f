"""Who a row belongs to: a trial's identity, searched hyperparameters and directions, as row columns.

:class:`TrialInfo` is what a trial tells the writer (:mod:`results_store.writer`) about itself;
:func:`identity_columns` turns it into the columns every ``epochs/`` and ``trials/`` row starts with
(:mod:`results_store.columns`), and :func:`absorb_identity` takes them back out of a row read back.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from results_store.columns import (
    COMPACTED,
    CONFIG_ID,
    DIRECTION_PREFIX,
    HP_PREFIX,
    HP_TYPES,
    IDENTITY_COLUMNS,
    PAPER_DEFAULT,
    SCHEMA_VERSION,
    coerce_hp,
    config_id,
)


@dataclass(frozen=True)
class TrialInfo:
    """Who a row belongs to: identity, searched hyperparameters and their declared column types.

    ``hp_types`` maps *every* searched hyperparameter name of the study to ``float``/``int``/``str``/``bool``
    (names this trial does not search get nulls), so all files of one dataset partition share a schema.
    ``method`` is the canonical method name, ``balancer``/``aggregator`` its parts (``mtl.methods``;
    this module imports no torch, so the caller resolves them). ``directions`` maps ``"<task>/<metric>"``
    to higher-is-better, as the dataset declares it.
    """

    study: str
    dataset: str
    method: str
    trial_id: str
    seed: int
    hparams: Mapping[str, Any] = field(default_factory=dict)
    hp_types: Mapping[str, str] = field(default_factory=dict)
    balancer: str | None = None
    aggregator: str | None = None
    directions: Mapping[str, bool] = field(default_factory=dict)
    config_id: str | None = None  # None: derived from hparams (:func:`config_id`)
    paper_default: bool | None = None  # None: false
    cpus: float | None = None  # the trial's resources (trials/ rows only)
    gpus: float | None = None

    def __post_init__(self) -> None:
        for key in ("study", "dataset", "method", "trial_id"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"TrialInfo.{key} must be a non-empty string, got {value!r}")
        unknown = sorted(set(self.hparams) - set(self.hp_types))
        if unknown:
            raise ValueError(f"hyperparameters {unknown} have no declared type in hp_types")
        bad = {k: v for k, v in self.hp_types.items() if v not in HP_TYPES}
        if bad:
            raise ValueError(f"hp_types {bad} unknown; valid: {', '.join(HP_TYPES)}")
        malformed = sorted(k for k in self.directions if len(k.split("/")) != 2 or not all(k.split("/")))
        if malformed:
            raise ValueError(f"directions keys {malformed} must be '<task>/<metric>'")

    @classmethod
    def from_row(cls, row: Mapping[str, Any], hp_types: Mapping[str, str]) -> TrialInfo:
        """The identity of a row read back (:meth:`ResultsWriter.read_trial_row`)."""
        hparams = {
            k.removeprefix(HP_PREFIX): v
            for k, v in row.items()
            if k.startswith(HP_PREFIX) and v is not None and k.removeprefix(HP_PREFIX) in hp_types
        }
        directions = {
            k.removeprefix(DIRECTION_PREFIX): bool(v)
            for k, v in row.items()
            if k.startswith(DIRECTION_PREFIX) and v is not None
        }
        return cls(
            str(row["study"]),
            str(row["dataset"]),
            str(row["method"]),
            str(row["trial_id"]),
            int(row["seed"]),
            hparams,
            dict(hp_types),
            row.get("balancer"),
            row.get("aggregator"),
            directions,
            config_id=row.get(CONFIG_ID),
            paper_default=row.get(PAPER_DEFAULT),
            cpus=row.get("cpus"),
            gpus=row.get("gpus"),
        )

    @property
    def resolved_config_id(self) -> str:
        return self.config_id or config_id(self.hparams, self.hp_types)


def identity_columns(info: TrialInfo) -> list[tuple[str, pa.DataType, Any]]:
    cols: list[tuple[str, pa.DataType, Any]] = [
        ("schema_version", pa.int64(), SCHEMA_VERSION),
        ("study", pa.string(), info.study),
        ("trial_id", pa.string(), info.trial_id),
        ("seed", pa.int64(), int(info.seed)),
    ]
    for name in sorted(info.hp_types):
        kind = info.hp_types[name]
        cols.append((HP_PREFIX + name, HP_TYPES[kind], coerce_hp(info.hparams.get(name), kind)))
    cols += [("balancer", pa.string(), info.balancer), ("aggregator", pa.string(), info.aggregator)]
    cols += [
        (CONFIG_ID, pa.string(), info.resolved_config_id),
        (PAPER_DEFAULT, pa.bool_(), bool(info.paper_default)),
    ]
    for key in sorted(info.directions):
        cols.append((DIRECTION_PREFIX + key, pa.bool_(), bool(info.directions[key])))
    return cols


def absorb_identity(
    info: TrialInfo, summary: dict[str, Any], ended_at: _dt.datetime | None
) -> tuple[TrialInfo, _dt.datetime | None]:
    """Move identity columns of a row read back out of ``summary`` into ``info`` / ``ended_at``."""
    updates: dict[str, Any] = {}
    for key in IDENTITY_COLUMNS:
        value = summary.pop(key, None)
        if getattr(info, key) is None and value is not None:
            updates[key] = value
    directions = {
        k.removeprefix(DIRECTION_PREFIX): summary.pop(k)
        for k in [k for k in summary if k.startswith(DIRECTION_PREFIX)]
    }
    directions = {k: bool(v) for k, v in directions.items() if v is not None}
    if directions and not info.directions:
        updates["directions"] = directions
    stored_end = summary.pop("ended_at", None)
    summary.pop(COMPACTED, None)
    return (replace(info, **updates) if updates else info), ended_at or stored_end
