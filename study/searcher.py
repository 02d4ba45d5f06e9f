"""One Tune searcher for a whole study: it hands out the trials of every (dataset, method) group, each group
proposed by its own search, so that all groups share one pool of trial slots.

* :class:`GroupSearch` — the search of one group. ``optuna``: TPE through Optuna's ask/tell interface
  (seeded, one Optuna study per group), every configuration repeated once per study seed; Optuna is told the
  mean of the finite scores of its repeats, or a failure when none is finite (Optuna cannot digest NaN).
  A configuration is never run twice: when TPE proposes one the group already has, Optuna is told that
  configuration's known score (or, while it still runs, that the proposal failed) and asked again, and a
  space of finitely many configurations (``choice``/``grid``/``int`` parameters only) caps the group at that
  many (:func:`space_size`).
  ``random``: each configuration sampled from a seeded generator (``grid`` parameters expanded), run once per
  seed. ``grid``: every combination of the ``choice``/``grid`` values, once per seed. Nothing to search: each
  seed once. Each group knows how many trials it will run (:attr:`GroupSearch.total`).
* :class:`StudySearcher` — a Ray Tune :class:`~ray.tune.search.Searcher` that dispatches ``suggest`` to the
  least-loaded group that can propose (ties in round-robin order), tags each configuration with its group
  (config key :data:`GROUP_KEY`), routes ``on_trial_complete`` back to the owning group, enforces the
  study-wide ``max_concurrent_trials`` and an optional per-group cap itself (so they bind for every kind of
  search, also when nothing is searched) and returns ``Searcher.FINISHED`` once every group has proposed all
  its trials. ``save``/``restore`` pickle every group's state, so ``Tuner.restore`` continues each search,
  and the state of the study's scheduler (:attr:`StudySearcher.companion`, its ASHA rungs), which Tune
  itself does not save.

With ``tune.defaults`` (:mod:`study.schema`) a group's first configuration is its paper-default one: no
searched name set (the method's own defaults, the dataset's paper training settings), tagged
:data:`DEFAULT_KEY` and counted in the group's configurations; Optuna is not told its score (it is not a
point of the space). Under ``tune`` a random search never draws one configuration twice (equal budgets
count distinct configurations).

Only public Ray Tune and Optuna interfaces are used.
"""

from __future__ import annotations

import itertools
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.search import Searcher

if TYPE_CHECKING:
    from study.schema import Param

from study.layout import DEFAULT_KEY, GROUP_KEY

SEED_KEY = "seed"
NOT_HPARAMS = (GROUP_KEY, SEED_KEY, "__trial_index__")
MAX_ASKS = 100
"""Optuna proposals tried for a configuration the group has not run yet, before one is picked directly."""


def _finite_values(param: Param) -> Sequence[Any] | None:
    """Every value ``param`` can take (``choice``/``grid`` values, an ``int`` range, not materialised), or
    None when it is continuous."""
    if param.kind in ("choice", "grid"):
        return list(param.values)
    if param.kind == "int":
        lo, hi = param.bounds
        return range(int(lo), int(hi) + 1)
    return None


def space_size(space: Mapping[str, Param]) -> int | None:
    """How many distinct configurations ``space`` has, or None when a parameter is continuous."""
    size = 1
    for param in space.values():
        values = _finite_values(param)
        if values is None:
            return None
        size *= len(values)
    return size


def _key(params: Mapping[str, Any]) -> str:
    return repr(sorted(params.items()))


def config_key(config: Mapping[str, Any]) -> str:
    """What names a trial's configuration within its group (equal for its seeds): its hyperparameters and
    the paper-default tag, without the group and the seed."""
    return _key({k: v for k, v in config.items() if k not in NOT_HPARAMS})


def sample_param(param: Param, rng: np.random.Generator) -> Any:
    """One value of a YAML parameter drawn with ``rng`` (ints inclusive of both bounds)."""
    if param.kind in ("choice", "grid"):
        values = list(param.values)
        return values[int(rng.integers(len(values)))]
    lo, hi = param.bounds
    if param.kind == "uniform":
        return float(rng.uniform(lo, hi))
    if param.kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if param.log:
        value = math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))
        return min(max(value, int(lo)), int(hi))
    return int(rng.integers(int(lo), int(hi) + 1))


@dataclass
class _Config:
    """One configuration of a group and what became of its repeats (one per seed)."""

    params: dict[str, Any]
    optuna_number: int | None = None  # the Optuna trial it came from
    default: bool = False  # the paper-default configuration (nothing searched set)
    handed: int = 0  # seeds handed out so far
    scores: dict[str, float] = field(default_factory=dict)  # trial id -> score (NaN: failed)
    told: bool = False
    value: float | None = None  # what Optuna was told (None: a failure, or not told yet)


