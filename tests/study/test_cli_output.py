"""What the `study` commands print (issue 13): `study ls` counts as integers, no NaT, Δp rounded; the
summary says what Δp is measured against."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import pandas as pd

from study import cli
from study.cli import main, reference_lines


def test_ls_prints_integer_counts_rounded_delta_p_and_no_nat(monkeypatch, capsys):
    rows = [
        {
            "study": "quick",
            "trials": 12,
            "stopped": 8,
            "completed": 4,
            "best val Δp": -45.373361,
            "updated": pd.Timestamp("2026-12-02 18:48:17.046845+00:00"),
        },
        {"study": "crashed", "trials": 3, "failed": 3, "best val Δp": math.nan, "updated": pd.NaT},
        {"study": "empty", "trials": 0},
    ]
    monkeypatch.setattr("study.runner.list_studies", lambda storage: rows)
    assert main(["ls", "--storage", "anywhere"]) == 0
    out = capsys.readouterr().out
    assert "NaT" not in out and "nan" not in out.lower() and ".0 " not in out + " "
    assert "-45.37%" in out and "-45.373361" not in out and "2026-12-02 18:48:17 UTC" in out
    # columns: study trials stopped completed best-val-Δp updated failed (blank Δp and time for 'crashed')
    assert re.search(r"^ *crashed +3 +0 +0 +3 *$", out, re.M), out
    assert re.search(r"^ *quick +12 +8 +4 +-45.37% +2026-12-02 18:48:17 UTC +0 *$", out, re.M), out


def test_the_summary_says_what_delta_p_is_measured_against(monkeypatch):
    trials = pd.DataFrame({"dataset": ["synthetic"], "status": ["completed"], "wall_time": [1.0],
                           "time_total": [1.0]})  # fmt: skip
    monkeypatch.setattr("study.runner.load_trials", lambda location: trials)
    monkeypatch.setattr("study.runner.describe_best", lambda t: ["best configuration on synthetic: ..."])
    report = SimpleNamespace(study="s", location="/x", interrupted=False, wall_time=1.0, ray_start_time=0.1,
                             epochs_path="/x/epochs", trials_path="/x/trials")  # fmt: skip
    printed: list[str] = []
    assert cli._print_report(report, printer=printed.append) == 0
    assert any("Δp on synthetic" in line and "Bayes-optimal" in line for line in printed), printed
    study = SimpleNamespace(train=SimpleNamespace(reference={"t0": {"mae": 1.0}}))
    assert "the study's train.reference" in reference_lines(study, ["synthetic"])[0]


def test_a_study_whose_every_trial_failed_exits_non_zero(monkeypatch):
    trials = pd.DataFrame({"dataset": ["synthetic"] * 2, "status": ["failed"] * 2, "wall_time": [1.0, 1.0],
                           "time_total": [1.0, 1.0]})  # fmt: skip
    monkeypatch.setattr("study.runner.load_trials", lambda location: trials)
    monkeypatch.setattr("study.runner.describe_best", lambda t: [])
    report = SimpleNamespace(study="s", location="/x", interrupted=False, wall_time=1.0, ray_start_time=0.1,
                             epochs_path="/x/epochs", trials_path="/x/trials")  # fmt: skip
    printed: list[str] = []
    assert cli._print_report(report, printer=printed.append) == 1
    assert any("every trial failed (2)" in line for line in printed), printed
    trials.loc[0, "status"] = "completed"  # one trial trained: a success
    assert cli._print_report(report, printer=printed.append) == 0


def test_status_rounds_delta_p(monkeypatch, capsys):
    study = SimpleNamespace(
        name="s",
        groups=lambda: [1],
        seeds=[0],
        search=SimpleNamespace(algorithm="optuna", samples=2),
        scheduler=SimpleNamespace(type="asha"),
        train=SimpleNamespace(epochs=3, reference=None),
    )
    trials = pd.DataFrame({"dataset": ["synthetic"], "status": ["completed"], "error": [None]})
    table = pd.DataFrame({"completed": [1], "epochs": [3], "best val Δp": [-170.647339]}, index=["ew"])
    monkeypatch.setattr("study.runner.find_study", lambda name, storage, **kw: (study, "/x/s"))
    monkeypatch.setattr("study.runner.load_trials", lambda location: trials)
    monkeypatch.setattr("study.runner.status_table", lambda t: table)
    monkeypatch.setattr("study.runner.tune_statuses", lambda s: {})
    monkeypatch.setattr("study.runner.describe_best", lambda t: [])
    assert main(["status", "s"]) == 0
    out = capsys.readouterr().out
    assert "-170.65%" in out and "-170.647339" not in out


def test_status_reads_a_saved_study_without_torch_ray_or_cvxpy(tmp_path):
    """`study status` is a read-only look at Parquet and Tune's JSON: it must not pay torch's, cvxpy's or
    Ray's import time (several seconds on a loaded 2-core machine; issue 11's <= 2 s goal)."""
    import subprocess
    import sys

    from study.schema import parse_study

    text = (
        "name: s\ndatasets: [{name: qm9, kwargs: {subset: 64}}]\nmethods: [ew, db-mtl]\nseeds: [0]\n"
        "train: {epochs: 1}\n"
    )
    study = parse_study(text, storage=str(tmp_path))
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.yaml").write_text(study.to_yaml())
    code = (
        "import sys\nfrom study.cli import main\n"
        f"assert main(['status', 's', '--storage', {str(tmp_path)!r}]) == 0\n"
        "heavy = sorted(m for m in ('torch', 'ray', 'cvxpy', 'optuna') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "study 's'" in out.stdout and "no trial has written results yet" in out.stdout
    assert "the reference table 'qm9': DB-MTL, Table 3" not in out.stdout  # no trials: no best line
    assert "db_mtl" in study.to_yaml()  # the saved study holds canonical names


def test_reference_lines_name_the_published_table(tmp_path):
    study = SimpleNamespace(train=SimpleNamespace(reference=None, reference_table=None, architecture="hps"))
    (line,) = reference_lines(study, ["qm9"])
    assert "reference table 'qm9'" in line and "DB-MTL, Table 3" in line
    study.train.reference_table = "qm9_igb"
    assert "IGB" in reference_lines(study, ["qm9"])[0]


def test_the_summary_accounts_for_the_time_before_the_first_trial(monkeypatch):
    import datetime as dt

    t0 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)
    starts = [pd.Timestamp(t0) + pd.Timedelta(seconds=s) for s in (21.5, 30)]
    trials = pd.DataFrame({"dataset": ["synthetic"] * 2, "status": ["completed"] * 2, "wall_time": [1.0, 1.0],
                           "time_total": [1.0, 1.0], "started_at": starts})  # fmt: skip
    monkeypatch.setattr("study.runner.load_trials", lambda location: trials)
    monkeypatch.setattr("study.runner.describe_best", lambda t: [])
    report = SimpleNamespace(study="s", location="/x", interrupted=False, wall_time=60.0, ray_start_time=6.0,
                             epochs_path="/x/epochs", trials_path="/x/trials", started_at=t0)  # fmt: skip
    printed: list[str] = []
    cli._print_report(report, printer=printed.append)
    expected = "the first trial started 21.5s after the study did (Ray start-up 6.0s"
    assert any(expected in line for line in printed)


def test_rays_own_trial_failure_tracebacks_stay_off_the_console():
    import logging

    from study.tuner import quiet_ray

    quiet_ray()
    # the study prints one line per failed trial with its error; Ray's ERROR line and traceback are not shown
    assert logging.getLogger("ray.tune.execution.tune_controller").getEffectiveLevel() > logging.ERROR
