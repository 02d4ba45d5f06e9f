"""The LR schedules a trial may train with (``TrainConfig.scheduler``, the ``scheduler`` key of a study's
``train:``), by name: the torch scheduler behind each, the arguments it starts from, and how it steps once
per epoch. ``plateau`` steps on the validation Δp (mode max), or on minus the summed validation loss where
Δp is not measured."""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mtl.errors import ConfigError
from mtl.training.choices import Choices

if TYPE_CHECKING:
    import torch

NOT_SETTINGS = ("optimizer", "last_epoch", "verbose")
"""Arguments of a torch LR scheduler that are not settings (the trainer passes the optimiser)."""


@dataclass(frozen=True)
class LRSchedule:
    """One LR schedule: the ``torch.optim.lr_scheduler`` class behind it (None: a constant LR), the
    arguments it starts from (``scheduler_kwargs`` override them), those the trainer sets itself, and the
    argument that takes the trial's ``epochs`` unless given."""

    torch_class: str | None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    epochs_as: str | None = None

    def arguments(self) -> list[str]:
        """The keyword arguments a study may set (``scheduler_kwargs.<name>``): the torch class's, less the
        fixed ones; none for a constant LR."""
        if self.torch_class is None:
            return []
        import torch

        cls = getattr(torch.optim.lr_scheduler, self.torch_class)
        skip = {*NOT_SETTINGS, *self.fixed}
        return [n for n in inspect.signature(cls).parameters if n not in skip]


LR_SCHEDULERS: Choices[LRSchedule] = Choices(
    "LR scheduler",
    {
        "none": LRSchedule(None),
        "step": LRSchedule("StepLR", {"step_size": 100, "gamma": 0.5}),
        "cosine": LRSchedule("CosineAnnealingLR", epochs_as="T_max"),
        "plateau": LRSchedule(
            "ReduceLROnPlateau", {"factor": 0.7, "patience": 5, "min_lr": 1e-5}, fixed={"mode": "max"}
        ),
    },
)
"""``TrainConfig.scheduler`` -> its :class:`LRSchedule`."""


def check_lr_scheduler_kwargs(name: str | None, kwargs: Mapping[str, Any] | None) -> None:
    """Raise :class:`ConfigError` when a constant LR (``none``) is given arguments."""
    if name == "none" and kwargs:
        raise ConfigError(f"scheduler 'none' takes no scheduler_kwargs, got {sorted(kwargs)}")


def build_lr_scheduler(
    name: str, kwargs: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer, *, epochs: int | None
) -> Any:
    """The LR scheduler ``name`` on ``optimizer`` with ``kwargs`` over its defaults (``epochs``: the
    trial's, for a schedule that spans the run), or None for a constant LR. Arguments the torch class
    refuses raise :class:`ConfigError`."""
    schedule = LR_SCHEDULERS[name]
    check_lr_scheduler_kwargs(name, kwargs)
    if schedule.torch_class is None:
        return None
    import torch

    args = {**schedule.defaults, **(kwargs or {})}
    if schedule.epochs_as is not None:
        args.setdefault(schedule.epochs_as, epochs)
    try:
        return getattr(torch.optim.lr_scheduler, schedule.torch_class)(optimizer, **schedule.fixed, **args)
    except TypeError as exc:
        raise ConfigError(f"bad scheduler_kwargs for scheduler '{name}': {exc}") from exc


def step_lr_scheduler(lr_scheduler: Any, val_delta_p: float, val_losses: Sequence[float]) -> None:
    """The end-of-epoch step of ``lr_scheduler`` (None: nothing): ``plateau`` on the validation Δp, or on
    minus the summed validation loss when Δp is NaN (no reference); the others on the epoch count."""
    if lr_scheduler is None:
        return
    import torch

    if isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        lr_scheduler.step(-sum(val_losses) if math.isnan(val_delta_p) else val_delta_p)
    else:
        lr_scheduler.step()
