"""The ways per-task gradients are computed, by name (torch-free, so configuration code can list them; the
modes themselves are :func:`mtl.gradients.task_gradients`, ``auto``'s probe is :mod:`mtl.grad_probe`)."""

from __future__ import annotations

from mtl.errors import ConfigError
from mtl.training.choices import Choices

GRAD_MODE_CHOICES: Choices[str] = Choices(
    "grad_mode",
    {
        "exact": "one vector-Jacobian product per task through the shared encoder (the papers' way)",
        "exact_vmap": "the same gradients from one batched call (is_grads_batched)",
        "rep": "gradients w.r.t. the shared representation (a cheap approximation)",
        "auto": "the fastest exact mode on this model and device, chosen by a short probe at trial start",
    },
)
"""What a trial's ``grad_mode`` may be, each with what it does."""
AUTO_MODE = "auto"
TRAIN_GRAD_MODES = GRAD_MODE_CHOICES.names()
"""What a trial's ``grad_mode`` may be: a mode of :func:`mtl.gradients.task_gradients`, or ``auto`` (the
fastest exact mode on this model and device, chosen by a short probe at trial start,
:mod:`mtl.grad_probe`)."""
GRAD_MODES = tuple(m for m in TRAIN_GRAD_MODES if m != AUTO_MODE)
"""The modes of :func:`mtl.gradients.task_gradients`."""
EXACT_MODES = ("exact", "exact_vmap")
"""The modes that give the exact per-task gradients (the same ``G`` up to float rounding), in tie-break order:
the per-task loop first, the papers' way."""


def check_grad_mode_fits(mode: str, architecture: str, has_shared_representation: bool) -> None:
    """Raise :class:`ConfigError` when ``mode`` cannot run on the model: ``rep`` needs a single shared
    representation."""
    if mode == "rep" and not has_shared_representation:
        raise ConfigError(
            f"grad_mode 'rep' needs a single shared representation; architecture "
            f"'{architecture}' has none: use 'exact'"
        )
