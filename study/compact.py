"""Compacting a study's epoch rows: one file per ended trial (``study compact``, DESIGN §6).

The driver compacts each trial when it ends (:func:`study.results.compact_trial`, called by the study
callback); :func:`compact_study` does the same for every ended trial of an existing study — one written
before compaction existed, or one whose driver died before it could compact. Trials still running (status
``running`` in ``trials/``) are skipped, so their rows stay per-epoch files until they end. Safe to run at
any time, also while the study runs, and idempotent: a trial already compacted is left as it is.

This module imports neither Ray nor torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from study.results import (
    ENDED_STATUSES,
    EPOCHS_DIR,
    TRIALS_DIR,
    ResultsWriter,
    compact_trial,
    read_trials,
    resolve_storage,
    storage_uri,
)


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


def study_folder(name_or_path: str, storage: str = "results") -> str:
    """The folder of a study given by its path/URI, or by its name under ``storage``; raises
    :class:`FileNotFoundError` when neither holds ``trials/`` or ``epochs/``."""
    candidates = [storage_uri(name_or_path) if "://" not in name_or_path else name_or_path.rstrip("/")]
    if "://" not in name_or_path and "/" not in name_or_path:
        candidates.append(f"{storage_uri(storage).rstrip('/')}/{name_or_path}")
    for location in candidates:
        fs, path = resolve_storage(location)
        for table in (TRIALS_DIR, EPOCHS_DIR):
            if fs.get_file_info(f"{path}/{table}").type == pafs.FileType.Directory:
                return location
    raise FileNotFoundError(
        f"no study results at {' or '.join(candidates)} (expected a folder with trials/ and epochs/)"
    )


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
