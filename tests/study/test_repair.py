"""Corrupt or missing results are detected, named with what to do, and repaired from what remains (issue 24,
item 3): a truncated Parquet file is an error naming it (no ArrowInvalid traceback) in every reader and CLI;
`study repair` sets it aside and rebuilds lost trial rows from the epoch rows; `study status` warns about rows
that are gone."""

from __future__ import annotations

import glob
import shutil

import pytest

from results_store.reader import CorruptResultsError, read_epochs, read_trials
from results_store.writer import ResultsWriter
from study.cli import main as study_main
from study.repair import health, repair_study
from tests.study.test_folder_safety import TEXT, _write_study


def _truncate(path: str) -> None:
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


@pytest.fixture
def study_folder(tmp_path):
    _study, location = _write_study(tmp_path, ["completed", "completed", "completed", "failed"])
    return tmp_path, location


def test_a_truncated_file_is_an_error_naming_it_and_what_to_do(study_folder, capsys):
    _storage, location = study_folder
    victim = sorted(glob.glob(f"{location}/epochs/**/*.parquet", recursive=True))[0]
    _truncate(victim)
    with pytest.raises(CorruptResultsError, match="1 unreadable Parquet file") as info:
        read_epochs(location)
    assert victim in str(info.value) and f"study repair {location}" in str(info.value)
    assert info.value.files.keys() == {victim}
    for argv in (["status", location], ["resume", location]):
        assert study_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: 1 unreadable Parquet file") and victim in err
    from analysis.cli import main as analysis_main

    # a table that reads the epoch rows (the last-k protocol) names the file too; the best-val leaderboard
    # reads only the (intact) trial rows
    assert analysis_main(["leaderboard", location, "--selection", "last_k"]) == 2
    assert "unreadable Parquet file" in capsys.readouterr().err


def test_repair_sets_aside_the_bad_file_and_rebuilds_lost_trial_rows(study_folder, capsys):
    _storage, location = study_folder
    victim = sorted(glob.glob(f"{location}/epochs/**/*.parquet", recursive=True))[0]
    _truncate(victim)
    shutil.rmtree(f"{location}/trials")  # every trial row gone; 7 epoch rows remain readable
    assert study_main(["repair", location]) == 0
    out = capsys.readouterr().out
    assert "set aside 1 unreadable file(s)" in out and "rebuilt the trial row of 4 trial(s)" in out
    assert glob.glob(f"{location}/quarantine/*/epochs/**/*.parquet", recursive=True)  # kept, not deleted
    epochs, trials = read_epochs(location), read_trials(location)
    assert len(epochs) == 7 and len(trials) == 4
    by_id = trials.set_index("trial_id")
    # a trial whose two epochs remain reached train.epochs: completed, its best epoch recomputed
    assert by_id.loc["si_0", "status"] == "completed" and by_id.loc["si_0", "best_epoch"] == 1
    assert by_id.loc["si_0", "best_val_delta_p"] == pytest.approx(-9.0)
    # the one that lost an epoch: failed with the reason, so `study resume --retry-errored` reruns it
    lost = by_id[by_id["epochs_done"] == 1]
    assert len(lost) == 1 and lost["status"].iloc[0] == "failed"
    assert "rebuilt by study repair" in lost["error"].iloc[0]
    assert health(location) == []


def test_missing_rows_are_said_by_status_and_resume(study_folder, capsys):
    _storage, location = study_folder
    shutil.rmtree(f"{location}/epochs")
    problems = health(location)
    assert len(problems) == 1 and "4 trial(s) lost epoch rows" in problems[0]
    assert study_main(["status", location]) == 0
    assert "warning: 4 trial(s) lost epoch rows" in capsys.readouterr().out
    # the study is finished (every trial ended): resume says so, and says what is missing
    from study.runner import find_study, run_study

    printed: list[str] = []
    study, _ = find_study(location)
    run_study(study, resume=True, printer=printed.append)
    assert any("is finished" in line for line in printed)
    assert any(line.startswith("warning: 4 trial(s) lost epoch rows") for line in printed)


def test_trials_deleted_but_epochs_kept_is_said_and_rebuilt(study_folder, capsys):
    _storage, location = study_folder
    shutil.rmtree(f"{location}/trials")
    assert "4 trial(s) have epoch rows but no trial row" in health(location)[0]
    report = repair_study(location, max_epochs=2)
    assert sorted(report.rebuilt) == ["ew_0", "ew_1", "si_0", "si_1"]
    assert set(read_trials(location)["status"]) == {"completed"}
    assert ResultsWriter  # the writer the repair uses is the study's own (no separate format)
    assert TEXT.startswith("name: safe")
