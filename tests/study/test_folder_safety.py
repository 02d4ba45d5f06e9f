"""A study folder is self-contained: deleting ``tune/`` of a finished study loses nothing, and a moved or
copied study folder is never resumed into the original (issue 24, items 1-2). Every check here runs before Ray
starts, so the tests need no Ray: a ``ray.init`` would fail them (monkeypatched)."""

from __future__ import annotations

import shutil

import pytest

from results_store.identity import TrialInfo
from results_store.reader import read_epochs, read_trials
from results_store.writer import ResultsWriter
from study import cluster
from study.runner import ORIGIN_FILE, StudyStateError, find_study, run_study
from study.schema import parse_study
from tests.results.test_writer import record

TEXT = """name: safe
datasets: [{name: synthetic, kwargs: {n_train: 64}}]
methods: [ew, si]
seeds: [0, 1]
train: {epochs: 2, batch_size: 32, device: cpu}
search: {algorithm: random, seed: 0, num_samples: 1}
scheduler: {type: none}
"""


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(cluster, "init_ray", refuse)


def _write_study(storage, statuses):
    """The study's folder as a run leaves it: study.yaml, origin.txt, a trial row per (method, seed)."""
    study = parse_study(TEXT, storage=str(storage))
    location = f"{storage}/{study.name}"
    w = ResultsWriter(str(storage), study.name)
    for (method, seed), status in zip([(m, s) for m in ("ew", "si") for s in (0, 1)], statuses):
        info = TrialInfo(study.name, "synthetic", method, f"{method}_{seed}", seed=seed)
        recs = [record(e, -10.0 + e) for e in range(2)]
        for r in recs:
            w.write_epoch(info, r, host="h", device="cpu")
        w.write_trial(info, status=status, records=recs, max_epochs=2, train_config={"seed": seed})
    (storage / study.name / "study.yaml").write_text(study.to_yaml())
    (storage / study.name / ORIGIN_FILE).write_text(location)
    return study, location


def test_a_finished_study_without_its_tune_folder_resumes_as_finished_and_keeps_every_row(tmp_path):
    _study, location = _write_study(tmp_path, ["completed", "stopped", "completed", "failed"])
    before = (len(read_trials(location)), len(read_epochs(location)))
    (tmp_path / "safe" / "tune").mkdir()
    shutil.rmtree(tmp_path / "safe" / "tune")  # "safe to delete once a study is finished"
    printed = []
    again, _where = find_study("safe", str(tmp_path))
    report = run_study(again, resume=True, printer=printed.append)
    assert not report.interrupted and report.groups["synthetic/ew"]["trials"] == 2
    assert any("is finished" in line for line in printed)
    assert (len(read_trials(location)), len(read_epochs(location))) == before == (4, 8)


def test_a_study_with_results_but_no_tune_state_is_refused_and_left_alone(tmp_path):
    _study, location = _write_study(tmp_path, ["completed", "running", "completed", "completed"])
    again, _ = find_study("safe", str(tmp_path))
    with pytest.raises(StudyStateError, match="has trial results but no Ray Tune state"):
        run_study(again, resume=True, printer=lambda _: None)
    assert len(read_trials(location)) == 4 and len(read_epochs(location)) == 8


@pytest.mark.parametrize("how", ["copy", "move"])
def test_a_copied_or_moved_unfinished_study_is_refused_before_anything_is_written(tmp_path, how):
    original = tmp_path / "a"
    original.mkdir()
    _study, location = _write_study(original, ["completed", "running", "completed", "completed"])
    (original / "safe" / "tune" / "study").mkdir(parents=True)  # Tune's state, recording `location`
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    (shutil.copytree if how == "copy" else shutil.move)(original / "safe", elsewhere / "safe")
    moved, where = find_study(str(elsewhere / "safe"))
    assert where.endswith("b/safe")
    with pytest.raises(StudyStateError, match=r"was started at .*a/safe \(it was moved or copied\)"):
        run_study(moved, resume=True, printer=lambda _: None)
    if how == "copy":  # the original is untouched
        assert len(read_trials(location)) == 4 and not (original / "safe" / "trials").samefile(
            elsewhere / "safe" / "trials"
        )
    assert len(read_trials(str(elsewhere / "safe"))) == 4


def test_a_finished_study_resumes_as_finished_wherever_it_was_moved(tmp_path):
    original = tmp_path / "a"
    original.mkdir()
    _write_study(original, ["completed"] * 4)
    shutil.move(original / "safe", tmp_path / "safe")
    moved, _ = find_study(str(tmp_path / "safe"))
    report = run_study(moved, resume=True, printer=lambda _: None)  # nothing to run: no refusal, no Ray
    assert sum(g["trials"] for g in report.groups.values()) == 4
