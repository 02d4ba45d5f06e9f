"""The methods of 2022-26 and the MoE architectures train on real QM9 at quickstart scale (slow: one epoch of
440 molecules each, the quickstart's subset; the fair CPU study runs FAMO, FairGrad and UPGrad at this scale
for 10 epochs)."""

import math

import pytest

from mtl.config import TrainConfig
from mtl.train import fit

NEW_METHODS = (
    "upgrad", "dualproj", "fairgrad", "config", "m_config", "sdmgrad", "modo", "excess_mtl", "cr_mogm",
    "famo", "stch", "auto_lambda", "static",
)  # fmt: skip

pytestmark = pytest.mark.slow


def _config(method: str, architecture: str = "hps") -> TrainConfig:
    return TrainConfig(
        dataset="qm9",
        method=method,
        architecture=architecture,
        seed=0,
        epochs=1,
        batch_size=128,
        device="cpu",
        dataset_kwargs={"subset": 520, "progress": False},
    )


@pytest.mark.parametrize("method", NEW_METHODS)
def test_trains_on_qm9_at_quickstart_scale(method):
    (record,) = fit(_config(method))
    assert record["steps"] == 4  # 440 training molecules in batches of 128
    assert math.isfinite(record["val_delta_p"]) and math.isfinite(record["test_delta_p"])
    assert all(math.isfinite(v) for k, v in record.items() if k.startswith("train_loss/"))


@pytest.mark.parametrize("architecture", ["mmoe", "cgc", "ple", "dselect_k"])
def test_moe_architectures_train_on_qm9_at_quickstart_scale(architecture):
    (record,) = fit(_config("db_mtl", architecture))
    assert record["steps"] == 4 and math.isfinite(record["val_delta_p"])
