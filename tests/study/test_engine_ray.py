"""The one-pool engine on a real Ray: groups share a simulated GPU cluster at once under the study-wide
cap, a trial's own error message is recorded, Ctrl+C during Ray's start-up stops the study, and a failed
pre-flight leaves nothing that blocks the corrected run (with none of Ray's console noise)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from results_store.reader import read_epochs, read_trials
from study.cluster import ClusterError
from study.faults import FAULTS_ENV
from study.runner import STUDY_FILE, run_study, tune_statuses
from study.schema import validate_study

from .conftest import OBJECT_STORE, study_dict

pytestmark = pytest.mark.usefixtures("ray_clean")


def busy_intervals(location: str) -> pd.DataFrame:
    """Per trial: its group, start and end (trial row; the last epoch row's time where no end is recorded)."""
    trials, epochs = read_trials(location), read_epochs(location)
    last_row = epochs.groupby("trial_id")["written_at"].max().rename("end")
    out = trials.set_index("trial_id").join(last_row)
    out["start"] = pd.to_datetime(out["started_at"], utc=True)
    if "ended_at" in out:
        out["end"] = pd.to_datetime(out["ended_at"], utc=True).fillna(out["end"])
    return out


def max_overlap(intervals: pd.DataFrame) -> int:
    events = sorted([(t, 1) for t in intervals["start"]] + [(t, -1) for t in intervals["end"]])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_groups_share_a_gpu_cluster_under_the_study_cap(tmp_path, monkeypatch):
    """Two nodes declaring one GPU each (trials run on CPU, scheduled at 0.25 GPU: 8 slots); three groups
    with nothing to search x 2 seeds and max_concurrent_trials 3: trials of different groups run at the same
    time, never more than 3 at once (issue 13 item 3: the cap binds without a search space)."""
    from ray.cluster_utils import Cluster

    # every trial waits 4 s after its first epoch, so trials last longer than a worker's start-up
    pause = {"epoch": 0, "marker_dir": str(tmp_path / "pids"), "wait_s": 4.0}
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"pause": pause}))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 4,
            "num_gpus": 1,
            "object_store_memory": OBJECT_STORE,
            "include_dashboard": False,
        },
    )
    try:
        cluster.add_node(num_cpus=4, num_gpus=1, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        study = validate_study(
            study_dict(
                tmp_path,
                "pool",
                methods=["ew", "db_mtl", "rlw"],
                seeds=[0, 1],
                train={"epochs": 3, "device": "auto"},  # the declared GPUs do not exist: auto runs on CPU
                # no ASHA: a seed paused at a rung (waiting for its sibling) frees its slot, but its row's
                # start-end span then covers the wait, so spans would no longer measure slots held (the cap
                # under pauses: test_asha.py::test_a_released_seed_resumes_only_under_the_study_cap)
                scheduler={"type": "none"},
                resources={"cpus_per_trial": 1, "gpus_per_trial": 0.25, "max_concurrent_trials": 3},
                ray={"address": cluster.address, "num_cpus": None, "object_store_memory": None, "env": {}},
            )
        )
        report = run_study(study)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    assert not report.interrupted
    assert tune_statuses(study) == {g.label: {"TERMINATED": 2} for g in study.groups()}
    location = str(tmp_path / "results" / "pool")
    trials = read_trials(location)
    assert len(trials) == 6 and set(trials["status"]) <= {"completed", "stopped"}
    intervals = busy_intervals(location)
    assert max_overlap(intervals) <= 3
    overlapping_groups = set()
    for _, ra in intervals.iterrows():
        for _, rb in intervals.iterrows():
            if ra["method"] != rb["method"] and ra["start"] < rb["end"] and rb["start"] < ra["end"]:
                overlapping_groups.add(frozenset((ra["method"], rb["method"])))
    assert overlapping_groups, "no two groups ever ran at the same time"


def test_failed_preflight_then_rerun_records_the_trials_own_error_quietly(tmp_path, capfd):
    """Issue 13 items 5, 1 and 9: a pre-flight that fails (a GPU share on a GPU-less local Ray) writes no
    study folder, so the corrected file runs with `study run`; a trial raising ConfigError records its own
    message (not "worker process died"), on the console too; Ray's boxed tables, TensorBoard hint and
    worker tracebacks stay off the console."""
    data = study_dict(
        tmp_path,
        "preflight",
        train={"device": "auto"},
        resources={"cpus_per_trial": 1, "gpus_per_trial": 0.3},
    )
    with pytest.raises(ClusterError, match="no GPUs"):
        run_study(validate_study(data))
    assert not (tmp_path / "results" / "preflight" / STUDY_FILE).exists()

    data["resources"] = {"cpus_per_trial": 1, "gpus_per_trial": 0, "max_concurrent_trials": 1}
    study = validate_study(data)
    # a model argument that only the trial checks (validation may catch it earlier: bypass it here)
    broken = study.model_copy(update={"train": study.train.model_copy(update={"model_kwargs": {"hiddn": 8}})})
    capfd.readouterr()
    report = run_study(broken)
    out, err = capfd.readouterr()
    assert (tmp_path / "results" / "preflight" / STUDY_FILE).exists() and not report.interrupted
    (row,) = read_trials(str(tmp_path / "results" / "preflight")).to_dict("records")
    assert row["status"] == "failed"
    assert "hiddn" in row["error"] and "ConfigError" in row["error"], row["error"]
    assert "died" not in row["error"]
    # the driver wrote this row (the trial wrote none): it still names the method's parts
    assert (row["method"], row["balancer"]) == ("ew", "ew") and pd.isna(row["aggregator"]), row
    assert "FAILED: " in out and "hiddn" in out
    console = out + err
    for noise in ("Configuration for experiment", "tensorboard", "Tuner.restore", "SystemExit"):
        assert noise not in console, noise


def test_ctrl_c_during_ray_start_up_stops_the_study(tmp_path):
    """Issue 13 item 4: SIGINT to the study's process group while Ray starts: exit code 130, no trial ran,
    and no study.yaml (the study never started, so the same file runs again)."""
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(study_dict(tmp_path, "ctrl_c")))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(path)],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # printed just before Ray starts
        assert "groups" in first, first
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal does
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, first + rest
    assert "interrupted" in rest
    location = tmp_path / "results" / "ctrl_c"
    assert not list(location.rglob("*.parquet")) and not (location / STUDY_FILE).exists()
