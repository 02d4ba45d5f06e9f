"""What a study's Parquet rows hold: the schema version, table folders, column names and types (DESIGN §6).

Every name of the store is defined here once; the writer (:mod:`results_store.writer`), the compaction
(:mod:`results_store.compaction`), the reader (:mod:`results_store.reader`) and every consumer derive from it.

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
                                      dropped by :func:`results_store.reader.read_epochs`)
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
(missing columns are null; :mod:`analysis.identity` fills what it can). ``config_id``, ``paper_default``,
``cpus`` and ``gpus`` were added to version 2 later (fair comparisons, issue 22; additive, so the version
number stays): :func:`results_store.reader.read_epochs`/``read_trials`` give rows written before them
``paper_default`` false and a ``config_id`` derived from their ``hp/`` columns as read (equal for the seeds
of one configuration); ``cpus``/``gpus`` stay null (unknown).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa

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
HP_TYPES: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "str": pa.string(),
    "bool": pa.bool_(),
}
INT_RECORD_FIELDS = frozenset({"epoch", "steps"})
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


def config_id(hparams: Mapping[str, Any], hp_types: Mapping[str, str] | None = None) -> str:
    """A short stable id of a configuration: the first 10 hex digits of the SHA-1 of its searched
    hyperparameters as JSON (sorted names; values as their ``hp/`` columns store them when ``hp_types`` is
    given, so an id derived from rows read back equals the one written). The seed is not part of it."""
    types = hp_types or {}
    values = {
        k: (coerce_hp(v, types[k]) if k in types else v)
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


def coerce_hp(value: Any, kind: str) -> Any:
    """``value`` as an ``hp/`` column of type ``kind`` (:data:`HP_TYPES`) stores it."""
    if value is None:
        return None
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def hp_columns(frame: pd.DataFrame) -> list[str]:
    """The hyperparameter columns (``hp/<name>``) of a frame read by :mod:`results_store.reader`."""
    return [c for c in frame.columns if c.startswith(HP_PREFIX)]


def direction_columns(frame: pd.DataFrame) -> list[str]:
    """The stored metric directions (``higher_is_better/<task>/<metric>``) of a frame read by
    :mod:`results_store.reader`."""
    return [c for c in frame.columns if c.startswith(DIRECTION_PREFIX)]
