"""Every aggregator's whole state is in its state dict: a reloaded copy continues bit-identically."""

import io

import pytest
import torch

from mtl.config import TrainConfig
from tests.mtl.aggregators.helpers import build, ctx, params, random_grads
from tests.mtl.resume import assert_resume_is_bit_identical


def _inputs(step):
    base = random_grads(1, 12, seed=99)
    grads = base + 0.5 * random_grads(3, 12, seed=step)
    losses = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64) / step**0.5
    return grads, ctx(step, losses, 3, param_sizes=(5, 7))


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # plain tensors, numbers and dicts only


@pytest.mark.parametrize("name", params())
def test_state_dict_resumes_exactly(name):
    straight = build(name, 3, seed=0)
    for k in range(1, 4):
        straight(*_inputs(k))
    state = _roundtrip(straight.state_dict())
    resumed = build(name, 3, seed=12345)  # a different seed: the generator must come from the state
    resumed.load_state_dict(state)
    for k in range(4, 8):
        a, b = straight(*_inputs(k)), resumed(*_inputs(k))
        assert torch.equal(a.shared, b.shared), name
        assert (a.task_weights is None) == (b.task_weights is None)
        if a.task_weights is not None:
            assert torch.equal(a.task_weights, b.task_weights)


@pytest.mark.parametrize("name", params())
def test_the_saved_state_is_a_snapshot(name):
    agg = build(name, 3)
    agg(*_inputs(1))
    state = agg.state_dict()
    saved = _roundtrip(state)
    agg(*_inputs(2))  # must not change the state taken before
    again = _roundtrip(state)
    assert saved.keys() == again.keys()
    for key in saved:
        _assert_same(saved[key], again[key])


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


def _config(method, **kw):
    return TrainConfig(
        dataset="synthetic",
        method=method,
        seed=0,
        epochs=4,
        batch_size=32,
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 8},
        scheduler="step",
        scheduler_kwargs={"step_size": 1, "gamma": 0.5},
        **kw,
    )


SLOW = pytest.mark.slow
NASH = params(["nash_mtl"])[0].marks


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("gradvac", {"granularity": "tensor"}),
        ("gradnorm", {}),
        ("mtadam", {}),
        pytest.param("mgda", {}, marks=SLOW),
        pytest.param("pcgrad", {}, marks=SLOW),
        pytest.param("graddrop", {}, marks=SLOW),
        pytest.param("cagrad", {}, marks=SLOW),
        pytest.param("imtl", {}, marks=SLOW),
        pytest.param("nash_mtl", {}, marks=[SLOW, *NASH]),
        pytest.param("aligned_mtl", {}, marks=SLOW),
        pytest.param("moco", {}, marks=SLOW),
        pytest.param("metabalance", {}, marks=SLOW),
        pytest.param("igbv1+gradvac", {}, marks=SLOW),
    ],
)
def test_trainer_resume_is_bit_identical(method, kwargs):
    assert_resume_is_bit_identical(_config(method, method_kwargs=kwargs), epochs=4, global_seed=4321)
