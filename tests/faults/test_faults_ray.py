"""Studies under faults on a real Ray (this machine): a worker node removed mid-study, trial processes killed
with SIGKILL, storage that turns unwritable for a while (and for good). After each, every trial has finished
or is recorded as failed with its reason, and the Parquet dataset holds each (trial, epoch) exactly once.

The fourth fault of the issue, the driver killed (SIGKILL of its whole process group, local Ray included)
and the study continued with ``study resume``, is proven by
``tests/study/test_study_ray.py::test_interrupted_study_resumes_with_each_row_once`` and not repeated here.

Faults are placed with the test-only hooks of :mod:`study.trial` (``MTL_STUDY_FAULTS``): ``pause`` makes a
trial publish its PID and wait at a known point (after writing an epoch's row, before saving its state: the
worst moment), ``storage_down`` makes the trial's storage writes fail while a flag file exists.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from results_store.reader import read_epochs, read_trials
from study.faults import FAULTS_ENV
from study.runner import run_study
from study.schema import validate_study

from .conftest import OBJECT_STORE, study_dict

pytestmark = pytest.mark.usefixtures("ray_clean")


def check_outcome(location: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every trial completed, or failed with a recorded reason; each (trial, epoch) exactly once; a completed
    trial has rows for all its epochs, a failed one for epochs 0 .. epochs_done-1 (and nothing else)."""
    trials, epochs = read_trials(str(location)), read_epochs(str(location))
    assert not trials.empty
    assert set(trials["status"]) <= {"completed", "failed"}, trials[["trial_id", "status", "error"]]
    failed = trials[trials["status"] == "failed"]
    assert failed["error"].notna().all() and (failed["error"].str.len() > 0).all()
    if not epochs.empty:
        assert epochs.groupby(["trial_id", "epoch"]).size().max() == 1, "a (trial, epoch) row is duplicated"
        assert set(epochs["trial_id"]) <= set(trials["trial_id"])
    for _, trial in trials.iterrows():
        got = sorted(epochs.loc[epochs["trial_id"] == trial["trial_id"], "epoch"]) if not epochs.empty else []
        expected = int(trial["max_epochs"]) if trial["status"] == "completed" else int(trial["epochs_done"])
        assert trial["epochs_done"] == expected
        assert got == list(range(expected)), (trial["trial_id"], trial["status"], got)
    return trials, epochs


class Watcher:
    """A background thread that polls ``step`` (which returns True when it is done) until stopped."""

    def __init__(self, step: Callable[[], bool]) -> None:
        self.step = step
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                if self.step():
                    return
                time.sleep(0.05)
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        if self.error is not None and exc[0] is None:
            raise self.error


def pid_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.pid")) if directory.is_dir() else []


def test_sigkilled_trial_is_retried_from_its_state_or_recorded_failed(tmp_path, monkeypatch):
    """Seed 0's trial process is SIGKILLed once (after writing epoch 1's row, before saving its state) and
    resumes from epoch 0's state; seed 1's is SIGKILLed on every attempt and fails once its one retry is
    spent, with Ray's reason recorded."""
    retried, doomed = tmp_path / "pids_retried", tmp_path / "pids_doomed"
    faults = {
        "pause": [
            {"epoch": 1, "seed": 0, "marker_dir": str(retried)},
            {"epoch": 1, "seed": 1, "marker_dir": str(doomed), "once": False},
        ]
    }
    monkeypatch.setenv(FAULTS_ENV, json.dumps(faults))
    study = validate_study(study_dict(tmp_path, "sigkill", seeds=[0, 1], max_failures=1))
    killed: dict[Path, int] = {}

    def kill_paused() -> bool:
        for pid_file in pid_files(retried) + pid_files(doomed):
            if pid_file not in killed:
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed[pid_file] = pid
        return False

    with Watcher(kill_paused):
        run_study(study)

    trials, epochs = check_outcome(tmp_path / "results" / "sigkill")
    by_seed = trials.set_index("seed")
    assert len(pid_files(retried)) == 1 and len(pid_files(doomed)) == 2  # max_failures 1: two attempts
    assert by_seed.loc[0, "status"] == "completed" and by_seed.loc[0, "restarts"] == 1
    assert by_seed.loc[1, "status"] == "failed"
    reason = by_seed.loc[1, "error"]
    assert "died" in reason.lower() or "actor" in reason.lower(), reason
    # the killed attempt's epoch-1 row was rewritten by the retry, after the kill
    row = epochs[(epochs["seed"] == 0) & (epochs["epoch"] == 1)].iloc[0]
    kill_time = pd.Timestamp(pid_files(retried)[0].stat().st_mtime, unit="s", tz="UTC")
    assert row["written_at"] > kill_time


