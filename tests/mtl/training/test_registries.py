"""The optimiser, LR scheduler and gradient-mode registries: names in order, factories, unknown names
rejected listing the valid ones, and TrainConfig's choices derived from them."""

import dataclasses

import pytest
import torch

from mtl.config import TrainConfig, spec_of
from mtl.errors import ConfigError, UnknownNameError
from mtl.training.choices import Choices
from mtl.training.grad_modes import EXACT_MODES, GRAD_MODE_CHOICES, GRAD_MODES, TRAIN_GRAD_MODES
from mtl.training.lr_schedulers import LR_SCHEDULERS, build_lr_scheduler, step_lr_scheduler
from mtl.training.optimizers import OPTIMIZERS, build_optimizer


def _choices(name):
    return spec_of(next(f for f in dataclasses.fields(TrainConfig) if f.name == name)).choices


def test_choices_keep_their_order_and_reject_unknown_names_listing_the_valid_ones():
    table = Choices("colour", {"red": 1, "green": 2})
    assert (
        table.names() == ("red", "green") and table["green"] == 2 and "red" in table and "blue" not in table
    )
    with pytest.raises(
        UnknownNameError, match="unknown colour 'gren' \\(did you mean 'green'\\?\\); valid: red, green"
    ):
        table["gren"]


def test_train_config_choices_derive_from_the_registries():
    assert _choices("optimizer") == OPTIMIZERS.names() == ("adam", "adamw", "sgd")
    assert _choices("scheduler") == LR_SCHEDULERS.names() == ("none", "step", "cosine", "plateau")
    assert _choices("grad_mode") == TRAIN_GRAD_MODES == GRAD_MODE_CHOICES.names()
    assert TRAIN_GRAD_MODES == ("exact", "exact_vmap", "rep", "auto") and GRAD_MODES == TRAIN_GRAD_MODES[:3]
    assert set(EXACT_MODES) <= set(GRAD_MODES)


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_optimizers_are_built_fused_with_the_settings(name, cls):
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(name, params, lr=0.01, weight_decay=0.1)
    group = opt.param_groups[0]
    assert type(opt) is cls and group["lr"] == 0.01 and group["weight_decay"] == 0.1 and group["fused"]
    assert name != "sgd" or group["momentum"] == 0.9


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ConfigError, match="unknown optimizer 'rmsprop'; valid: adam, adamw, sgd"):
        build_optimizer("rmsprop", [torch.nn.Parameter(torch.zeros(1))], lr=0.1, weight_decay=0.0)


def _sgd():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_lr_schedulers_start_from_their_defaults():
    assert build_lr_scheduler("none", {}, _sgd(), epochs=5) is None
    step = build_lr_scheduler("step", None, _sgd(), epochs=5)
    assert (step.step_size, step.gamma) == (100, 0.5)
    cosine = build_lr_scheduler("cosine", {}, _sgd(), epochs=7)
    assert cosine.T_max == 7
    plateau = build_lr_scheduler("plateau", {"patience": 2}, _sgd(), epochs=5)
    assert (plateau.mode, plateau.factor, plateau.patience, plateau.min_lrs) == ("max", 0.7, 2, [1e-5])


def test_lr_scheduler_arguments_exclude_what_the_trainer_sets():
    assert (
        "mode" not in LR_SCHEDULERS["plateau"].arguments()
        and "patience" in LR_SCHEDULERS["plateau"].arguments()
    )
    assert LR_SCHEDULERS["none"].arguments() == [] and "step_size" in LR_SCHEDULERS["step"].arguments()


def test_bad_lr_scheduler_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="scheduler 'none' takes no scheduler_kwargs, got \\['patience'\\]"):
        build_lr_scheduler("none", {"patience": 3}, _sgd(), epochs=5)
    with pytest.raises(ConfigError, match="bad scheduler_kwargs for scheduler 'step'"):
        build_lr_scheduler("step", {"patience": 3}, _sgd(), epochs=5)
    with pytest.raises(ConfigError, match="bad scheduler_kwargs for scheduler 'plateau'"):
        build_lr_scheduler("plateau", {"mode": "min"}, _sgd(), epochs=5)
    with pytest.raises(
        ConfigError, match="unknown LR scheduler 'linear'; valid: none, step, cosine, plateau"
    ):
        build_lr_scheduler("linear", {}, _sgd(), epochs=5)


def test_plateau_steps_on_the_validation_delta_p_or_the_validation_loss():
    opt = _sgd()
    plateau = build_lr_scheduler("plateau", {"patience": 0, "factor": 0.5}, opt, epochs=5)
    step_lr_scheduler(plateau, 1.0, [9.0])
    step_lr_scheduler(plateau, 0.5, [9.0])  # Δp fell (mode max): the lr halves
    assert opt.param_groups[0]["lr"] == 0.5
    step_lr_scheduler(plateau, float("nan"), [1.0])  # no Δp: minus the summed loss, -1.0 < best 1.0
    assert opt.param_groups[0]["lr"] == 0.25
    step_lr_scheduler(None, 1.0, [1.0])  # a constant LR: nothing to step
