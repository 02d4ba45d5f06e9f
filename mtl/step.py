"""One training step's backward pass, following the contract of DESIGN §2.

losses ``L`` [T] -> balancer: ``λ`` and ``ℓ_t = λ_t f(L_t)`` -> (if the method has an aggregator)
``G`` [T, P] from :mod:`mtl.gradients` -> aggregator -> shared update; heads get ``∇ Σ_t w_t ℓ_t``.
Methods without an aggregator spend a single backward of ``Σ_t ℓ_t``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mtl.context import StepContext
from mtl.errors import NonFiniteLossError
from mtl.gradients import (
    accumulate_grad,
    combine_others,
    gradient_diagnostics_tensor,
    task_gradients,
    write_flat_grad,
)
from mtl.methods import Method


@dataclass
class StepStats:
    """Detached per-step diagnostics. ``grad_norms``/``grad_cos`` are None when ``G`` was not computed.

    They stay on the device (``grad_cos`` is a 0-d tensor, NaN when undefined) so that a step never waits for
    the host; the trainer sums them on the device and reads them once per epoch. ``time_diag``: seconds spent
    computing ``G`` only for the diagnostics (``diagnostics=True`` on a method that does not need ``G``; the
    device is synchronised around it), which the trainer keeps out of the training time."""

    weights: Tensor
    grad_norms: Tensor | None = None
    grad_cos: Tensor | float | None = None
    time_diag: float = 0.0


def check_finite(losses: Tensor, task_names: Sequence[str], ctx: StepContext) -> None:
    """Raise :class:`NonFiniteLossError` naming the first task whose loss is NaN or infinite."""
    finite = torch.isfinite(losses.detach())
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise NonFiniteLossError(task_names[bad], float(losses[bad].detach()), ctx.epoch, ctx.step)


def _synchronize(tensor: Tensor) -> None:
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


def backward(
    method: Method,
    losses: Tensor,
    ctx: StepContext,
    *,
    task_names: Sequence[str],
    shared_params: Sequence[Tensor],
    other_params: Sequence[Tensor],
    grad_mode: str = "exact",
    rep: Tensor | None = None,
    diagnostics: bool = False,
) -> StepStats:
    """Fill ``.grad`` of all parameters for one step. ``rep`` is the shared representation: required in
    ``rep`` mode; in ``exact_vmap`` mode it lets the batched VJP run through the encoder only
    (:func:`mtl.gradients.task_gradients`); ignored in ``exact`` mode.

    ``diagnostics=True`` computes ``G`` for per-task gradient norms and cosine similarity even for methods
    that do not need it (one extra set of VJPs).
    """
    check_finite(losses, task_names, ctx)
    balanced = method.balancer(losses, ctx)
    terms = balanced.terms
    target = [rep] if grad_mode == "rep" else list(shared_params)
    if grad_mode == "rep" and rep is None:
        raise ValueError("grad_mode 'rep' needs the shared representation")

    if method.aggregator is None:
        stats = StepStats(weights=balanced.weights)
        if diagnostics:
            _synchronize(losses)
            start = time.perf_counter()
            grads = task_gradients(terms, target, (), mode=grad_mode, retain_graph=True, rep=rep)
            stats.grad_norms, stats.grad_cos = gradient_diagnostics_tensor(grads.matrix.detach())
            _synchronize(losses)
            stats.time_diag = time.perf_counter() - start
        terms.sum().backward()
        return stats

    aggregator = method.aggregator
    grads = task_gradients(
        terms,
        target,
        other_params,
        mode=grad_mode,
        per_task_others=aggregator.weights_heads,
        retain_graph=grad_mode == "rep",
        rep=rep,
    )
    matrix = grads.matrix.detach()
    sizes = None if grad_mode == "rep" else tuple(p.numel() for p in shared_params)
    result = aggregator(matrix, dataclasses.replace(ctx, losses=losses.detach(), param_sizes=sizes))
    if not bool(torch.isfinite(result.shared).all()):
        raise FloatingPointError(
            f"aggregator '{method.spec.aggregator}' produced a non-finite update at epoch {ctx.epoch}, "
            f"step {ctx.step}"
        )
    if grad_mode == "rep":
        torch.autograd.backward(rep, grad_tensors=result.shared.view_as(rep))
    else:
        write_flat_grad(shared_params, result.shared)
    others = [p for p in other_params if p.requires_grad]
    accumulate_grad(others, combine_others(grads, result.task_weights if aggregator.weights_heads else None))

    norms, cos = gradient_diagnostics_tensor(matrix)
    weights = result.task_weights.detach() if result.task_weights is not None else balanced.weights
    return StepStats(weights=weights, grad_norms=norms, grad_cos=cos)
