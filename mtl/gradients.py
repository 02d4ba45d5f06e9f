"""The one place that computes per-task gradients of the shared parameters (DESIGN §2).

Modes:
  * ``exact``: T vector-Jacobian products through the shared encoder, one ``autograd.grad`` per task
    (what the papers use; the default);
  * ``exact_vmap``: the same numbers from one batched call (``is_grads_batched``), faster on some GPU models;
  * ``rep``: gradients with respect to the shared representation ``z`` instead of the shared parameters
    (cheap approximation, LibMTL's ``rep_grad``); the aggregated ``z``-gradient is then back-propagated once.

Task-specific parameters ("others": heads, and the method's own learnable scales) get their gradients
from the same calls, so no extra backward is spent on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

GRAD_MODES = ("exact", "exact_vmap", "rep")


@dataclass
class TaskGradients:
    """``matrix`` [T, P]: row t is the flattened gradient of ℓ_t w.r.t. the shared target (parameters,
    or the representation in ``rep`` mode). ``others`` holds, per task, the gradients of ℓ_t w.r.t. the
    other parameters (``per_task=True``), or their sum over tasks."""

    matrix: Tensor
    others: list[list[Tensor]] | list[Tensor]
    per_task: bool


def _flatten(grads: Sequence[Tensor]) -> Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def task_gradients(
    terms: Tensor,
    shared: Sequence[Tensor],
    others: Sequence[Tensor] = (),
    *,
    mode: str = "exact",
    per_task_others: bool = False,
    retain_graph: bool = False,
) -> TaskGradients:
    """Gradients of each ``terms[t]`` w.r.t. ``shared`` (flattened into a [T, P] matrix) and ``others``.

    ``shared`` is the list of shared parameters, or ``[z]`` for the representation in ``rep`` mode (the
    computation is identical; only the caller's target differs).
    """
    if mode not in GRAD_MODES:
        raise ValueError(f"unknown gradient mode '{mode}'; valid: {', '.join(GRAD_MODES)}")
    if terms.dim() != 1:
        raise ValueError(f"terms must be a vector [T], got shape {tuple(terms.shape)}")
    shared = list(shared)
    others = [p for p in others if p.requires_grad]
    targets = shared + others
    n_shared = len(shared)
    num_tasks = terms.shape[0]

    if mode == "exact_vmap":
        eye = torch.eye(num_tasks, dtype=terms.dtype, device=terms.device)
        batched = torch.autograd.grad(
            terms,
            targets,
            grad_outputs=eye,
            is_grads_batched=True,
            retain_graph=retain_graph,
            allow_unused=True,
            materialize_grads=True,
        )
        matrix = torch.cat([g.reshape(num_tasks, -1) for g in batched[:n_shared]], dim=1)
        other_rows = [[g[t] for g in batched[n_shared:]] for t in range(num_tasks)]
    else:
        rows, other_rows = [], []
        for t in range(num_tasks):
            keep = retain_graph or t < num_tasks - 1
            grads = torch.autograd.grad(
                terms[t], targets, retain_graph=keep, allow_unused=True, materialize_grads=True
            )
            rows.append(_flatten(grads[:n_shared]))
            other_rows.append(list(grads[n_shared:]))
        matrix = torch.stack(rows)

    if per_task_others:
        return TaskGradients(matrix, other_rows, per_task=True)
    summed = [torch.stack(col).sum(dim=0) for col in zip(*other_rows)] if others else []
    return TaskGradients(matrix, summed, per_task=False)


def combine_others(grads: TaskGradients, weights: Tensor | None) -> list[Tensor]:
    """``Σ_t w_t ∇ℓ_t`` for the other parameters (``w = 1`` when ``weights`` is None)."""
    if not grads.per_task:
        if weights is not None:
            raise ValueError("task weights given but per-task gradients of the heads were not kept")
        return grads.others  # type: ignore[return-value]
    rows = grads.others
    if not rows or not rows[0]:
        return []
    w = weights if weights is not None else torch.ones(len(rows), device=grads.matrix.device)
    return [sum(w[t] * rows[t][i] for t in range(len(rows))) for i in range(len(rows[0]))]  # type: ignore[misc]


def accumulate_grad(params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
    """Add ``grads`` into ``p.grad`` (set it where it is None)."""
    for p, g in zip(params, grads, strict=True):
        g = g.detach().to(p.dtype)
        if p.grad is None:
            p.grad = g.clone()
        else:
            p.grad.add_(g)


def write_flat_grad(params: Sequence[Tensor], flat: Tensor) -> None:
    """Split a flat [P] update over ``params`` and add it into their ``.grad``."""
    sizes = [p.numel() for p in params]
    if sum(sizes) != flat.numel():
        raise ValueError(f"flat gradient has {flat.numel()} entries, parameters have {sum(sizes)}")
    chunks = torch.split(flat.detach(), sizes)
    accumulate_grad(params, [c.view_as(p) for c, p in zip(chunks, params)])


def gradient_diagnostics(matrix: Tensor) -> tuple[Tensor, float]:
    """Per-task gradient norms [T] and the mean pairwise cosine similarity (DB-MTL paper Fig. 10)."""
    norms = matrix.norm(dim=1)
    num_tasks = matrix.shape[0]
    if num_tasks < 2:
        return norms, float("nan")
    unit = matrix / norms.clamp_min(1e-12).unsqueeze(1)
    cos = unit @ unit.T
    iu = torch.triu_indices(num_tasks, num_tasks, offset=1, device=matrix.device)
    return norms, float(cos[iu[0], iu[1]].mean())
