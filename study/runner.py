"""Running, resuming and inspecting studies (what the ``study`` commands do).

A study lives in ``<storage>/<name>/``: ``study.yaml`` (the validated study, used by ``resume``),
``epochs/`` and ``trials/`` (Parquet, :mod:`study.results`) and ``tune/<dataset>__<method>/`` (Ray Tune's
experiment state and trial checkpoints). Groups run one after another; a resumed study restores each
group's experiment (finished ones return at once) and starts the groups that never started.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from mtl.errors import ConfigError
from study.results import EPOCHS_DIR, TRIALS_DIR, read_trials, resolve_storage, storage_uri
from study.schema import Group, Study, StudyError, parse_study

STUDY_FILE = "study.yaml"
Printer = Callable[[str], None]


class StudyStateError(ConfigError):
    """A study cannot be started or resumed in the state its folder is in."""


@dataclass
class RunReport:
    """What a run did: where the results are, the wall time and per-group Tune bookkeeping."""

    study: str
    location: str
    wall_time: float
    ray_start_time: float = 0.0
    interrupted: bool = False
    groups: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def epochs_path(self) -> str:
        return f"{self.location}/{EPOCHS_DIR}"

    @property
    def trials_path(self) -> str:
        return f"{self.location}/{TRIALS_DIR}"


def study_location(study: Study) -> str:
    return f"{storage_uri(study.storage).rstrip('/')}/{study.name}"


def _read_text(location: str) -> str | None:
    fs, path = resolve_storage(location)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def _write_text(location: str, text: str) -> None:
    fs, path = resolve_storage(location)
    directory = path.rsplit("/", 1)[0]
    fs.create_dir(directory, recursive=True)
    tmp = f"{directory}/.{STUDY_FILE}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(text.encode())
    fs.move(tmp, path)


def find_study(name_or_path: str, storage: str = "results") -> tuple[Study, str]:
    """Load a saved study by name (under ``storage``) or by the path/URI of its folder."""
    candidates = [name_or_path.rstrip("/")]
    if "://" not in name_or_path and "/" not in name_or_path:
        candidates.insert(0, f"{storage_uri(storage).rstrip('/')}/{name_or_path}")
    for location in candidates:
        if "://" not in location:
            location = storage_uri(location)
        text = _read_text(f"{location}/{STUDY_FILE}")
        if text is not None:
            # storage = the folder above the study, wherever the study was moved to
            parent = location.rsplit("/", 1)[0]
            return parse_study(text, source=f"'{location}/{STUDY_FILE}'", storage=parent), location
    raise StudyStateError(
        f"no study '{name_or_path}': looked for {STUDY_FILE} in {', '.join(candidates)} "
        f"(give the study's name with --storage, or the path of its folder)"
    )


def run_study(
    study: Study,
    *,
    resume: bool = False,
    retry_errored: bool = False,
    printer: Printer = print,
) -> RunReport:
    """Run (or resume) every (dataset, method) group of ``study`` and return a :class:`RunReport`."""
    from study.cluster import init_ray, shutdown_ray
    from study.tuner import build_tuner, experiment_path, restore_tuner

    t0 = time.perf_counter()
    location = study_location(study)
    saved = _read_text(f"{location}/{STUDY_FILE}")
    if not resume and saved is not None:
        raise StudyStateError(
            f"study '{study.name}' already exists at {location}: continue it with `study resume {study.name}"
            f"{'' if study.storage == 'results' else ' --storage ' + study.storage}`, "
            f"or pick another name (--name)"
        )
    if saved is None:
        _write_text(f"{location}/{STUDY_FILE}", study.to_yaml())
    report = RunReport(study.name, location, 0.0)
    if not study.ray.local and "://" not in study.storage:
        printer(
            f"note: storage {location!r} is a local path and trials run on cluster nodes: every node "
            "must see it at that path (a shared filesystem); otherwise use a URI such as s3://bucket/prefix"
        )
    t_ray = time.perf_counter()
    started = init_ray(study.ray, study.resources)
    report.ray_start_time = time.perf_counter() - t_ray
    try:
        import ray.tune as tune

        for group in study.groups():
            path = experiment_path(study, group)
            if tune.Tuner.can_restore(path):
                printer(f"== {group.label}: resuming {path}")
                tuner = restore_tuner(study, group, retry_errored=retry_errored)
            else:
                printer(
                    f"== {group.label}: starting ({study.search.algorithm} search, "
                    f"scheduler {study.scheduler.type})"
                )
                tuner = build_tuner(study, group)
            grid = tuner.fit()
            # Tune returns normally when Ctrl+C stopped it; its saved state then holds unfinished trials
            # (the in-memory trials all read TERMINATED after its clean-up, so ask the saved state)
            saved_state = tune_statuses(study, [group])[group.label]
            report.groups[group.label] = {"trials": len(grid), **saved_state}
            if set(saved_state) - {"TERMINATED", "ERROR"}:
                report.interrupted = True
                break
    finally:
        if started:
            shutdown_ray()
    report.wall_time = time.perf_counter() - t0
    return report


def best_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The best trial of each dataset by best validation Δp (Δp is comparable within a dataset only)."""
    if trials.empty or "best_val_delta_p" not in trials:
        return trials.iloc[0:0]
    ok = trials[trials["best_val_delta_p"].notna()]
    if ok.empty:
        return ok
    idx = ok.groupby("dataset")["best_val_delta_p"].idxmax()
    return ok.loc[idx].reset_index(drop=True)


