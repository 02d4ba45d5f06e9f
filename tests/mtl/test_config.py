"""TrainConfig's field metadata is the one source: its checks, the `mtl train` flags, the study's `train:`
block and a dataset's TrainDefaults derive from it."""

import dataclasses

import pytest

from mtl.cli import build_parser
from mtl.config import (
    TRIAL_FIELDS,
    TrainConfig,
    TrainDefaults,
    flag_fields,
    resolve_config,
    searchable_settings,
    setting_fields,
    spec_of,
)
from mtl.errors import ConfigError


def test_every_field_declares_help_and_the_trial_fields_are_marked():
    assert all(spec_of(f).help for f in dataclasses.fields(TrainConfig))
    assert TRIAL_FIELDS == ("dataset", "method", "seed", "dataset_kwargs", "method_kwargs")
    assert [f.name for f in setting_fields()][:2] == ["epochs", "model_kwargs"]
    assert "lr" in searchable_settings() and "epochs" not in searchable_settings()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"batch_size": 1.5}, "batch_size must be an integer, got 1.5"),
        ({"seed": True}, "seed must be an integer, got True"),
        ({"optimizer": "adagrad"}, "optimizer 'adagrad' unknown; valid: adam, adamw, sgd"),
        ({"scheduler": "linear"}, "scheduler 'linear' unknown; valid: none, step, cosine, plateau"),
        ({"grad_mode": "fast"}, "grad_mode 'fast' unknown; valid: exact, exact_vmap, rep, auto"),
        ({"device": "cuda:abc"}, "device 'cuda:abc' unknown; valid: auto, cpu, cuda, cuda:N (N a GPU index)"),
        ({"scheduler_kwargs": [1]}, "scheduler_kwargs must be a mapping, got [1]"),
        ({"model_kwargs": None}, "model_kwargs must be a mapping, got None"),
        ({"device_batches": 1}, "device_batches must be true, false or null, got 1"),
        ({"grad_diagnostics": "yes"}, "grad_diagnostics must be true or false, got 'yes'"),
        (
            {"scheduler": "none", "scheduler_kwargs": {"patience": 3}},
            "scheduler 'none' takes no scheduler_kwargs",
        ),
    ],
)
def test_checks_come_from_the_field_metadata(override, message):
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        TrainConfig.from_dict(override)


def test_valid_names_pass():
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        TrainConfig.from_dict(
            {"device": device, "optimizer": "sgd", "scheduler": "cosine", "grad_mode": "auto"}
        )


def test_the_mtl_train_flags_are_the_fields_that_declare_one():
    flags = [flag for flag, _, _ in flag_fields()]
    assert flags == [
        "--dataset", "--method", "--seed", "--epochs", "--lr", "--batch-size", "--grad-mode", "--device",
        "--max-steps",
    ]  # fmt: skip
    args = build_parser().parse_args(["train", "--max-steps", "3", "--lr", "0.1", "--grad-mode", "auto"])
    assert (args.max_steps_per_epoch, args.lr, args.grad_mode, args.seed, args.dataset) == (
        3,
        0.1,
        "auto",
        0,
        "synthetic",
    )
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--grad-mode", "fast"])


def test_train_defaults_hold_the_paper_defaults_a_dataset_overrides():
    base = TrainDefaults()
    assert dataclasses.asdict(base) == {
        "epochs": 100, "lr": 1e-3, "batch_size": 128, "optimizer": "adam", "weight_decay": 0.0,
        "scheduler": "none", "scheduler_kwargs": {},
    }  # fmt: skip
    assert TrainDefaults(lr=1e-4).lr == 1e-4
    with pytest.raises(ConfigError, match="optimizer 'adagrad' unknown"):
        TrainDefaults(optimizer="adagrad")
    with pytest.raises(TypeError):
        TrainDefaults(seed=3)  # a trial field is no dataset default


def test_resolve_config_fills_only_unset_settings():
    class Dataset:
        defaults = TrainDefaults(lr=1e-4, epochs=7)

    resolved = resolve_config(TrainConfig(lr=0.5), Dataset())
    assert (resolved.lr, resolved.epochs, resolved.optimizer, resolved.scheduler_kwargs) == (
        0.5,
        7,
        "adam",
        {},
    )
