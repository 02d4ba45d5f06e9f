"""Compaction: a trial's epoch rows folded into one file once it has ended (``study compact``, DESIGN §6).

:func:`compact_trial` (run by the driver when a trial ends, :func:`compact_ended_trial`, and by
``study compact``, :func:`compact_study`) folds the trial's epoch rows into one file
``<trial_id>_compacted.parquet`` whose rows carry ``compacted = true``, in two steps, each of which leaves a
consistent view:

1. write the compacted file (all rows of the old compacted file, plus every per-epoch row whose epoch it
   does not hold) under a hidden temporary name, then rename it over ``<trial_id>_compacted.parquet``;
2. delete the per-epoch files whose epochs the compacted file now holds.

The reader rule (:mod:`results_store.reader`: a compacted row wins over a per-epoch copy of the same epoch)
makes
every moment consistent: between steps 1 and 2 (or after a crash between them) the per-epoch copies are
ignored, before step 1 only they are read; a later compaction deletes the leftovers.

:func:`compact_study` compacts every ended trial of an existing study — one written before compaction
existed, or one whose driver died before it could compact. Trials still running (status ``running`` in
``trials/``) are skipped, so their rows stay per-epoch files until they end. Safe to run at any time, also
while the study runs, and idempotent: a trial already compacted is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from results_store.columns import COMPACTED, ENDED_STATUSES
from results_store.reader import read_trials
from results_store.writer import ResultsWriter


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
    if writer.exists(path):
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
        writer.write_atomic(table, path)  # step 1: from here on the per-epoch copies are not read
        held = set(table.column("epoch").to_pylist())
    folded = 0
    for epoch, file in sorted(writer.epoch_files(dataset, method, trial_id).items()):
        if epoch in held:  # step 2
            writer.fs.delete_file(file)
            folded += 1
    # tidy up: temporary files of compactions that crashed before their rename (never read)
    leftover = "." + path.rsplit("/", 1)[-1] + "."
    for f in writer.list_files(path.rsplit("/", 1)[0]):
        if f.base_name.startswith(leftover) and f.base_name.endswith(".tmp"):
            writer.fs.delete_file(f.path)
    return Compaction(trial_id, len(held), folded)


@dataclass
class CompactReport:
    """What :func:`compact_study` did."""

    location: str
    compacted: list[str] = field(default_factory=list)  # trials whose per-epoch files were folded in
    already: list[str] = field(default_factory=list)  # ended trials with nothing left to fold
    running: list[str] = field(default_factory=list)  # skipped: still running
    files_folded: int = 0

    def summary(self) -> str:
        return (
            f"{self.location}: compacted {len(self.compacted)} trials ({self.files_folded} epoch files "
            f"folded into one file per trial), {len(self.already)} already compacted, "
            f"{len(self.running)} running (skipped)"
        )


def compact_ended_trial(storage: str, study: str, dataset: str, method: str, trial_id: str) -> str | None:
    """Compact one trial that has just ended (the driver's callback calls this); returns None, or — when
    the storage refused — a line saying so (the rows stay per-epoch files, all still read, until
    ``study compact``), so a storage hiccup never stops the study."""
    try:
        compact_trial(ResultsWriter(storage, study), dataset, method, trial_id)
    except OSError as exc:
        return f"could not compact its epoch rows yet ({exc}); `study compact` will do it later"
    return None


def compact_study(location: str, printer: Callable[[str], None] | None = None) -> CompactReport:
    """Compact every ended trial (completed, stopped, failed) of the study at ``location``
    (``<storage>/<study>``, local or a URI); running trials are skipped."""
    storage, _, name = location.rstrip("/").rpartition("/")
    writer = ResultsWriter(storage or "/", name)
    report = CompactReport(location)
    trials = read_trials(location)
    if trials.empty:
        return report
    for row in trials.sort_values(["dataset", "method", "trial_id"]).itertuples(index=False):
        trial_id = str(row.trial_id)
        if row.status not in ENDED_STATUSES:
            report.running.append(trial_id)
            continue
        done = compact_trial(writer, str(row.dataset), str(row.method), trial_id)
        if done.folded:
            report.compacted.append(trial_id)
            report.files_folded += done.folded
            if printer:
                printer(f"  {row.dataset}/{row.method} {trial_id}: {done.epochs} epochs in one file")
        else:
            report.already.append(trial_id)
    return report
