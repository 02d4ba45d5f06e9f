"""Studies on a real local Ray (2 CPUs, tiny object store): ASHA + Optuna, crash recovery, non-finite metrics,
an interrupted and resumed study, and a two-node cluster. Each test starts and stops its own Ray."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest
import yaml

from results_store.reader import read_epochs, read_trials
from study.cli import main
from study.faults import FAULTS_ENV
from study.runner import StudyStateError, run_study, tune_statuses
from study.schema import validate_study
from study.tuner import PROGRESS_ENV

from .conftest import OBJECT_STORE, kill_session, start_study, study_dict

pytestmark = pytest.mark.usefixtures("ray_clean")


def assert_each_epoch_once(epochs: pd.DataFrame, trials: pd.DataFrame) -> None:
    """Every trial has rows for epochs 0 .. epochs_done-1, each exactly once, and nothing else."""
    assert set(epochs["trial_id"]) == set(trials["trial_id"])
    assert epochs.groupby(["trial_id", "epoch"]).size().max() == 1
    for _, trial in trials.iterrows():
        got = sorted(epochs.loc[epochs["trial_id"] == trial["trial_id"], "epoch"])
        assert got == list(range(int(trial["epochs_done"]))), (trial["trial_id"], got)


def reported_epochs(stdout: str) -> dict[int, list[tuple[int, str]]]:
    """(epochs_done, val Δp text) per seed of every result Tune delivered to the driver, from the progress
    lines the study callback prints on each ``on_trial_result`` (with ``MTL_STUDY_PROGRESS=epochs``)."""
    out: dict[int, list[tuple[int, str]]] = {}
    for seed, done, value in re.findall(r"seed (\d+) epoch (\d+)/\d+\s+val Δp (\S+)", stdout):
        out.setdefault(int(seed), []).append((int(done), value))
    return out


def test_asha_optuna_study_writes_complete_parquet(tmp_path, capsys):
    study = validate_study(
        study_dict(
            tmp_path,
            "asha",
            methods=[{"name": "db_mtl", "space": {"beta": {"choice": [0.1, 0.5, 0.9]}}}],
            space={"lr": {"loguniform": [1.0e-3, 1.0e-2]}},
            train={"epochs": 4},
            search={"algorithm": "optuna", "seed": 0, "num_samples": 4},
            scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
        )
    )
    report = run_study(study)
    assert not report.interrupted and report.groups["synthetic/db_mtl"]["trials"] == 4
    out = capsys.readouterr().out
    assert "pending  running  done  stopped  failed  best val Δp" in out  # the live table
    assert re.search(
        r"\[synthetic/db_mtl\] \w+ seed \d (completed|stopped early by ASHA) at epoch [1-4]/4; best val Δp",
        out,
    )

    location = tmp_path / "results" / "asha"
    plain = pd.read_parquet(location / "epochs")  # plain pandas reads the dataset
    epochs, trials = read_epochs(str(location)), read_trials(str(location))
    # plain pandas sees the same rows and columns (plus the compaction marker that read_epochs drops)
    assert len(plain) == len(epochs) and set(plain.columns) - {"compacted"} == set(epochs.columns)
    assert len(trials) == 4 and set(trials["status"]) <= {"completed", "stopped"}
    assert_each_epoch_once(epochs, trials)
    for column in (
        "study",
        "trial_id",
        "dataset",
        "method",
        "seed",
        "hp/beta",
        "hp/lr",
        "epoch",
        "status",
        "host",
        "device",
        "schema_version",
        "val_delta_p",
        "test_delta_p",
        "train_loss/t0",
        "val/t0/mae",
        "test/t2/mae",
        "weight/t1",
        "grad_norm/t0",
        "time_epoch",
    ):
        assert column in epochs.columns, column
    assert epochs[["val_delta_p", "test_delta_p", "train_loss/t0"]].notna().all().all()
    assert (epochs["status"] == "ok").all() and set(epochs["method"]) == {"db_mtl"}
    assert trials["hp/beta"].isin([0.1, 0.5, 0.9]).all() and trials["hp/lr"].between(1e-3, 1e-2).all()
    for _, trial in trials.iterrows():  # best epoch by validation Δp, test result at that epoch
        rows = epochs[epochs["trial_id"] == trial["trial_id"]].set_index("epoch")
        assert trial["best_epoch"] == rows["val_delta_p"].idxmax()
        assert trial["test_delta_p"] == pytest.approx(rows.loc[trial["best_epoch"], "test_delta_p"])
        assert trial["status"] == ("completed" if trial["epochs_done"] == 4 else "stopped")
        # started_at .. ended_at spans the whole slot time the trial measured (set-up included): utilisation
        # computed from these timestamps is the slot time the trials used
        span = (trial["ended_at"] - trial["started_at"]).total_seconds()
        assert 0 < trial["wall_time"] <= span + 0.05 and span - trial["wall_time"] < 1.0, (span, trial)
    assert tune_statuses(study) == {"synthetic/db_mtl": {"TERMINATED": 4}}
    with pytest.raises(StudyStateError, match="study resume"):
        run_study(study)  # a second `run` of the same study is refused


def test_crash_resumes_from_checkpoint_and_nan_fails_cleanly(tmp_path, monkeypatch, capsys):
    markers = tmp_path / "markers"
    faults = {
        "crash_once": {"epoch": 1, "seed": 0, "marker_dir": str(markers)},
        "nan": {"epoch": 1, "seed": 1},
    }
    monkeypatch.setenv(FAULTS_ENV, json.dumps(faults))
    monkeypatch.setenv(PROGRESS_ENV, "epochs")  # a line per delivered result, read by reported_epochs
    study = validate_study(study_dict(tmp_path, "faults", seeds=[0, 1], max_failures=2))
    run_study(study)
    seen = reported_epochs(capsys.readouterr().out)

    location = tmp_path / "results" / "faults"
    epochs, trials = read_epochs(str(location)), read_trials(str(location))
    by_seed = trials.set_index("seed")

    # seed 0 crashed once after writing epoch 1's row and resumed from its epoch-0 checkpoint
    crashed = by_seed.loc[0]
    assert crashed["status"] == "completed" and crashed["restarts"] == 1 and crashed["epochs_done"] == 3
    (marker,) = markers.iterdir()
    rows = epochs[epochs["seed"] == 0].set_index("epoch")
    assert sorted(rows.index) == [0, 1, 2]  # no duplicate epochs
    crash_time = pd.Timestamp(marker.stat().st_mtime, unit="s", tz="UTC")
    assert rows.loc[0, "written_at"] < crash_time < rows.loc[1, "written_at"]  # epoch 0 was not redone
    assert [done for done, _ in seen[0]] == [1, 2, 3]  # Tune got each epoch once too, in order

    # seed 1 produced a NaN validation Δp: failed with the reason, NaN never reported to Tune/ASHA/Optuna
    failed = by_seed.loc[1]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("non-finite metric: epoch 1: val_delta_p=nan")
    nan_rows = epochs[epochs["seed"] == 1].set_index("epoch")
    assert nan_rows.loc[0, "status"] == "ok" and nan_rows.loc[1, "status"] == "nonfinite"
    assert [done for done, _ in seen[1]] == [1]  # only the finite epoch 0 was reported
    assert all(value != "nan" for results in seen.values() for _, value in results)


def test_interrupted_study_resumes_with_each_row_once(tmp_path, capsys):
    data = study_dict(
        tmp_path,
        "interrupted",
        datasets=[
            {"name": "synthetic", "kwargs": {"n_train": 1024, "n_val": 256, "n_test": 256, "hidden": 16}}
        ],
        methods=[{"name": "db_mtl", "space": {"beta": {"choice": [0.1, 0.5, 0.9]}}}],
        seeds=[0, 1],  # Optuna + Repeater: 2 configurations x 2 seeds
        train={"epochs": 6},
        search={"algorithm": "optuna", "seed": 1, "num_samples": 2},
    )
    path = tmp_path / "interrupted.yaml"
    path.write_text(yaml.safe_dump(data))
    log = (tmp_path / "run.log").open("w")
    proc = start_study(path, log)
    epochs_dir = tmp_path / "results" / "interrupted" / "epochs"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and len(list(epochs_dir.rglob("*.parquet"))) < 4:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.2)
        assert len(list(epochs_dir.rglob("*.parquet"))) >= 4, "the study never got going"
    finally:
        kill_session(proc)  # the driver, its local Ray and the trials, mid-way
        log.close()
    before = read_trials(str(tmp_path / "results" / "interrupted"))
    assert len(before) < 4 or (before["status"] != "completed").any()  # it really stopped mid-way

    assert main(["resume", "interrupted", "--storage", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "Parquet results" in out and "best configuration on synthetic" in out

    location = tmp_path / "results" / "interrupted"
    epochs, trials = read_epochs(str(location)), read_trials(str(location))
    assert len(trials) == 4 and (trials["status"] == "completed").all()
    assert (trials["epochs_done"] == 6).all()
    assert_each_epoch_once(epochs, trials)
    assert sorted(trials["seed"]) == [0, 0, 1, 1]
    assert trials.groupby("hp/beta")["seed"].apply(sorted).map(tuple).isin([(0, 1)]).all()  # pairs of seeds
    assert list(tune_statuses(validate_study(data)).values()) == [{"TERMINATED": 4}]
    assert main(["status", str(location)]) == 0
    assert "4 TERMINATED" in capsys.readouterr().out
    assert main(["ls", "--storage", str(tmp_path / "results")]) == 0
    assert "interrupted" in capsys.readouterr().out


def test_two_node_cluster_runs_trials_on_both_nodes(tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": OBJECT_STORE, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        study = validate_study(
            study_dict(
                tmp_path,
                "cluster",
                seeds=[0, 1],
                train={"epochs": 4},
                ray={"address": cluster.address, "num_cpus": None, "object_store_memory": None, "env": {}},
            )
        )
        run_study(study)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    trials = read_trials(str(tmp_path / "results" / "cluster"))
    assert len(trials) == 2 and (trials["status"] == "completed").all()
    assert trials["node_id"].nunique() == 2  # one trial per 1-CPU node, at the same time
