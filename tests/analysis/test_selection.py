"""Selection protocols (results_store.selection) as analysis applies them: best_val as stored, last_k
recomputed from the epoch rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.load import load_study
from analysis.tables import ablation_table, delta_m_table, leaderboard
from results_store.reader import read_epochs, read_trials
from results_store.selection import EPOCHS_USED, protocol, select
from tests.analysis.fair_fixture import DATASET, EPOCHS, REF, write_fair_study
from tests.analysis.test_reference import MTL as REF_MTL
from tests.analysis.test_reference import _dp as _ref_dp
from tests.analysis.test_reference import path  # noqa: F401  (the fixture: issue 14's hand-made study)


@pytest.fixture(scope="module")
def fair_path(tmp_path_factory) -> str:
    return write_fair_study(str(tmp_path_factory.mktemp("fair_sel")))


@pytest.fixture(scope="module")
def rows(fair_path):
    return read_trials(fair_path), read_epochs(fair_path)


_BY_TRIAL: dict[int, dict[str, pd.DataFrame]] = {}


def _last_k(epochs: pd.DataFrame, trial_id: str, column: str, k: int) -> float:
    if id(epochs) not in _BY_TRIAL:  # split once per frame
        _BY_TRIAL[id(epochs)] = {t: e.sort_values("epoch") for t, e in epochs.groupby("trial_id")}
    return float(_BY_TRIAL[id(epochs)][trial_id][column].to_numpy()[-k:].mean())


@pytest.mark.parametrize("k", [1, 3, EPOCHS + 7])
def test_last_k_values_are_the_mean_of_the_last_k_epochs(fair_path, rows, k):
    trials, epochs = rows
    study = load_study(fair_path, selection=protocol("last_k", k))
    got = study.trials.set_index("trial_id")
    for trial_id in trials["trial_id"]:
        for column in ("test/t0/mae", "test/t1/mae", "test_delta_p", "test_delta_m", "val/t1/mae"):
            assert got.loc[trial_id, column] == pytest.approx(_last_k(epochs, trial_id, column, k))
        assert got.loc[trial_id, "best_val_delta_p"] == pytest.approx(
            _last_k(epochs, trial_id, "val_delta_p", k)
        )
        assert got.loc[trial_id, EPOCHS_USED] == min(k, EPOCHS)  # fewer epochs than k: all of them


def test_delta_p_of_the_mean_metrics_equals_the_mean_delta_p(rows):
    """Why last_k may average the stored per-epoch Δp: Δp (DB-MTL Eq. 3-4) is affine in the metrics."""
    _, epochs = rows
    for _, mine in epochs.groupby("trial_id"):
        last = mine.sort_values("epoch").tail(3)
        mean_metrics = {t: last[f"test/{t}/mae"].mean() for t in REF}
        by_hand = 100 * np.mean([-(mean_metrics[t] - r) / r for t, r in REF.items()])
        assert by_hand == pytest.approx(last["test_delta_p"].mean(), abs=1e-9)


def test_best_val_keeps_the_stored_rows(fair_path, rows):
    trials, _ = rows
    study = load_study(fair_path, selection=protocol("best_val"))
    got = study.trials.set_index("trial_id").loc[trials["trial_id"]]
    np.testing.assert_allclose(got["test_delta_p"], trials["test_delta_p"])
    np.testing.assert_allclose(got["best_val_delta_p"], trials["best_val_delta_p"])


@pytest.mark.parametrize("name,k", [("best_val", 10), ("last_k", 2)])
def test_configuration_is_chosen_on_validation_under_the_same_protocol(fair_path, rows, name, k):
    trials, epochs = rows
    study = load_study(fair_path, selection=protocol(name, k))
    for method in sorted(set(trials["method"])):
        mine = trials[trials["method"] == method]
        score = {}
        for cid, part in mine.groupby("config_id"):
            if name == "best_val":
                values = part["best_val_delta_p"]
            else:
                values = [_last_k(epochs, t, "val_delta_p", k) for t in part["trial_id"]]
            score[cid] = float(np.mean(values))
        best = max(score, key=score.get)
        chosen = select(study.trials, DATASET, method)
        assert set(chosen.trials["trial_id"]) == set(mine[mine["config_id"] == best]["trial_id"])


def test_every_caption_names_the_protocol(fair_path):
    study = load_study(fair_path, selection=protocol("last_k", 4))
    for table in (leaderboard(study, DATASET), delta_m_table(study, DATASET), ablation_table(study)):
        assert "selection last_k, k = 4" in table.title
        assert any("Selection last_k (k = 4" in n for n in table.notes)
    assert "selection best_val" in leaderboard(load_study(fair_path), DATASET).title


@pytest.mark.parametrize("command", ["leaderboard", "ablation", "delta-m"])
def test_cli_commands_take_the_selection(fair_path, capsys, command):
    assert main([command, fair_path, "--selection", "last_k", "--last-k", "2"]) == 0
    assert "selection last_k, k = 2" in capsys.readouterr().out


def test_cli_compare_names_the_protocol(fair_path, capsys):
    assert main(["compare", fair_path, "--a", "db_mtl", "--b", "ew", "--selection", "last_k"]) == 0
    assert "Selection last_k (k = 10" in capsys.readouterr().out


def test_bad_protocols_are_refused(fair_path, capsys):
    with pytest.raises(ValueError, match="unknown selection"):
        protocol("best_test")
    with pytest.raises(ValueError, match="positive"):
        protocol("last_k", 0)
    assert main(["leaderboard", fair_path, "--selection", "last_k", "--last-k", "0"]) == 2
    assert "positive" in capsys.readouterr().err


def test_last_k_against_the_studys_own_stl_runs_in_either_order(path):  # noqa: F811 (the fixture)
    """Issue 14's hand-made study: ``--reference study`` rescores every epoch, then last_k averages the
    rescored epochs (applying the protocol first and the reference after gives the same)."""
    from analysis.load import with_reference, with_selection

    chosen = protocol("last_k", 2)
    first = load_study(path, "study", chosen)
    second = with_reference(with_selection(load_study(path), chosen), "study")
    for study in (first, second):
        assert study.protocol == chosen
        for (method, seed), epochs in REF_MTL.items():
            row = study.trials[(study.trials["method"] == method) & (study.trials["seed"] == seed)].iloc[0]
            expected_test = np.mean([_ref_dp(test, (3.0, 10.0)) for _, test in epochs[-2:]])
            expected_val = np.mean([_ref_dp(val, (2.0, 5.0)) for val, _ in epochs[-2:]])
            assert row["test_delta_p"] == pytest.approx(expected_test)
            assert row["best_val_delta_p"] == pytest.approx(expected_val)
