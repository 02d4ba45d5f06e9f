"""Running, resuming and inspecting studies (what the ``study`` commands do).

A study lives in ``<storage>/<name>/``: ``study.yaml`` (the validated study, used by ``resume``),
``epochs/`` and ``trials/`` (Parquet, :mod:`results_store`) and ``tune/study/`` (Ray Tune's experiment
state and trial checkpoints). All (dataset, method) groups run at once in that one experiment
(:mod:`study.tuner`); a resumed study restores it, and every group's search continues where it stopped.

Nothing is written before the study can start: ``study.yaml`` is written once Ray is up and the cluster
can hold a trial, so a failed pre-flight leaves no folder behind; a folder whose study never started a
trial (no results, no Tune state) may be run again with ``study run``. Ctrl+C while Ray starts stops the
study once Ray is up (exit code 130).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.fs as pafs

from mtl.errors import ConfigError
from results_store.budget import trial_hours
from results_store.columns import EPOCHS_DIR, TRIALS_DIR
from results_store.labels import with_config
from results_store.location import resolve_storage, storage_uri
from results_store.reader import read_trials
from results_store.selection import Selection, best_selection, select
from study.layout import GROUP_KEY, STUDY_FILE, experiment_path, serial_experiment_path, tune_root
from study.schema import Group, Study, StudyError, parse_study

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
    started_at: _dt.datetime | None = None  # when the run began (the first trial's delay is measured from it)
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


def find_study(
    name_or_path: str, storage: str = "results", *, check_registry: bool = True
) -> tuple[Study, str]:
    """Load a saved study by name (under ``storage``) or by the path/URI of its folder.

    ``check_registry=False`` reads it as saved (it was fully validated, names canonical, when written):
    no method, dataset or model is built, so read-only commands (``study status``) need no torch."""
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
            study = parse_study(
                text,
                source=f"'{location}/{STUDY_FILE}'",
                storage=parent,
                check_registry=check_registry,
            )
            return study, location
    raise StudyStateError(
        f"no study '{name_or_path}': looked for {STUDY_FILE} in {', '.join(candidates)} "
        f"(give the study's name with --storage, or the path of its folder)"
    )


ORIGIN_FILE = "origin.txt"
"""The study folder's location when it started (Ray Tune's saved state records it): a resume elsewhere (a
moved or copied folder) is refused instead of writing into the original."""


def _check_writable(location: str) -> None:
    """Make the study's folder and write (then remove) a probe file in it, or raise :class:`StudyStateError`
    saying why: a read-only folder or a storage that refuses writes fails before Ray starts."""
    fs, path = resolve_storage(location)
    probe = f"{path.rstrip('/')}/.write_probe"
    try:
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except OSError as exc:
        raise StudyStateError(f"storage: cannot write the study's folder {location}: {exc}") from None


def _tune_state_exists(study: Study) -> bool:
    fs, path = resolve_storage(experiment_path(study))
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _finished_groups(
    study: Study, location: str, searcher: Any, retry_errored: bool
) -> dict[str, dict[str, int]] | None:
    """Per group, its trials by status, when every group has run all its trials and every one has ended
    (failed ones too, unless they are to be retried); else None."""
    trials = read_trials(location)
    if trials.empty or not {"dataset", "method", "status"} <= set(trials.columns):
        return None
    ended = ("completed", "stopped") if retry_errored else ("completed", "stopped", "failed")
    out: dict[str, dict[str, int]] = {}
    for group in study.groups():
        rows = trials[(trials["dataset"] == group.dataset) & (trials["method"] == group.method)]
        total = searcher.groups[group.name].total
        if len(rows) < total or not rows["status"].isin(ended).all():
            return None
        out[group.label] = {"trials": len(rows), **rows["status"].value_counts().to_dict()}
    return out


def _never_started(study: Study, location: str) -> bool:
    """True when the study's folder holds no trial results and no Tune state (a start that failed)."""
    if not read_trials(location).empty:
        return False
    fs, path = resolve_storage(tune_root(study))
    return fs.get_file_info(path).type == pafs.FileType.NotFound


def _serial_groups(study: Study) -> list[str]:
    """Groups with an experiment of the serial engine (one Tune experiment per group, before one pool)."""
    found = []
    for group in study.groups():
        fs, path = resolve_storage(serial_experiment_path(study, group))
        if fs.get_file_info(path).type == pafs.FileType.Directory:
            found.append(group.label)
    return found