class GroupSearch:
    """The search of one (dataset, method) group: which configuration and seed its next trial runs.

    ``space`` maps hyperparameter names to :class:`study.schema.Param`; ``algorithm`` is ``optuna``,
    ``random`` or ``grid``; ``samples`` is the number of configurations (ignored by ``grid``, which runs every
    combination ``samples`` times over when continuous parameters are sampled alongside). ``defaults``: the
    first configuration is the paper default, one of the ``samples``; ``unique``: random search draws
    distinct configurations only (a finite space then caps the group at its size)."""

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
        all_grid = bool(self.space) and all(p.kind == "grid" for p in self.space.values())
        # a space of grid parameters only (e.g. stl's task) is enumerated whatever the algorithm
        self.algorithm = ("grid" if all_grid else algorithm) if self.space else "seeds"
        if all_grid:
            samples = 1  # every combination once (per seed): repeating a grid only duplicates trials
        self.rng = np.random.default_rng(seed)
        self.unique = unique
        first = [_Config({}, default=True)] if defaults else []
        extra = len(first)  # the paper default is one of the `samples` configurations
        self.configs: list[_Config] = list(first)
        self.trial_config: dict[str, int] = {}  # trial id -> index into configs
        self.optuna = None
        if self.algorithm == "optuna":
            import optuna

            from study.space import to_optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study created / trial told
            self.distributions = {n: to_optuna(p) for n, p in self.space.items()}
            self.optuna = optuna.create_study(
                study_name=study_name,
                direction="maximize",
                sampler=optuna.samplers.TPESampler(seed=seed),
            )
            size = space_size(self.space)
            self.n_configs = int(samples) if size is None else min(int(samples), size + extra)
        elif self.algorithm == "seeds":
            self.configs = [_Config({}, default=defaults)]
            self.n_configs = 1
        else:
            fresh = samples if all_grid else samples - extra  # a grid runs whole, beside the default
            self.configs = first + (self._enumerate(fresh) if fresh > 0 else [])
            self.n_configs = len(self.configs)

    def _enumerate(self, samples: int) -> list[_Config]:
        """random/grid: every configuration up front (grid values expanded, the rest sampled anew for
        each combination)."""
        as_grid = self.algorithm == "grid"
        expanded = [n for n, p in self.space.items() if p.kind == "grid" or (as_grid and p.kind == "choice")]
        combos = list(itertools.product(*(list(self.space[n].values) for n in expanded))) or [()]
        configs: list[_Config] = []
        seen: set[str] = set()
        size = space_size(self.space) if self.unique else None
        for _ in range(max(1, int(samples))):
            for combo in combos:
                for _draw in range(MAX_ASKS):
                    params = dict(zip(expanded, combo, strict=True))
                    for n, p in self.space.items():
                        if n not in params:
                            params[n] = sample_param(p, self.rng)
                    if not self.unique or _key(params) not in seen:
                        break
                if self.unique and (_key(params) in seen or (size is not None and len(seen) >= size)):
                    continue  # a finite space is used up
                seen.add(_key(params))
                configs.append(_Config(dict(sorted(params.items()))))
        return configs

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
        if self.algorithm == "optuna" and (current is None or current.handed >= len(self.seeds)):
            current = self._ask_new()
            self.configs.append(current)
        elif self.algorithm != "optuna":
            current = next(c for c in self.configs if c.handed < len(self.seeds))
        index = self.configs.index(current)
        seed = self.seeds[current.handed]
        current.handed += 1
        self.trial_config[trial_id] = index
        tag = {DEFAULT_KEY: True} if current.default else {}
        return {**current.params, **tag, SEED_KEY: seed}

    def _ask_new(self) -> _Config:
        """A configuration from Optuna that this group has not run: a proposal it already has is answered
        at once (its known score, or a failure while its trials still run) and Optuna is asked again; after
        :data:`MAX_ASKS` proposals in a finite space, an unrun configuration is enqueued directly."""
        import optuna

        known = {_key(c.params): c for c in self.configs}
        for _ in range(MAX_ASKS):
            ask = self.optuna.ask(self.distributions)
            params = dict(sorted(ask.params.items()))
            seen = known.get(_key(params))
            if seen is None:
                return _Config(params, optuna_number=ask.number)
            if seen.value is not None:
                self.optuna.tell(ask.number, seen.value)
            else:
                self.optuna.tell(ask.number, state=optuna.trial.TrialState.FAIL)
        unrun = [c for c in self._all_configs() if _key(c) not in known]
        if not unrun:  # a continuous space (never exhausted): keep the proposal
            return _Config(params, optuna_number=ask.number)
        self.optuna.enqueue_trial(unrun[int(self.rng.integers(len(unrun)))])
        ask = self.optuna.ask(self.distributions)
        return _Config(dict(sorted(ask.params.items())), optuna_number=ask.number)

    def _all_configs(self) -> list[dict[str, Any]]:
        """Every configuration of a finite space (empty for a space with a continuous parameter)."""
        values = [_finite_values(p) for p in self.space.values()]
        if any(v is None for v in values):
            return []
        return [dict(zip(self.space, combo, strict=True)) for combo in itertools.product(*values)]

    def complete(self, trial_id: str, score: float | None) -> None:
        """A trial of this group ended with ``score`` (None or non-finite: failed or no result)."""
        index = self.trial_config.get(trial_id)
        if index is None:
            return
        config = self.configs[index]
        config.scores[trial_id] = float(score) if score is not None and math.isfinite(score) else math.nan
        if (
            self.optuna is None
            or config.optuna_number is None  # the paper default: not a point Optuna proposed
            or config.told
            or len(config.scores) < len(self.seeds)
        ):
            return
        finite = [s for s in config.scores.values() if math.isfinite(s)]
        import optuna

        if finite:
            config.value = float(np.mean(finite))
            self.optuna.tell(config.optuna_number, config.value, skip_if_finished=True)
        else:
            self.optuna.tell(config.optuna_number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        config.told = True

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "configs": self.configs,
            "trial_config": dict(self.trial_config),
            "optuna": self.optuna,  # an in-memory Optuna study pickles whole
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.configs = list(state["configs"])
        self.trial_config = dict(state["trial_config"])
        self.optuna = state["optuna"]


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

    def running(self) -> int:
        return sum(len(ids) for ids in self.live.values())

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
        candidates = [
            n
            for n in order
            if n in open_groups and (self.max_per_group is None or len(self.live[n]) < self.max_per_group)
        ]
        if not candidates:
            return None
        # costliest first (longest-processing-time first), then least loaded; ties in round-robin order
        name = max(candidates, key=lambda n: (self.costs[n], -len(self.live[n])))
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
