"""``study repair``: set aside unreadable result files and rebuild what the remaining rows allow.

Each (trial, epoch) row and each trial row is its own file (or, once a trial ended, one compacted file per
trial), so a damaged file loses only its own rows. :func:`repair_study`:

1. moves every ``.parquet`` file of ``epochs/`` and ``trials/`` that cannot be read to
   ``<study>/quarantine/<time>/`` (nothing is deleted), so every reader works again;
2. rebuilds the ``trials/`` row of every trial that has epoch rows but no trial row (its ``trials/`` file was
   lost or damaged): the best epoch and the test metrics there from its epoch rows, status ``completed``
   when it reached the study's epochs, else ``failed`` with the reason (``study resume --retry-errored``
   reruns it);
3. reports the trials whose epoch rows were lost (a trial row says more epochs ran than remain): their
   summary row stays; their curves are gone.

No Ray, no torch: it reads and writes Parquet only.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from results_store.columns import DIRECTION_PREFIX, EPOCHS_DIR, HP_PREFIX, TRIALS_DIR
from results_store.identity import TrialInfo
from results_store.location import resolve_storage
from results_store.reader import QUARANTINE_DIR, read_epochs, read_trials, unreadable_files
from results_store.writer import ResultsWriter

_NOT_RECORD = {
    "study", "trial_id", "dataset", "method", "seed", "schema_version", "balancer", "aggregator", "config_id",
    "paper_default", "status", "host", "device", "node_id", "written_at", "updated_at",
}  # fmt: skip
"""Epoch-row columns that are identity or bookkeeping, not the trainer's record."""
_HP_KINDS = {"float64": "float", "Float64": "float", "int64": "int", "Int64": "int", "bool": "bool"}


@dataclass
class RepairReport:
    quarantined: dict[str, str] = field(default_factory=dict)  # file -> where it was moved
    rebuilt: list[str] = field(default_factory=list)  # trial ids whose trial row was rebuilt
    lost_epochs: dict[str, tuple[int, int]] = field(default_factory=dict)  # trial -> (rows, epochs_done)

    def lines(self) -> list[str]:
        out = [f"set aside {len(self.quarantined)} unreadable file(s)"]
        out += [f"  {src} -> {dst}" for src, dst in sorted(self.quarantined.items())]
        out.append(f"rebuilt the trial row of {len(self.rebuilt)} trial(s) from their epoch rows")
        out += [f"  {t}" for t in self.rebuilt]
        if self.lost_epochs:
            out.append(f"{len(self.lost_epochs)} trial(s) lost epoch rows (their summary rows are kept):")
            out += [
                f"  {t}: {rows} of {done} epochs remain"
                for t, (rows, done) in sorted(self.lost_epochs.items())
            ]
        return out


def _quarantine(fs: pafs.FileSystem, root: str, stamp: str) -> dict[str, str]:
    moved = {}
    for table in (EPOCHS_DIR, TRIALS_DIR):
        for path in sorted(unreadable_files(fs, f"{root}/{table}")):
            dest = f"{root}/{QUARANTINE_DIR}/{stamp}/{path[len(root) + 1 :]}"
            fs.create_dir(dest.rsplit("/", 1)[0], recursive=True)
            fs.move(path, dest)
            moved[path] = dest
    return moved


def _info(rows: pd.DataFrame) -> TrialInfo:
    """A trial's identity from its epoch rows."""
    first = rows.iloc[0]
    hp_cols = [c for c in rows.columns if c.startswith(HP_PREFIX)]
    hp_types = {c.removeprefix(HP_PREFIX): _HP_KINDS.get(str(rows[c].dtype), "str") for c in hp_cols}
    hparams = {c.removeprefix(HP_PREFIX): first[c] for c in hp_cols if not pd.isna(first[c])}
    directions = {
        c.removeprefix(DIRECTION_PREFIX): bool(first[c])
        for c in rows.columns
        if c.startswith(DIRECTION_PREFIX) and not pd.isna(first[c])
    }

    def text(name: str) -> str | None:
        return None if name not in rows.columns or pd.isna(first[name]) else str(first[name])

    return TrialInfo(
        str(first["study"]),
        str(first["dataset"]),
        str(first["method"]),
        str(first["trial_id"]),
        int(first["seed"]),
        hparams=hparams,
        hp_types=hp_types,
        balancer=text("balancer"),
        aggregator=text("aggregator"),
        directions=directions,
        config_id=text("config_id"),
        paper_default=bool(first["paper_default"]) if "paper_default" in rows.columns else None,
    )