def run_study(
    study: Study,
    *,
    resume: bool = False,
    retry_errored: bool = False,
    printer: Printer = print,
) -> RunReport:
    """Run (or resume) every (dataset, method) group of ``study`` at once, in one Tune experiment, and
    return a :class:`RunReport`."""
    from study.cluster import deferred_interrupt, init_ray, shutdown_ray
    from study.console import ray_console, ray_messages_path
    from study.tuner import build_tuner, make_searcher, restore_tuner

    t0 = time.perf_counter()
    location = study_location(study)
    saved = _read_text(f"{location}/{STUDY_FILE}")
    if not resume and saved is not None and not _never_started(study, location):
        raise StudyStateError(
            f"study '{study.name}' already exists at {location}: continue it with `study resume {study.name}"
            f"{'' if study.storage == 'results' else ' --storage ' + study.storage}`, "
            f"or pick another name (--name)"
        )
    serial = _serial_groups(study)
    if serial:
        raise StudyStateError(
            f"study '{study.name}' at {location} was written by the serial engine (one Tune experiment per "
            f"group: {', '.join(serial)}), which this version no longer runs; its Parquet results still read "
            f"(study status, analysis). Run the study again under another name (--name) to continue it."
        )
    searcher = make_searcher(study)  # the search settings are checked before anything starts
    report = RunReport(study.name, location, 0.0)
    report.started_at = _dt.datetime.now(_dt.UTC)
    if resume:
        origin = _read_text(f"{location}/{ORIGIN_FILE}")
        finished = _finished_groups(study, location, searcher, retry_errored)
        if finished is not None:  # nothing to run: Tune's state is not needed (and may be gone)
            printer(f"study '{study.name}' is finished: every trial of every group has ended ({location})")
            from study.repair import health

            for line in health(location):  # finished, but rows were lost: said, not hidden
                printer(f"warning: {line}")
            report.groups = finished
            report.wall_time = time.perf_counter() - t0
            return report
        if origin is not None and origin.strip() != location:
            raise StudyStateError(
                f"the study folder {location} was started at {origin.strip()} (it was moved or copied): Ray "
                f"Tune's saved state points there, so resuming it here would write into {origin.strip()}. "
                "Resume it where it was started, or move it back; its results here read as they are "
                "(study status, analysis)"
            )
        if not _tune_state_exists(study) and not read_trials(location).empty:
            raise StudyStateError(
                f"study '{study.name}' at {location} has trial results but no Ray Tune state "
                f"({experiment_path(study)} was deleted), so its searches cannot continue; its results are "
                "left as they are. Restore tune/ from a copy, or run the study again under another name "
                "(--name)"
            )
    if not study.ray.local and "://" not in study.storage:
        printer(
            f"note: storage {location!r} is a local path and trials run on cluster nodes: every node "
            "must see it at that path (a shared filesystem); otherwise use a URI such as s3://bucket/prefix"
        )
    _check_writable(location)  # before Ray starts: a read-only or unreachable storage fails here
    # Ray's node messages (a raylet lost, an OOM kill) become one plain line each; the whole text is kept
    with ray_console(ray_messages_path(location, study.name)):
        t_ray = time.perf_counter()
        with deferred_interrupt() as interrupt:
            started = init_ray(study.ray, study.resources)
        report.ray_start_time = time.perf_counter() - t_ray
        try:
            if interrupt.requested:
                raise KeyboardInterrupt
            import ray.tune as tune

            if not resume or saved is None:
                _write_text(f"{location}/{STUDY_FILE}", study.to_yaml())  # the study can start: keep it
                _write_text(f"{location}/{ORIGIN_FILE}", location)  # where Tune's state says it lives
            path = experiment_path(study)
            if tune.Tuner.can_restore(path):
                printer(f"== resuming {path}: {len(study.groups())} groups")
                tuner = restore_tuner(study, searcher, retry_errored=retry_errored)
            else:
                printer(
                    f"== starting {len(study.groups())} groups in one pool ({study.search.algorithm} search, "
                    f"scheduler {study.scheduler.type} per group)"
                )
                tuner = build_tuner(study, searcher)
            tuner.fit()
            # Tune returns normally when Ctrl+C stopped it; its saved state then holds unfinished trials
            # (the in-memory trials all read TERMINATED after its clean-up, so ask the saved state)
            report.groups = {
                label: {"trials": sum(counts.values()), **counts}
                for label, counts in tune_statuses(study).items()
            }
            if any(set(counts) - {"TERMINATED", "ERROR", "trials"} for counts in report.groups.values()):
                report.interrupted = True
            elif any(not counts for counts in report.groups.values()):
                report.interrupted = True  # a group never started: Tune stopped before
        finally:
            if started:
                shutdown_ray()
    report.wall_time = time.perf_counter() - t0
    return report


def _best_line(chosen: Selection, what: str, named: bool = True) -> str:
    """``what``: the chosen configuration (with its method when ``named``), its seeds and mean Δp."""
    seeds = chosen.seeds
    stopped = ", stopped early" if chosen.fallback_stopped else ""
    name = f"{chosen.method} " if named else ""
    return (
        f"{what}: {name}{chosen.config} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''} "
        f"{', '.join(map(str, seeds))}{stopped}): mean val Δp {chosen.score:+.2f}%, "
        f"test Δp {chosen.mean('test_delta_p'):+.2f}%"
    )


