import pytest

from mtl.errors import ConfigError, UnknownNameError
from mtl.methods import build_method, method_parameters, parse_method

TASKS = ["a", "b", "c"]


def test_unknown_method_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        build_method("db_mtll", TASKS)
    message = str(info.value)
    assert "db_mtll" in message and "db_mtl" in message and "ew" in message and "igbv1" in message


def test_unknown_kwarg_lists_valid_kwargs():
    with pytest.raises(ConfigError) as info:
        build_method("db_mtl", TASKS, betta=0.5)
    message = str(info.value)
    for valid in ("beta", "beta_sigma", "alpha_strategy", "alpha_constant"):
        assert valid in message


def test_unknown_kwarg_of_balancer_alone():
    with pytest.raises(ConfigError, match="'beta' for method 'ew'; valid: log"):
        build_method("ew", TASKS, beta=0.5)
    with pytest.raises(ConfigError, match="valid: none"):
        build_method("gls", TASKS, beta=0.5)


def test_unknown_aggregator_in_composition():
    with pytest.raises(UnknownNameError, match="max_norm"):
        build_method("log+maxnorn", TASKS)


def test_db_mtl_and_its_table5_ablations():
    both = parse_method("db_mtl")
    assert (both.balancer, both.aggregator) == ("si", "max_norm")
    log_only = build_method("si", TASKS)
    assert log_only.aggregator is None and log_only.balancer.log
    norm_only = build_method("max_norm", TASKS)
    assert norm_only.aggregator is not None and not norm_only.balancer.log
    db = build_method("db_mtl", TASKS, beta=0.5, beta_sigma=0.0, alpha_strategy="mean")
    assert db.balancer.log
    assert (db.aggregator.beta, db.aggregator.beta_sigma, db.aggregator.alpha_strategy) == (0.5, 0.0, "mean")


def test_kwargs_are_routed_and_prefixes_work():
    method = build_method("igbv1+max_norm", TASKS, beta=0.3, base_epoch=2)
    assert method.aggregator.beta == 0.3 and method.balancer.base_epoch == 2
    method = build_method("igbv1+max_norm", TASKS, **{"aggregator.beta": 0.2, "balancer.base_epoch": 0})
    assert method.aggregator.beta == 0.2 and method.balancer.base_epoch == 0


def test_method_parameters_lists_defaults():
    params = method_parameters("db_mtl")
    assert params == {"beta": 0.9, "beta_sigma": 0.0, "alpha_strategy": "max", "alpha_constant": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"beta": 1.5}, "beta"), ({"alpha_strategy": "mode"}, "median"), ({"beta_sigma": -1}, "beta_sigma")],
)
def test_bad_values_are_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_method("db_mtl", TASKS, **kwargs)


def test_stl_needs_a_known_task():
    assert build_method("stl", TASKS, task="b").balancer.task_index == 1
    with pytest.raises(ConfigError, match="a, b, c"):
        build_method("stl", TASKS, task="z")
    with pytest.raises(ConfigError, match="cannot be combined"):
        parse_method("stl+max_norm")
