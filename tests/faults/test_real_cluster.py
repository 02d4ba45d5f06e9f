"""A study on a real multi-process Ray cluster on this machine (`ray start --head` plus two `ray start
--address` worker nodes, each its own raylet): a worker node's raylet is SIGKILLed while one of its trials is
mid-way, then the driver is SIGKILLed mid-run and the study is continued with `study resume`. Every trial ends
completed (or failed with its reason), each (trial, epoch) is stored exactly once, and the trial that lost its
node keeps that attempt on record (issue 24).

Slow (about two minutes) and it owns the machine's Ray: it ends with `ray stop --force`, so it is not run
beside other Ray work (CI runs the default, non-slow tests).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from results_store.reader import read_epochs, read_trials
from results_store.writer import trial_attempts
from study.cli import main
from tests.faults.test_faults_ray import check_outcome
from tests.study.conftest import session_pids, study_dict

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray(*args: str, env: dict[str, str]) -> None:
    subprocess.run(["ray", *args], check=True, env=env, capture_output=True, timeout=120)


def _raylets() -> dict[str, int]:
    """node id -> raylet pid of every raylet on this machine."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        if "raylet/raylet" in line:
            match = re.search(r"--node_id=([0-9a-f]+)", line)
            if match:
                found[match.group(1)] = int(line.split()[0])
    return found


def _head_node(env: dict[str, str], address: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", f"import ray; ray.init(address='{address}'); "
         "print([n['NodeID'] for n in ray.nodes() if n['Alive'] and "
         "n['Resources'].get('node:__internal_head__')][0])"],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def cluster(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    _ray("start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
         "--disable-usage-stats", env=env)  # fmt: skip
    for _ in range(2):
        _ray("start", f"--address={address}", "--num-cpus=1", "--disable-usage-stats", env=env)
    try:
        yield address, env
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_worker_node_and_driver_killed_then_resumed(tmp_path, cluster, capsys):
    address, env = cluster
    head = _head_node(env, address)
    data = study_dict(
        tmp_path,
        "realcluster",
        datasets=[
            {"name": "synthetic", "kwargs": {"n_train": 40_000, "n_val": 2048, "n_test": 2048, "hidden": 128}}
        ],
        methods=["ew", "si", "db_mtl"],
        seeds=[0, 1],
        train={"epochs": 10, "batch_size": 64},  # about a second an epoch: kills land mid-trial
        resources={"cpus_per_trial": 1, "max_concurrent_trials": 3},
        ray={"address": address, "env": {}},
        max_failures=3,
    )  # fmt: skip
    path = tmp_path / "realcluster.yaml"
    path.write_text(yaml.safe_dump(data))
    location = tmp_path / "results" / "realcluster"
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(path)],
        start_new_session=True, stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    killed_node = None
    seen: set = set()
    try:
        deadline = time.monotonic() + 240
        # 1. a worker node's raylet dies while one of its trials is mid-way
        while killed_node is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                epochs = read_epochs(str(location))
            except Exception:  # a read racing a write: try again
                epochs = None
            if epochs is not None and not epochs.empty:
                trials = read_trials(str(location))
                running = trials[trials["status"] == "running"] if not trials.empty else trials
                for _, row in running.iterrows():
                    node = row["node_id"]
                    seen.add((node, int(row["epochs_done"])))
                    if node and node != head and node in _raylets() and row["epochs_done"] >= 2:
                        os.kill(_raylets()[node], signal.SIGKILL)
                        killed_node = (node, row["trial_id"])
                        break
            time.sleep(0.3)
        assert killed_node is not None, f"no trial ran on a worker node: seen {seen}, raylets {_raylets()}"
        # 2. then the driver dies mid-run
        time.sleep(8)
        assert proc.poll() is None, "the study ended before the driver could be killed"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
        for pid in session_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)

    # what the user saw: Ray's node-loss message as one plain line (its whole text kept in the study folder)
    console = (tmp_path / "run.log").read_text()
    assert "\x1b[" not in console, console[-3000:]
    assert "Possible reasons include" not in console and "Last 20 lines" not in console, console[-3000:]
    if "Raylet is terminated" in console:
        assert "Last 20 lines" in (location / "ray_messages.log").read_text()

    # 3. the study is continued; the cluster has its head and one worker left
    assert main(["resume", str(location)]) == 0, capsys.readouterr().out[-3000:]
    trials, epochs = check_outcome(location)
    assert len(trials) == 6 and (trials["status"] == "completed").all()
    lost = trials.set_index("trial_id").loc[killed_node[1]]
    attempts = trial_attempts(lost)
    assert lost["restarts"] >= 1 and any(a["node_id"] == killed_node[0] for a in attempts)
    assert main(["status", str(location)]) == 0
    assert "earlier attempt(s)" in capsys.readouterr().out
    assert epochs.groupby(["trial_id", "epoch"]).size().max() == 1
