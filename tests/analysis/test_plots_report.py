"""Figures (DB-MTL Figs. 5-10, ASHA's view, cost Pareto), the report, the CLI and the import boundary."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from analysis.cli import main
from analysis.load import load_study
from analysis.plots import all_plots
from analysis.plots.cost import cost_points, pareto_front
from analysis.report import write_report
from analysis.tables import delta_m_table, leaderboard
from results_store.identity import TrialInfo
from results_store.writer import ResultsWriter

EXPECTED_FILES = {
    "fig5_beta",
    "fig6_alpha",
    "fig7_time",
    "fig8_grad_norm_synthetic",
    "fig8_grad_norm_toy_cls",
    "fig9_train_loss_synthetic",
    "fig9_train_loss_toy_cls",
    "fig10_grad_cos",
    "learning_curves",
    "asha",
    "pareto_cost",
}


def test_every_plot_file_is_produced_and_non_empty(figures):
    assert not [f.note for f in figures if f.note and f.note.startswith("failed")]
    paths = [p for f in figures for p in f.paths]
    assert {p.stem for p in paths} == EXPECTED_FILES
    assert {p.suffix for p in paths} == {".png", ".pdf"} and len(paths) == 2 * len(EXPECTED_FILES)
    for path in paths:
        assert path.stat().st_size > 1000, path
        magic = path.read_bytes()[:4]
        assert magic == (b"\x89PNG" if path.suffix == ".png" else b"%PDF"), path
    notes = {f.name: f.note for f in figures}
    assert "synthetic/ew" in notes["fig8_grad_norm"]  # EW measures no per-task gradients: said, not drawn


def test_pareto_points_and_front(study):
    points = cost_points(study, "synthetic").set_index(["method", "config"])
    ew = points.loc[("ew", "default")]
    assert ew["hours"] == pytest.approx(3 * 3.0 / 3600)  # 3 seeds × (0.9 + 1.0 + 1.1) s
    assert ew["delta_p"] == pytest.approx(-5.0) and ew["n"] == 3
    # the failed trial's config costs hours but has no Δp; the stopped one has both
    assert ("db_mtl", "alpha_strategy=max, beta=0.1, beta_sigma=0.5") not in points.index
    assert points.loc[("db_mtl", "alpha_strategy=max, beta=0.1, beta_sigma=0"), "delta_p"] == pytest.approx(
        27.5
    )
    front = pareto_front(pd.DataFrame({"hours": [1, 2, 3, 0.5], "delta_p": [1.0, 3.0, 2.0, 0.5]}))
    assert list(front["hours"]) == [0.5, 1, 2]


def _minimal_study(root) -> str:
    """A running study with one EW trial that records neither gradients nor times nor hyperparameters."""
    w = ResultsWriter(str(root), "bare")
    info = TrialInfo("bare", "synthetic", "ew", "t_0", seed=0)
    recs = [{"epoch": 0, "val_delta_p": -1.0, "test_delta_p": -2.0, "test/t0/mae": 1.2}]
    w.write_epoch(info, recs[0], device="cpu")
    w.write_trial(info, status="running", records=recs, max_epochs=5)
    return w.root


def test_missing_columns_are_skipped_with_notes(tmp_path):
    study = load_study(_minimal_study(tmp_path))
    figures = {f.name: f for f in all_plots(study, tmp_path / "plots")}
    for name in ("fig5_beta", "fig6_alpha", "fig7_time", "fig8_grad_norm", "fig10_grad_cos"):
        assert not figures[name].paths and figures[name].note.startswith("skipped"), name
    assert figures["asha"].paths and figures["pareto_cost"].paths
    table = delta_m_table(study, "synthetic")  # no test_delta_m and no epoch times were stored
    assert math.isnan(table.cell("ew", "test_delta_m").mean) and math.isnan(table.cell("ew", "T").mean)
    assert any("no epoch times" in n for n in table.notes)
    assert leaderboard(study, "synthetic").cell("ew", "test_delta_p").mean == pytest.approx(-2.0)
    out = write_report(study, tmp_path / "r.html", figures=list(figures.values()))
    text = out.read_text()
    assert "skipped: grad_cos never measured" in text and "no ew trials" not in text
    assert "still running" in text


def test_cli_report_and_plots_end_to_end(tmp_path, capsys):
    path = _minimal_study(tmp_path)
    out = tmp_path / "bare.md"
    assert main(["report", path, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("# Study report — bare") and "data:image/png;base64," in out.read_text()
    assert main(["plots", path, "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed and all((tmp_path / "figs" / p.rsplit("/", 1)[-1]).stat().st_size > 0 for p in printed)


def test_load_errors_on_missing_study(tmp_path):
    with pytest.raises(FileNotFoundError, match="no study results"):
        load_study(str(tmp_path / "nope"))
    assert main(["leaderboard", str(tmp_path / "nope")]) == 2


def test_html_report_is_self_contained(study, figures, tmp_path):
    out = write_report(study, tmp_path / "report.html", n_boot=500, figures=figures)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    images = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(images) == len(EXPECTED_FILES) + 2  # + the fair comparison's two figures (analysis.plots.fair)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(?!data:)', text)  # no external images, scripts or stylesheets
    for needle in (
        "Leaderboard — synthetic",
        "DB-MTL Table 5",
        "relative training time T",
        "<b>11.67 ± 2.89</b>",
    ):
        assert needle in text
    assert "db_mtl − ew = +16.667" in text  # the paired comparison against EW
    assert "Progress" in text and "dataset / method" in text


def test_markdown_report(study, figures, tmp_path):
    out = write_report(study, tmp_path / "report.md", figures=figures, n_boot=200)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Study report — fixture")
    assert "| 1 | db_mtl | 3 | **0.850 ± 0.050** |" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == len(EXPECTED_FILES) + 2  # + the fair comparison's two figures
    assert all(i.startswith("data:image/png;base64,") for i in images)


def test_cli_tables_and_compare(study_path, capsys):
    assert main(["leaderboard", study_path, "--dataset", "synthetic", "--format", "md"]) == 0
    assert "| 1 | db_mtl |" in capsys.readouterr().out
    assert main(["leaderboard", study_path, "--format", "latex"]) == 0
    assert capsys.readouterr().out.count(r"\begin{table}") == 2
    assert main(["ablation", study_path]) == 0 and "max-norm" in capsys.readouterr().out
    assert main(["delta-m", study_path, "--dataset", "toy_cls"]) == 0 and "T" in capsys.readouterr().out
    assert (
        main(
            ["compare", study_path, "--a", "db_mtl", "--b", "ew", "--dataset", "synthetic", "--n-boot", "300"]
        )
        == 0
    )
    assert "+16.667" in capsys.readouterr().out
    assert main(["compare", study_path, "--a", "igbv1", "--b", "ew", "--dataset", "toy_cls"]) == 2
    assert "at least 2 seeds" in capsys.readouterr().err
    assert main(["leaderboard", study_path, "--dataset", "nope"]) == 2


def test_console_script_is_registered():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["analysis"] == "analysis.cli:main"
