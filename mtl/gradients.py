"""The one place that computes per-task gradients of the shared parameters (DESIGN §2).

Modes:
  * ``exact``: T vector-Jacobian products through the shared encoder, one ``autograd.grad`` per task
    (what the papers use; the default);
  * ``exact_vmap``: the same numbers from one batched call (``is_grads_batched``), faster on some GPU models.
    When the caller passes the shared representation ``z`` (``rep=``; the trainer does for models with one),
    the batch runs through the encoder only: each task's gradient w.r.t. ``z`` (and its head) comes from its
    own small backward through the heads, and the T cotangents ``∂ℓ_t/∂z`` go through the encoder in one
    batched vector-Jacobian product. By the chain rule this is the same ``G`` (it assumes, as ``rep`` mode
    does, that the shared parameters act on the losses through ``z`` only, as in HPS), without vmapping
    every task's head for every task;
  * ``rep``: gradients with respect to the shared representation ``z`` instead of the shared parameters
    (cheap approximation, LibMTL's ``rep_grad``); the aggregated ``z``-gradient is then back-propagated once.

Task-specific parameters ("others": heads, and the method's own learnable scales) get their gradients
from the same calls, so no extra backward is spent on them. ``G`` is written in place into one preallocated
[T, P] matrix (no per-task concatenation copies), and nothing here synchronises with the host.

Which of ``exact`` / ``exact_vmap`` is faster depends on the model and the hardware; ``python -m
benchmarks.step_time --modes exact,exact_vmap`` measures both side by side (on the 2-core CPU the per-task
loop is 2.7x faster for the QM9 MPNN and ties on ResNet-18; see the README's Benchmarks section). A trial with
``grad_mode: auto`` times both on its own model and device at start and keeps the faster
(:mod:`mtl.grad_probe`, :func:`choose_grad_mode`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mtl.training.grad_modes import AUTO_MODE, EXACT_MODES, GRAD_MODES, TRAIN_GRAD_MODES  # noqa: F401  (re-exported)

AUTO_TIE_TOLERANCE = 0.02
"""``auto``: a mode must be more than 2 % faster than an earlier one of :data:`EXACT_MODES` to be chosen."""


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


def _matrix_like(shared: Sequence[Tensor], num_tasks: int) -> Tensor:
    """An uninitialised [T, P] matrix for the flattened gradients of ``shared`` (their promoted dtype)."""
    dtype = shared[0].dtype
    for p in shared[1:]:
        dtype = torch.promote_types(dtype, p.dtype)
    return torch.empty((num_tasks, sum(p.numel() for p in shared)), dtype=dtype, device=shared[0].device)


def _write_row(matrix: Tensor, t: int, grads: Sequence[Tensor]) -> None:
    offset = 0
    for g in grads:
        n = g.numel()
        matrix[t, offset : offset + n].copy_(g.reshape(-1))
        offset += n


def _via_representation(
    terms: Tensor,
    rep: Tensor,
    shared: list[Tensor],
    others: list[Tensor],
    retain_graph: bool,
) -> tuple[Tensor, list[list[Tensor]]]:
    """``G`` by the chain rule: per task, ``∂ℓ_t/∂z`` and the heads' gradients (small backwards through the
    heads only), then one batched VJP of the T cotangents through the encoder."""
    num_tasks = terms.shape[0]
    cotangents = torch.empty((num_tasks, *rep.shape), dtype=rep.dtype, device=rep.device)
    other_rows = []
    for t in range(num_tasks):
        grads = torch.autograd.grad(
            terms[t], [rep, *others], retain_graph=True, allow_unused=True, materialize_grads=True
        )
        cotangents[t].copy_(grads[0])
        other_rows.append(list(grads[1:]))
    batched = torch.autograd.grad(
        rep,
        shared,
        grad_outputs=cotangents,
        is_grads_batched=True,
        retain_graph=retain_graph,
        allow_unused=True,
        materialize_grads=True,
    )
    matrix = _matrix_like(shared, num_tasks)
    offset = 0
    for g in batched:
        n = g[0].numel()
        matrix[:, offset : offset + n].copy_(g.reshape(num_tasks, n))
        offset += n
    return matrix, other_rows


def task_gradients(
    terms: Tensor,
    shared: Sequence[Tensor],
    others: Sequence[Tensor] = (),
    *,
    mode: str = "exact",
    per_task_others: bool = False,
    retain_graph: bool = False,
    rep: Tensor | None = None,
) -> TaskGradients:
    """Gradients of each ``terms[t]`` w.r.t. ``shared`` (flattened into a [T, P] matrix) and ``others``.

    ``shared`` is the list of shared parameters, or ``[z]`` for the representation in ``rep`` mode (the
    computation is identical; only the caller's target differs). ``rep``: the shared representation ``z``
    the shared parameters act through; with ``mode="exact_vmap"`` the batched VJP then runs through the
    encoder only (see the module docstring). Other modes ignore it.
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

    if mode == "exact_vmap" and rep is not None and not any(p is rep for p in shared):
        matrix, other_rows = _via_representation(terms, rep, shared, others, retain_graph)
    elif mode == "exact_vmap":
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
        matrix = _matrix_like(shared, num_tasks)
        other_rows = []
        for t in range(num_tasks):
            keep = retain_graph or t < num_tasks - 1
            grads = torch.autograd.grad(
                terms[t], targets, retain_graph=keep, allow_unused=True, materialize_grads=True
            )
            _write_row(matrix, t, grads[:n_shared])
            other_rows.append(list(grads[n_shared:]))

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
    norms, cos = gradient_diagnostics_tensor(matrix)
    return norms, float(cos)


def gradient_diagnostics_tensor(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`gradient_diagnostics` without a host synchronisation: the cosine stays a 0-d tensor on the
    matrix's device (NaN for a single task)."""
    norms = matrix.norm(dim=1)
    num_tasks = matrix.shape[0]
    if num_tasks < 2:
        return norms, torch.full((), float("nan"), dtype=matrix.dtype, device=matrix.device)
    unit = matrix / norms.clamp_min(1e-12).unsqueeze(1)
    cos = unit @ unit.T
    iu = torch.triu_indices(num_tasks, num_tasks, offset=1, device=matrix.device)
    return norms, cos[iu[0], iu[1]].mean()


def choose_grad_mode(times: dict[str, float], tolerance: float = AUTO_TIE_TOLERANCE) -> str:
    """The fastest of the probed exact modes (``times``: seconds per step; NaN or inf = the mode failed).

    Deterministic: modes are considered in :data:`EXACT_MODES` order and a later one replaces the current
    choice only when it is faster by more than ``tolerance`` (relative), so near-ties keep the earlier mode.
    """
    unknown = sorted(set(times) - set(EXACT_MODES))
    if unknown:
        raise ValueError(f"not exact gradient modes: {unknown}; valid: {', '.join(EXACT_MODES)}")
    usable = [(m, times[m]) for m in EXACT_MODES if m in times and math.isfinite(times[m]) and times[m] >= 0]
    if not usable:
        raise ValueError(f"no exact gradient mode could be timed: {times}")
    best, best_t = usable[0]
    for mode, t in usable[1:]:
        if t < best_t * (1.0 - tolerance):
            best, best_t = mode, t
    return best
