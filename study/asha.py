"""ASHA that decides per configuration: the seeds of one configuration are promoted or stopped together.

Asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning",
Algorithm 2) with Ray Tune 2.60's ``AsyncHyperBandScheduler`` (one bracket) as the reference for its
semantics: rungs at ``grace_period * reduction_factor**k`` (k = 0, 1, ... while <= ``max_t``, the same
``int(log(max_t / grace_period) / log(rf) + 1)`` rungs as Ray), a candidate at a rung is stopped when its
score is below the ``(1 - 1/rf)`` percentile (``numpy.nanpercentile``) of the scores recorded at that rung
before it, and every trial is stopped at ``max_t``. The difference is *what* competes (issue 22 item 3):

* the candidate is a **configuration** (its hyperparameters; all its seeds), scored by the **mean over its
  seeds** of the metric each seed had when it reached the rung, and compared only with other
  configurations of the same (dataset, method) group (:class:`study.scheduler.StudyScheduler` routes);
* the decision at a rung is taken once **every seed** of the configuration has reached the rung, or ended
  without reaching it (failed, or its study ended it): a seed that arrives before its siblings is not
  judged alone, so the seeds of one configuration never compete with each other;
* a configuration that is cut has **all** its seeds stopped: the seed whose result completed the decision
  at once, its siblings at their next result.

**Waiting rule.** A seed that reaches a rung before its siblings is **paused** there (Tune's ``PAUSE``:
its state is saved and its slot freed) until the configuration's decision: then it resumes if the
configuration was promoted, or is stopped with its siblings if it was cut. So the seeds of one configuration
end at the same rung -- all cut there, or all past it -- whatever order they ran in, even one at a time.
A paused seed holds no slot: :meth:`ConfigASHA.waiting_ids` lets the study's searcher leave it out of the
concurrency cap (else, with ``max_concurrent_trials`` no larger than the seeds waiting, the siblings could
never start), and :class:`study.scheduler.StudyScheduler` does not resume it before the decision.

The rung state (scores per rung, every seed's rung scores, cut configurations) is in :meth:`state_dict`;
the study's searcher saves it with its own state (Ray Tune saves the searcher, not the scheduler), so a
resumed study takes the same decisions as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from ray.tune.schedulers import TrialScheduler


def rung_milestones(grace_period: int, reduction_factor: float, max_t: int) -> list[float]:
    """The rungs, ascending: ``grace_period * rf**k`` for Ray's ``MAX_RUNGS`` (one bracket, s = 0)."""
    count = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
    return [grace_period * reduction_factor**k for k in range(count)]