def _records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    keep = [
        c for c in rows.columns if c not in _NOT_RECORD and not c.startswith((HP_PREFIX, DIRECTION_PREFIX))
    ]
    return [
        {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in r.items()}
        for r in rows[keep].sort_values("epoch").to_dict("records")
    ]


def health(location: str) -> list[str]:
    """What is missing from a study's results, in words (empty when nothing is): trials with epoch rows
    but no trial row, trials whose epoch rows are fewer than their row says ran. Unreadable files raise
    :class:`results_store.reader.CorruptResultsError` (naming them) from the readers."""
    # the epoch rows' identity only: status and resume call this, and a study's metrics can be large
    epochs, trials = read_epochs(location, columns=("trial_id", "epoch")), read_trials(location)
    problems = []
    with_epochs = set(epochs["trial_id"]) if not epochs.empty else set()
    with_rows = set(trials["trial_id"]) if not trials.empty else set()
    orphans = sorted(with_epochs - with_rows)
    if orphans:
        problems.append(
            f"{len(orphans)} trial(s) have epoch rows but no trial row (e.g. {orphans[0]}): `study repair "
            f"{location}` rebuilds them"
        )
    if not trials.empty and "epochs_done" in trials.columns:
        counts = epochs.groupby("trial_id").size() if not epochs.empty else pd.Series(dtype=int)
        short = [
            str(r["trial_id"])
            for _, r in trials.iterrows()
            if not pd.isna(r["epochs_done"]) and int(counts.get(r["trial_id"], 0)) < int(r["epochs_done"])
        ]
        if short:
            problems.append(
                f"{len(short)} trial(s) lost epoch rows (e.g. {short[0]}: its trial row says more epochs ran "
                f"than {location}/{EPOCHS_DIR}/ holds); their summaries stand, their curves are gone"
            )
    return problems


def repair_study(location: str, max_epochs: int | None = None) -> RepairReport:
    """Repair the study folder at ``location`` (see the module docstring); ``max_epochs``: the study's
    ``train.epochs`` (a rebuilt trial that reached it is ``completed``)."""
    fs, root = resolve_storage(location)
    root = root.rstrip("/")
    report = RepairReport()
    report.quarantined = _quarantine(fs, root, _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S"))
    epochs, trials = read_epochs(location), read_trials(location)
    if epochs.empty:
        return report
    known = set(trials["trial_id"]) if not trials.empty else set()
    study = str(epochs["study"].iloc[0])
    writer = ResultsWriter(location.rstrip("/").rsplit("/", 1)[0], study)
    for trial_id, rows in epochs.groupby("trial_id", sort=True):
        if trial_id in known:
            continue
        records = _records(rows)
        done = len(records)
        reached = max_epochs is not None and done >= max_epochs
        error = (
            None
            if reached
            else f"rebuilt by study repair from its {done} epoch row(s): its trials/ row was lost; whether "
            "it was stopped or failed after that is unknown"
        )
        writer.write_trial(
            _info(rows),
            status="completed" if reached else "failed",
            records=records,
            max_epochs=max_epochs,
            error=error,
        )
        report.rebuilt.append(str(trial_id))
    if not trials.empty and "epochs_done" in trials.columns:
        counts = epochs.groupby("trial_id").size()
        for _, row in trials.iterrows():
            rows = int(counts.get(row["trial_id"], 0))
            if not pd.isna(row["epochs_done"]) and rows < int(row["epochs_done"]):
                report.lost_epochs[str(row["trial_id"])] = (rows, int(row["epochs_done"]))
    return report
