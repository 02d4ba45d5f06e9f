"""The trainer: records, exact resume, NaN handling, IGBv1 timing."""

import math

import pytest
import torch

from mtl.config import TrainConfig
from mtl.errors import ConfigError, NonFiniteLossError
from mtl.train import Trainer, fit
from tests.mtl.resume import assert_resume_is_bit_identical


def _config(method="db_mtl", epochs=4, **kw):
    return TrainConfig(
        dataset="synthetic",
        method=method,
        seed=0,
        epochs=epochs,
        batch_size=32,
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 16},
        **kw,
    )


def test_records_have_every_field():
    records = fit(_config(epochs=2))
    assert [r["epoch"] for r in records] == [0, 1]
    r = records[-1]
    for task in ("t0", "t1", "t2"):
        for key in (
            f"train_loss/{task}",
            f"weight/{task}",
            f"grad_norm/{task}",
            f"val/{task}/mae",
            f"test/{task}/mae",
            f"val_loss/{task}",
        ):
            assert math.isfinite(r[key]), key
    for key in ("val_delta_p", "test_delta_p", "val_delta_m", "test_delta_m", "grad_cos", "lr", "time_epoch"):
        assert math.isfinite(r[key]), key
    assert r["steps"] == 3
    assert r["val_delta_m"] < 0 or r["val_delta_p"] < 0  # they are (nearly) mirror images here


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("db_mtl", {}),
        ("ew", {}),
        ("rlw", {}),
        ("uw", {}),
        ("dwa", {}),
        ("igbv1", {}),
        ("imtl_l", {}),
        ("gls", {}),
        ("stl", {"task": "t2"}),
        ("igbv1+max_norm", {"alpha_strategy": "median"}),
    ],
)
def test_resume_is_bit_identical(method, kwargs):
    """Stop after 2 epochs, serialise the state, resume to 4: same records and parameters as 4 straight."""
    config = _config(
        method, method_kwargs=kwargs, scheduler="step", scheduler_kwargs={"step_size": 1, "gamma": 0.5}
    )
    assert_resume_is_bit_identical(config, epochs=4, stop_after=1)


def test_resume_refuses_a_different_method():
    trainer = Trainer(_config("ew", epochs=1))
    trainer.run_epoch()
    other = Trainer(_config("db_mtl", epochs=2))
    with pytest.raises(ConfigError, match="method"):
        other.load_state_dict(trainer.state_dict())


def test_nan_loss_raises_naming_the_task(tiny_synthetic):
    _x, y = tiny_synthetic.splits["train"]
    y[5, 1] = float("nan")  # one corrupt target of task t1
    config = TrainConfig(dataset="synthetic", method="db_mtl", epochs=1, batch_size=32)
    with pytest.raises(NonFiniteLossError, match="task 't1'") as info:
        fit(config, dataset=tiny_synthetic)
    assert info.value.epoch == 0


def test_igbv1_weights_switch_after_epoch_1_in_training():
    trainer = Trainer(_config("igbv1", epochs=3))
    records = [trainer.run_epoch() for _ in range(3)]
    for r in records[:2]:
        assert [r[f"weight/t{i}"] for i in range(3)] == [1.0, 1.0, 1.0]
    base = trainer.method.balancer.base_losses
    expected_base = torch.tensor([records[1][f"train_loss/t{i}"] for i in range(3)])
    torch.testing.assert_close(base, expected_base)
    w = [records[2][f"weight/t{i}"] for i in range(3)]
    assert sum(w) == pytest.approx(3.0, rel=1e-5) and w != [1.0, 1.0, 1.0]


def test_db_mtl_learns_better_than_ew_on_mismatched_scales():
    """The synthetic tasks' losses differ by 10^4; DB-MTL should reach a clearly better val Δp."""

    def best(method):
        cfg = TrainConfig(
            dataset="synthetic",
            method=method,
            seed=0,
            epochs=8,
            dataset_kwargs={"n_train": 1000, "n_val": 200, "n_test": 200},
        )
        return max(r["val_delta_p"] for r in fit(cfg))

    assert best("db_mtl") > best("ew") + 10.0


def test_losses_go_down():
    records = fit(_config("db_mtl", epochs=5))
    assert records[-1]["train_loss/t2"] < records[0]["train_loss/t2"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"grad_mode": "fast"}, "exact"),
        ({"optimizer": "rmsprop"}, "adam"),
        ({"lr": -1.0}, "lr"),
        ({"seed": "zero"}, "seed"),
        ({"scheduler": "linear"}, "plateau"),
    ],
)
def test_bad_configs(override, match):
    data = _config().to_dict() | override
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_dict(data)


def test_unknown_config_key():
    with pytest.raises(ConfigError, match="valid:"):
        TrainConfig.from_dict({"dataset": "synthetic", "metod": "ew"})


def test_unknown_dataset_and_dataset_kwarg():
    with pytest.raises(ConfigError, match="synthetic"):
        fit(TrainConfig(dataset="nyu"))
    with pytest.raises(ConfigError, match="n_train"):
        fit(TrainConfig(dataset="synthetic", dataset_kwargs={"ntrain": 5}))


def test_a_trial_config_is_validated_once(monkeypatch):
    """Issue 16: from_dict validates; the trainer and resolve_config do not validate the same config again,
    but a config changed after validation is checked again."""
    calls = []
    original = TrainConfig._check_fields
    monkeypatch.setattr(TrainConfig, "_check_fields", lambda self: calls.append(1) or original(self))
    config = TrainConfig.from_dict(_config(epochs=1).to_dict())
    Trainer(config)
    assert len(calls) == 1
    config.lr = -1.0  # changed after validation: the trainer checks it again
    with pytest.raises(ConfigError, match="lr must be > 0"):
        Trainer(config)


def test_a_chosen_scheduler_does_not_inherit_the_datasets_scheduler_arguments():
    """QM9's paper scheduler is plateau (factor 0.7, patience 5): a study that picks `scheduler: none` (the
    QM9 quickstart) must not get plateau's arguments, which `none` refuses (a trial failed on that)."""
    from mtl.config import TrainDefaults, resolve_config

    class WithPlateau:
        defaults = TrainDefaults(scheduler="plateau", scheduler_kwargs={"factor": 0.7, "patience": 5})

    chosen = resolve_config(_config(scheduler="none"), WithPlateau())
    assert chosen.scheduler == "none" and chosen.scheduler_kwargs == {}
    default = resolve_config(_config(), WithPlateau())
    assert default.scheduler == "plateau" and default.scheduler_kwargs == {"factor": 0.7, "patience": 5}
    kept = resolve_config(_config(scheduler="step", scheduler_kwargs={"step_size": 3}), WithPlateau())
    assert kept.scheduler_kwargs == {"step_size": 3}