def test_storage_unwritable_for_a_while_and_for_good(tmp_path, monkeypatch):
    """Both trials pause after epoch 1's row; then seed 0's storage turns read-only until one of its writes
    has been refused (its trial fails, is retried from epoch 0's state once storage is back and completes),
    and seed 1's turns read-only for good (it fails after its retries, the storage error recorded)."""
    outage, down_for_good = tmp_path / "outage", tmp_path / "down_for_good"
    pids0, pids1 = tmp_path / "pids0", tmp_path / "pids1"
    faults = {
        "storage_down": [
            {"flag": str(outage), "seed": 0},
            {"flag": str(down_for_good), "seed": 1},
        ],
        "pause": [
            {"epoch": 1, "seed": 0, "marker_dir": str(pids0), "wait_s": 1.0},
            {"epoch": 1, "seed": 1, "marker_dir": str(pids1), "wait_s": 1.0},
        ],
    }
    monkeypatch.setenv(FAULTS_ENV, json.dumps(faults))
    study = validate_study(study_dict(tmp_path, "storage", seeds=[0, 1], max_failures=3))
    refused0 = Path(f"{outage}.refused")
    state = {"outage_over": False, "down": False}

    def drive_outages() -> bool:
        if pid_files(pids1) and not state["down"]:
            down_for_good.touch()
            state["down"] = True
        if pid_files(pids0) and not outage.exists() and not state["outage_over"]:
            outage.touch()
        if outage.exists() and refused0.exists() and refused0.read_text().strip():
            outage.unlink()  # storage is back
            state["outage_over"] = True
        return state["outage_over"] and state["down"]

    with Watcher(drive_outages):
        run_study(study)

    trials, _ = check_outcome(tmp_path / "results" / "storage")
    by_seed = trials.set_index("seed")
    assert refused0.read_text().strip() and Path(f"{down_for_good}.refused").read_text().strip()
    assert by_seed.loc[0, "status"] == "completed" and by_seed.loc[0, "restarts"] >= 1
    assert by_seed.loc[1, "status"] == "failed"
    assert "injected storage fault" in by_seed.loc[1, "error"], by_seed.loc[1, "error"]
    assert by_seed.loc[1, "epochs_done"] == 2  # its rows of epochs 0 and 1, written before the outage


def test_worker_node_removed_mid_study(tmp_path, monkeypatch):
    """A head and a worker node with one CPU each run one trial each; while both trials are mid-way (paused
    after epoch 1's row), the worker node is removed. Its trial is retried on the head node from its last
    saved state and completes; every epoch row exists once."""
    from ray.cluster_utils import Cluster

    pids = tmp_path / "pids"
    faults = {"pause": {"epoch": 1, "marker_dir": str(pids), "wait_s": 2.0}}
    monkeypatch.setenv(FAULTS_ENV, json.dumps(faults))
    fast_failure_detection = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": OBJECT_STORE,
            "include_dashboard": False,
            "_system_config": fast_failure_detection,
        },
    )
    removed: dict[str, str] = {}
    try:
        worker = cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        cluster.wait_for_nodes()
        study = validate_study(
            study_dict(
                tmp_path,
                "node_lost",
                seeds=[0, 1],
                train={"epochs": 4},
                max_failures=2,
                ray={"address": cluster.address, "num_cpus": None, "object_store_memory": None, "env": {}},
            )
        )
        location = tmp_path / "results" / "node_lost"

        def remove_worker() -> bool:
            if len(pid_files(pids)) < 2:
                return False
            epochs = read_epochs(str(location))
            on_worker = epochs[epochs["node_id"] == worker.node_id]
            assert not on_worker.empty, "no trial ran on the worker node"
            removed["trial_id"] = str(on_worker["trial_id"].iloc[0])
            cluster.remove_node(worker, allow_graceful=False)
            return True

        with Watcher(remove_worker):
            run_study(study)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()

    assert removed, "the worker node was never removed"
    trials, epochs = check_outcome(location)
    assert (trials["status"] == "completed").all()
    moved = trials.set_index("trial_id").loc[removed["trial_id"]]
    assert moved["restarts"] >= 1 and moved["node_id"] != worker.node_id  # finished on the head node
    from results_store.writer import trial_attempts

    attempts = trial_attempts(moved)  # the lost attempt is on record: the removed node, and why it ended
    assert len(attempts) == moved["restarts"] and attempts[0]["node_id"] == worker.node_id
    assert "lost" in attempts[0]["reason"] or attempts[0]["reason"]
    last = epochs[(epochs["trial_id"] == removed["trial_id"]) & (epochs["epoch"] == 3)].iloc[0]
    assert last["node_id"] != worker.node_id