def describe_best(trials: pd.DataFrame) -> list[str]:
    """The best configuration of each (dataset, method) group, then of each dataset: the one with the
    highest mean validation Δp over its seeds (:mod:`results_store.selection`, the rule every table of
    ``analysis`` reports; Δp is comparable within a dataset only)."""
    if trials.empty or "best_val_delta_p" not in trials:
        return []
    labelled = with_config(trials)
    chosen: dict[str, list[Selection]] = {}
    for dataset, method in sorted(set(zip(labelled["dataset"], labelled["method"]))):
        selection = select(labelled, dataset, method)
        if selection is not None:
            chosen.setdefault(dataset, []).append(selection)
    lines = []
    if len({c.method for group in chosen.values() for c in group}) > 1:
        for dataset in sorted(chosen):
            lines += [_best_line(c, f"  best of {dataset}/{c.method}", named=False) for c in chosen[dataset]]
    for dataset in sorted(chosen):
        lines.append(_best_line(best_selection(chosen[dataset]), f"best configuration on {dataset}"))
    return lines


def device_hours(trials: pd.DataFrame) -> tuple[float, str]:
    """Device-hours the trials used, with their unit (:func:`results_store.budget.trial_hours`: each
    trial's ``wall_time`` x ``gpus`` in GPU-h when the trials held GPUs, else x ``cpus`` in CPU-core-h)."""
    if trials.empty:
        return 0.0, "CPU-core-h"
    hours, unit = trial_hours(trials)
    return float(hours.fillna(0.0).sum()), unit


def budget_lines(trials: pd.DataFrame) -> list[str]:
    """Per (dataset, method): configurations run (distinct ``config_id``, the paper default marked), trials,
    and device-hours used (:func:`device_hours`): the equal budget of a fair comparison, as spent."""
    if trials.empty or "config_id" not in trials:
        return []
    lines = ["budget per group (configurations x seeds run, device-hours used):"]
    for (dataset, method), rows in trials.groupby(["dataset", "method"], sort=True):
        configs = rows["config_id"].nunique()
        default = bool(rows["paper_default"].any()) if "paper_default" in rows else False
        hours, unit = device_hours(rows)
        lines.append(
            f"  {dataset}/{method}: {configs} configurations{' (1 paper default)' if default else ''}, "
            f"{len(rows)} trials, {hours:.3g} {unit}"
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
    """Ray Tune's own view (trial status counts per group) from the study experiment's saved state,
    without Ray; a trial's group is read from its saved config. A trial saved ``PAUSED`` whose ``trials/``
    row says it ended (``stopped``/``completed``) counts as ``TERMINATED``: ASHA stopped it while it waited
    at a rung, and Ray 2.60 does not save that status for a trial without an actor (the next resume runs
    it, and it returns at once: :func:`study.trial.run_trial`)."""
    import json

    wanted = study.groups() if groups is None else groups
    by_name = {g.name: g.label for g in study.groups()}
    out: dict[str, dict[str, int]] = {g.label: {} for g in wanted}
    fs, path = resolve_storage(experiment_path(study))
    selector = pafs.FileSelector(path, allow_not_found=True)
    states = sorted(f.path for f in fs.get_file_info(selector) if f.base_name.startswith("experiment_state"))
    if not states:
        return out
    with fs.open_input_stream(states[-1]) as f:
        data = json.loads(f.read().decode())
    ended: set[str] | None = None  # trial ids whose rows say they ended, read if a PAUSED one shows up
    for entry in data.get("trial_data", []):
        try:
            trial = json.loads(entry[0])
            status = trial.get("status", "?")
            config = trial.get("config") or {}
        except (TypeError, ValueError, IndexError):
            status, config, trial = "?", {}, {}
        label = by_name.get(str(config.get(GROUP_KEY)))
        if status == "PAUSED":
            if ended is None:
                rows = read_trials(study_location(study))
                ended = (
                    set()
                    if rows.empty
                    else set(rows.loc[rows["status"].isin(["stopped", "completed"]), "trial_id"])
                )
            if trial.get("trial_id") in ended:
                status = "TERMINATED"
        if label in out:
            out[label][status] = out[label].get(status, 0) + 1
    return out


def load_trials(location: str) -> pd.DataFrame:
    return read_trials(location)


def list_studies(storage: str) -> list[dict[str, Any]]:
    """Every study folder under ``storage`` with its trial counts by status."""
    fs, base = resolve_storage(storage)
    if fs.get_file_info(base).type == pafs.FileType.File:
        raise StudyStateError(f"--storage {storage!r} is a file, not a folder of studies")
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
    "budget_lines",
    "describe_best",
    "device_hours",
    "find_study",
    "list_studies",
    "run_study",
    "status_table",
    "tune_statuses",
]
