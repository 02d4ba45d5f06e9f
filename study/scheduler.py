"""One Tune trial scheduler for a whole study that keeps one scheduler per (dataset, method) group.

Every callback is routed by the trial's group (its config key :data:`study.searcher.GROUP_KEY`), so each
group's ASHA compares only that group's trials: a method is stopped early only for being worse than trials of
the same dataset and method, never because another method's Δp scale differs. Which pending trial runs next
is first come, first served across the whole study, so the groups share one pool: a paused trial whose
configuration has been promoted first (it finishes work already started), then pending trials in the order
they were added; a trial paused at a rung until its configuration's decision is never resumed before it.

Each group's ASHA is :class:`study.asha.ConfigASHA`: it promotes or stops the seeds of one configuration
together, on their mean. Tune saves the searcher but not the scheduler, so :class:`study.searcher.
StudySearcher` saves this scheduler's :meth:`StudyScheduler.state_dict` with its own (a resumed study takes
the same decisions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.schedulers import TrialScheduler

from study.searcher import GROUP_KEY


def group_of(trial: Any) -> str:
    """The group a Tune trial belongs to (from its public ``config``)."""
    return str(trial.config[GROUP_KEY])


class StudyScheduler(TrialScheduler):
    """Routes each trial to the scheduler of its group, made on first use by ``make(group)``."""

    def __init__(
        self,
        make: Callable[[str], TrialScheduler],
        groups: Mapping[str, Any] | None = None,
        max_running: int | None = None,
        max_running_per_group: int | None = None,
    ) -> None:
        super().__init__()
        self.make = make
        self.schedulers: dict[str, TrialScheduler] = {}
        # the study's caps, binding here too: a paused seed freed its slot, which the searcher may have
        # given to a new trial; it resumes only when a slot is free again
        self.max_running = max_running
        self.max_running_per_group = max_running_per_group
        for name in groups or ():
            self.of(name)

    def of(self, group: str) -> TrialScheduler:
        if group not in self.schedulers:
            self.schedulers[group] = self.make(group)
        return self.schedulers[group]

    def _for(self, trial: Any) -> TrialScheduler:
        return self.of(group_of(trial))

    @property
    def supports_buffered_results(self) -> bool:
        return all(s.supports_buffered_results for s in self.schedulers.values())

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return all(s.set_search_properties(metric, mode, **spec) for s in self.schedulers.values())

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._for(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._for(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._for(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._for(trial).on_trial_remove(tune_controller, trial)

    def waiting_ids(self) -> set[str]:
        """Trials paused at a rung until their configuration's decision (they hold no slot)."""
        out: set[str] = set()
        for s in self.schedulers.values():
            out |= s.waiting_ids() if callable(getattr(s, "waiting_ids", None)) else set()
        return out

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """A resumable paused trial first, else the first pending one (in Tune's order), else ``None``."""
        trials = tune_controller.get_trials()
        running = [t for t in trials if t.status == "RUNNING"]
        if self.max_running is not None and len(running) >= self.max_running:
            return None
        per_group: dict[str, int] = {}
        for t in running:
            per_group[group_of(t)] = per_group.get(group_of(t), 0) + 1
        waiting = self.waiting_ids()

        def free(trial: Any) -> bool:
            cap = self.max_running_per_group
            return trial.trial_id not in waiting and (cap is None or per_group.get(group_of(trial), 0) < cap)

        for status in ("PAUSED", "PENDING"):  # a resumed study's waiting trials come back PENDING
            for trial in trials:
                if trial.status == status and free(trial):
                    return trial
        return None

    def state_dict(self) -> dict[str, Any]:
        """The state of every group scheduler that has one (ASHA's rungs; FIFO has none)."""
        return {
            name: s.state_dict()
            for name, s in self.schedulers.items()
            if callable(getattr(s, "state_dict", None))
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, group_state in state.items():
            scheduler = self.of(name)
            if callable(getattr(scheduler, "load_state_dict", None)):
                scheduler.load_state_dict(group_state)

    def debug_string(self) -> str:
        return "\n".join(f"{name}: {s.debug_string()}" for name, s in sorted(self.schedulers.items()))
