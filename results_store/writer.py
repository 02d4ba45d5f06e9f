"""Writing a study's rows: who a row belongs to (:class:`TrialInfo`) and the writer the trials use.

Safe from many processes at once: every epoch is one file holding one row, named deterministically from
(trial, epoch) (:mod:`results_store.location`), written to a hidden temporary name (``.<name>.<uuid>.tmp``,
ignored by Parquet readers) and then renamed over the final name. So a crash never leaves a half-written
file, and a retried or resumed trial *overwrites* its rows instead of duplicating them. A trial's
``trials/`` row is rewritten the same way after every epoch and at the end. The columns are those of
:mod:`results_store.columns`. This module imports neither Ray nor torch, so analysis code and its tests write
fixtures with :class:`ResultsWriter` exactly as a real study does.

A trial that resumes after compaction (``study resume --retry-errored``) first drops the epochs it will
redo (:meth:`ResultsWriter.delete_epochs`: per-epoch copies first, then the compacted file is replaced by
one without them), so the re-run epochs, written as per-epoch files, are again the only copies
(:mod:`results_store.compaction`, :mod:`results_store.reader`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from results_store.columns import (
    COMPACTED_SUFFIX,
    ENDED_STATUSES,
    EPOCH_STATUSES,
    EPOCHS_DIR,
    INT_RECORD_FIELDS,
    PARTITIONS,
    TRIAL_STATUSES,
    TRIALS_DIR,
    UTC_TIMESTAMP,
)
from results_store.identity import TrialInfo, absorb_identity, identity_columns
from results_store.location import (
    SAFE_NAME,
    compacted_file_name,
    epoch_file_name,
    file_stem,
    join,
    partition_dir,
    resolve_storage,
    trial_file_name,
)
from results_store.selection import summarize_records


def _opt_int(x: Any) -> int | None:
    return None if x is None else int(x)


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


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


class ResultsWriter:
    """Writes one study's rows. Safe to use from many processes at once (one file per row).

    >>> w = ResultsWriter("/tmp/results", "demo")                                   # doctest: +SKIP
    >>> info = TrialInfo("demo", "synthetic", "db_mtl", "abc_00000", seed=0,
    ...                  hparams={"beta": 0.5}, hp_types={"beta": "float"})        # doctest: +SKIP
    >>> w.write_epoch(info, {"epoch": 0, "val_delta_p": -3.2, ...})                 # doctest: +SKIP
    >>> w.write_trial(info, status="running", records=[...], max_epochs=10)         # doctest: +SKIP
    """

    def __init__(self, storage: str, study: str, filesystem: pafs.FileSystem | None = None) -> None:
        if not SAFE_NAME.match(study):
            raise ValueError(f"study name '{study}' may only contain letters, digits, '_', '.', '-'")
        self.fs, base = resolve_storage(storage, filesystem)
        self.study = study
        self.root = join(base, study)

    # paths
    def epoch_path(self, dataset: str, method: str, trial_id: str, epoch: int) -> str:
        """Where the per-epoch row of ``epoch`` of a trial lives."""
        return join(partition_dir(self.root, EPOCHS_DIR, dataset, method), epoch_file_name(trial_id, epoch))

    def trial_path(self, dataset: str, method: str, trial_id: str) -> str:
        """Where a trial's ``trials/`` row lives."""
        return join(partition_dir(self.root, TRIALS_DIR, dataset, method), trial_file_name(trial_id))

    def write_atomic(self, table: pa.Table, path: str) -> str:
        """Write ``table`` to a hidden temporary name beside ``path``, then rename it over ``path``."""
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
        cols = identity_columns(info)
        cols += [
            ("epoch", pa.int64(), int(record["epoch"])),
            ("status", pa.string(), status),
            ("host", pa.string(), host),
            ("device", pa.string(), device),
            ("node_id", pa.string(), node_id),
            ("written_at", UTC_TIMESTAMP, _now()),
        ]
        fixed = {name for name, _, _ in cols}
        for key in sorted(record):
            if key in fixed:
                continue
            cols.append(_value_column(key, record[key]))
        path = self.epoch_path(info.dataset, info.method, info.trial_id, int(record["epoch"]))
        return self.write_atomic(_table(cols), path)

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

        The metric columns come from ``summary`` if given, else from
        :func:`results_store.selection.summarize_records` of ``records``.
        ``ended_at`` defaults to now for an ended status (completed, stopped, failed) and is null while the
        trial runs. A ``summary`` taken from a row read back may hold identity columns (``balancer``,
        ``aggregator``, ``higher_is_better/*``, ``ended_at``): they fill what ``info`` and the arguments
        leave unset instead of becoming metric columns.
        """
        if status not in TRIAL_STATUSES:
            raise ValueError(f"trial status '{status}' unknown; valid: {', '.join(TRIAL_STATUSES)}")
        summary = dict(summary) if summary is not None else summarize_records(records)
        info, ended_at = absorb_identity(info, summary, ended_at)
        if ended_at is None and status in ENDED_STATUSES:
            ended_at = _now()
        if status not in ENDED_STATUSES:
            ended_at = None
        cols = identity_columns(info)
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
            ("started_at", UTC_TIMESTAMP, started_at),
            ("ended_at", UTC_TIMESTAMP, ended_at),
            ("updated_at", UTC_TIMESTAMP, _now()),
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
        return self.write_atomic(_table(cols), self.trial_path(info.dataset, info.method, info.trial_id))

    # maintenance
    def list_files(self, directory: str) -> list[pafs.FileInfo]:
        """The files (not folders) directly in ``directory`` (none if it does not exist)."""
        selector = pafs.FileSelector(directory, allow_not_found=True, recursive=False)
        return [f for f in self.fs.get_file_info(selector) if f.type == pafs.FileType.File]

    def compacted_path(self, dataset: str, method: str, trial_id: str) -> str:
        """Where a trial's epoch rows live once it is compacted
        (:func:`results_store.compaction.compact_trial`)."""
        directory = partition_dir(self.root, EPOCHS_DIR, dataset, method)
        return join(directory, compacted_file_name(trial_id))

    def exists(self, path: str) -> bool:
        """Whether ``path`` is a file."""
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def epoch_files(self, dataset: str, method: str, trial_id: str) -> dict[int, str]:
        """``{epoch: path}`` of the per-epoch files this trial has (not yet compacted)."""
        directory = partition_dir(self.root, EPOCHS_DIR, dataset, method)
        pattern = re.compile(re.escape(file_stem(trial_id)) + r"_e(\d+)\.parquet$")
        out: dict[int, str] = {}
        for f in self.list_files(directory):
            m = pattern.match(f.base_name)
            if m:
                out[int(m.group(1))] = f.path
        return out

    def compacted_epochs(self, dataset: str, method: str, trial_id: str) -> list[int]:
        """The epochs the trial's compacted file holds (empty if it has none)."""
        path = self.compacted_path(dataset, method, trial_id)
        if not self.exists(path):
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
        if self.exists(path):
            table = pq.read_table(path, filesystem=self.fs)
            stale = pc.greater_equal(table.column("epoch"), pa.scalar(int(from_epoch), pa.int64()))
            drop = {int(e) for e in table.filter(stale).column("epoch").to_pylist()}
            if drop:
                kept = table.filter(pc.invert(stale))
                if kept.num_rows:
                    self.write_atomic(kept, path)
                else:
                    self.fs.delete_file(path)
                deleted |= drop
        return sorted(deleted)

    def trial_ids(self, dataset: str, method: str) -> set[str]:
        """Trial ids with any row (epoch, compacted or trial) in this (dataset, method) partition."""
        ids = set()
        for f in self.list_files(partition_dir(self.root, TRIALS_DIR, dataset, method)):
            if f.base_name.endswith(".parquet") and not f.base_name.startswith((".", "_")):
                ids.add(f.base_name.removesuffix(".parquet"))
        pattern = re.compile(r"^(.+?)(?:_e\d+\.parquet|" + re.escape(COMPACTED_SUFFIX) + r")$")
        for f in self.list_files(partition_dir(self.root, EPOCHS_DIR, dataset, method)):
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
            if self.exists(path):
                self.fs.delete_file(path)

    def read_trial_row(self, dataset: str, method: str, trial_id: str) -> dict[str, Any] | None:
        """This trial's ``trials/`` row as a dict, or None if it has none yet."""
        path = self.trial_path(dataset, method, trial_id)
        if not self.exists(path):
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


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def ended_attempt(row: Mapping[str, Any], ended_at: Any, reason: str, paused: bool = False) -> dict[str, Any]:
    """The attempt that wrote ``row`` as it ended (on ``row``'s node, after ``row['epochs_done']`` epochs),
    to append to :func:`trial_attempts`. Its start is not stored: it began where the attempt before it ended
    (or at the trial's start). ``paused``: ASHA paused it at a rung; the trial goes on, it was not lost."""
    earlier = trial_attempts(row)
    attempt = {
        "node_id": row.get("node_id"),
        "host": row.get("host"),
        "started_at": earlier[-1]["ended_at"] if earlier else _iso(row.get("started_at")),
        "ended_at": _iso(ended_at),
        "epochs": int(row.get("epochs_done") or 0),
        "reason": str(reason),
    }
    return {**attempt, "paused": True} if paused else attempt
