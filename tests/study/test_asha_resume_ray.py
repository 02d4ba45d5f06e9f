"""ASHA's rungs survive a resume (issue 24 item 8 / issue 22 item 3), on a real local Ray: a study killed
(SIGKILL, driver, Ray and trials) after ASHA has cut a configuration and resumed with ``study resume`` stops
exactly the trials an uninterrupted run of the same study stops, each after the same number of epochs.

One trial at a time (``max_concurrent_trials: 1``) makes the order of results, and so ASHA's decisions,
the same in every run; the trials are seeded, so their metrics are too."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from results_store.reader import read_epochs, read_trials
from study.cli import main

from .conftest import kill_session, start_study, study_dict

pytestmark = pytest.mark.usefixtures("ray_clean")

EPOCHS = 4


def asha_study(tmp_path: Path, name: str) -> Path:
    """Eight random configurations x two seeds, ASHA per configuration (rungs at epochs 1, 2, 4), one trial
    at a time; written to ``tmp_path/<name>.yaml``."""
    data = study_dict(
        tmp_path,
        name,
        datasets=[
            {"name": "synthetic", "kwargs": {"n_train": 8192, "n_val": 256, "n_test": 256, "hidden": 16}}
        ],
        space={"lr": {"loguniform": [1.0e-3, 3.0e-1]}},
        seeds=[0, 1],
        train={"epochs": EPOCHS},
        search={"algorithm": "random", "seed": 0, "num_samples": 8},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
        resources={"max_concurrent_trials": 1},
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def outcome(location: Path) -> dict[tuple[str, int], int]:
    """Epochs done per (configuration, seed), after checking each (trial, epoch) is stored exactly once."""
    epochs, trials = read_epochs(str(location)), read_trials(str(location))
    assert trials.groupby(["config_id", "seed"]).size().max() == 1  # one trial per configuration and seed
    assert epochs.groupby(["trial_id", "epoch"]).size().max() == 1
    for _, trial in trials.iterrows():
        got = sorted(epochs.loc[epochs["trial_id"] == trial["trial_id"], "epoch"])
        assert got == list(range(int(trial["epochs_done"]))), (trial["trial_id"], got)
    assert set(trials["status"]) <= {"completed", "stopped"}
    # the seeds of a configuration are promoted or stopped together: all end at the same epoch
    assert (trials.groupby("config_id")["epochs_done"].nunique() == 1).all(), trials[["config_id", "seed"]]
    return {(str(t["config_id"]), int(t["seed"])): int(t["epochs_done"]) for _, t in trials.iterrows()}


def stopped(done: dict[tuple[str, Any], int]) -> set[tuple[str, Any]]:
    return {key for key, epochs in done.items() if epochs < EPOCHS}


def snapshot_time(location: Path) -> float:
    """When Tune last saved the experiment (its trials, and the searcher carrying ASHA's rungs), or 0."""
    saved = list((location / "tune").glob("*/experiment_state-*.json"))
    return max((f.stat().st_mtime for f in saved), default=0.0)


def first_cut_time(location: Path) -> float | None:
    """When the row of the first trial ASHA stopped was written (the driver writes it once the trial
    ended), or None while there is none."""
    times = []
    for row in (location / "trials").rglob("*.parquet"):
        try:
            if (pd.read_parquet(row, columns=["status"])["status"] == "stopped").any():
                times.append(row.stat().st_mtime)
        except (OSError, ValueError):  # a row being replaced right now
            continue
    return min(times, default=None)


def kill_after_saved_cut(path: Path, location: Path, log_path: Path) -> None:
    """Run the study as a subprocess and SIGKILL its whole session (driver, Ray, trials) once Tune has saved
    the experiment after ASHA cut a configuration, before the study ends. Tune saves every
    ``TUNE_GLOBAL_CHECKPOINT_S`` seconds (10 by default, longer than these trials take): 1 here."""
    with log_path.open("w") as log:
        proc = start_study(path, log, TUNE_GLOBAL_CHECKPOINT_S="1")
        deadline = time.monotonic() + 180
        try:
            while time.monotonic() < deadline:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                cut = first_cut_time(location)
                if cut is not None and snapshot_time(location) > cut:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("Tune never saved the experiment after ASHA's first cut")
        finally:
            kill_session(proc)


@pytest.mark.slow  # three Ray start-ups: about 90 s on 2 cores
def test_resumed_study_stops_the_trials_an_uninterrupted_one_stops(tmp_path):
    assert main(["run", str(asha_study(tmp_path, "whole"))]) == 0
    whole = outcome(tmp_path / "results" / "whole")
    assert len(whole) == 16 and 0 < len(stopped(whole)) < 16  # some trials cut, some promoted
    # one trial at a time: every seed 0 waited (paused) at its rungs for seed 1; a pause is no restart
    rows = read_trials(str(tmp_path / "results" / "whole"))
    assert (rows["restarts"] == 0).all()
    paused = [json.loads(a) for a in rows.loc[rows["seed"] == 0, "attempts"].dropna()]
    assert len(paused) == 8 and all(x["paused"] and "ASHA rung" in x["reason"] for a in paused for x in a)

    location = tmp_path / "results" / "resumed"
    kill_after_saved_cut(asha_study(tmp_path, "resumed"), location, tmp_path / "run.log")
    before = read_trials(str(location))
    cut_before = {
        (str(t["config_id"]), int(t["seed"])) for _, t in before.iterrows() if t["status"] == "stopped"
    }
    assert cut_before and stopped(whole) - cut_before  # killed after a cut, with cuts still to decide

    assert main(["resume", "resumed", "--storage", str(tmp_path / "results")]) == 0
    resumed = outcome(location)
    assert stopped(resumed) == stopped(whole)
    assert resumed == whole
