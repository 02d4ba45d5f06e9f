"""Diagnostics-only per-task gradients (``grad_diagnostics=True`` on a method that does not need G) are
timed apart (``time_diag``) and kept out of ``time_train`` and ``time_epoch``, epoch costs compare methods."""

from __future__ import annotations

import time

import pytest

import mtl.step
from mtl.config import TrainConfig
from mtl.train import fit

DELAY = 0.4


@pytest.fixture
def slow_task_gradients(monkeypatch):
    """Per-task gradients that take DELAY seconds longer: only the diagnostics compute them for EW."""
    original = mtl.step.task_gradients
    calls = []

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(DELAY)
        return original(*args, **kwargs)

    monkeypatch.setattr(mtl.step, "task_gradients", slow)
    return calls


def config(method: str, diagnostics: bool) -> TrainConfig:
    return TrainConfig(
        dataset="synthetic",
        method=method,
        epochs=2,
        batch_size=64,
        max_steps_per_epoch=3,
        grad_diagnostics=diagnostics,
        dataset_kwargs={"n_train": 192, "n_val": 64, "n_test": 64},
    )


def test_diagnostics_time_is_recorded_apart_and_kept_out_of_training_time(slow_task_gradients):
    records = fit(config("ew", diagnostics=True))
    assert len(slow_task_gradients) == 2  # once per epoch, on the first step
    for record in records:
        assert record["time_diag"] >= DELAY
        assert record["time_train"] < DELAY  # three small steps; the sleep is not training time
        assert record["time_epoch"] == pytest.approx(record["time_train"] + record["time_eval"], abs=1e-6)
        assert record["grad_norm/t0"] == record["grad_norm/t0"]  # the diagnostics were measured (not NaN)


def test_no_diagnostics_no_diagnostics_time(slow_task_gradients):
    records = fit(config("ew", diagnostics=False))
    assert not slow_task_gradients
    assert all(r["time_diag"] == 0.0 for r in records)


def test_methods_that_need_the_gradients_count_them_as_training(slow_task_gradients):
    records = fit(config("mgda", diagnostics=True))
    assert len(slow_task_gradients) == 6  # every step: G is the method's own work
    for record in records:
        assert record["time_diag"] == 0.0
        assert record["time_train"] >= 3 * DELAY
