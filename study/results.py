"""Study results as Parquet (DESIGN §6): the writer the trials use and the reader analysis code uses.

This module imports neither Ray nor torch (only pyarrow and pandas), so analysis code and its tests can
write fixtures with :class:`ResultsWriter` exactly as a real study does.

Layout (hive-partitioned by dataset and method under the study's folder; any pyarrow filesystem)::

    <storage>/<study>/epochs/dataset=<dataset>/method=<method>/<trial_id>_e<epoch:05d>.parquet
    <storage>/<study>/epochs/dataset=<dataset>/method=<method>/<trial_id>_compacted.parquet
    <storage>/<study>/trials/dataset=<dataset>/method=<method>/<trial_id>.parquet

Partition values are percent-encoded (``igbv1+max_norm`` -> ``method=igbv1%2Bmax_norm``), which pyarrow's
hive partitioning decodes on read. ``dataset`` and ``method`` live only in the path (pyarrow refuses a
column that is both in the files and a partition key), so read through :func:`read_epochs` /
:func:`read_trials`, or ``pandas.read_parquet(<study>/epochs)``, never one file on its own.

While a trial runs, every epoch is one file holding one row, named deterministically from (trial, epoch),
written to a hidden temporary name (``.<name>.<uuid>.tmp``, ignored by Parquet readers) and then renamed
over the final name. So a crash never leaves a half-written file, and a retried or resumed trial
*overwrites* its rows instead of duplicating them.

**Compaction** (:func:`compact_trial`; run by the driver when a trial ends, and by ``study compact``): the
trial's epoch rows are folded into one file ``<trial_id>_compacted.parquet`` whose rows carry
``compacted = true``, in two steps, each of which leaves a consistent view:

1. write the compacted file (all rows of the old compacted file, plus every per-epoch row whose epoch it
   does not hold) under a hidden temporary name, then rename it over ``<trial_id>_compacted.parquet``;
2. delete the per-epoch files whose epochs the compacted file now holds.

**The reader rule** (:func:`read_epochs`) makes every moment consistent: all files are read in one
``pyarrow.dataset`` scan, and for each (dataset, method, trial, epoch) a compacted row wins over a per-epoch
row. So between steps 1 and 2 (or after a crash between them) the per-epoch copies are ignored, before step
1 only they are read: each (trial, epoch) is seen exactly once, never both copies, never neither; a later
compaction deletes the leftovers. Files that vanish between the scan's listing and its reads (a
compaction running at the same moment) make the scan start again. A trial that resumes after compaction
(``study resume --retry-errored``) first drops the epochs it will redo from its compacted file
(:meth:`ResultsWriter.delete_epochs`: per-epoch copies first, then the compacted file is replaced by one
without them), so the re-run epochs, written as per-epoch files, are again the only copies.

``epochs/`` — one row per (trial, epoch):

==========================  ========  =======================================================
column                      type      meaning
==========================  ========  =======================================================
schema_version              int64     :data:`SCHEMA_VERSION`
study                       string    study name
trial_id                    string    Ray Tune trial id (unique within the (dataset, method) partition)
dataset, method             string    hive partition keys (from the path); ``method`` is the canonical
                                      name (``mtl.methods.canonical_method_name``: ``log+max_norm``
                                      and ``db-mtl`` are both stored as ``db_mtl``)
balancer, aggregator        string    the method's canonical parts (aggregator null for none)
higher_is_better/<t>/<m>    bool      direction of metric ``<m>`` of task ``<t>``, as the dataset
                                      declares it (``mtl.data``); null where unknown
seed                        int64     training seed
hp/<name>                   typed     one column per searched hyperparameter of the *whole study*
                                      (null where a method does not search it), so files of one
                                      dataset partition share one schema
config_id                   string    a short stable hash of the trial's searched hyperparameters
                                      (:func:`config_id`): equal for the seeds of one configuration
paper_default               bool      the group's paper-default configuration (``tune.defaults``:
                                      nothing searched set)
epoch                       int64     0-based epoch (``mtl.train`` record)
status                      string    ``ok``, or ``nonfinite`` for the epoch that made the trial fail
host, device, node_id       string    where the epoch ran (device e.g. ``cpu``, ``cuda:0``)
written_at                  timestamp UTC time the row was written
compacted                   bool      true in a trial's compacted file (absent/null in per-epoch files;
                                      dropped by :func:`read_epochs`)
lr, steps, time_train,      float64   the ``mtl.train`` record, one column per key:
time_eval, time_epoch,                ``train_loss/<task>``, ``weight/<task>``,
train_loss/<task>, ...                ``grad_norm/<task>``, ``grad_cos`` (NaN when not measured),
                                      ``val/<task>/<metric>``, ``test/<task>/<metric>``,
                                      ``val_loss/<task>``, ``val_delta_p``, ``test_delta_p``,
                                      ``val_delta_m``, ``test_delta_m`` (``steps`` is int64)
==========================  ========  =======================================================

``trials/`` — one row per trial (rewritten after every epoch and at the end):

==========================  ========  =======================================================
schema_version, study,      as above  identity, direction and hyperparameter columns
trial_id, dataset, method,
balancer, aggregator,
higher_is_better/*,
seed, hp/<name>
status                      string    ``running``, ``completed`` (all epochs), ``stopped`` (ended
                                      early by the scheduler), ``failed``
error                       string    why it failed (null otherwise)
epochs_done                 int64     epochs finished
max_epochs                  int64     epochs planned
best_epoch                  int64     0-based epoch with the highest finite ``val_delta_p`` (null if none)
best_val_delta_p            float64   ``val_delta_p`` at ``best_epoch``
test_delta_p, test_delta_m, float64   test (and val) results *at the best validation epoch*
val_delta_m,
test/<task>/<metric>,
val/<task>/<metric>
time_total                  float64   summed ``time_epoch`` over all epochs (training + evaluation)
cpus, gpus                  float64   the trial's resources (``resources.cpus_per_trial`` /
                                      ``gpus_per_trial``; fractional GPUs allowed): device-hours are
                                      ``wall_time`` x gpus, or x cpus when gpus is 0
wall_time                   float64   seconds from the trial's first start to this row, restarts included
restarts                    int64     how often the trial was restored from a checkpoint
host, device, node_id       string    where it (last) ran (``node_id``: Ray's node id)
started_at                  timestamp UTC time the trial first started
ended_at                    timestamp UTC time it ended (completed, stopped or failed); null while running
updated_at                  timestamp UTC time of this row
train_config                string    the full ``mtl`` TrainConfig as JSON
==========================  ========  =======================================================

Schema versions: 1 — before canonical identity (no ``balancer``/``aggregator``/``higher_is_better/*``, no
``ended_at``, no compaction); 2 — this layout. Readers of version 2 read version 1 studies unchanged
(missing columns are null; :mod:`analysis.load` fills what it can). ``config_id``, ``paper_default``,
``cpus`` and ``gpus`` were added to version 2 later (fair comparisons, issue 22; additive, so the version
number stays): :func:`read_epochs`/:func:`read_trials` give rows written before them ``paper_default``
false and a ``config_id`` derived from their ``hp/`` columns as read (equal for the seeds of one
configuration); ``cpus``/``gpus`` stay null (unknown).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mtl.errors import MTLError

SCHEMA_VERSION = 2
EPOCHS_DIR = "epochs"
TRIALS_DIR = "trials"
HP_PREFIX = "hp/"
DIRECTION_PREFIX = "higher_is_better/"
COMPACTED = "compacted"
COMPACTED_SUFFIX = "_compacted.parquet"
PARTITIONS = ("dataset", "method")
EPOCH_KEY = ("dataset", "method", "trial_id", "epoch")
EPOCH_STATUSES = ("ok", "nonfinite")
TRIAL_STATUSES = ("running", "completed", "stopped", "failed")
ENDED_STATUSES = ("completed", "stopped", "failed")
IDENTITY_COLUMNS = ("balancer", "aggregator", "config_id", "paper_default", "cpus", "gpus")
CONFIG_ID = "config_id"
PAPER_DEFAULT = "paper_default"
READ_ATTEMPTS = 5  # scans restarted when files vanish under them (a compaction running meanwhile)
HP_TYPES: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "str": pa.string(),
    "bool": pa.bool_(),
}
INT_RECORD_FIELDS = frozenset({"epoch", "steps"})
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_UTC = pa.timestamp("us", tz="UTC")


# -- locations -------------------------------------------------------------------------------------------
def resolve_storage(storage: str, filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """A storage location -> (pyarrow filesystem, path on it).

    ``storage`` is a local folder (relative paths are made absolute) or any URI pyarrow understands
    (``file:///...``, ``s3://bucket/prefix``, ``gs://...``, ``hdfs://...``). With ``filesystem`` given,
    ``storage`` is a path on it.
    """
    if filesystem is not None:
        return filesystem, storage.rstrip("/") or "/"
    if "://" in storage:
        fs, path = pafs.FileSystem.from_uri(storage)
        return fs, path.rstrip("/") or "/"
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(storage))


def storage_uri(storage: str) -> str:
    """A storage location as Ray Tune's ``storage_path`` wants it: URIs unchanged, local paths absolute."""
    return storage if "://" in storage else os.path.abspath(os.path.expanduser(storage))


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p != "")


