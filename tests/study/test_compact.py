"""``study compact``: every ended trial of a study folded into one file per trial
(:func:`results_store.compaction.compact_study`), running ones skipped; the command finds a study by path or
name, and says when there is none."""

from __future__ import annotations

from results_store.columns import COMPACTED_SUFFIX
from results_store.compaction import compact_study
from results_store.writer import ResultsWriter
from study.cli import main as study_main
from tests.results.test_compaction import STUDY, files, info, record, seen, write


def test_compact_study_skips_running_trials_whose_rows_stay_visible(tmp_path, capsys):
    w = ResultsWriter(str(tmp_path), STUDY)
    write(w, "a", range(3), "completed")
    write(w, "b", range(2), "running")
    t = info("c")
    w.write_trial(t, status="failed", error="bad model argument", max_epochs=3)  # failed before any epoch
    report = compact_study(str(tmp_path / STUDY))
    assert (report.compacted, report.running, report.already) == (["a"], ["b"], ["c"])
    assert files(tmp_path) == ["a" + COMPACTED_SUFFIX, "b_e00000.parquet", "b_e00001.parquet"]
    assert seen(tmp_path, "b") == {0: 0.0, 1: 1.0}
    w.write_epoch(info("b"), record(2))  # the running trial goes on writing
    assert seen(tmp_path, "b") == {0: 0.0, 1: 1.0, 2: 2.0}
    assert seen(tmp_path, "a") == {0: 0.0, 1: 1.0, 2: 2.0}
    # the command: the same, then nothing left to do
    assert study_main(["compact", str(tmp_path / STUDY)]) == 0
    assert "compacted 0 trials" in capsys.readouterr().out
    write(w, "b", range(3), "stopped")  # it ends (stopped by the scheduler)
    assert study_main(["compact", STUDY, "--storage", str(tmp_path)]) == 0
    assert "compacted 1 trials (3 epoch files" in capsys.readouterr().out
    before = files(tmp_path)
    assert study_main(["compact", str(tmp_path / STUDY)]) == 0
    assert files(tmp_path) == before == ["a" + COMPACTED_SUFFIX, "b" + COMPACTED_SUFFIX]
    assert study_main(["compact", str(tmp_path / "nothing")]) == 2
    assert "no study results" in capsys.readouterr().err
