"""The static (linear scalarisation) balancer: fixed weights normalised to sum to T, given per task."""

import pytest
import torch

from mtl.config import TrainConfig
from mtl.context import StepContext
from mtl.errors import ConfigError
from mtl.methods import build_method, canonical_method_name, fold_mapping_kwargs
from mtl.train import fit
from tests.mtl.resume import assert_resume_is_bit_identical

TASKS = ["t0", "t1", "t2"]
CTX = StepContext(epoch=0, step=1)


def test_weights_are_normalised_to_sum_to_t_and_apply_to_the_raw_losses():
    method = build_method("static", TASKS, **{"weight.t0": 4.0, "weight.t2": 0.5})
    losses = torch.tensor([0.5, 2.0, 10.0], requires_grad=True)
    out = method.balancer(losses, CTX)
    expected = torch.tensor([4.0, 1.0, 0.5]) * 3 / 5.5  # t1 keeps raw weight 1
    torch.testing.assert_close(out.weights, expected)
    torch.testing.assert_close(out.terms, expected * losses.detach())
    out.terms.sum().backward()
    torch.testing.assert_close(losses.grad, expected)  # ∂/∂L_t Σ λ_s L_s = λ_t


def test_scaling_every_weight_changes_nothing_and_no_weights_is_ew():
    a = build_method("static", TASKS, **{"weight.t0": 1.0, "weight.t1": 2.0, "weight.t2": 3.0})
    b = build_method("static", TASKS, weight={"t0": 10.0, "t1": 20.0, "t2": 30.0})
    losses = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(a.balancer(losses, CTX).weights, b.balancer(losses, CTX).weights)
    torch.testing.assert_close(build_method("static", TASKS).balancer(losses, CTX).weights, torch.ones(3))


def test_names_and_folding():
    assert canonical_method_name("linear") == "static"
    assert fold_mapping_kwargs("static", {"weight.t0": 2, "weight.t1": "3"}) == {
        "weight": {"t0": 2, "t1": "3"}
    }
    assert fold_mapping_kwargs("ew", {"weight.t0": 2}) == {"weight.t0": 2}  # ew has no mapping: left alone
    # a string that spells a number (the CLI's -m weight.t1=3) is a number
    weights = build_method("static", TASKS, **{"weight.t1": "3"}).balancer.raw_weights
    assert weights == {"t0": 1.0, "t1": 3.0, "t2": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight.t9": 1.0}, r"\['t9'\]: not a task of this dataset; tasks: t0, t1, t2"),
        ({"weight.t0": 0.0}, "weight.t0 must be a finite number > 0, got 0.0"),
        ({"weight.t0": float("inf")}, "weight.t0 must be a finite number > 0"),
        ({"weight.t0": "heavy"}, "weight.t0 must be a number, got 'heavy'"),
        ({"weight.t0": True}, "weight.t0 must be a number"),
        ({"weights.t0": 1.0}, "unknown keyword argument 'weights.t0'"),
        ({"weight": {"t0": 1.0}, "weight.t1": 2.0}, None),
    ],
)
def test_bad_weights_fail_at_build_with_the_reason(kwargs, match):
    if match is None:  # both spellings merge
        assert build_method("static", TASKS, **kwargs).balancer.raw_weights == {
            "t0": 1.0,
            "t1": 2.0,
            "t2": 1.0,
        }
        return
    with pytest.raises(ConfigError, match=match):
        build_method("static", TASKS, **kwargs)


def _config(**kw):
    return TrainConfig(
        dataset="synthetic",
        method="static",
        seed=0,
        epochs=3,
        batch_size=32,
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 8},
        method_kwargs={"weight.t0": 3.0, "weight.t1": 0.5},
        **kw,
    )


def test_trains_and_reports_its_weights():
    records = fit(_config())
    assert len(records) == 3
    assert records[-1]["weight/t0"] == pytest.approx(3 * 3.0 / 4.5)  # raw weights 3, 0.5 and 1 (t2)


def test_resume_is_bit_identical():
    assert_resume_is_bit_identical(_config(), epochs=3, stop_after=1)