def _partition_dir(root: str, table: str, dataset: str, method: str) -> str:
    return _join(root, table, f"dataset={quote(dataset, safe='')}", f"method={quote(method, safe='')}")


def _file_stem(trial_id: str) -> str:
    return trial_id if _SAFE_NAME.match(trial_id) else quote(trial_id, safe="")


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


# -- identity --------------------------------------------------------------------------------------------
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


def config_id(hparams: Mapping[str, Any], hp_types: Mapping[str, str] | None = None) -> str:
    """A short stable id of a configuration: the first 10 hex digits of the SHA-1 of its searched
    hyperparameters as JSON (sorted names; values as their ``hp/`` columns store them when ``hp_types`` is
    given, so an id derived from rows read back equals the one written). The seed is not part of it."""
    types = hp_types or {}
    values = {
        k: (_coerce_hp(v, types[k]) if k in types else v)
        for k, v in sorted(hparams.items())
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    }
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def infer_hp_type(values: Iterable[Any]) -> str:
    """The column type for a hyperparameter whose possible values are ``values``.

    All bools -> ``bool``; all ints -> ``int``; all numbers -> ``float``; anything else -> ``str``
    (non-string values are then stored as JSON).
    """
    values = list(values)
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    return "str"


def _coerce_hp(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _identity_columns(info: TrialInfo) -> list[tuple[str, pa.DataType, Any]]:
    cols: list[tuple[str, pa.DataType, Any]] = [
        ("schema_version", pa.int64(), SCHEMA_VERSION),
        ("study", pa.string(), info.study),
        ("trial_id", pa.string(), info.trial_id),
        ("seed", pa.int64(), int(info.seed)),
    ]
    for name in sorted(info.hp_types):
        kind = info.hp_types[name]
        cols.append((HP_PREFIX + name, HP_TYPES[kind], _coerce_hp(info.hparams.get(name), kind)))
    cols += [("balancer", pa.string(), info.balancer), ("aggregator", pa.string(), info.aggregator)]
    cols += [
        (CONFIG_ID, pa.string(), info.resolved_config_id),
        (PAPER_DEFAULT, pa.bool_(), bool(info.paper_default)),
    ]
    for key in sorted(info.directions):
        cols.append((DIRECTION_PREFIX + key, pa.bool_(), bool(info.directions[key])))
    return cols


def _value_column(name: str, value: Any) -> tuple[str, pa.DataType, Any]:
    if name in INT_RECORD_FIELDS and value is not None:
        return name, pa.int64(), int(value)
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return name, pa.float64(), None if value is None else float(value)
    if isinstance(value, bool):
        return name, pa.bool_(), value
    return name, pa.string(), value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _table(columns: Sequence[tuple[str, pa.DataType, Any]]) -> pa.Table:
    seen: set[str] = set()
    for name, _, _ in columns:
        if name in seen:
            raise ValueError(f"column '{name}' given twice")
        if name in PARTITIONS:
            raise ValueError(f"column '{name}' is a partition key and cannot be stored in the files")
        seen.add(name)
    schema = pa.schema([pa.field(name, dtype) for name, dtype, _ in columns])
    return pa.Table.from_pylist([{name: value for name, _, value in columns}], schema=schema)


# -- summaries -------------------------------------------------------------------------------------------
def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def best_record(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The record with the highest finite ``val_delta_p`` (earliest on ties), or None."""
    best = None
    for record in records:
        value = record.get("val_delta_p")
        if _finite(value) and (best is None or value > best["val_delta_p"]):
            best = record
    return best


def summarize_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The metric part of a ``trials/`` row: best epoch by val Δp and the results at that epoch."""
    best = best_record(records)
    out: dict[str, Any] = {
        "epochs_done": len(records),
        "best_epoch": None if best is None else int(best["epoch"]),
        "best_val_delta_p": None if best is None else float(best["val_delta_p"]),
        "time_total": float(sum(r.get("time_epoch", 0.0) or 0.0 for r in records)),
    }
    source = best if best is not None else {}
    keys = [k for k in (records[-1] if records else {}) if k.startswith(("test/", "val/"))]
    for key in ("test_delta_p", "test_delta_m", "val_delta_m", *keys):
        out[key] = source.get(key)
    return out


# -- writing ---------------------------------------------------------------------------------------------
class ResultsWriter:
    """Writes one study's rows. Safe to use from many processes at once (one file per row).

    >>> w = ResultsWriter("/tmp/results", "demo")                                   # doctest: +SKIP
    >>> info = TrialInfo("demo", "synthetic", "db_mtl", "abc_00000", seed=0,
    ...                  hparams={"beta": 0.5}, hp_types={"beta": "float"})        # doctest: +SKIP
    >>> w.write_epoch(info, {"epoch": 0, "val_delta_p": -3.2, ...})                 # doctest: +SKIP
    >>> w.write_trial(info, status="running", records=[...], max_epochs=10)         # doctest: +SKIP
    """

    def __init__(self, storage: str, study: str, filesystem: pafs.FileSystem | None = None) -> None:
        if not _SAFE_NAME.match(study):
            raise ValueError(f"study name '{study}' may only contain letters, digits, '_', '.', '-'")
        self.fs, base = resolve_storage(storage, filesystem)
        self.study = study
        self.root = _join(base, study)

    # paths
    def epoch_path(self, dataset: str, method: str, trial_id: str, epoch: int) -> str:
        stem = _file_stem(trial_id)
        return _join(
            _partition_dir(self.root, EPOCHS_DIR, dataset, method), f"{stem}_e{int(epoch):05d}.parquet"
        )

    def trial_path(self, dataset: str, method: str, trial_id: str) -> str:
        return _join(
            _partition_dir(self.root, TRIALS_DIR, dataset, method), f"{_file_stem(trial_id)}.parquet"
        )

    def _write_atomic(self, table: pa.Table, path: str) -> str:
        directory, name = path.rsplit("/", 1)
        self.fs.create_dir(directory, recursive=True)
        tmp = f"{directory}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, tmp, filesystem=self.fs)
            self.fs.move(tmp, path)
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise
        return path

    # rows
    def write_epoch(
        self,
        info: TrialInfo,
        record: Mapping[str, Any],
        *,
        status: str = "ok",
        host: str | None = None,
        device: str | None = None,
        node_id: str | None = None,
    ) -> str:
        """Write (or overwrite) the row of ``record["epoch"]`` of this trial; returns the file path."""
        if status not in EPOCH_STATUSES:
            raise ValueError(f"epoch status '{status}' unknown; valid: {', '.join(EPOCH_STATUSES)}")
        if "epoch" not in record:
            raise ValueError("an epoch record needs an 'epoch' field")
        cols = _identity_columns(info)
        cols += [
            ("epoch", pa.int64(), int(record["epoch"])),
            ("status", pa.string(), status),
            ("host", pa.string(), host),
            ("device", pa.string(), device),
            ("node_id", pa.string(), node_id),
            ("written_at", _UTC, _now()),
        ]
        fixed = {name for name, _, _ in cols}
        for key in sorted(record):
            if key in fixed:
                continue
            cols.append(_value_column(key, record[key]))
        path = self.epoch_path(info.dataset, info.method, info.trial_id, int(record["epoch"]))
        return self._write_atomic(_table(cols), path)

    def write_trial(
        self,
        info: TrialInfo,
        *,
        status: str,
        records: Sequence[Mapping[str, Any]] = (),
        summary: Mapping[str, Any] | None = None,
        error: str | None = None,
        max_epochs: int | None = None,
        wall_time: float | None = None,
        restarts: int = 0,
        host: str | None = None,
        device: str | None = None,
        node_id: str | None = None,
        started_at: _dt.datetime | None = None,
        ended_at: _dt.datetime | None = None,
        train_config: Mapping[str, Any] | None = None,
        attempts: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """Write (or overwrite) the trial's ``trials/`` row.

        ``attempts``: the trial's earlier attempts that ended without finishing it (each ``node_id``,
        ``host``, ``started_at``, ``ended_at``, ``epochs`` and ``reason``), stored as a JSON list in the
        ``attempts`` column (:func:`trial_attempts` reads it back); ``restarts`` is their number.

        The metric columns come from ``summary`` if given, else from :func:`summarize_records` of ``records``.
        ``ended_at`` defaults to now for an ended status (completed, stopped, failed) and is null while the
        trial runs. A ``summary`` taken from a row read back may hold identity columns (``balancer``,
        ``aggregator``, ``higher_is_better/*``, ``ended_at``): they fill what ``info`` and the arguments
        leave unset instead of becoming metric columns.
        """
        if status not in TRIAL_STATUSES:
            raise ValueError(f"trial status '{status}' unknown; valid: {', '.join(TRIAL_STATUSES)}")
        summary = dict(summary) if summary is not None else summarize_records(records)
        info, ended_at = _absorb_identity(info, summary, ended_at)
        if ended_at is None and status in ENDED_STATUSES:
            ended_at = _now()
        if status not in ENDED_STATUSES:
            ended_at = None
        cols = _identity_columns(info)
        cols += [
            ("status", pa.string(), status),
            ("error", pa.string(), error),
            ("epochs_done", pa.int64(), int(summary.pop("epochs_done", len(records)) or 0)),
            ("max_epochs", pa.int64(), None if max_epochs is None else int(max_epochs)),
            ("best_epoch", pa.int64(), _opt_int(summary.pop("best_epoch", None))),
            ("best_val_delta_p", pa.float64(), _opt_float(summary.pop("best_val_delta_p", None))),
            ("time_total", pa.float64(), float(summary.pop("time_total", 0.0) or 0.0)),
            ("wall_time", pa.float64(), None if wall_time is None else float(wall_time)),
            ("cpus", pa.float64(), _opt_float(info.cpus)),
            ("gpus", pa.float64(), _opt_float(info.gpus)),
            ("restarts", pa.int64(), int(restarts)),
            ("host", pa.string(), host),
            ("device", pa.string(), device),
            ("node_id", pa.string(), node_id),
            ("started_at", _UTC, started_at),
            ("ended_at", _UTC, ended_at),
            ("updated_at", _UTC, _now()),
            (
                "train_config",
                pa.string(),
                None if train_config is None else json.dumps(train_config, sort_keys=True),
            ),
            ("attempts", pa.string(), json.dumps(list(attempts), default=str) if attempts else None),
        ]
        fixed = {name for name, _, _ in cols}
        for key in sorted(summary):
            if key not in fixed:
                value = summary[key]
                cols.append((key, pa.float64(), None if value is None else float(value)))
        return self._write_atomic(_table(cols), self.trial_path(info.dataset, info.method, info.trial_id))

    def update_trial_status(
        self,
        dataset: str,
        method: str,
        trial_id: str,
        status: str,
        error: str | None = None,
        ended_at: _dt.datetime | None = None,
    ) -> dict[str, Any] | None:
        """Rewrite only the status of a trial's ``trials/`` row (with ``error``; ``ended_at`` now, or null
        for ``running``), keeping every other column as stored; returns the new row, or None if the trial
        has no row."""
        if status not in TRIAL_STATUSES:
            raise ValueError(f"trial status '{status}' unknown; valid: {', '.join(TRIAL_STATUSES)}")
        path = self.trial_path(dataset, method, trial_id)
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        table = pq.read_table(path, filesystem=self.fs)
        if status in ENDED_STATUSES:
            ended_at = ended_at or _now()
        else:
            ended_at = None
        for name, dtype, value in (
            ("status", pa.string(), status),
            ("error", pa.string(), error),
            ("ended_at", _UTC, ended_at),
            ("updated_at", _UTC, _now()),
        ):
            column = pa.array([value] * table.num_rows, type=dtype)
            index = table.schema.get_field_index(name)
            if index < 0:
                table = table.append_column(pa.field(name, dtype), column)
            else:
                table = table.set_column(index, pa.field(name, dtype), column)
        self._write_atomic(table, path)
        row = table.to_pylist()[0]
        row.update(dataset=dataset, method=method)
        return row

    # maintenance
    def _list(self, directory: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(directory, allow_not_found=True, recursive=False)
        return [f for f in self.fs.get_file_info(selector) if f.type == pafs.FileType.File]

    def compacted_path(self, dataset: str, method: str, trial_id: str) -> str:
        """Where a trial's epoch rows live once it is compacted (:func:`compact_trial`)."""
        directory = _partition_dir(self.root, EPOCHS_DIR, dataset, method)
        return _join(directory, _file_stem(trial_id) + COMPACTED_SUFFIX)

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def epoch_files(self, dataset: str, method: str, trial_id: str) -> dict[int, str]:
        """``{epoch: path}`` of the per-epoch files this trial has (not yet compacted)."""
        directory = _partition_dir(self.root, EPOCHS_DIR, dataset, method)
        pattern = re.compile(re.escape(_file_stem(trial_id)) + r"_e(\d+)\.parquet$")
        out: dict[int, str] = {}
        for f in self._list(directory):
            m = pattern.match(f.base_name)
            if m:
                out[int(m.group(1))] = f.path
        return out

    def compacted_epochs(self, dataset: str, method: str, trial_id: str) -> list[int]:
        """The epochs the trial's compacted file holds (empty if it has none)."""
        path = self.compacted_path(dataset, method, trial_id)
        if not self._exists(path):
            return []
        table = pq.read_table(path, filesystem=self.fs, columns=["epoch"])
        return sorted(int(e) for e in table.column("epoch").to_pylist())

    def delete_epochs(self, dataset: str, method: str, trial_id: str, from_epoch: int = 0) -> list[int]:
        """Delete this trial's epoch rows with ``epoch >= from_epoch`` (stale rows of an earlier attempt
        that will be written again), from per-epoch files and from its compacted file; returns the deleted
        epochs.

        Order (module docstring): per-epoch copies first (those the compacted file holds are not read
        anyway), then the compacted file is replaced, in one rename, by one without those epochs.
        """
        deleted = set()
        for epoch, path in sorted(self.epoch_files(dataset, method, trial_id).items()):
            if epoch >= from_epoch:
                self.fs.delete_file(path)
                deleted.add(epoch)
        path = self.compacted_path(dataset, method, trial_id)
        if self._exists(path):
            table = pq.read_table(path, filesystem=self.fs)
            stale = pc.greater_equal(table.column("epoch"), pa.scalar(int(from_epoch), pa.int64()))
            drop = {int(e) for e in table.filter(stale).column("epoch").to_pylist()}
            if drop:
                kept = table.filter(pc.invert(stale))
                if kept.num_rows:
                    self._write_atomic(kept, path)
                else:
                    self.fs.delete_file(path)
                deleted |= drop
        return sorted(deleted)

    def trial_ids(self, dataset: str, method: str) -> set[str]:
        """Trial ids with any row (epoch, compacted or trial) in this (dataset, method) partition."""
        ids = set()
        for f in self._list(_partition_dir(self.root, TRIALS_DIR, dataset, method)):
            if f.base_name.endswith(".parquet") and not f.base_name.startswith((".", "_")):
                ids.add(f.base_name.removesuffix(".parquet"))
        pattern = re.compile(r"^(.+?)(?:_e\d+\.parquet|" + re.escape(COMPACTED_SUFFIX) + r")$")
        for f in self._list(_partition_dir(self.root, EPOCHS_DIR, dataset, method)):
            m = pattern.match(f.base_name)
            if m and not f.base_name.startswith((".", "_")):
                ids.add(m.group(1))
        return ids

    def delete_trial(self, dataset: str, method: str, trial_id: str) -> None:
        """Delete every row of a trial (used for orphans: trials an interrupted run started that the
        restored Tune state does not know about)."""
        self.delete_epochs(dataset, method, trial_id)
        for path in (
            self.compacted_path(dataset, method, trial_id),
            self.trial_path(dataset, method, trial_id),
        ):
            if self._exists(path):
                self.fs.delete_file(path)

    def read_trial_row(self, dataset: str, method: str, trial_id: str) -> dict[str, Any] | None:
        """This trial's ``trials/`` row as a dict, or None if it has none yet."""
        path = self.trial_path(dataset, method, trial_id)
        if not self._exists(path):
            return None
        rows = pq.read_table(path, filesystem=self.fs).to_pylist()
        if not rows:
            return None
        row = rows[0]
        row.update(dataset=dataset, method=method)
        return row


def trial_attempts(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The earlier attempts a ``trials/`` row records (empty for a trial that ran once, or an older row)."""
    text = row.get("attempts")
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    return list(json.loads(text))


def _absorb_identity(
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


# -- compaction ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Compaction:
    """What :func:`compact_trial` did: the epochs the compacted file holds, and the per-epoch files it
    folded in and deleted (0 when the trial was already compacted)."""

    trial_id: str
    epochs: int
    folded: int


def _read_files(fs: pafs.FileSystem, paths: Sequence[str]) -> pa.Table:
    """The rows of ``paths`` (no partitioning) with their schemas unified, in one dataset scan."""
    factory = ds.FileSystemDatasetFactory(fs, list(paths), ds.ParquetFileFormat())
    schema = factory.inspect(promote_options="permissive", fragments=None)
    return factory.finish(schema).to_table()


def compact_trial(writer: ResultsWriter, dataset: str, method: str, trial_id: str) -> Compaction:
    """Fold a trial's per-epoch files into its one compacted file, atomically (module docstring).

    Call it once the trial has ended (completed, stopped or failed): epochs written after it are kept as
    per-epoch files (still read) until the next compaction. Idempotent; safe to re-run after a crash at any
    step; rows already in the compacted file win over per-epoch copies of the same epoch, as in the reader.
    """
    per_epoch = writer.epoch_files(dataset, method, trial_id)
    path = writer.compacted_path(dataset, method, trial_id)
    if not per_epoch:
        return Compaction(trial_id, len(writer.compacted_epochs(dataset, method, trial_id)), 0)
    parts = []
    if writer._exists(path):
        parts.append(pq.read_table(path, filesystem=writer.fs))
    held = set(parts[0].column("epoch").to_pylist()) if parts else set()
    new = {epoch: p for epoch, p in per_epoch.items() if epoch not in held}
    if new:
        rows = _read_files(writer.fs, [new[e] for e in sorted(new)])
        if COMPACTED in rows.column_names:
            rows = rows.drop_columns([COMPACTED])
        parts.append(rows)
        table = pa.concat_tables(parts, promote_options="permissive").sort_by("epoch")
        flag = pa.array([True] * table.num_rows, type=pa.bool_())
        index = table.schema.get_field_index(COMPACTED)
        if index < 0:
            table = table.append_column(pa.field(COMPACTED, pa.bool_()), flag)
        else:
            table = table.set_column(index, pa.field(COMPACTED, pa.bool_()), flag)
        writer._write_atomic(table, path)  # step 1: from here on the per-epoch copies are not read
        held = set(table.column("epoch").to_pylist())
    folded = 0
    for epoch, file in sorted(writer.epoch_files(dataset, method, trial_id).items()):
        if epoch in held:  # step 2
            writer.fs.delete_file(file)
            folded += 1
    # tidy up: temporary files of compactions that crashed before their rename (never read)
    leftover = "." + path.rsplit("/", 1)[-1] + "."
    for f in writer._list(path.rsplit("/", 1)[0]):
        if f.base_name.startswith(leftover) and f.base_name.endswith(".tmp"):
            writer.fs.delete_file(f.path)
    return Compaction(trial_id, len(held), folded)


# -- reading ---------------------------------------------------------------------------------------------
def _vanished(exc: OSError) -> bool:
    """Whether a scan failed because a listed file disappeared (local: FileNotFoundError; object stores
    word it differently)."""
    text = str(exc).lower()
    return isinstance(exc, FileNotFoundError) or "no such file" in text or "does not exist" in text


def _scan(fs: pafs.FileSystem, path: str, columns: Sequence[str] | None = None) -> pa.Table | None:
    keys = pa.schema([pa.field(key, pa.string()) for key in PARTITIONS])
    partitioning = ds.HivePartitioning(keys, segment_encoding="uri")
    options = ds.FileSystemFactoryOptions(partition_base_dir=path, partitioning=partitioning)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    factory = ds.FileSystemDatasetFactory(fs, selector, ds.ParquetFileFormat(), options)
    schema = factory.inspect(promote_options="permissive", fragments=None)
    if len(schema) == 0:
        return None
    if columns is not None:  # a projection: only these columns are read from the files
        return factory.finish(schema).to_table(columns=[c for c in columns if c in schema.names])
    return factory.finish(schema).to_table()


def _scan_consistent(fs: pafs.FileSystem, path: str, columns: Sequence[str] | None = None) -> pa.Table | None:
    """One dataset scan of a table folder, started again if files vanished while it ran."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return _scan(fs, path, columns)
        except OSError as exc:
            if attempt == READ_ATTEMPTS - 1 or not _vanished(exc):
                raise
    return None  # pragma: no cover


def _one_row_per_epoch(frame: pd.DataFrame) -> pd.DataFrame:
    """The reader rule: per (dataset, method, trial, epoch) a compacted row wins over a per-epoch copy."""
    if COMPACTED not in frame.columns:
        return frame
    flag = frame[COMPACTED].fillna(False).astype(bool)
    frame = frame.drop(columns=[COMPACTED])
    if flag.any() and all(k in frame.columns for k in EPOCH_KEY):
        frame = frame.assign(_rank=(~flag).astype(int)).sort_values([*EPOCH_KEY, "_rank"], kind="stable")
        frame = frame.drop_duplicates(list(EPOCH_KEY), keep="first").drop(columns=["_rank"])
    return frame


class CorruptResultsError(MTLError, ValueError):
    """A study's Parquet results hold files that cannot be read; the message names them and what to do."""

    def __init__(self, location: str, table: str, bad: Mapping[str, str]) -> None:
        self.files = dict(bad)
        listed = "; ".join(f"{f}: {reason}" for f, reason in sorted(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        super().__init__(
            f"{len(bad)} unreadable Parquet file(s) in {location}/{table}/: {listed}{more}. The other rows "
            f"are intact: `study repair {location}` moves the unreadable files to "
            f"{location}/{QUARANTINE_DIR}/ and rebuilds what the remaining rows allow (then `study resume` "
            "reruns what was lost)"
        )


QUARANTINE_DIR = "quarantine"


def unreadable_files(fs: pafs.FileSystem, path: str) -> dict[str, str]:
    """Every ``.parquet`` file under ``path`` that cannot be opened as Parquet, with the reason."""
    bad: dict[str, str] = {}
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    for info in infos:
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        try:
            with fs.open_input_file(info.path) as f:
                pq.read_metadata(f)
        except (OSError, pa.ArrowInvalid) as exc:
            bad[info.path] = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return bad


def _read_table(
    location: str, table: str, filesystem: pafs.FileSystem | None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    fs, path = resolve_storage(location, filesystem)
    if path.rstrip("/").rsplit("/", 1)[-1] != table:
        path = _join(path, table)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return pd.DataFrame()
    try:
        wanted = None if columns is None else list(dict.fromkeys([*columns, *EPOCH_KEY, COMPACTED]))
        scanned = _scan_consistent(fs, path, wanted)
    except (OSError, pa.ArrowInvalid) as exc:
        bad = unreadable_files(fs, path)
        if not bad:
            raise
        raise CorruptResultsError(location.rstrip("/").removesuffix(f"/{table}"), table, bad) from exc
    if scanned is None:
        return pd.DataFrame()
    frame = _one_row_per_epoch(scanned.to_pandas())
    if columns is None:  # a projection reads only what it asked for
        frame = _fill_fair_columns(frame)
    order = ["study", "trial_id", *PARTITIONS]
    sort = [c for c in ("dataset", "method", "trial_id", "epoch") if c in frame.columns]
    frame = frame[[c for c in order if c in frame.columns] + [c for c in frame.columns if c not in order]]
    return frame.sort_values(sort, kind="stable").reset_index(drop=True) if sort else frame


def _fill_fair_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows written before ``paper_default``/``config_id`` existed: false, and derived from ``hp/``."""
    if frame.empty:
        return frame
    flags = frame[PAPER_DEFAULT] if PAPER_DEFAULT in frame.columns else pd.Series(False, index=frame.index)
    frame[PAPER_DEFAULT] = flags.astype("boolean").fillna(False).astype(bool)
    ids = frame[CONFIG_ID] if CONFIG_ID in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    missing = ids.isna()
    if missing.any():
        hp = [c for c in frame.columns if c.startswith(HP_PREFIX)]
        derived = frame.loc[missing, hp].apply(
            lambda row: config_id({c.removeprefix(HP_PREFIX): v for c, v in row.items() if not pd.isna(v)}),
            axis=1,
        )
        ids = ids.astype(object)
        ids[missing] = derived if len(hp) else config_id({})
    frame[CONFIG_ID] = ids.astype(str)
    return frame


def read_epochs(
    location: str, filesystem: pafs.FileSystem | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """All epoch rows of a study: ``location`` is the study folder (``<storage>/<study>``) or its
    ``epochs`` folder, local or a URI. One ``pyarrow.dataset`` scan reads per-epoch and compacted files
    alike; each (trial, epoch) appears once (the reader rule in the module docstring). Schemas of all
    files are unified (columns missing in a file are null), the partition keys ``dataset``/``method``
    become string columns, rows are sorted by (dataset, method, trial_id, epoch). ``columns``: read only
    these (with the row identity), e.g. to count a study's epoch rows without reading its metrics."""
    return _read_table(location, EPOCHS_DIR, filesystem, columns)


def read_trials(location: str, filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """All trial rows of a study (see :func:`read_epochs` for ``location``)."""
    return _read_table(location, TRIALS_DIR, filesystem)


def hp_columns(frame: pd.DataFrame) -> list[str]:
    """The hyperparameter columns (``hp/<name>``) of a frame read by this module."""
    return [c for c in frame.columns if c.startswith(HP_PREFIX)]


def direction_columns(frame: pd.DataFrame) -> list[str]:
    """The stored metric directions (``higher_is_better/<task>/<metric>``) of a frame read by this module."""
    return [c for c in frame.columns if c.startswith(DIRECTION_PREFIX)]
