"""The point of the registry: an algorithm registered from outside (here, this test module) is accepted by
the study file, with its own defaults and rules, and searched by the study's Tune searcher end to end --
no other file names it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from ray.tune.search import Searcher

from study.schema import StudyError, parse_study
from study.search import ALGORITHMS, Proposal, SearchAlgorithm
from study.tuner import make_searcher

STUDY = """
datasets: [synthetic]
methods: [ew, si]
seeds: [0, 1]
space: {batch_size: {int: [8, 12]}}
train: {epochs: 2}
search: {algorithm: sweep}
"""


class Sweep(SearchAlgorithm):
    """A toy: the i-th configuration sets every parameter to its i-th value; remembers what it is told."""

    default_samples = 3

    def __init__(self, space, budget, seed, *, study_name, unique) -> None:
        super().__init__(space, budget, seed, study_name=study_name, unique=unique)
        self.next = 0
        self.told: list[tuple[int, float | None]] = []

    @property
    def count(self) -> int:
        return self.budget

    def propose(self, known: Mapping[str, float | None]) -> Proposal:
        params = {n: list(p.dist.finite_values())[self.next] for n, p in self.space.items()}
        self.next += 1
        return Proposal(params, token=self.next - 1)

    def tell(self, token: Any, value: float | None) -> None:
        self.told.append((token, value))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "next": self.next, "told": list(self.told)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.next, self.told = state["next"], list(state["told"])

    @classmethod
    def study_problems(cls, study: Any) -> list[str]:
        continuous = {n for g in study.groups() for n, p in g.space.items() if p.dist.finite_values() is None}
        return [f"space.{name}: sweep walks finite values only" for name in sorted(continuous)]


@pytest.fixture
def sweep(monkeypatch):
    """``sweep`` registered for this test only."""
    monkeypatch.setattr(ALGORITHMS, "_entries", dict(ALGORITHMS._entries))
    ALGORITHMS.register("sweep")(Sweep)
    return Sweep


def test_an_unregistered_algorithm_is_refused_listing_the_registered_ones():
    with pytest.raises(StudyError, match=r"search.algorithm: Input should be 'optuna', 'random' or 'grid'"):
        parse_study(STUDY, default_name="toy", check_registry=False)


def test_a_registered_algorithm_runs_end_to_end_through_the_schema_and_the_searcher(sweep, tmp_path):
    study = parse_study(STUDY, default_name="toy")
    assert study.search.samples == 3  # the algorithm's own default number of configurations
    searcher = make_searcher(study)
    assert searcher.total == 2 * 3 * 2  # groups x configurations x seeds
    configs, step = [], 0
    while (config := searcher.suggest(f"t{step}")) not in (None, Searcher.FINISHED):
        configs.append(config)
        searcher.on_trial_complete(f"t{step}", {"val_delta_p": float(config["batch_size"] + config["seed"])})
        step += 1
        if step == 5:  # a resumed study continues the toy's own state too
            searcher.save(str(tmp_path / "searcher.pkl"))
            searcher = make_searcher(study)
            searcher.restore(str(tmp_path / "searcher.pkl"))
    assert searcher.suggest("end") == Searcher.FINISHED
    for group in ("synthetic__ew", "synthetic__si"):
        runs = [(c["batch_size"], c["seed"]) for c in configs if c["group"] == group]
        assert runs == [(b, s) for b in (8, 9, 10) for s in (0, 1)]
        assert searcher.groups[group].strategy.told == [(0, 8.5), (1, 9.5), (2, 10.5)]  # seeds' means


def test_a_registered_algorithm_brings_its_own_rules_to_the_study_file(sweep):
    text = STUDY.replace("{int: [8, 12]}", "{int: [8, 12]}, lr: {loguniform: [1.0e-4, 1.0e-2]}")
    with pytest.raises(StudyError, match=r"space\.lr: sweep walks finite values only"):
        parse_study(text, default_name="toy", check_registry=False)
