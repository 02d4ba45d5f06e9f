"""A fair study end to end through ``study run`` on a real local Ray (issue 22 items 1, 3, 7; slow: each
test starts its own Ray): the paper default marked in the rows, equal budgets per group, one config_id per
configuration shared by its seeds, the budget in the summary, and ASHA never stopping a configuration's
seeds against each other."""

from __future__ import annotations

import pickle

import pytest
import yaml

from results_store.reader import read_epochs, read_trials
from study.cli import main

from .conftest import study_dict

pytestmark = [pytest.mark.usefixtures("ray_clean"), pytest.mark.slow]


def test_fair_study_end_to_end(tmp_path, capsys):
    data = study_dict(
        tmp_path,
        "fair",
        methods=["ew", {"name": "static", "space": {"weight.t0": {"loguniform": [0.1, 10.0]}}}],
        seeds=[0, 1],
        train={"epochs": 2},
        search={"algorithm": "random", "seed": 0, "num_samples": None},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
        tune={"space": {"lr": {"loguniform": [1e-3, 1e-2]}}, "num_samples": 2, "defaults": True},
    )
    path = tmp_path / "fair.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    location = str(tmp_path / "results" / "fair")
    trials, epochs = read_trials(location), read_epochs(location)
    assert len(trials) == 2 * 2 * 2  # groups x configurations x seeds
    for method, rows in trials.groupby("method"):
        assert rows["config_id"].nunique() == 2, method  # the equal budget
        for _, config in rows.groupby("config_id"):
            assert sorted(config["seed"]) == [0, 1]  # one config_id per configuration, across its seeds
        default = rows[rows["paper_default"]]
        assert len(default) == 2 and default["config_id"].nunique() == 1
        assert default.filter(like="hp/").isna().all().all()  # nothing searched set
        assert rows.loc[~rows["paper_default"], "hp/lr"].notna().all()
        assert (rows["cpus"] == 1.0).all() and (rows["gpus"] == 0.0).all()
    # every epoch row carries its trial's identity
    identity = trials[["trial_id", "config_id", "paper_default"]]
    merged = epochs.merge(identity, on="trial_id", suffixes=("", "_t"))
    assert (merged["config_id"] == merged["config_id_t"]).all()
    assert (merged["paper_default"] == merged["paper_default_t"]).all()
    assert "synthetic/ew: 2 configurations (1 paper default), 4 trials" in out
    assert "CPU-core-h" in out
    # Tune saves the searcher, which carries each group's ASHA rungs (what `study resume` restores)
    saved = sorted((tmp_path / "results" / "fair" / "tune" / "study").glob("searcher-state-*.pkl"))
    assert saved, "no searcher state saved"
    state = pickle.loads(saved[-1].read_bytes())
    rungs = {group: s["recorded"] for group, s in state["scheduler"].items()}
    assert sorted(rungs) == ["synthetic__ew", "synthetic__static"]
    assert all(len(r[1]) == 2 for r in rungs.values())  # both configurations judged (by mean) at epoch 1
    assert main(["status", location]) == 0
    assert "(2 samples/group, tune: equal budget, paper default first)" in capsys.readouterr().out


def test_one_configuration_with_two_seeds_is_never_stopped_on_ray(tmp_path):
    """The cluster bug of issue 22 item 3: one configuration, seeds [0, 1], ASHA at every epoch: per-seed
    ASHA stopped the seed that reached the rung second when it was worse; per configuration nothing stops."""
    data = study_dict(
        tmp_path,
        "one_config",
        seeds=[0, 1],
        train={"epochs": 3},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path)]) == 0
    trials = read_trials(str(tmp_path / "results" / "one_config"))
    assert sorted(trials["seed"]) == [0, 1]
    assert (trials["status"] == "completed").all() and (trials["epochs_done"] == 3).all()
    assert trials["config_id"].nunique() == 1
