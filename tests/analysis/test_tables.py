"""Leaderboard (DB-MTL Tables 1-4), ablation (Table 5), Δm + T (IGB) against hand computation."""

from __future__ import annotations

import math
import statistics

import pytest

from analysis.metrics import higher_is_better, metric_columns
from analysis.render import render
from analysis.table_model import Cell
from analysis.tables import ablation_table, delta_m_table, leaderboard
from results_store.selection import select
from tests.analysis.fixture_study import delta_p, trials_of


def mean_std(values):
    """Hand computation: mean and *sample* std (ddof=1), the documented convention."""
    return statistics.mean(values), statistics.stdev(values)


def test_metric_directions_and_columns(study):
    assert higher_is_better("mae") is False and higher_is_better("abs_err") is False
    assert higher_is_better("mean", "normal") is False and higher_is_better("median") is False
    assert higher_is_better("miou") is True and higher_is_better("pix_acc") is True
    assert higher_is_better("within_11_25") is True and higher_is_better("acc") is True
    assert higher_is_better("test_delta_p") is True and higher_is_better("test_delta_m") is False
    assert higher_is_better("weird") is None and higher_is_better("weird", overrides={"weird": True}) is True
    synthetic = study.trials[study.trials["dataset"] == "synthetic"]
    assert metric_columns(synthetic) == [("t0", "mae"), ("t1", "mae")]


def test_selection_uses_mean_validation_dp_and_skips_stopped_and_failed(study):
    sel = select(study.trials, "synthetic", "db_mtl")
    # C1 has the best mean val Δp (5) among completed configs; C2 is best on *test* (50) and must not win;
    # the stopped (val 10) and failed (val 20) trials are not eligible.
    assert sel.config == "alpha_strategy=max, beta=0.5, beta_sigma=0"
    assert sel.seeds == [0, 1, 2] and not sel.fallback_stopped
    assert sel.trials["selected_val"].iloc[0] == pytest.approx(5.0)
    only_stopped = select(study.trials, "toy_cls", "igbv1")
    assert only_stopped.fallback_stopped and only_stopped.seeds == [0]
    assert select(study.trials, "toy_cls", "rlw") is None  # failed only


def test_leaderboard_numbers_against_hand_computation(study):
    table = leaderboard(study, "synthetic")
    expected = {
        "ew": trials_of("synthetic", "ew"),
        "si": trials_of("synthetic", "si"),
        "max_norm": trials_of("synthetic", "max_norm"),
        "db_mtl": trials_of("synthetic", "db_mtl", "c1"),
    }
    for method, specs in expected.items():
        for i, column in enumerate(["test/t0/mae", "test/t1/mae"]):
            m, s = mean_std([sp.test[i] for sp in specs])
            cell = table.cell(method, column)
            assert cell.mean == pytest.approx(m) and cell.std == pytest.approx(s) and cell.n == 3
        m, s = mean_std([delta_p("synthetic", sp.test) for sp in specs])
        assert table.cell(method, "test_delta_p").mean == pytest.approx(m)
        assert table.cell(method, "test_delta_p").std == pytest.approx(s)
    # literal values, computed by hand in fixture_study.py's comments
    assert table.cell("ew", "test_delta_p").mean == pytest.approx(-5.0)
    assert table.cell("ew", "test_delta_p").std == pytest.approx(5.0)
    assert table.cell("db_mtl", "test_delta_p").mean == pytest.approx(35 / 3)
    assert table.cell("db_mtl", "test/t0/mae").mean == pytest.approx(0.85)
    assert table.cell("db_mtl", "test/t0/mae").std == pytest.approx(0.05)
    assert table.cell("max_norm", "test_delta_p").std == pytest.approx(math.sqrt(25 / 3))


def test_leaderboard_ranks_and_marks(study):
    table = leaderboard(study, "synthetic")
    assert [(r.rank, r.label) for r in table.rows] == [(1, "db_mtl"), (2, "max_norm"), (3, "si"), (4, "ew")]
    marks = {(table.rows[i].label, key): place for (i, key), place in table.marks().items()}
    # lower mae is better: t0 0.850 (db_mtl) < 0.950 (si) < 0.967 (max_norm) < 1.0 (ew)
    assert marks[("db_mtl", "test/t0/mae")] == 1 and marks[("si", "test/t0/mae")] == 2
    assert ("max_norm", "test/t0/mae") not in marks
    assert marks[("db_mtl", "test/t1/mae")] == 1 and marks[("max_norm", "test/t1/mae")] == 2
    assert marks[("db_mtl", "test_delta_p")] == 1 and marks[("max_norm", "test_delta_p")] == 2
    frame = table.to_frame()
    assert list(frame["method"]) == ["db_mtl", "max_norm", "si", "ew"]
    assert frame.loc[0, "test/t0/mae"] == pytest.approx(0.85)


