"""One Tune searcher for a whole study: it hands out the trials of every (dataset, method) group, each group
proposed by its own search, so that all groups share one pool of trial slots.

* :class:`GroupSearch` -- the trials of one group: each configuration its algorithm proposes
  (:data:`study.search.ALGORITHMS`: ``optuna``, ``random``, ``grid``, one module each under
  :mod:`study.search`) runs once per study seed, and the algorithm is told the mean of the finite scores of
  its seeds (or a failure when none is finite). A space whose parameters are all ``grid`` is enumerated
  whatever the algorithm (e.g. ``stl`` over its tasks); nothing to search: each seed once. Each group knows
  how many trials it will run (:attr:`GroupSearch.total`).
* :class:`StudySearcher` -- a Ray Tune :class:`~ray.tune.search.Searcher` that dispatches ``suggest`` to the
  least-loaded group that can propose (ties in round-robin order), tags each configuration with its group
  (config key :data:`GROUP_KEY`), routes ``on_trial_complete`` back to the owning group, enforces the
  study-wide ``max_concurrent_trials`` and an optional per-group cap itself (so they bind for every kind of
  search, also when nothing is searched) and returns ``Searcher.FINISHED`` once every group has proposed all
  its trials. ``save``/``restore`` pickle every group's state, so ``Tuner.restore`` continues each search,
  and the state of the study's scheduler (:attr:`StudySearcher.companion`, its ASHA rungs), which Tune
  itself does not save. A state saved before the algorithms were modules (issue 25) is converted on load.

With ``tune.defaults`` (:mod:`study.schema`) a group's first configuration is its paper-default one: no
searched name set (the method's own defaults, the dataset's paper training settings), tagged
:data:`DEFAULT_KEY` and counted in the group's configurations; its algorithm is not told its score (it is
not a point of the space). Under ``tune`` a random search never draws one configuration twice (equal budgets
count distinct configurations).

Only public Ray Tune and Optuna interfaces are used.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from study.layout import DEFAULT_KEY, GROUP_KEY
from study.search import ALGORITHMS, Param, SearchAlgorithm, config_id

SEED_KEY = "seed"
NOT_HPARAMS = (GROUP_KEY, SEED_KEY, "__trial_index__")
STATE_VERSION = 2
"""Of :meth:`GroupSearch.state_dict`; version 1 (no version key) held the Optuna study and every random or
grid configuration itself."""


def config_key(config: Mapping[str, Any]) -> str:
    """What names a trial's configuration within its group (equal for its seeds): its hyperparameters and
    the paper-default tag, without the group and the seed."""
    return config_id({k: v for k, v in config.items() if k not in NOT_HPARAMS})


@dataclass
class _Config:
    """One configuration of a group and what became of its repeats (one per seed). (Its name and module are
    those of the version-1 pickles, which hold instances of it.)"""

    params: dict[str, Any]
    token: Any = None  # what its algorithm needs to be told the score (None: the paper default)
    default: bool = False  # the paper-default configuration (nothing searched set)
    handed: int = 0  # seeds handed out so far
    scores: dict[str, float] = field(default_factory=dict)  # trial id -> score (NaN: failed)
    told: bool = False
    value: float | None = None  # what the algorithm was told (None: a failure, or not told yet)


class GroupSearch:
    """The search of one (dataset, method) group: which configuration and seed its next trial runs.

    ``space`` maps hyperparameter names to :class:`study.search.Param`; ``algorithm`` is a name of
    :data:`study.search.ALGORITHMS`; ``samples`` is the number of configurations (a space of ``grid``
    parameters only runs every combination once). ``defaults``: the first configuration is the paper
    default, one of the ``samples``; ``unique``: never draw one configuration twice (a finite space then caps
    the group at its size)."""

    def __init__(
        self,
        name: str,
        space: Mapping[str, Param],
        seeds: Sequence[int],
        algorithm: str,
        samples: int,
        seed: int | None,
        study_name: str,
        defaults: bool = False,
        unique: bool = False,
    ) -> None:
        self.name = name
        self.space = dict(sorted(space.items()))
        self.seeds = [int(s) for s in seeds]
        all_grid = bool(self.space) and all(p.dist.enumerated for p in self.space.values())
        # a space of grid parameters only (e.g. stl's task) is enumerated whatever the algorithm
        self.algorithm = ("grid" if all_grid else algorithm) if self.space else "seeds"
        self.configs: list[_Config] = [_Config({}, default=True)] if defaults else []
        self.trial_config: dict[str, int] = {}  # trial id -> index into configs
        self.strategy: SearchAlgorithm | None = None
        if not self.space:
            self.configs = [_Config({}, default=defaults)]
            self.n_configs = 1
            return
        # the paper default is one of the `samples` configurations; a grid runs whole, beside it
        budget = 1 if all_grid else samples - len(self.configs)
        self.strategy = ALGORITHMS.algorithm(self.algorithm)(
            self.space, budget, seed, study_name=study_name, unique=unique
        )
        self.n_configs = len(self.configs) + self.strategy.count

    # -- what the dispatcher asks -------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Trials this group runs in all (configurations x seeds)."""
        return self.n_configs * len(self.seeds)

    @property
    def proposed(self) -> int:
        return len(self.trial_config)

    @property
    def finished(self) -> bool:
        return self.proposed >= self.total

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The config of the group's next trial (hyperparameters and ``seed``), or None when it is done."""
        if self.finished:
            return None
        current = self.configs[-1] if self.configs else None
        if current is None or current.handed >= len(self.seeds):
            assert self.strategy is not None  # a group without a space has its one configuration
            proposal = self.strategy.propose({config_id(c.params): c.value for c in self.configs})
            current = _Config(proposal.params, token=proposal.token)
            self.configs.append(current)
        seed = self.seeds[current.handed]
        current.handed += 1
        self.trial_config[trial_id] = len(self.configs) - 1
        tag = {DEFAULT_KEY: True} if current.default else {}
        return {**current.params, **tag, SEED_KEY: seed}

    def complete(self, trial_id: str, score: float | None) -> None:
        """A trial of this group ended with ``score`` (None or non-finite: failed or no result); once every
        seed of its configuration has, the algorithm is told their mean."""
        index = self.trial_config.get(trial_id)
        if index is None:
            return
        config = self.configs[index]
        config.scores[trial_id] = float(score) if score is not None and math.isfinite(score) else math.nan
        if (
            self.strategy is None
            or config.token is None  # the paper default: not a point the algorithm proposed
            or config.told
            or len(config.scores) < len(self.seeds)
        ):
            return
        finite = [s for s in config.scores.values() if math.isfinite(s)]
        config.value = float(np.mean(finite)) if finite else None
        self.strategy.tell(config.token, config.value)
        config.told = True

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "configs": [dataclasses.asdict(c) for c in self.configs],
            "trial_config": dict(self.trial_config),
            "strategy": self.strategy.state_dict() if self.strategy is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "version" not in state:
            state = self._from_version_1(state)
        self.configs = [_Config(**c) for c in state["configs"]]
        self.trial_config = dict(state["trial_config"])
        if self.strategy is not None:
            self.strategy.load_state_dict(state["strategy"])

    def _from_version_1(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """A state saved before issue 25: ``configs`` held every random/grid configuration up front (now the
        algorithm's queue) and ``optuna_number`` where ``token`` is; the Optuna study sat beside them."""
        old = [
            {
                "params": dict(c.params),
                "token": getattr(c, "optuna_number", None),
                "default": c.default,
                "handed": c.handed,
                "scores": dict(c.scores),
                "told": c.told,
                "value": c.value,
            }
            for c in state["configs"]
        ]
        kept = [c for c in old if c["default"] or c["handed"] > 0 or self.algorithm in ("optuna", "seeds")]
        queue = [c["params"] for c in old if c not in kept]
        strategy = {"rng": state["rng"], "study": state["optuna"], "queue": queue, "given": 0}
        return {"configs": kept, "trial_config": state["trial_config"], "strategy": strategy}


class StudySearcher(Searcher):
    """Dispatches every trial of the study to one group's :class:`GroupSearch` (see the module docstring)."""

    def __init__(
        self,
        groups: Mapping[str, GroupSearch],
        metric: str,
        mode: str,
        max_concurrent: int | None = None,
        max_per_group: int | None = None,
        costs: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.groups = dict(groups)
        self.max_concurrent = max_concurrent
        self.max_per_group = max_per_group
        # longest first: a group's per-trial cost class (mtl.methods.step_cost); the costliest open group
        # gets the next slot, so the study's last wave is not one expensive group alone
        self.costs = {name: float((costs or {}).get(name, 0.0)) for name in self.groups}
        self.owner: dict[str, str] = {}  # trial id -> group name
        self.live: dict[str, set[str]] = {name: set() for name in self.groups}
        self._turn = 0
        self.companion: Any = None  # the study's scheduler: its state is saved with the search's

    @property
    def total(self) -> int:
        return sum(g.total for g in self.groups.values())

    def _waiting(self) -> set[str]:
        """Trials the study's scheduler paused at a rung for their configuration's decision: they hold no
        slot, so they do not count against the caps (their siblings must be able to start)."""
        waiting = getattr(self.companion, "waiting_ids", None)
        return waiting() if callable(waiting) else set()

    def running(self) -> int:
        """Trials holding (or about to hold) a slot: suggested, not ended, not waiting at a rung."""
        waiting = self._waiting()
        return sum(len(ids - waiting) for ids in self.live.values())

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return not config  # every group's space is its own; Tune's param_space must stay empty

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        open_groups = [name for name, g in self.groups.items() if not g.finished]
        if not open_groups:
            return Searcher.FINISHED
        if self.max_concurrent is not None and self.running() >= self.max_concurrent:
            return None
        names = list(self.groups)
        order = names[self._turn % len(names) :] + names[: self._turn % len(names)]
        waiting = self._waiting()
        candidates = [
            n
            for n in order
            if n in open_groups
            and (self.max_per_group is None or len(self.live[n] - waiting) < self.max_per_group)
        ]
        if not candidates:
            return None
        # costliest first (longest-processing-time first), then least loaded; ties in round-robin order
        name = max(candidates, key=lambda n: (self.costs[n], -len(self.live[n] - waiting)))
        self._turn = names.index(name) + 1
        config = self.groups[name].suggest(trial_id)
        if config is None:
            return None
        self.owner[trial_id] = name
        self.live[name].add(trial_id)
        return {GROUP_KEY: name, **config}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        name = self.owner.get(trial_id)
        if name is None:
            return
        self.live[name].discard(trial_id)
        score = None if error or not result else result.get(self.metric)
        if score is not None and self.mode == "min":
            score = -score
        self.groups[name].complete(trial_id, score)

    def state_dict(self) -> dict[str, Any]:
        return {
            "groups": {name: g.state_dict() for name, g in self.groups.items()},
            "owner": dict(self.owner),
            "live": {name: sorted(ids) for name, ids in self.live.items()},
            "turn": self._turn,
            "scheduler": self.companion.state_dict() if self.companion is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = sorted(set(state["groups"]) - set(self.groups))
        if missing:
            raise ValueError(f"the saved search has groups this study does not: {missing}")
        for name, group_state in state["groups"].items():
            self.groups[name].load_state_dict(group_state)
        self.owner = dict(state["owner"])
        self.live = {name: set(state["live"].get(name, ())) for name in self.groups}
        self._turn = int(state["turn"])
        if self.companion is not None and state.get("scheduler"):
            self.companion.load_state_dict(state["scheduler"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.state_dict(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.load_state_dict(pickle.load(f))
