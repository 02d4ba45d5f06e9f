"""Fair comparisons at the schema, search and results level (issue 22 items 1 and 7, fast): the ``tune:``
block (common space merged with each method's own, equal budgets, the paper default first), searched LR
scheduler arguments, ``config_id``/``paper_default``/resources in the rows and the budget summary."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from ray.tune.search import Searcher

from results_store.columns import config_id
from results_store.identity import TrialInfo
from results_store.reader import read_epochs, read_trials
from results_store.writer import ResultsWriter
from study.layout import DEFAULT_KEY
from study.runner import budget_lines, device_hours
from study.schema import StudyError, load_study, validate_study
from study.searcher import GROUP_KEY
from study.trial import TrialSetup, build_train_config
from study.tuner import make_searcher

from .conftest import study_dict

ROOT = Path(__file__).resolve().parents[2]


def fair(tmp_path: Path, **tune: object) -> dict:
    return study_dict(
        tmp_path,
        "fair",
        methods=["ew", {"name": "db_mtl", "space": {"beta": {"choice": [0.1, 0.5, 0.9]}}}],
        seeds=[0, 1],
        search={"algorithm": "optuna", "seed": 0, "num_samples": None},
        tune={"space": {"lr": {"loguniform": [1e-4, 1e-2]}}, "num_samples": 3, "defaults": True, **tune},
    )


def drain(searcher) -> list[dict]:
    out = []
    while (config := searcher.suggest(f"t{len(out)}")) not in (None, Searcher.FINISHED):
        out.append(config)
        searcher.on_trial_complete(f"t{len(out) - 1}", {"val_delta_p": float(len(out))})
    return out


@pytest.mark.parametrize("algorithm", ["optuna", "random"])
def test_every_group_runs_the_same_budget_with_the_default_first(tmp_path, algorithm):
    data = fair(tmp_path)
    data["search"]["algorithm"] = algorithm
    study = validate_study(data)
    groups = study.groups()
    assert [sorted(g.space) for g in groups] == [["lr"], ["beta", "lr"]]  # common space merged
    assert [(g.samples, g.defaults) for g in groups] == [(3, True), (3, True)]
    configs = drain(make_searcher(study))
    for group in groups:
        mine = [c for c in configs if c[GROUP_KEY] == group.name]
        assert len(mine) == 3 * 2  # num_samples configurations x seeds
        assert mine[0] == {GROUP_KEY: group.name, DEFAULT_KEY: True, "seed": 0}  # nothing searched set
        assert mine[1] == {GROUP_KEY: group.name, DEFAULT_KEY: True, "seed": 1}
        tuned = [{k: v for k, v in c.items() if k != "seed"} for c in mine[2:]]
        assert all(DEFAULT_KEY not in c and set(c) == {GROUP_KEY, *group.space} for c in tuned)
        assert tuned[0] == tuned[1] != tuned[2] == tuned[3]  # each configuration once per seed


def test_a_small_finite_space_is_an_error_unless_unequal_budgets_are_allowed(tmp_path):
    data = fair(tmp_path, num_samples=4)
    data["tune"]["space"] = {"weight_decay": {"choice": [0.0, 1e-4]}}
    with pytest.raises(StudyError, match=r"methods\[0\] 'ew' has only 3 \(its space \['weight_decay'\] plus"):
        validate_study(data)
    data["tune"]["allow_unequal"] = True
    study = validate_study(data)
    assert [g.samples for g in study.groups()] == [3, 4]  # ew: 2 values + the default; db_mtl: 6 + 1 >= 4
    configs = drain(make_searcher(study))
    ew = [c for c in configs if c[GROUP_KEY] == study.groups()[0].name and DEFAULT_KEY not in c]
    assert sorted({c["weight_decay"] for c in ew}) == [0.0, 1e-4]  # distinct: random draws no duplicate


def test_no_space_with_defaults_is_one_default_configuration(tmp_path):
    data = fair(tmp_path, space={}, num_samples=1)
    data["methods"] = ["ew"]
    study = validate_study(data)
    configs = drain(make_searcher(study))
    assert [c[DEFAULT_KEY] for c in configs] == [True, True] and [c["seed"] for c in configs] == [0, 1]


def test_scheduler_arguments_start_from_the_datasets_paper_arguments():
    """Searching plateau patience on QM9 changes patience only: factor and min_lr stay the paper's."""
    hp = ["scheduler_kwargs.patience"]
    settings = TrialSetup("s", "/tmp/x", "qm9", "ew", {"epochs": 3}, [0], hp, {})
    config = build_train_config(settings, {"scheduler_kwargs.patience": 9}, seed=0)
    assert config["scheduler"] == "plateau"
    assert config["scheduler_kwargs"] == {"factor": 0.7, "patience": 9, "min_lr": 1e-5}
    other = build_train_config(settings, {"scheduler": "step", "scheduler_kwargs.gamma": 0.1}, seed=0)
    assert other["scheduler_kwargs"] == {"gamma": 0.1}  # another scheduler starts from its own defaults


def test_static_weights_are_searched_per_task_and_checked_against_the_datasets_tasks(tmp_path):
    data = fair(tmp_path)
    data["methods"] = [{"name": "static", "space": {"weight.t0": {"loguniform": [0.1, 10.0]}}}]
    assert sorted(validate_study(data).groups()[0].space) == ["lr", "weight.t0"]
    data["methods"][0]["space"]["weight.t7"] = {"loguniform": [0.1, 10.0]}
    with pytest.raises(StudyError, match=r"methods\[0\].space.weight.t7: static weight for \['t7'\]"):
        validate_study(data)


