"""The live progress table (pure): counts per group from events, rates and ETA, terminal redraw vs plain
periodic lines."""

from __future__ import annotations

import io

import pytest

from study.progress import ProgressPrinter, StudyProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_counts_best_rate_and_eta():
    clock = Clock()
    progress = StudyProgress({"qm9/ew": 3, "qm9/db_mtl": 2}, max_epochs=4, clock=clock)
    progress.started("qm9/ew", "a")
    progress.started("qm9/ew", "b")
    for epoch in (1, 2):
        progress.result("qm9/ew", "a", epoch, best=-5.0 + epoch)
    progress.result("qm9/ew", "b", 1, best=-10.0)
    progress.ended("qm9/ew", "b", "done", epochs_done=1, best=-10.0)  # ASHA stopped it after 1 of 4
    progress.started("qm9/db_mtl", "c")
    progress.ended("qm9/db_mtl", "c", "failed")
    clock.now = 360.0  # 3 epochs of qm9/ew in 0.1 h
    rows = {r["group"]: r for r in progress.rows()}
    ew, db, total = rows["qm9/ew"], rows["qm9/db_mtl"], rows["all"]
    assert (ew["pending"], ew["running"], ew["done"], ew["stopped"], ew["failed"]) == (1, 1, 0, 1, 0)
    assert (db["pending"], db["running"], db["failed"]) == (1, 0, 1)
    assert ew["best"] == -3.0 and db["best"] is None
    assert ew["epochs_per_hour"] == pytest.approx(30.0)
    # remaining: 1 pending x 4 epochs + 2 epochs of the running trial, at 30 epochs/h
    assert ew["eta_s"] == pytest.approx(6 / 30 * 3600)
    assert db["eta_s"] is None  # no rate yet
    assert total["failed"] == 1 and total["pending"] == 2
    text = "\n".join(progress.render())
    assert "qm9/db_mtl" in text and "-3.00%" in text and "12m00s" in text
    with pytest.raises(ValueError, match="valid: done, stopped, failed"):
        progress.ended("qm9/ew", "a", "finished")


def test_retried_trial_runs_again_and_finished():
    progress = StudyProgress({"g": 1}, max_epochs=2)
    progress.started("g", "a")
    progress.ended("g", "a", "failed")
    progress.started("g", "a", epochs_done=1)  # resumed or retried
    assert progress.rows()[0]["running"] == 1 and progress.rows()[0]["failed"] == 0
    assert not progress.finished()
    progress.ended("g", "a", "done", epochs_done=2)
    assert progress.finished() and progress.rows()[0]["done"] == 1


def test_terminal_redraws_in_place_and_plain_output_prints_periodically():
    clock = Clock()
    progress = StudyProgress({"g": 2}, max_epochs=2, clock=clock)
    tty_out = io.StringIO()
    tty = ProgressPrinter(progress, tty_out, tty=True, interval=30.0, redraw_every=1.0)
    tty.draw()
    tty.line("[g] a completed")
    table_lines = len(progress.render())
    assert f"\x1b[{table_lines}F\x1b[J[g] a completed" in tty_out.getvalue()  # erased, line, redrawn

    plain_out = io.StringIO()
    plain = ProgressPrinter(progress, plain_out, tty=False, interval=30.0)
    plain.draw()
    clock.now = 10.0
    plain.draw()  # not due yet
    plain.line("[g] a completed")
    clock.now = 31.0
    plain.draw()
    text = plain_out.getvalue()
    assert "\x1b[" not in text
    assert text.count("study progress after") == 2 and "[g] a completed\n" in text


def test_a_trial_waiting_for_its_retry_is_not_counted_as_running():
    """On a node loss 12 trials showed as running on 8 slots: those waiting to be retried hold no slot."""
    progress = StudyProgress({"g": 3}, max_epochs=4, clock=lambda: 0.0)
    for t in ("a", "b"):
        progress.started("g", t)
    progress.waiting("g", "a")  # crashed; Tune will start it again
    group = progress.groups["g"]
    assert group.count("running") == 1 and group.count("pending") == 2
    progress.started("g", "a", epochs_done=2)  # retried from its checkpoint
    assert group.count("running") == 2 and group.count("pending") == 1
