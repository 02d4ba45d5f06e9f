"""Compaction of a trial's epoch rows into one file (results_store.compaction): a reader
sees each (trial, epoch) exactly once at every moment, also after a crash between any two steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest

from results_store.columns import COMPACTED_SUFFIX
from results_store.compaction import compact_ended_trial, compact_trial
from results_store.identity import TrialInfo
from results_store.reader import read_epochs
from results_store.writer import ResultsWriter
from study.faults import WatchedStorage

STUDY = "demo"


class Crash(OSError):
    """The simulated crash."""


class Storage(WatchedStorage):
    """The local filesystem, with two test hooks: ``budget`` mutating calls succeed and the next one raises
    :class:`Crash` (a process dying between two steps); ``on_list`` runs once, after the first recursive
    listing was taken and before it is returned (something changing the files under a reader)."""

    type_prefix = "test"

    def __init__(self, budget: int | None = None, on_list: Any = None) -> None:
        super().__init__(pafs.LocalFileSystem())
        self.budget = budget
        self.on_list = on_list
        self.calls: list[str] = []

    def before_write(self, what: str, path: str) -> None:
        if self.budget is not None and len(self.calls) >= self.budget:
            raise Crash(f"simulated crash before {what} {path}")
        self.calls.append(f"{what} {path}")

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        listing = self.fs.get_file_info(selector)
        if selector.recursive and self.on_list is not None:
            hook, self.on_list = self.on_list, None
            hook()
        return listing


def info(trial_id: str, method: str = "ew") -> TrialInfo:
    return TrialInfo(
        STUDY,
        "synthetic",
        method,
        trial_id,
        seed=0,
        balancer="ew",
        directions={"t0/mae": False},
    )


def record(epoch: int, attempt: int = 0) -> dict:
    """The row of ``epoch``; ``attempt`` marks which run wrote it (a re-run epoch gets other values)."""
    return {"epoch": epoch, "val_delta_p": 10.0 * attempt + epoch, "test/t0/mae": 1.0 / (epoch + 1)}


def write(w: ResultsWriter, trial_id: str, epochs: range, status: str, attempt: int = 0) -> None:
    t = info(trial_id)
    for epoch in epochs:
        w.write_epoch(t, record(epoch, attempt))
    w.write_trial(t, status=status, records=[record(e, attempt) for e in epochs], max_epochs=len(epochs))


def seen(root: Path, trial_id: str = "a") -> dict[int, float]:
    """``{epoch: val_delta_p}`` of a trial as a reader sees it; fails if an epoch appears twice."""
    epochs = read_epochs(str(root / STUDY))
    rows = epochs[epochs["trial_id"] == trial_id]
    assert not rows.duplicated(["trial_id", "epoch"]).any(), "an epoch is seen twice"
    assert "compacted" not in epochs.columns
    return dict(zip(rows["epoch"], rows["val_delta_p"]))


def files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / STUDY / "epochs").rglob("*") if p.is_file())


def test_compact_folds_a_trial_into_one_file_and_is_idempotent(tmp_path):
    w = ResultsWriter(str(tmp_path), STUDY)
    write(w, "a", range(5), "completed")
    before = read_epochs(str(tmp_path / STUDY))
    done = compact_trial(w, "synthetic", "ew", "a")
    assert (done.epochs, done.folded) == (5, 5)
    assert files(tmp_path) == ["a" + COMPACTED_SUFFIX]
    after = read_epochs(str(tmp_path / STUDY))
    assert after.drop(columns="written_at").equals(before.drop(columns="written_at"))
    assert (after["balancer"] == "ew").all() and not after["higher_is_better/t0/mae"].any()
    assert w.trial_ids("synthetic", "ew") == {"a"}
    again = compact_trial(w, "synthetic", "ew", "a")
    assert (again.epochs, again.folded) == (5, 0)
    assert files(tmp_path) == ["a" + COMPACTED_SUFFIX]


def _crash_points(tmp_path: Path, prepare, act) -> int:
    """Run ``act(writer)`` with a crash before its 1st, 2nd, ... mutating call, each on a fresh copy made
    by ``prepare(writer)``; returns how many calls ``act`` makes when nothing crashes."""
    probe = Storage()
    root = tmp_path / "probe"
    prepare(ResultsWriter(str(root), STUDY))
    w = ResultsWriter(str(root), STUDY)
    w.fs = pafs.PyFileSystem(probe)
    act(w)
    return len(probe.calls)


def test_a_crash_between_any_two_steps_of_compaction_leaves_each_epoch_once(tmp_path):
    expected = {e: float(e) for e in range(4)}

    def prepare(w: ResultsWriter) -> None:
        write(w, "a", range(4), "completed")

    def act(w: ResultsWriter) -> None:
        compact_trial(w, "synthetic", "ew", "a")

    steps = _crash_points(tmp_path, prepare, act)
    assert steps >= 6  # create dir, write temporary, rename, 4 deletions
    for budget in range(steps):
        root = tmp_path / f"crash{budget}"
        prepare(ResultsWriter(str(root), STUDY))
        w = ResultsWriter(str(root), STUDY)
        w.fs = pafs.PyFileSystem(Storage(budget))
        with pytest.raises(Crash):
            act(w)
        assert seen(root) == expected, f"after a crash before step {budget + 1}"
        # the next compaction (study compact, or the driver after a restart) finishes the job
        assert compact_trial(ResultsWriter(str(root), STUDY), "synthetic", "ew", "a").epochs == 4
        assert files(root) == ["a" + COMPACTED_SUFFIX], f"leftovers after a crash before step {budget + 1}"
        assert seen(root) == expected


def test_a_resumed_trial_redoes_epochs_of_its_compacted_file_once(tmp_path):
    def prepare(w: ResultsWriter) -> None:
        write(w, "a", range(5), "failed")
        compact_trial(w, "synthetic", "ew", "a")

    def act(w: ResultsWriter) -> None:  # what run_trial does when it resumes from the state of epoch 2
        w.delete_epochs("synthetic", "ew", "a", from_epoch=2)

    steps = _crash_points(tmp_path, prepare, act)
    for budget in range(steps + 1):
        root = tmp_path / f"resume{budget}"
        prepare(ResultsWriter(str(root), STUDY))
        w = ResultsWriter(str(root), STUDY)
        w.fs = pafs.PyFileSystem(Storage(budget))
        if budget < steps:
            with pytest.raises(Crash):
                act(w)
            # before the rename the old attempt's rows are all seen, after it only the kept ones
            assert seen(root) in ({e: float(e) for e in range(5)}, {0: 0.0, 1: 1.0})
        w = ResultsWriter(str(root), STUDY)
        assert w.delete_epochs("synthetic", "ew", "a", from_epoch=2) in ([2, 3, 4], [])
        assert seen(root) == {0: 0.0, 1: 1.0}
        write(w, "a", range(2, 4), "running", attempt=1)  # the second attempt re-runs epochs 2-3 ...
        assert seen(root) == {0: 0.0, 1: 1.0, 2: 12.0, 3: 13.0}  # ... and is seen while it runs
        compact_trial(w, "synthetic", "ew", "a")
        assert seen(root) == {0: 0.0, 1: 1.0, 2: 12.0, 3: 13.0}
        assert files(root) == ["a" + COMPACTED_SUFFIX]


def test_late_epoch_files_after_compaction(tmp_path):
    """A straggling write after compaction: a copy of an epoch the compacted file holds is ignored, a new
    epoch is read; the next compaction folds the new one in and deletes the stale copy."""
    w = ResultsWriter(str(tmp_path), STUDY)
    write(w, "a", range(3), "stopped")
    compact_trial(w, "synthetic", "ew", "a")
    w.write_epoch(info("a"), record(1, attempt=9))
    w.write_epoch(info("a"), record(3))
    assert seen(tmp_path) == {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}
    assert compact_trial(w, "synthetic", "ew", "a").folded == 2
    assert seen(tmp_path) == {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0}
    assert files(tmp_path) == ["a" + COMPACTED_SUFFIX]


def test_a_reader_racing_a_compaction_sees_each_epoch_once(tmp_path):
    w = ResultsWriter(str(tmp_path), STUDY)
    write(w, "a", range(4), "completed")
    # the reader lists the per-epoch files; a compaction then replaces them before the reader opens them
    racing = Storage(
        on_list=lambda: compact_trial(ResultsWriter(str(tmp_path), STUDY), "synthetic", "ew", "a")
    )
    epochs = read_epochs(str(tmp_path / STUDY), filesystem=pafs.PyFileSystem(racing))
    assert racing.on_list is None  # the race happened
    assert sorted(epochs["epoch"]) == [0, 1, 2, 3]
    assert files(tmp_path) == ["a" + COMPACTED_SUFFIX]


def test_compaction_the_driver_runs_never_raises(tmp_path):
    w = ResultsWriter(str(tmp_path), STUDY)
    write(w, "a", range(2), "completed")
    (tmp_path / STUDY / "epochs" / "dataset=synthetic" / "method=ew").chmod(0o500)  # deletions refused
    try:
        problem = compact_ended_trial(str(tmp_path), STUDY, "synthetic", "ew", "a")
    finally:
        (tmp_path / STUDY / "epochs" / "dataset=synthetic" / "method=ew").chmod(0o700)
    if problem is not None:  # (root ignores permissions: then it simply succeeded)
        assert "study compact" in problem
        assert seen(tmp_path) == {0: 0.0, 1: 1.0}
    assert compact_ended_trial(str(tmp_path), STUDY, "synthetic", "ew", "a") is None
    assert seen(tmp_path) == {0: 0.0, 1: 1.0}
