"""Every method of the registries (derived from them, so a new one is included automatically) trains on the
synthetic data with finite records and resumes bit for bit from a checkpoint through the trainer."""

import math

import pytest

from mtl.aggregators import AGGREGATORS
from mtl.balancers import BALANCERS
from mtl.config import TrainConfig
from mtl.methods import canonical_method_name, valid_method_names
from mtl.train import fit
from tests.mtl.aggregators.helpers import HAS_CVXPY
from tests.mtl.resume import assert_resume_is_bit_identical

KWARGS = {"stl": {"task": "t1"}}
"""Methods that need an argument to be built."""
ALREADY_RESUME_TESTED = {
    # fast in tests/mtl/test_train.py and tests/mtl/aggregators/test_state.py; slow here
    "ew", "rlw", "uw", "dwa", "igbv1", "imtl_l", "gls", "stl", "db_mtl", "si", "max_norm", "sum",
    "gradvac", "gradnorm", "mtadam", "mgda", "pcgrad", "graddrop", "cagrad", "imtl", "imtl_g", "nash_mtl",
    "aligned_mtl", "moco", "metabalance", "igbv2",
}  # fmt: skip


def every_method() -> list[str]:
    return sorted({canonical_method_name(n) for n in valid_method_names()})


def _params(slow_if_known: bool):
    out = []
    for name in every_method():
        marks = []
        if name == "nash_mtl" and not HAS_CVXPY:
            marks.append(pytest.mark.skip(reason="cvxpy not installed"))
        if slow_if_known and name in ALREADY_RESUME_TESTED:
            marks.append(pytest.mark.slow)
        out.append(pytest.param(name, marks=marks))
    return out


def _config(method: str, epochs: int) -> TrainConfig:
    return TrainConfig(
        dataset="synthetic",
        method=method,
        seed=0,
        epochs=epochs,
        batch_size=32,
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 8},
        method_kwargs=KWARGS.get(method, {}),
        scheduler="step",
        scheduler_kwargs={"step_size": 1, "gamma": 0.5},
    )


def test_the_list_covers_both_registries():
    names = set(every_method())
    assert {n for n in BALANCERS.names()} - {"sum"} <= names | {"log"}
    assert {n for n in AGGREGATORS.names() if n != "sum"} <= names


@pytest.mark.parametrize("method", _params(slow_if_known=False))
def test_trains_on_synthetic_data(method):
    records = fit(_config(method, epochs=2))
    assert [r["epoch"] for r in records] == [0, 1]
    for r in records:
        assert math.isfinite(r["val_delta_p"]) and math.isfinite(r["test_delta_p"])
        assert all(math.isfinite(r[f"train_loss/t{i}"]) for i in range(3))
        assert all(math.isfinite(r[f"weight/t{i}"]) for i in range(3))


@pytest.mark.parametrize("method", _params(slow_if_known=True))
def test_resume_through_the_trainer_is_bit_identical(method):
    assert_resume_is_bit_identical(_config(method, epochs=3), epochs=3, stop_after=1, global_seed=777)
