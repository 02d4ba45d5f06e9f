"""Issue 14 item 5: DB-MTL Figs. 5 and 6 show every configuration, also those ASHA stopped (marked, with the
epochs they reached), and say which rule picked each plotted point."""

from __future__ import annotations

from analysis.plots.db_mtl import RULE_NOTE, _best_by, _db_mtl_trials, every_config
from results_store.labels import CONFIG
from tests.analysis.fixture_study import specs


def test_every_configuration_is_a_point_stopped_ones_marked_with_their_epochs(study):
    trials = _db_mtl_trials(study)
    synthetic = trials[trials["dataset"] == "synthetic"]
    points = every_config(synthetic, ["hp/beta_sigma", "hp/beta"])
    expected = {s.name for s in specs() if s.dataset == "synthetic" and s.method == "db_mtl"} - {"fail"}
    assert len(points) == len(expected)  # C1-C5 and the stopped one; the failed one never counts
    stopped = points[points["stopped"]]
    assert len(stopped) == 1 and float(stopped["hp/beta"].iloc[0]) == 0.1
    assert int(stopped["epochs"].iloc[0]) == 2  # the epochs it reached before ASHA stopped it
    assert "beta=0.1" in stopped[CONFIG].iloc[0]


def test_the_rule_falls_back_to_stopped_trials_only_where_none_completed(study):
    trials = _db_mtl_trials(study)
    synthetic = trials[trials["dataset"] == "synthetic"]
    picked = _best_by(synthetic, ["hp/beta_sigma", "hp/beta"])
    by_beta = {
        (float(r["hp/beta_sigma"]), float(r["hp/beta"])): bool(r["stopped"]) for _, r in picked.iterrows()
    }
    assert by_beta[(0.0, 0.1)] is True  # only a stopped trial has beta = 0.1: it is drawn, marked
    assert by_beta[(0.0, 0.5)] is False and by_beta[(0.0, 0.9)] is False
    # the stopped trial's validation Δp beats every completed one, yet it never displaces a completed pick
    assert not picked[(picked["hp/beta"] == 0.5) & (picked["hp/beta_sigma"] == 0.0)]["stopped"].any()


def test_figures_carry_the_rule(figures):
    by_name = {f.name: f for f in figures}
    assert by_name["fig5_beta"].paths and by_name["fig6_alpha"].paths
    assert "selection rule" in RULE_NOTE and "stopped by ASHA" in RULE_NOTE
