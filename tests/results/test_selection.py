"""The one answer to "best" (results_store.selection): a trial's best epoch, the best configuration over
seeds, and
the best of several methods' choices by the same rule."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mtl.best_epoch import best_record
from results_store.selection import best_selection, last_k_values, select, summarize_records


def record(epoch: int, val_dp: float) -> dict:
    return {"epoch": epoch, "val_delta_p": val_dp, "test_delta_p": val_dp - 1, "time_epoch": 0.5}


def test_the_best_epoch_is_the_highest_finite_validation_delta_p_earliest_on_ties():
    records = [record(0, math.nan), record(1, -2.0), record(2, -2.0), record(3, math.inf), record(4, -5.0)]
    assert best_record(records)["epoch"] == 1
    assert best_record([record(0, math.nan)]) is None and best_record([]) is None
    assert best_record([{"epoch": 0, "val_delta_p": True}]) is None  # a flag is not a score


def test_a_trial_row_stores_its_best_epoch():
    s = summarize_records([record(0, math.nan), record(1, -2.0), record(2, -2.0)])
    assert s["best_epoch"] == 1 and s["epochs_done"] == 3
    assert s["best_val_delta_p"] == -2.0 and s["test_delta_p"] == -3.0 and s["time_total"] == 1.5
    assert summarize_records([record(0, math.nan)])["best_epoch"] is None


def trials(method: str, scores: dict[float, list[float]], status: str = "completed") -> pd.DataFrame:
    """One row per (lr, seed) with the given best validation Δp; test Δp = validation Δp - 1."""
    rows = []
    for lr, values in scores.items():
        for seed, value in enumerate(values):
            rows.append(
                {"dataset": "d", "method": method, "trial_id": f"{method}_{lr}_{seed}", "seed": seed,
                 "hp/lr": lr, "status": status, "best_val_delta_p": value, "test_delta_p": value - 1}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_the_best_configuration_has_the_best_mean_over_seeds_not_the_best_single_trial():
    frame = trials("m", {0.1: [10.0, 0.0], 0.2: [6.0, 6.0]})  # 0.1 holds the best single trial (10)
    chosen = select(frame, "d", "m")
    assert chosen.config == "lr=0.2" and chosen.seeds == [0, 1] and chosen.score == 6.0
    assert chosen.mean("test_delta_p") == 5.0 and not chosen.fallback_stopped


def test_stopped_trials_count_only_when_nothing_else_does_and_failed_never():
    frame = pd.concat([trials("m", {0.1: [1.0]}, "stopped"), trials("m", {0.2: [9.0]}, "failed")])
    chosen = select(frame, "d", "m")
    assert chosen.config == "lr=0.1" and chosen.fallback_stopped
    assert select(trials("m", {0.2: [9.0]}, "failed"), "d", "m") is None


def test_the_best_of_several_methods_by_the_same_score():
    frame = pd.concat(
        [trials("a", {0.1: [4.0, 4.0]}), trials("b", {0.1: [5.0, 1.0]}), trials("c", {0.1: [4.0]})]
    )
    chosen = [select(frame, "d", m) for m in ("a", "b", "c")]
    assert best_selection(chosen).method == "a"  # a and c tie at 4: more seeds wins
    assert best_selection([]) is None


def test_last_k_averages_each_trials_last_epochs():
    epochs = pd.DataFrame(
        {"dataset": "d", "method": "m", "trial_id": ["t"] * 4, "epoch": [0, 1, 2, 3],
         "val_delta_p": [1.0, 2.0, 3.0, 5.0], "test_delta_p": [0.0, 0.0, 1.0, math.nan]}
    )  # fmt: skip
    got = last_k_values(epochs, 2).iloc[0]
    assert got["val_delta_p"] == pytest.approx(4.0) and got["selection_epochs"] == 2
    assert math.isnan(got["test_delta_p"])  # a non-finite epoch in the window: no value
