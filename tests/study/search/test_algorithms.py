"""The shipped search algorithms over the base: the registry's names, each one's proposals, and a state
saved mid-search that proposes exactly what the uninterrupted search does."""

from __future__ import annotations

import pickle

import pytest

from mtl.errors import UnknownNameError
from study.search import ALGORITHMS, DEFAULT_ALGORITHM, Param, config_id
from study.search.grid_search import GridSearch
from study.search.optuna_tpe import OptunaSearch
from study.search.random_search import RandomSearch

SPACE = {
    "beta": Param.model_validate({"choice": [0.1, 0.5, 0.9]}),
    "k": Param.model_validate({"int": [1, 4]}),
    "lr": Param.model_validate({"loguniform": [1e-4, 1e-2]}),
}


def test_the_registry_names_every_algorithm_and_refuses_others():
    assert ALGORITHMS.in_order() == ["optuna", "random", "grid"] and DEFAULT_ALGORITHM == "optuna"
    assert ALGORITHMS.algorithm("optuna") is OptunaSearch and ALGORITHMS.algorithm("grid") is GridSearch
    with pytest.raises(UnknownNameError, match="unknown search algorithm 'tpe'; valid: grid, optuna, random"):
        ALGORITHMS.algorithm("tpe")
    assert GridSearch.default_samples == 1 and RandomSearch.default_samples == 8
    assert GridSearch.tune_conflict and not GridSearch.takes_continuous and RandomSearch.tune_conflict is None


def test_grid_expands_every_choice_and_random_samples_them():
    space = {"beta": SPACE["beta"], "mode": Param.model_validate({"grid": ["a", "b"]})}
    grid = GridSearch(space, 1, 0, study_name="g", unique=False)
    assert grid.count == 6
    assert sorted(config_id(grid.propose({}).params) for _ in range(6)) == sorted(
        config_id({"beta": b, "mode": m}) for b in (0.1, 0.5, 0.9) for m in ("a", "b")
    )
    random = RandomSearch(space, 2, 0, study_name="r", unique=False)
    assert random.count == 4  # the grid parameter expanded, beta drawn for each
    assert [random.propose({}).params["mode"] for _ in range(4)] == ["a", "b", "a", "b"]
    assert RandomSearch(space, 10, 0, study_name="u", unique=True).count == 6  # a finite space runs out


@pytest.mark.parametrize("name", ["optuna", "random"])
def test_a_restored_algorithm_proposes_what_the_uninterrupted_one_does(name):
    def make():
        return ALGORITHMS.algorithm(name)(SPACE, 6, 3, study_name=f"s.{name}", unique=True)

    def step(algorithm, known):
        proposal = algorithm.propose(known)
        value = float(len(known))
        algorithm.tell(proposal.token, value)
        known[config_id(proposal.params)] = value
        return proposal.params

    original, known = make(), {}
    for _ in range(3):
        step(original, known)
    restored = make()
    restored.load_state_dict(pickle.loads(pickle.dumps(original.state_dict())))  # as the searcher saves it
    known_copy = dict(known)
    assert [step(original, known) for _ in range(3)] == [step(restored, known_copy) for _ in range(3)]


def test_optuna_is_told_a_failure_as_such():
    import optuna

    search = OptunaSearch({"lr": SPACE["lr"]}, 2, 0, study_name="f", unique=False)
    first = search.propose({})
    search.tell(first.token, None)
    assert search.study.trials[first.token].state == optuna.trial.TrialState.FAIL
