"""``grid``: every combination of the ``choice``/``grid`` values (once per seed); parameters of other kinds
are refused by the study file (sampled alongside, they would be drawn anew for each combination)."""

from __future__ import annotations

from typing import Any

from study.search.random_search import RandomSearch
from study.search.registry import ALGORITHMS


@ALGORITHMS.register("grid")
class GridSearch(RandomSearch):
    """Grid search: random search with every ``choice`` expanded (see the module docstring)."""

    expand_choices = True
    default_samples = 1
    tune_conflict = "runs every combination, a different number per method"
    takes_continuous = False

    @classmethod
    def study_problems(cls, study: Any) -> list[str]:
        if study.search.num_samples not in (None, 1):
            return ["search.num_samples: grid search runs every combination once; use 1 (or leave it out)"]
        return []
