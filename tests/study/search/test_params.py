"""study.search.params and kinds: one parameter type whose kinds carry their own checks, values, sampling,
Optuna distribution, probes and column type; the YAML keys and messages derive from the list of kinds."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from pydantic import ValidationError

from study.search import Param, space_size
from study.search.kinds import KINDS


def param(data: dict) -> Param:
    return Param.model_validate(data)


def test_the_yaml_keys_are_the_kinds_plus_their_options():
    assert Param.allowed_fields() == [k.key for k in KINDS] + ["log"]
    assert [k.key for k in KINDS] == ["choice", "grid", "uniform", "loguniform", "int"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "give exactly one of choice, grid, uniform, loguniform, int; got none"),
        ({"choice": [1], "uniform": [0, 1]}, "got ['choice', 'uniform']"),
        ({"choice": []}, "choice needs at least one value"),
        ({"grid": [1, 1]}, "grid values must be distinct, got [1, 1]"),
        ({"uniform": [0.0]}, "uniform needs [low, high], got [0.0]"),
        ({"uniform": [0.9, 0.1]}, "uniform needs finite low < high, got [0.9, 0.1]"),
        ({"loguniform": [0, 0.1]}, "loguniform needs low > 0, got [0.0, 0.1]"),
        ({"int": [0, 8], "log": True}, "int with log: true needs low > 0, got [0, 8]"),
        ({"uniform": [0.1, 0.9], "log": True}, "log applies to int only (use loguniform for floats)"),
        ({"int": [True, 4]}, "not a boolean"),
        (0.5, "a search-space entry must be a mapping with one of choice, grid, uniform, loguniform, int"),
    ],
)
def test_each_kind_checks_its_values(data, message):
    with pytest.raises(ValidationError) as info:
        param(data)
    assert message in str(info.value)


def test_each_kind_answers_for_itself():
    choice = param({"choice": [0.1, 0.5]})
    grid = param({"grid": ["max", "mean"]})
    uniform = param({"uniform": [0.1, 0.9]})
    loguniform = param({"loguniform": [1e-4, 1e-2]})
    ints = param({"int": [2, 5]})
    log_ints = param({"int": [1, 1000], "log": True})
    assert [p.kind for p in (choice, grid, uniform, loguniform, ints)] == [k.key for k in KINDS]
    assert (choice.discrete, grid.discrete, ints.discrete) == (True, True, False)
    assert (choice.dist.enumerated, grid.dist.enumerated) == (False, True)
    assert list(ints.dist.finite_values()) == [2, 3, 4, 5] and uniform.dist.finite_values() is None
    assert grid.dist.finite_values() == ["max", "mean"]
    assert grid.values == ["max", "mean"] and ints.values == []  # a discrete kind's values only
    assert ints.probe_values() == [2, 5] and uniform.probe_values() == [0.1, 0.9]
    assert [p.column_type() for p in (choice, grid, uniform, ints)] == ["float", "str", "float", "int"]
    assert log_ints.dist.describe() == "{int: [1, 1000], log: true}"
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert choice.dist.sample(rng) in (0.1, 0.5)
        assert 0.1 <= uniform.dist.sample(rng) <= 0.9
        assert 1e-4 <= loguniform.dist.sample(rng) <= 1e-2
        assert 2 <= ints.dist.sample(rng) <= 5 and isinstance(ints.dist.sample(rng), int)
        assert 1 <= log_ints.dist.sample(rng) <= 1000
    assert isinstance(grid.dist.to_optuna(), optuna.distributions.CategoricalDistribution)
    assert loguniform.dist.to_optuna() == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert log_ints.dist.to_optuna() == optuna.distributions.IntDistribution(1, 1000, log=True)


def test_space_size_counts_finite_spaces_only():
    space = {"beta": param({"choice": [0.1, 0.5]}), "k": param({"int": [2, 5]})}
    assert space_size(space) == 8 and space_size({}) == 1
    assert space_size({**space, "lr": param({"uniform": [0, 1]})}) is None


def test_a_param_round_trips_through_its_yaml_dump():
    """A saved study (``Study.to_yaml``: every key, by alias) reads back to the same parameter."""
    dumped = param({"int": [8, 64], "log": True}).model_dump(mode="json", by_alias=True)
    assert dumped["int"] == [8, 64] and dumped["choice"] is None
    assert param(dumped).dist.describe() == "{int: [8, 64], log: true}"
