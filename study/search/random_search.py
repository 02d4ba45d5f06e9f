"""``random``: every configuration drawn up front from the group's seeded generator; ``grid`` parameters
are expanded (each configuration once per combination of their values), the rest sampled anew for each.
Under ``tune`` (``unique``) no configuration is drawn twice and a finite space caps the count."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from study.search.base import Proposal, SearchAlgorithm, config_id
from study.search.params import Param, space_size
from study.search.registry import ALGORITHMS

MAX_DRAWS = 100
"""Draws tried for a configuration not drawn yet (``unique``), before the space counts as used up."""


@ALGORITHMS.register("random")
class RandomSearch(SearchAlgorithm):
    """Random search (see the module docstring)."""

    expand_choices = False  # a `choice` is sampled (grid search expands it)

    def __init__(
        self, space: Mapping[str, Param], budget: int, seed: int | None, *, study_name: str, unique: bool
    ) -> None:
        super().__init__(space, budget, seed, study_name=study_name, unique=unique)
        self.queue = self._draw(self.budget) if self.budget > 0 else []
        self.given = 0

    def _draw(self, samples: int) -> list[dict[str, Any]]:
        expanded = [
            n for n, p in self.space.items() if p.dist.enumerated or (self.expand_choices and p.discrete)
        ]
        values = [list(self.space[n].dist.finite_values()) for n in expanded]
        combos = list(itertools.product(*values)) or [()]
        configs: list[dict[str, Any]] = []
        seen: set[str] = set()
        size = space_size(self.space) if self.unique else None
        for _ in range(max(1, int(samples))):
            for combo in combos:
                for _draw in range(MAX_DRAWS):
                    params = dict(zip(expanded, combo, strict=True))
                    for n, p in self.space.items():
                        if n not in params:
                            params[n] = p.dist.sample(self.rng)
                    if not self.unique or config_id(params) not in seen:
                        break
                if self.unique and (config_id(params) in seen or (size is not None and len(seen) >= size)):
                    continue  # a finite space is used up
                seen.add(config_id(params))
                configs.append(dict(sorted(params.items())))
        return configs

    @property
    def count(self) -> int:
        return len(self.queue)

    def propose(self, known: Mapping[str, float | None]) -> Proposal:
        params = self.queue[self.given]
        self.given += 1
        return Proposal(dict(params))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "queue": list(self.queue), "given": self.given}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.queue = list(state["queue"])
        self.given = int(state["given"])