def test_rows_carry_config_id_paper_default_and_resources(tmp_path):
    writer = ResultsWriter(str(tmp_path), "rows")
    types = {"lr": "float", "beta": "float"}
    record = {"epoch": 0, "val_delta_p": 1.0, "test_delta_p": 0.5, "time_epoch": 2.0}
    for seed in (0, 1):
        tuned = TrialInfo("rows", "synthetic", "db_mtl", f"a{seed}", seed, {"lr": 0.01, "beta": 0.5}, types,
                          cpus=1.0, gpus=0.25)  # fmt: skip
        default = TrialInfo("rows", "synthetic", "db_mtl", f"d{seed}", seed, {}, types, paper_default=True,
                            cpus=1.0, gpus=0.25)  # fmt: skip
        for info in (tuned, default):
            writer.write_epoch(info, record)
            writer.write_trial(info, status="completed", records=[record], max_epochs=1, wall_time=3600.0)
    trials, epochs = read_trials(str(tmp_path / "rows")), read_epochs(str(tmp_path / "rows"))
    for frame in (trials, epochs):
        by = frame.set_index("trial_id")
        assert by.loc["a0", "config_id"] == by.loc["a1", "config_id"] == config_id({"lr": 0.01, "beta": 0.5})
        assert by.loc["d0", "config_id"] == by.loc["d1", "config_id"] != by.loc["a0", "config_id"]
        assert by["paper_default"].tolist() == [False, False, True, True]
    assert (trials["cpus"] == 1.0).all() and (trials["gpus"] == 0.25).all()
    assert device_hours(trials) == (pytest.approx(4 * 0.25), "GPU-h")
    line = "  synthetic/db_mtl: 2 configurations (1 paper default), 4 trials, 1 GPU-h"
    assert budget_lines(trials)[1] == line
    # a status rewrite from the row read back (the driver's _finalize) keeps them
    row = writer.read_trial_row("synthetic", "db_mtl", "d0")
    fixed = {"schema_version", "study", "trial_id", "seed", "dataset", "method", "status", "error",
             "max_epochs", "wall_time", "restarts", "host", "device", "node_id", "started_at", "updated_at",
             "train_config"}  # fmt: skip
    summary = {k: v for k, v in row.items() if not k.startswith("hp/") and k not in fixed}  # as _rewrite
    bare = TrialInfo("rows", "synthetic", "db_mtl", "d0", 0, {}, types)
    writer.write_trial(bare, status="stopped", summary=summary)
    again = writer.read_trial_row("synthetic", "db_mtl", "d0")
    assert (again["paper_default"], again["config_id"], again["gpus"]) == (True, row["config_id"], 0.25)


def test_rows_written_before_the_fair_columns_read_with_defaults(tmp_path):
    """A study written before config_id/paper_default: false, ids derived from hp/ (equal across seeds)."""
    import pyarrow.parquet as pq

    writer = ResultsWriter(str(tmp_path), "old")
    record = {"epoch": 0, "val_delta_p": 1.0}
    for seed, lr in ((0, 0.01), (1, 0.01), (0, 0.02)):
        info = TrialInfo("old", "synthetic", "ew", f"t{seed}_{lr}", seed, {"lr": lr}, {"lr": "float"})
        writer.write_trial(info, status="completed", records=[record], max_epochs=1)
        path = writer.trial_path("synthetic", "ew", info.trial_id)
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["config_id", "paper_default", "cpus", "gpus"]), path)
    trials = read_trials(str(tmp_path / "old")).set_index("trial_id")
    assert not trials["paper_default"].any()
    assert trials.loc["t0_0.01", "config_id"] == trials.loc["t1_0.01", "config_id"] == config_id({"lr": 0.01})
    assert trials.loc["t0_0.02", "config_id"] != trials.loc["t0_0.01", "config_id"]
    assert device_hours(trials.reset_index())[1] == "CPU-core-h"  # resources unknown: one core


def test_config_id_is_stable_and_ignores_unset_values():
    assert config_id({"lr": 0.01, "beta": 0.5}) == config_id({"beta": 0.5, "lr": 0.01})
    assert config_id({"lr": 0.01, "beta": None}) == config_id({"lr": 0.01}) != config_id({"lr": 0.02})
    assert config_id({"b": 1}, {"b": "float"}) == config_id({"b": 1.0})  # as its column stores it
    assert len(config_id({})) == 10 and not math.isnan(float(int(config_id({}), 16)))


@pytest.mark.parametrize("name", ["fair_qm9_cpu", "fair_qm9_gpu"])
def test_shipped_fair_studies_pass_validation(name):
    study = load_study(ROOT / "search_spaces" / f"{name}.yaml")
    assert study.tune is not None and study.tune.defaults and len(study.seeds) >= 3
    groups = study.groups()
    assert {g.method for g in groups} >= {"ew", "si", "static", "db_mtl", "igbv2"}
    assert len({g.samples for g in groups}) == 1  # the equal budget
    assert all({"lr", "weight_decay", "scheduler_kwargs.patience"} <= set(g.space) for g in groups)
    static = next(g for g in groups if g.method == "static")
    assert len([n for n in static.space if n.startswith("weight.")]) == 11  # every QM9 task


def test_budget_lines_count_configurations_per_group():
    trials = pd.DataFrame(
        {
            "dataset": ["d"] * 3,
            "method": ["ew"] * 3,
            "config_id": ["a", "a", "b"],
            "paper_default": [True, True, False],
            "wall_time": [1800.0, 1800.0, 3600.0],
            "cpus": [2.0, 2.0, 2.0],
            "gpus": [0.0, 0.0, 0.0],
        }
    )
    assert budget_lines(trials)[1] == "  d/ew: 2 configurations (1 paper default), 3 trials, 4 CPU-core-h"
