"""The one-pool engine's plug points without a Ray cluster: the per-group scheduler (each group's ASHA sees
only its own trials) and the failure reason read from Tune's error file. (The dispatching searcher:
tests/study/test_searcher.py.)"""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from study.scheduler import StudyScheduler
from study.searcher import GROUP_KEY
from study.tuner import _error_text


def fake_trial(trial_id: str, group: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={GROUP_KEY: group})


def test_each_groups_asha_compares_only_its_own_trials():
    """Group b's scores are 100x group a's: one shared ASHA would stop every trial of a at its first rung;
    per-group ASHA stops only the worse trial of each group."""

    def make(_group: str) -> ASHAScheduler:
        return ASHAScheduler(
            time_attr="t", metric="m", mode="max", max_t=4, grace_period=1, reduction_factor=2
        )

    scheduler = StudyScheduler(make, ["a", "b"])
    trials = [fake_trial(f"{g}{i}", g) for g in ("b", "a") for i in range(2)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    scale = {"a": 1.0, "b": 100.0}
    decisions = {
        trial.trial_id: scheduler.on_trial_result(
            None, trial, {"t": 1, "m": scale[trial.config[GROUP_KEY]] * (1 + int(trial.trial_id[1]))}
        )
        for trial in trials
    }
    # in each group the second trial (better) continues, the first (worse, reported first) is judged alone
    assert decisions["a1"] == TrialScheduler.CONTINUE and decisions["b1"] == TrialScheduler.CONTINUE
    assert set(scheduler.schedulers) == {"a", "b"}
    lone = StudyScheduler(make)  # the same results through ONE ASHA for everything
    shared = lone.of("all")
    for trial in trials:
        shared.on_trial_add(None, trial)
    mixed = {
        trial.trial_id: shared.on_trial_result(
            None, trial, {"t": 1, "m": scale[trial.config[GROUP_KEY]] * (1 + int(trial.trial_id[1]))}
        )
        for trial in trials
    }
    assert mixed["a1"] == TrialScheduler.STOP  # what per-group scheduling prevents


def test_error_text_reads_the_trials_own_message(tmp_path):
    """Issue 13 item 1: the recorded reason is the exception's message from Tune's error file, the last
    failure of several; only without any text is the process said to have died."""
    error_file = tmp_path / "error.txt"
    error_file.write_text(
        "Failure # 1 (occurred at 2026-01-01_00-00-00)\nray.exceptions.RayTaskError: earlier\n"
        "Failure # 2 (occurred at 2026-01-01_00-00-05)\n"
        '\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=1, ip=1)\n  File "x.py", line 1, in f\n'
        "mtl.errors.ConfigError: unknown model argument(s) ['hiddn'] for synthetic; valid: hidden\n"
    )
    trial = SimpleNamespace(error_file=str(error_file), get_error=lambda: None)
    assert _error_text(trial) == (
        "mtl.errors.ConfigError: unknown model argument(s) ['hiddn'] for synthetic; valid: hidden"
    )
    gone = SimpleNamespace(error_file=None, get_error=lambda: None)
    assert "died" in _error_text(gone)
