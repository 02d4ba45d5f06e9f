"""Helpers for the study tests: tiny synthetic studies and Ray hygiene (DESIGN §7)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

OBJECT_STORE = 80 * 1024**2

BASE: dict[str, Any] = {
    "datasets": [
        {"name": "synthetic", "kwargs": {"n_train": 256, "n_val": 128, "n_test": 128, "hidden": 16}}
    ],
    "methods": ["ew"],
    "seeds": [0],
    "train": {"epochs": 3, "batch_size": 64, "device": "cpu"},
    "search": {"algorithm": "optuna", "seed": 0, "num_samples": 1},
    "scheduler": {"type": "none"},
    "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 2},
    "ray": {"address": None, "num_cpus": 2, "object_store_memory": OBJECT_STORE, "env": {}},
    "max_failures": 1,
}


def study_dict(tmp_path: Path, name: str, **overrides: Any) -> dict[str, Any]:
    """A tiny synthetic study (about 0.05 s per epoch) stored under ``tmp_path/results``."""
    data = copy.deepcopy(BASE)
    data.update(name=name, storage=str(tmp_path / "results"))
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


@pytest.fixture
def ray_clean(monkeypatch: pytest.MonkeyPatch):
    """Auth off for local Ray (DESIGN §7) and Ray shut down after the test, whatever happened."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


def start_study(path, log, **env: str) -> subprocess.Popen:
    """``study run path`` as a subprocess in its own session (so the test can kill it whole), output to the
    open file ``log``; ``env`` added to this environment (Ray's auth disabled)."""
    return subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(path)],
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RAY_AUTH_MODE": "disabled", **env},
    )


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL a study started by :func:`start_study` -- the driver, its local Ray and the trials -- and
    make sure nothing of its session is left (stragglers killed after 30 s)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in session_pids(proc.pid):
        os.kill(pid, signal.SIGKILL)


def session_pids(sid: int) -> list[int]:
    """Processes of a session (Linux /proc), to make sure a killed study left nothing behind."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                pids.append(int(entry))
        except (ProcessLookupError, PermissionError):
            continue
    return pids
