"""The Ray-free Parquet writer of study results, read back through the reader (DESIGN §6)."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from results_store.columns import SCHEMA_VERSION, hp_columns, infer_hp_type
from results_store.identity import TrialInfo
from results_store.reader import read_epochs, read_trials
from results_store.writer import ResultsWriter

HP_TYPES = {"beta": "float", "alpha_strategy": "str", "lr": "float"}


def record(epoch: int, val_dp: float, tasks: tuple[str, ...] = ("t0", "t1")) -> dict:
    out = {
        "epoch": epoch,
        "lr": 1e-3,
        "steps": 4,
        "time_epoch": 0.5,
        "grad_cos": math.nan,
        "val_delta_p": val_dp,
        "test_delta_p": val_dp - 1,
        "val_delta_m": -val_dp,
        "test_delta_m": 1 - val_dp,
    }
    for t in tasks:
        out[f"train_loss/{t}"] = 1.0 / (epoch + 1)
        out[f"val/{t}/mae"] = 0.5 - 0.01 * epoch
        out[f"test/{t}/mae"] = 0.6 - 0.01 * epoch
    return out


def write_trial(
    w: ResultsWriter, method: str, trial_id: str, hp: dict, vals: list[float], dataset: str = "synthetic"
):
    info = TrialInfo(w.study, dataset, method, trial_id, seed=0, hparams=hp, hp_types=HP_TYPES)
    recs = [record(e, v) for e, v in enumerate(vals)]
    for r in recs:
        w.write_epoch(info, r, host="h", device="cpu")
    w.write_trial(info, status="completed", records=recs, max_epochs=len(vals), train_config={"seed": 0})
    return info, recs


def test_round_trip_partitions_and_types(tmp_path):
    w = ResultsWriter(str(tmp_path), "demo")
    write_trial(w, "ew", "a_00000", {}, [-5.0, -3.0, -4.0])
    write_trial(w, "igbv1+max_norm", "b_00000", {"beta": 0.5, "alpha_strategy": "max"}, [-2.0, -1.0])
    epochs = read_epochs(str(tmp_path / "demo"))
    assert len(epochs) == 5
    assert set(epochs["method"]) == {"ew", "igbv1+max_norm"}  # '+' survives the path encoding
    assert (epochs["schema_version"] == SCHEMA_VERSION).all()
    assert hp_columns(epochs) == ["hp/alpha_strategy", "hp/beta", "hp/lr"]
    assert epochs["epoch"].dtype == "int64"
    trials = read_trials(str(tmp_path / "demo")).set_index("trial_id")
    assert trials.loc["a_00000", "best_epoch"] == 1 and trials.loc["a_00000", "best_val_delta_p"] == -3.0
    assert trials.loc["a_00000", "test_delta_p"] == -4.0  # test result at the best *validation* epoch
    assert trials.loc["b_00000", "hp/alpha_strategy"] == "max"
    # every file of the partition shares one schema, so plain pandas reads the whole folder completely
    plain = pd.read_parquet(tmp_path / "demo" / "epochs")
    assert len(plain) == 5 and "hp/beta" in plain.columns


def test_rewrites_overwrite_instead_of_duplicating(tmp_path):
    w = ResultsWriter(str(tmp_path), "demo")
    info, recs = write_trial(w, "ew", "a_00000", {}, [-5.0, -3.0])
    w.write_epoch(info, recs[1], host="other")  # a retried epoch
    epochs = read_epochs(str(tmp_path / "demo"))
    assert epochs.groupby(["trial_id", "epoch"]).size().max() == 1
    assert epochs.set_index("epoch").loc[1, "host"] == "other"
    leftovers = [p for p in (tmp_path / "demo").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_delete_epochs_and_orphans(tmp_path):
    w = ResultsWriter(str(tmp_path), "demo")
    write_trial(w, "ew", "a_00000", {}, [-5.0, -3.0, -2.0])
    write_trial(w, "ew", "ghost_1", {}, [-5.0])
    assert w.trial_ids("synthetic", "ew") == {"a_00000", "ghost_1"}
    assert w.delete_epochs("synthetic", "ew", "a_00000", from_epoch=1) == [1, 2]
    w.delete_trial("synthetic", "ew", "ghost_1")
    assert w.trial_ids("synthetic", "ew") == {"a_00000"}
    assert sorted(read_epochs(str(tmp_path / "demo"))["epoch"]) == [0]
    assert w.read_trial_row("synthetic", "ew", "ghost_1") is None
    assert w.read_trial_row("synthetic", "ew", "a_00000")["status"] == "completed"


def test_schema_union_across_datasets_and_uri(tmp_path):
    w = ResultsWriter(f"file://{tmp_path}", "demo")
    write_trial(w, "ew", "a_00000", {}, [-1.0])
    info = TrialInfo("demo", "other", "ew", "c_00000", 1, {}, HP_TYPES)
    w.write_epoch(info, record(0, -2.0, tasks=("mu", "alpha")))
    epochs = read_epochs(f"file://{tmp_path}/demo/epochs")
    assert {"train_loss/t0", "train_loss/mu"} <= set(epochs.columns)
    assert pd.isna(epochs.set_index("dataset").loc["other", "train_loss/t0"])


def test_single_file_holds_one_row_without_partition_columns(tmp_path):
    w = ResultsWriter(str(tmp_path), "demo")
    write_trial(w, "ew", "a_00000", {}, [-1.0])
    table = pq.read_table(w.epoch_path("synthetic", "ew", "a_00000", 0))
    assert table.num_rows == 1 and "dataset" not in table.column_names


def test_empty_and_validation(tmp_path):
    assert read_epochs(str(tmp_path / "nothing")).empty
    with pytest.raises(ValueError, match="study name"):
        ResultsWriter(str(tmp_path), "bad/name")
    with pytest.raises(ValueError, match="no declared type"):
        TrialInfo("s", "d", "m", "t", 0, {"x": 1}, {})
    w = ResultsWriter(str(tmp_path), "demo")
    info = TrialInfo("demo", "d", "m", "t", 0, {}, {})
    with pytest.raises(ValueError, match="status"):
        w.write_trial(info, status="weird")


def test_helpers():
    assert infer_hp_type([0.1, 1]) == "float"
    assert infer_hp_type([1, 2]) == "int"
    assert infer_hp_type([True, False]) == "bool"
    assert infer_hp_type(["max", 1]) == "str"


def test_results_modules_import_no_ray_or_torch():
    code = (
        "import sys, results_store.writer, results_store.reader; "
        "print('ray' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_rows_store_identity_directions_and_trial_times(tmp_path):
    import datetime as dt

    w = ResultsWriter(str(tmp_path), "demo")
    info = TrialInfo(
        "demo",
        "synthetic",
        "db_mtl",
        "a_00000",
        0,
        balancer="si",
        aggregator="max_norm",
        directions={"t0/mae": False, "t1/acc": True},
    )
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    w.write_epoch(info, record(0, -1.0), host="h", node_id="n1")
    w.write_trial(info, status="running", records=[record(0, -1.0)], host="h", node_id="n1", started_at=start)
    trial = read_trials(str(tmp_path / "demo")).iloc[0]
    assert (trial["schema_version"], trial["balancer"], trial["aggregator"]) == (2, "si", "max_norm")
    assert trial["higher_is_better/t0/mae"] == False and trial["higher_is_better/t1/acc"] == True  # noqa: E712
    assert pd.isna(trial["ended_at"]) and trial["started_at"] == pd.Timestamp(start)
    assert (trial["host"], trial["node_id"]) == ("h", "n1")
    epoch = read_epochs(str(tmp_path / "demo")).iloc[0]
    assert (epoch["balancer"], epoch["higher_is_better/t1/acc"]) == ("si", True)
    # the driver's rewrite of an ended trial passes the row read back as `summary`: identity is kept
    row = w.read_trial_row("synthetic", "db_mtl", "a_00000")
    keep = {
        "epochs_done",
        "best_epoch",
        "best_val_delta_p",
        "time_total",
        "balancer",
        "aggregator",
        "ended_at",
    }
    summary = {
        k: v for k, v in row.items() if k in keep or k.startswith(("higher_is_better/", "test", "val"))
    }
    bare = TrialInfo("demo", "synthetic", "db_mtl", "a_00000", 0)
    w.write_trial(bare, status="stopped", summary=summary, started_at=row["started_at"])
    stopped = read_trials(str(tmp_path / "demo")).iloc[0]
    assert (stopped["balancer"], stopped["aggregator"], stopped["higher_is_better/t0/mae"]) == (
        "si",
        "max_norm",
        False,
    )
    assert stopped["ended_at"] >= stopped["started_at"] and stopped["best_val_delta_p"] == -1.0
    with pytest.raises(ValueError, match="task>/<metric"):
        TrialInfo("demo", "d", "m", "t", 0, directions={"mae": True})