class ConfigASHA(TrialScheduler):
    """ASHA over the configurations of one group (see the module docstring).

    ``config_key(trial)`` names a trial's configuration (equal for its seeds); ``seeds_per_config`` is how
    many seeds every configuration runs. ``mode`` ``max`` or ``min``; ``time_attr`` the result key counting
    training progress (epochs)."""

    def __init__(
        self,
        *,
        time_attr: str,
        metric: str,
        mode: str,
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        seeds_per_config: int,
        config_key: Callable[[Any], str],
    ) -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if grace_period < 1 or max_t < grace_period or reduction_factor <= 1 or seeds_per_config < 1:
            raise ValueError("need 1 <= grace_period <= max_t, reduction_factor > 1, seeds_per_config >= 1")
        self._metric, self._mode = metric, mode
        self.time_attr = time_attr
        self.max_t = int(max_t)
        self.rf = float(reduction_factor)
        self.seeds_per_config = int(seeds_per_config)
        self.config_key = config_key
        self.milestones = rung_milestones(grace_period, reduction_factor, max_t)
        self.sign = 1.0 if mode == "max" else -1.0
        # configuration -> rung -> its mean (the scores the cutoff is taken over), in decision order
        self.recorded: dict[float, dict[str, float]] = {m: {} for m in self.milestones}
        self.seed_scores: dict[str, dict[float, dict[str, float]]] = {}  # config -> rung -> trial -> score
        self.config_of: dict[str, str] = {}  # trial id -> configuration
        self.ended: dict[str, float] = {}  # trial id -> progress when it ended (no more results)
        self.cut: dict[str, float] = {}  # configuration -> the rung at which it was cut
        self.num_stopped = 0
        # trial id -> the progress where it paused, waiting at a rung for its configuration's decision;
        # saved, so a resumed study keeps it waiting
        self.waiting: dict[str, float] = {}

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def _config(self, trial: Any) -> str:
        key = self.config_of.get(trial.trial_id)
        if key is None:
            key = self.config_of[trial.trial_id] = str(self.config_key(trial))
        return key

    def _record(self, trial: Any, progress: float, score: float) -> None:
        """The trial's score at every rung it has passed and not yet recorded (after a resume from an older
        snapshot, the first result past a missed rung stands in for it, as in Ray, where a trial jumping
        rungs is judged once at the highest)."""
        rungs = self.seed_scores.setdefault(self._config(trial), {})
        for milestone in self.milestones:
            if progress >= milestone:
                rungs.setdefault(milestone, {}).setdefault(trial.trial_id, score)

    def _seeds_in(self, config: str, milestone: float) -> bool:
        """Whether every seed of ``config`` has a score at ``milestone`` or ended below it."""
        scores = self.seed_scores.get(config, {}).get(milestone, {})
        trials = [t for t, c in self.config_of.items() if c == config]
        settled = sum(1 for t in trials if t in scores or self.ended.get(t, math.inf) < milestone)
        return settled >= self.seeds_per_config

    def _undecided(self, config: str, progress: float) -> bool:
        """Whether a rung at or below ``progress`` still waits for the other seeds of ``config``."""
        return any(m <= progress and config not in self.recorded[m] for m in self.milestones)

    def waiting_ids(self) -> set[str]:
        """The trials paused at a rung until their configuration's decision (they hold no slot)."""
        return set(self.waiting)

    def _release(self, tune_controller: Any, config: str) -> None:
        """After a decision on ``config``: its paused seeds are stopped if it was cut, else may resume (once
        no rung at or below where they paused is undecided)."""
        for trial_id, paused_at in list(self.waiting.items()):
            if trial_id not in self.waiting or self.config_of.get(trial_id) != config:
                continue  # released meanwhile (stop_trial re-enters through on_trial_remove)
            if config in self.cut:
                del self.waiting[trial_id]
                self.num_stopped += 1
                trial = next((t for t in tune_controller.get_trials() if t.trial_id == trial_id), None)
                if trial is not None:  # PAUSED (or PENDING after a resume): Tune calls on_trial_remove
                    tune_controller.stop_trial(trial)
            elif not self._undecided(config, paused_at):
                del self.waiting[trial_id]  # PAUSED and free to resume (StudyScheduler picks it)

    def _decide(self, config: str) -> None:
        """Take every decision of ``config`` that its seeds allow, lowest rung first; stop at a cut."""
        for milestone in self.milestones:
            if config in self.cut:
                return
            if config in self.recorded[milestone]:
                continue
            if not self._seeds_in(config, milestone):
                return
            scores = list(self.seed_scores.get(config, {}).get(milestone, {}).values())
            finite = [s for s in scores if math.isfinite(s)]
            if not finite:  # every seed ended below the rung: nothing to compare
                return
            mean = float(np.mean(finite))
            others = self.recorded[milestone]
            if others:
                cutoff = float(np.nanpercentile(list(others.values()), (1 - 1 / self.rf) * 100))
                if mean < cutoff:
                    self.cut[config] = milestone
            others[config] = mean

    # -- TrialScheduler ------------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (metric and metric != self._metric) or (mode and mode != self._mode):
            return False
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._config(trial)
        self.ended.pop(trial.trial_id, None)  # a trial re-added by a resume runs again

    def on_trial_result(self, tune_controller: Any, trial: Any, result: Mapping[str, Any]) -> str:
        if self.time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        config = self._config(trial)
        progress = float(result[self.time_attr])
        value = result[self._metric]
        score = math.nan if value is None else self.sign * float(value)
        self.waiting.pop(trial.trial_id, None)  # it runs: not waiting
        if config not in self.cut:
            self._record(trial, progress, score)
            self._decide(config)
            self._release(tune_controller, config)
        if config in self.cut or progress >= self.max_t:
            if config in self.cut:
                self.num_stopped += 1
            return TrialScheduler.STOP
        if self._undecided(config, progress):
            self.waiting[trial.trial_id] = progress
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def _end(self, tune_controller: Any, trial: Any, result: Mapping[str, Any] | None) -> None:
        config = self._config(trial)
        progress = float((result or {}).get(self.time_attr, 0.0) or 0.0)
        if result and self._metric in result and config not in self.cut:
            value = result[self._metric]
            self._record(trial, progress, math.nan if value is None else self.sign * float(value))
        self.ended[trial.trial_id] = progress
        self.waiting.pop(trial.trial_id, None)
        self._decide(config)  # its siblings may have been waiting for it
        self._release(tune_controller, config)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: Mapping[str, Any]) -> None:
        self._end(tune_controller, trial, result)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._end(tune_controller, trial, getattr(trial, "last_result", None) or None)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._end(tune_controller, trial, getattr(trial, "last_result", None) or None)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:  # StudyScheduler chooses for the study
        return None

    def debug_string(self) -> str:
        rungs = ", ".join(f"t={m:g}: {len(self.recorded[m])} configs" for m in self.milestones)
        return f"ConfigASHA ({rungs}; {len(self.cut)} configurations cut; {len(self.waiting)} seeds waiting)"

    # -- saved with the study's searcher -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "recorded": {m: dict(v) for m, v in self.recorded.items()},
            "seed_scores": {c: {m: dict(s) for m, s in r.items()} for c, r in self.seed_scores.items()},
            "config_of": dict(self.config_of),
            "ended": dict(self.ended),
            "cut": dict(self.cut),
            "num_stopped": self.num_stopped,
            "waiting": dict(self.waiting),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if sorted(state["recorded"]) != self.milestones:
            raise ValueError(
                f"the saved ASHA has rungs {sorted(state['recorded'])}, this study {self.milestones}"
            )
        self.recorded = {m: dict(v) for m, v in state["recorded"].items()}
        self.seed_scores = {c: {m: dict(s) for m, s in r.items()} for c, r in state["seed_scores"].items()}
        self.config_of = dict(state["config_of"])
        self.ended = dict(state["ended"])
        self.cut = dict(state["cut"])
        self.num_stopped = int(state["num_stopped"])
        self.waiting = dict(state.get("waiting", {}))  # studies saved before had none