def test_leaderboard_running_stopped_failed_and_higher_is_better(study):
    table = leaderboard(study, "toy_cls")
    rows = {r.label: r for r in table.rows}
    assert rows["db_mtl"].flags == "†" and rows["igbv1"].flags == "‡" and "rlw" not in rows
    assert any("rlw" in n for n in table.notes)
    # accuracy: higher is better; db_mtl (86) best, igbv1 and ew tie at 82.00 -> both second
    marks = {(table.rows[i].label, key): p for (i, key), p in table.marks().items()}
    assert marks[("db_mtl", "test/a/acc")] == 1
    assert marks[("igbv1", "test/a/acc")] == 2 and marks[("ew", "test/a/acc")] == 2
    assert table.cell("db_mtl", "test_delta_p").mean == pytest.approx(7.5)  # (10 + 5) / 2, one running
    assert table.cell("igbv1", "test_delta_p").n == 1 and math.isnan(table.cell("igbv1", "test_delta_p").std)


def test_renderers(study):
    table = leaderboard(study, "synthetic")
    text = render(table, "text")
    assert "0.850 ± 0.050 **" in text and "0.950 ± 0.050 *" in text and "t0 mae ↓" in text
    md = render(table, "md")
    assert "| 1 | db_mtl | 3 | **0.850 ± 0.050** | **1.833 ± 0.058** | **11.67 ± 2.89** |" in md
    assert "<u>0.950 ± 0.050</u>" in md and "<u>3.33 ± 2.89</u>" in md
    latex = render(table, "latex")
    assert r"\textbf{0.850 $\pm$ 0.050}" in latex and r"\underline{0.950 $\pm$ 0.050}" in latex
    assert r"mae $\downarrow$" in latex and r"$\Delta$p $\uparrow$" in latex and r"db\_mtl" in latex
    assert r"\multicolumn{1}{c}{t0}" in latex and latex.count(r"\begin{tabular}") == 1
    html = render(table, "html")
    assert "<b>0.850 ± 0.050</b>" in html and "<u>0.950 ± 0.050</u>" in html
    toy = render(leaderboard(study, "toy_cls"), "latex")
    assert r"db\_mtl$^\dagger$" in toy and r"a acc" not in toy and r"acc $\uparrow$" in toy
    with pytest.raises(ValueError, match="unknown table format"):
        render(table, "xlsx")


def test_cell_formatting_of_single_values():
    from analysis.table_model import format_cell

    assert format_cell(Cell.of([2.0]), 2) == "2.00"
    assert format_cell(Cell.of([]), 2) == "—"
    assert format_cell(Cell.of([1.0, 3.0, math.nan]), 1) == "2.0 ± 1.4"


def test_ablation_table(study):
    table = ablation_table(study)
    assert [r.label for r in table.rows] == ["ew", "si", "max_norm", "db_mtl"]
    assert table.cell("si", "log").text == "✓" and table.cell("si", "max_norm").text == "✗"
    assert table.cell("db_mtl", "delta_p/synthetic").mean == pytest.approx(35 / 3)
    assert table.cell("db_mtl", "delta_p/toy_cls").mean == pytest.approx(7.5)
    assert table.cell("ew", "delta_p/toy_cls").mean == pytest.approx(1.25)
    assert math.isnan(table.cell("si", "delta_p/toy_cls").mean)  # si absent on toy_cls
    assert "—" in render(table, "text")


def test_delta_m_and_relative_time(study):
    table = delta_m_table(study, "synthetic")
    # Δm of the fixture is −Δp per trial; lower is better, so db_mtl ranks first
    assert table.rows[0].label == "db_mtl"
    assert table.cell("db_mtl", "test_delta_m").mean == pytest.approx(-35 / 3)
    # time per epoch: ew 0.9/1.0/1.1 s -> 1.0; db_mtl 2.7/3.0/3.3 s -> 3.0; T = 3.0
    assert table.cell("ew", "time_epoch").mean == pytest.approx(1.0)
    assert table.cell("db_mtl", "T").mean == pytest.approx(3.0)
    assert table.cell("max_norm", "T").mean == pytest.approx(2.0)
    assert table.cell("ew", "T").mean == pytest.approx(1.0)
    toy = delta_m_table(study, "toy_cls")
    assert toy.cell("db_mtl", "T").mean == pytest.approx(2.0)  # 20 s / 10 s, running trial included


def test_relative_time_without_ew_is_nan_with_a_note(study):
    from analysis.load import Study

    trials = study.trials[study.trials["method"] != "ew"]
    table = delta_m_table(Study(study.path, trials, study.epochs), "synthetic")
    assert math.isnan(table.cell("db_mtl", "T").mean)
    assert any("EW is absent" in n for n in table.notes)
    assert "—" in render(table, "text")