def _hp_text(row: pd.Series) -> str:
    parts = []
    for col, value in row.items():
        if (
            str(col).startswith("hp/")
            and not (isinstance(value, float) and math.isnan(value))
            and value is not None
        ):
            parts.append(
                f"{str(col)[3:]}={value:.4g}" if isinstance(value, float) else f"{str(col)[3:]}={value}"
            )
    return " ".join(parts) or "(defaults)"


def describe_best(trials: pd.DataFrame) -> list[str]:
    lines = []
    for _, row in best_trials(trials).iterrows():
        lines.append(
            f"best trial on {row['dataset']}: {row['method']} seed {row['seed']} {_hp_text(row)} "
            f"[{row['trial_id']}]: val Δp {row['best_val_delta_p']:+.2f}% at epoch {int(row['best_epoch'])}, "
            f"test Δp {row['test_delta_p']:+.2f}%"
        )
    return lines


def status_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Trial counts per (dataset, method, status) with the best validation Δp of each group."""
    if trials.empty:
        return pd.DataFrame()
    counts = trials.pivot_table(
        index=["dataset", "method"], columns="status", values="trial_id", aggfunc="count", fill_value=0
    )
    counts.columns = [str(c) for c in counts.columns]
    best = trials.groupby(["dataset", "method"])["best_val_delta_p"].max().rename("best val Δp")
    epochs = trials.groupby(["dataset", "method"])["epochs_done"].sum().rename("epochs")
    return counts.join(epochs).join(best)


def tune_statuses(study: Study, groups: list[Group] | None = None) -> dict[str, dict[str, int]]:
    """Ray Tune's own view (trial status counts per group) from the saved experiment state, without Ray."""
    import json

    from study.tuner import experiment_path

    out: dict[str, dict[str, int]] = {}
    for group in study.groups() if groups is None else groups:
        fs, path = resolve_storage(experiment_path(study, group))
        selector = pafs.FileSelector(path, allow_not_found=True)
        states = sorted(
            f.path for f in fs.get_file_info(selector) if f.base_name.startswith("experiment_state")
        )
        if not states:
            out[group.label] = {}
            continue
        with fs.open_input_stream(states[-1]) as f:
            data = json.loads(f.read().decode())
        counts: dict[str, int] = {}
        for entry in data.get("trial_data", []):
            try:
                status = json.loads(entry[0]).get("status", "?")
            except (TypeError, ValueError, IndexError):
                status = "?"
            counts[status] = counts.get(status, 0) + 1
        out[group.label] = counts
    return out


def load_trials(location: str) -> pd.DataFrame:
    return read_trials(location)


def list_studies(storage: str) -> list[dict[str, Any]]:
    """Every study folder under ``storage`` with its trial counts by status."""
    fs, base = resolve_storage(storage)
    rows = []
    for info in sorted(
        fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)), key=lambda f: f.base_name
    ):
        if info.type != pafs.FileType.Directory:
            continue
        if fs.get_file_info(f"{info.path}/{STUDY_FILE}").type != pafs.FileType.File:
            continue
        location = f"{storage_uri(storage).rstrip('/')}/{info.base_name}"
        try:
            trials = read_trials(location)
        except Exception as exc:  # a broken folder should not hide the others
            rows.append({"study": info.base_name, "error": str(exc)})
            continue
        row: dict[str, Any] = {"study": info.base_name, "trials": len(trials)}
        if not trials.empty:
            row.update(trials["status"].value_counts().to_dict())
            row["best val Δp"] = trials["best_val_delta_p"].max()
            row["updated"] = trials["updated_at"].max()
        rows.append(row)
    return rows


__all__ = [
    "RunReport",
    "StudyError",
    "StudyStateError",
    "best_trials",
    "describe_best",
    "find_study",
    "list_studies",
    "run_study",
    "status_table",
    "tune_statuses",
]
