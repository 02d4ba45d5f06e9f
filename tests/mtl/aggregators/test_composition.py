"""Composition by name: <aggregator>, igbv1+<aggregator>, igbv2+<aggregator>, log+<aggregator>, imtl."""

import pytest
import torch

from mtl.context import StepContext
from mtl.methods import build_method, method_parameters, parse_method
from mtl.step import backward
from tests.mtl.aggregators.helpers import ALL_AGGREGATORS, params
from tests.mtl.tiny_model import TinyModel, losses_of

TASKS = ["t0", "t1", "t2"]
X = torch.tensor([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]], dtype=torch.float64)
Y = torch.tensor([[1.0, 2.0, -3.0], [-2.0, 1.0, 5.0], [0.5, 0.5, 0.5]], dtype=torch.float64)


@pytest.mark.parametrize("balancer", [None, "igbv1", "igbv2", "log"])
@pytest.mark.parametrize("aggregator", params([a for a in ALL_AGGREGATORS if a != "sum"]))
def test_every_composition_builds_and_steps(balancer, aggregator):
    name = aggregator if balancer is None else f"{balancer}+{aggregator}"
    spec = parse_method(name)
    assert spec.aggregator == aggregator and spec.balancer == (balancer or "ew").replace("log", "si")
    method = build_method(name, TASKS, seed=1)
    model = TinyModel([0.3, -0.1], [1.0, 2.0, -1.5])
    for k in range(1, 3):
        for p in model.parameters():
            p.grad = None
        stats = backward(
            method,
            losses_of(model, X, Y),
            StepContext(epoch=0, step=k),
            task_names=TASKS,
            shared_params=list(model.shared_parameters()),
            other_params=list(model.task_parameters()),
        )
        assert torch.isfinite(model.theta.grad).all()
        assert all(torch.isfinite(a.grad).all() for a in model.a)
        assert stats.grad_norms is not None and stats.weights.shape == (3,)


def test_imtl_is_imtl_l_plus_imtl_g():
    spec = parse_method("imtl")
    assert (spec.balancer, spec.aggregator) == ("imtl_l", "imtl_g")
    method = build_method("imtl", TASKS)
    assert len(list(method.extra_parameters())) == 1  # IMTL-L's scales


def test_kwargs_are_routed_to_their_part():
    method = build_method("igbv2+moco", TASKS, sac_lr=1e-3, buffer_size=500, gamma=0.2, rho=0.1)
    assert method.balancer.sac_lr == 1e-3 and method.balancer.buffer_size == 500
    assert method.aggregator.gamma == 0.2 and method.aggregator.rho == 0.1
    params_ = method_parameters("igbv2+gradvac")
    assert {"sac_lr", "buffer_size", "beta", "granularity"} <= params_.keys()


def test_sac_networks_are_not_method_parameters():
    """The trainer optimises method.parameters() with the model's optimiser: the SAC nets must stay out."""
    for name in ("igbv2", "igbv2+mgda", "igbv2+gradnorm"):
        assert list(build_method(name, TASKS).parameters()) == []


@pytest.mark.parametrize("name", params([a for a in ALL_AGGREGATORS if a != "sum"]))
def test_methods_pickle_and_deepcopy(name):
    """Ray ships objects between processes: every method must survive pickling with its state."""
    import copy
    import pickle

    method = build_method(f"igbv2+{name}", TASKS)
    restored = pickle.loads(pickle.dumps(method))
    copy.deepcopy(method)
    assert restored.state_dict().keys() == method.state_dict().keys()
