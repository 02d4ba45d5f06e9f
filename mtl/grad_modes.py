"""The names of the ways per-task gradients are computed (torch-free, so configuration code can list them;
the modes themselves are :func:`mtl.gradients.task_gradients`)."""

from __future__ import annotations

GRAD_MODES = ("exact", "exact_vmap", "rep")
EXACT_MODES = ("exact", "exact_vmap")
"""The modes that give the exact per-task gradients (the same ``G`` up to float rounding), in tie-break order:
the per-task loop first, the papers' way."""
AUTO_MODE = "auto"
TRAIN_GRAD_MODES = (*GRAD_MODES, AUTO_MODE)
"""What a trial's ``grad_mode`` may be: a mode of :func:`mtl.gradients.task_gradients`, or ``auto`` (the
fastest exact mode on this model and device, chosen by a short probe at trial start,
:mod:`mtl.grad_probe`)."""
