"""``optuna``: TPE through Optuna's ask/tell interface (seeded, one in-memory Optuna study per group).

Optuna is told the mean of the finite scores of a configuration's seeds, or a failure when none is finite
(Optuna cannot digest NaN). A configuration is never proposed twice: when TPE proposes one the group already
has, Optuna is told that configuration's known score (or, while it still runs, that the proposal failed) and
asked again; after :data:`MAX_ASKS` such proposals in a finite space an unrun configuration is enqueued
directly, and a finite space caps :attr:`OptunaSearch.count` at its size.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from study.search.base import Proposal, SearchAlgorithm, config_id
from study.search.params import Param, space_size
from study.search.registry import ALGORITHMS

MAX_ASKS = 100
"""Optuna proposals tried for a configuration the group has not run yet, before one is picked directly."""


@ALGORITHMS.register("optuna")
class OptunaSearch(SearchAlgorithm):
    """Optuna TPE (see the module docstring); :attr:`study` is the Optuna study."""

    def __init__(
        self, space: Mapping[str, Param], budget: int, seed: int | None, *, study_name: str, unique: bool
    ) -> None:
        import optuna

        super().__init__(space, budget, seed, study_name=study_name, unique=unique)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study created / trial told
        self.distributions = {n: p.dist.to_optuna() for n, p in self.space.items()}
        self.study = optuna.create_study(
            study_name=study_name, direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        size = space_size(self.space)
        self._count = self.budget if size is None else min(self.budget, size)

    @property
    def count(self) -> int:
        return self._count

    def propose(self, known: Mapping[str, float | None]) -> Proposal:
        import optuna

        for _ in range(MAX_ASKS):
            ask = self.study.ask(self.distributions)
            params = dict(sorted(ask.params.items()))
            key = config_id(params)
            if key not in known:
                return Proposal(params, token=ask.number)
            if known[key] is not None:
                self.study.tell(ask.number, known[key])
            else:
                self.study.tell(ask.number, state=optuna.trial.TrialState.FAIL)
        unrun = [c for c in self._all_configs() if config_id(c) not in known]
        if not unrun:  # a continuous space (never exhausted): keep the proposal
            return Proposal(params, token=ask.number)
        self.study.enqueue_trial(unrun[int(self.rng.integers(len(unrun)))])
        ask = self.study.ask(self.distributions)
        return Proposal(dict(sorted(ask.params.items())), token=ask.number)

    def _all_configs(self) -> list[dict[str, Any]]:
        """Every configuration of a finite space (empty for a space with a continuous parameter)."""
        values = [p.dist.finite_values() for p in self.space.values()]
        if any(v is None for v in values):
            return []
        return [dict(zip(self.space, combo, strict=True)) for combo in itertools.product(*values)]

    def tell(self, token: Any, value: float | None) -> None:
        import optuna

        if value is not None:
            self.study.tell(token, value, skip_if_finished=True)
        else:
            self.study.tell(token, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "study": self.study}  # an in-memory Optuna study pickles whole

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.study = state["study"]

    @classmethod
    def study_problems(cls, study: Any) -> list[str]:
        """A group's ``grid`` parameters are enumerated only when its whole space is grid (e.g. stl over
        tasks); mixed with sampled ones they have no meaning under TPE (``tune`` refuses grid itself)."""
        if study.tune is not None:
            return []
        problems: dict[str, None] = {}
        for i, m in enumerate(study.methods):
            space = study.group_space(m)
            grid = [n for n, p in space.items() if p.dist.enumerated]
            if grid and len(grid) != len(space):
                for n in grid:
                    where = study.where_searched(i, m, n)
                    problems[
                        f"{where}: 'grid' mixed with sampled parameters under search.algorithm optuna; use "
                        "'choice', or search.algorithm random (grid values enumerated, the rest sampled); a "
                        "space of grid parameters only is enumerated under optuna too"
                    ] = None
        return list(problems)
