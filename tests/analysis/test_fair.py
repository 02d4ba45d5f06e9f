"""The fair comparison (analysis.fair, analysis.bootstrap): every number recomputed here from the Parquet
rows, the bootstrap against cases with a known answer, Kendall's τ by hand, the CLI and the report section."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.bootstrap import beat_probability, kendall_tau, rank_distribution, resamples
from analysis.cli import main
from analysis.fair import fair_comparison, fair_table
from analysis.load import load_study
from analysis.report import render_html, write_report
from results_store.reader import read_epochs, read_trials
from results_store.selection import protocol
from tests.analysis.fair_fixture import DATASET, write_fair_study


@pytest.fixture(scope="module")
def fair_path(tmp_path_factory) -> str:
    return write_fair_study(str(tmp_path_factory.mktemp("fair")))


# -- the expected numbers, from the Parquet rows only ------------------------------------------------------
def _trial_values(path: str, name: str, k: int) -> pd.DataFrame:
    """Per trial: method, config_id, paper_default, seed, val, dp, dm under the protocol, by hand."""
    trials, epochs = read_trials(path), read_epochs(path)
    out = []
    for _, t in trials.iterrows():
        if name == "best_val":
            val, dp, dm = t["best_val_delta_p"], t["test_delta_p"], t["test_delta_m"]
        else:
            last = epochs[epochs["trial_id"] == t["trial_id"]].sort_values("epoch").iloc[-k:]
            val, dp, dm = last["val_delta_p"].mean(), last["test_delta_p"].mean(), last["test_delta_m"].mean()
        out.append((t["method"], t["config_id"], bool(t["paper_default"]), int(t["seed"]), val, dp, dm))
    return pd.DataFrame(out, columns=["method", "cid", "default", "seed", "val", "dp", "dm"])


def _t(values) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return v.mean(), v.mean() - half, v.mean() + half


def _p_beat(a: dict, b: dict) -> float:
    seeds = sorted(a)
    wins = [
        np.mean([a[seeds[i]] - b[seeds[i]] for i in draw]) > 0
        for draw in itertools.product(range(len(seeds)), repeat=len(seeds))
    ]
    return float(np.mean(wins))


def _expected(path: str, name: str, k: int) -> dict:
    rows = _trial_values(path, name, k)
    out: dict = {"tuned": {}, "default": {}}
    for method, part in rows.groupby("method"):
        best = part.groupby("cid")["val"].mean().idxmax()
        out["tuned"][method] = part[part["cid"] == best].set_index("seed")
        if part["default"].any():
            out["default"][method] = part[part["default"]].set_index("seed")
    trials = read_trials(path)
    seconds = (trials["ended_at"] - trials["started_at"]).dt.total_seconds()
    out["hours"] = (seconds * trials["cpus"].fillna(1.0) / 3600).groupby(trials["method"]).sum().to_dict()
    return out


@pytest.mark.parametrize("name,k", [("best_val", 10), ("last_k", 3)])
def test_every_number_of_the_fair_table(fair_path, name, k):
    exp = _expected(fair_path, name, k)
    result = fair_comparison(load_study(fair_path, selection=protocol(name, k)), DATASET, n_boot=10_000)
    table = fair_table(result)
    tuned_means = {m: part["dp"].mean() for m, part in exp["tuned"].items()}
    default_means = {m: part["dp"].mean() for m, part in exp["default"].items()}
    for method, part in exp["tuned"].items():
        r = result.method(method)
        for column, got in (("dp", r.tuned_dp), ("dm", r.tuned_dm)):
            mean, low, high = _t(part[column])
            assert (got.mean, got.low, got.high) == pytest.approx((mean, low, high))
        assert table.cell(method, "dp_tuned").mean == pytest.approx(tuned_means[method])
        assert table.cell(method, "dp_tuned_ci").text == f"[{_t(part['dp'])[1]:.2f}, {_t(part['dp'])[2]:.2f}]"
        if method in exp["default"]:
            d = exp["default"][method]
            assert (r.default_dp.mean, r.default_dp.low) == pytest.approx(_t(d["dp"])[:2])
            assert r.default_dm.high == pytest.approx(_t(d["dm"])[2])
            assert r.default_rank == 1 + sum(v > default_means[method] for v in default_means.values())
        else:  # famo has no paper-default rows
            assert math.isnan(r.default_dp.mean) and r.default_rank is None
            assert table.cell(method, "dp_default_ci").text == "—"
            assert table.cell(method, "rank_default").text == "—"
        assert r.tuned_rank == 1 + sum(v > tuned_means[method] for v in tuned_means.values())
        assert r.hours == pytest.approx(exp["hours"][method])
        for kind, base in (("EW", "ew"), ("static", "static")):
            if method == base:
                assert table.cell(method, f"p_{base}").text == "—"
                continue
            p = _p_beat(part["dp"].to_dict(), exp["tuned"][base]["dp"].to_dict())
            assert r.vs[kind].p_beat == pytest.approx(p)
            assert table.cell(method, f"p_{base}").text == f"{100 * p:.0f} %"
    # P(#1): all 27 paired resamples of the 3 seeds, the method with the highest mean
    methods = sorted(exp["tuned"])
    firsts = {m: 0 for m in methods}
    for draw in itertools.product(range(3), repeat=3):
        means = {m: np.mean([exp["tuned"][m]["dp"].loc[s] for s in draw]) for m in methods}
        top = max(means.values())
        for m in methods:
            firsts[m] += means[m] == top
    for m in methods:
        assert result.method(m).p_first == pytest.approx(firsts[m] / 27)
    both = sorted(exp["default"])
    tau = stats.kendalltau([default_means[m] for m in both], [tuned_means[m] for m in both]).statistic
    assert result.tau == pytest.approx(tau)
    assert f"{tau:.2f}" in next(n for n in table.notes if n.startswith("Kendall"))
    assert [m.method for m in result.methods] == sorted(methods, key=lambda m: -tuned_means[m])


def test_db_mtl_beats_tuned_ew_on_every_seed(fair_path):
    result = fair_comparison(load_study(fair_path), DATASET)
    db = result.method("db_mtl")
    assert db.vs["EW"].p_beat == 1.0 and db.vs["EW"].p_worse == 0.0
    notes = fair_table(result).notes
    assert any(n.startswith("verdict — db_mtl: beats tuned EW in 100 % of resamples") for n in notes)


# -- known answers ---------------------------------------------------------------------------------------
def test_bootstrap_known_answers():
    better = beat_probability({0: 2.0, 1: 3.0, 2: 5.0}, {0: 1.0, 1: 2.9, 2: 0.0})
    assert (better.p_beat, better.p_worse) == (1.0, 0.0)
    same = beat_probability({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert (same.p_beat, same.p_worse) == (0.0, 0.0)  # ties count as neither
    # two seeds, differences +1 and −3: draws (0,0) +1, (0,1) and (1,0) −1, (1,1) −3 → 1/4 wins, 3/4 losses
    two = beat_probability({0: 1.0, 1: 0.0}, {0: 0.0, 1: 3.0})
    assert (two.p_beat, two.p_worse) == (0.25, 0.75) and "exact" in two.how
    # 7 seeds: 7^7 > 10000 draws, Monte Carlo; a method better on every seed still wins every draw
    mc = beat_probability({s: s + 1.0 for s in range(7)}, {s: float(s) for s in range(7)}, n_boot=500, seed=3)
    assert mc.p_beat == 1.0 and "500 random" in mc.how
    # unpaired seeds are left out; fewer than 2 shared seeds cannot be resampled
    assert beat_probability({0: 1.0, 1: 2.0, 5: 9.0}, {0: 0.0, 1: 1.0}).seeds == (0, 1)
    with pytest.raises(ValueError, match="2 shared seeds"):
        beat_probability({0: 1.0}, {0: 0.0, 1: 1.0})


def test_exact_resamples_and_rank_distribution():
    draws = resamples(3, 27)
    assert draws.exact and len(draws.index) == 27 and len({tuple(r) for r in draws.index}) == 27
    assert not resamples(3, 26).exact
    ranks = rank_distribution({"a": {0: 3.0, 1: 3.0}, "b": {0: 2.0, 1: 4.0}, "c": {0: 0.0, 1: 0.0}})
    # draws (0,0): a 3 > b 2; (0,1),(1,0): a 3 = b 3 (tie: both rank 1); (1,1): b 4 > a 3
    assert ranks.fractions["a"] == [0.75, 0.25, 0.0]
    assert ranks.fractions["b"] == [0.75, 0.25, 0.0]
    assert ranks.fractions["c"] == [0.0, 0.0, 1.0]


def test_kendall_tau_on_hand_made_rankings():
    assert kendall_tau([1, 2, 3, 4], [2, 1, 3, 4]) == pytest.approx(4 / 6)  # one swapped pair of six
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    x, y = [1, 1, 2, 3, 5], [2, 1, 1, 3, 4]  # ties: τ-b, as scipy's default
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert math.isnan(kendall_tau([1.0], [2.0]))


# -- old studies, CLI, report ------------------------------------------------------------------------------
def test_a_study_without_the_new_columns_or_static(study_path, capsys):
    """The older fixture: no paper_default/config_id/cpus/gpus, no static baseline."""
    assert main(["fair", study_path, "--dataset", "synthetic", "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "no tuned static baseline (static) in the study on synthetic" in out
    assert "no trial is marked paper_default" in out
    assert "1 CPU assumed" in out
    result = fair_comparison(load_study(study_path), "synthetic", n_boot=200)
    assert all(math.isnan(m.default_dp.mean) for m in result.methods)
    assert result.method("db_mtl").vs["static"] == "no tuned static in the study"


@pytest.mark.parametrize("args,caption", [([], "selection best_val"), (["--selection", "last_k"], "k = 10")])
@pytest.mark.parametrize("fmt", ["text", "md", "latex", "html"])
def test_cli_fair_prints_the_caption(fair_path, capsys, args, caption, fmt):
    assert main(["fair", fair_path, "--format", fmt, "--bootstrap", "300", *args]) == 0
    out = capsys.readouterr().out.replace("\\_", "_")  # LaTeX escapes the underscore
    assert "Fair comparison" in out and caption in out
    assert "Verdicts" in out and "95" in out


def test_report_has_the_fair_section(fair_path):
    from analysis.fair import fair_all
    from analysis.report import render_markdown

    study = load_study(fair_path, selection=protocol("last_k", 2))
    fair = (fair_all(study, 200), [])
    for text in (
        render_html(study, [], n_boot=200, fair=fair),
        render_markdown(study, [], n_boot=200, fair=fair),
    ):
        assert "Fair comparison — paper defaults vs tuned" in text
        assert (
            "Fair comparison — fairsyn (paper defaults vs tuned on validation; selection last_k, k = 2)"
            in text
        )
        assert "verdict — db_mtl: beats tuned EW" in text


@pytest.mark.slow
def test_written_report_has_the_fair_figures(fair_path, tmp_path):
    md = write_report(fair_path, tmp_path / "r.md", n_boot=200, figures=[], selection=protocol("last_k", 2))
    text = md.read_text()
    assert "Fair comparison — fairsyn" in text and "verdict — db_mtl: beats tuned EW" in text
    assert "Paper defaults → tuned" in text and "Rank distribution over bootstrap resamples" in text
    assert text.count("data:image/png;base64,") == 2  # the two fair figures, embedded


def test_device_hours_count_the_time_each_trial_ran(study_path):
    """Σ wall_time (a running seed: its wall time so far), not ended_at − started_at, which would also count
    the waits between attempts (a seed paused at an ASHA rung)."""
    trials = read_trials(study_path)
    mine = trials[(trials["dataset"] == "toy_cls") & (trials["method"] == "db_mtl")]
    assert mine["wall_time"].notna().all() and mine["ended_at"].isna().any()
    expected = mine["wall_time"].sum()
    result = fair_comparison(load_study(study_path), "toy_cls", n_boot=100)
    assert result.method("db_mtl").hours == pytest.approx(expected / 3600)  # 1 CPU assumed: no cpus column
    assert "left out of the rank distribution (fewer than 2 seeds): igbv1" in result.notes
