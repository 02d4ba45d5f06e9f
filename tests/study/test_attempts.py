"""Every attempt of a trial is recorded (node, start, end, epochs, reason) and shown by `study status`; a
retry keeps the trial's first start (issue 24, item 9: a retry left no trace, `restarts` 0 and `started_at`
reset)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from results_store.identity import TrialInfo
from results_store.reader import read_trials
from results_store.writer import ResultsWriter, trial_attempts
from study.cli import attempt_lines
from study.trial import earlier_attempts
from tests.results.test_writer import record

T0 = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)


def _row(tmp_path, status, epochs, attempts=(), node="node-a", started=T0):
    w = ResultsWriter(str(tmp_path), "demo")
    info = TrialInfo("demo", "synthetic", "ew", "t_0", seed=0)
    w.write_trial(
        info,
        status=status,
        records=[record(e, -5.0) for e in range(epochs)],
        max_epochs=4,
        node_id=node,
        host="h1",
        started_at=started,
        attempts=list(attempts),
        restarts=len(attempts),
    )
    return w.read_trial_row("synthetic", "ew", "t_0")


def test_a_lost_attempt_is_recorded_with_its_node_and_reason(tmp_path):
    prior = _row(tmp_path, "running", 2)  # the process or node died after epoch 2: the row says running
    attempts = earlier_attempts(prior)
    assert len(attempts) == 1
    a = attempts[0]
    assert a["node_id"] == "node-a" and a["host"] == "h1" and a["epochs"] == 2
    assert a["started_at"].startswith("2026-12-04T10:00") and a["ended_at"] is not None
    assert "no result after epoch 2" in a["reason"] and "lost" in a["reason"]
    # the retry on another node writes its row with the earlier attempt; a second loss adds one more
    again = _row(tmp_path, "running", 3, attempts=attempts, node="node-b")
    both = earlier_attempts(again)
    assert [x["node_id"] for x in both] == ["node-a", "node-b"]
    assert both[1]["started_at"] == both[0]["ended_at"]  # a retry begins once the one before was lost
    final = _row(tmp_path, "completed", 4, attempts=both, node="node-c")
    assert trial_attempts(final) == both and final["restarts"] == 2
    assert earlier_attempts(final) == both  # a completed row adds nothing


def test_a_first_attempt_and_a_failed_retry(tmp_path):
    assert earlier_attempts(None) == []
    prior = _row(tmp_path, "failed", 1)
    prior["error"] = "CUDA out of memory"
    (attempt,) = earlier_attempts(prior)
    assert attempt["reason"] == "CUDA out of memory"


def test_status_lists_every_attempt(tmp_path):
    _row(tmp_path, "completed", 4, attempts=earlier_attempts(_row(tmp_path, "running", 2)), node="node-b")
    trials = read_trials(str(tmp_path / "demo"))
    lines = attempt_lines(trials)
    assert lines[0].startswith("  synthetic/ew t_0: 1 earlier attempt(s), now completed on node node-b")
    assert "attempt 1: node node-a (h1)" in lines[1] and "2 epoch(s)" in lines[1]
    assert attempt_lines(pd.DataFrame()) == []
