"""Helpers shared by the gradient aggregators: seeded generators, parameter groups, argument checks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.aggregators.base import AggregationResult
from mtl.checks import check_choice, check_range, task_index  # noqa: F401  (re-exported)
from mtl.context import StepContext

NORM_EPS = 1e-8


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded from the ``seed`` context kwarg (its state goes into the state dict)."""
    return torch.Generator().manual_seed(int(seed))


def group_sizes(ctx: StepContext, num_cols: int, granularity: str) -> list[int]:
    """Column-group sizes of ``G``: one group (``whole``) or one per shared parameter tensor (``tensor``).

    ``tensor`` needs ``ctx.param_sizes`` (filled by :func:`mtl.step.backward` in the exact modes); in ``rep``
    mode there are no parameter tensors and the whole representation is one group.
    """
    if granularity == "whole" or ctx.param_sizes is None:
        return [num_cols]
    sizes = [int(s) for s in ctx.param_sizes if int(s) > 0]
    if sum(sizes) != num_cols:
        raise ValueError(f"param_sizes sum to {sum(sizes)} but the gradient matrix has {num_cols} columns")
    return sizes


def group_dot(a: Tensor, b: Tensor, sizes: Sequence[int]) -> Tensor:
    """Inner products of ``a`` and ``b`` ([P] or [T, P]) restricted to each column group -> [K] or [T, K]."""
    pairs = zip(a.split(list(sizes), dim=-1), b.split(list(sizes), dim=-1))
    if a.dim() == 1:
        return torch.stack([torch.dot(x, y) for x, y in pairs])
    return torch.stack([torch.linalg.vecdot(x, y) for x, y in pairs], dim=-1)


def scale_groups(grads: Tensor, factors: Tensor, sizes: Sequence[int]) -> Tensor:
    """``grads`` [T, P] with the columns of group ``k`` of row ``t`` multiplied by ``factors[t, k]``."""
    if len(sizes) == 1:
        return grads * factors
    chunks = grads.split(list(sizes), dim=-1)
    return torch.cat([chunk * factors[:, k : k + 1] for k, chunk in enumerate(chunks)], dim=-1)


def gramian(grads: Tensor) -> Tensor:
    """``K = G Gᵀ`` [T, T], the inner products of the task gradients, in ``grads``' dtype and device (pass
    ``grads.double()`` for a float64 Gram). Shared by the aggregators that solve on it (MGDA, CAGrad,
    Aligned-MTL, Nash-MTL)."""
    return grads @ grads.T


def weighted_sum(weights: Tensor, grads: Tensor) -> AggregationResult:
    """The update ``Σ_t w_t g_t = wᵀ G`` with ``w`` reported as the task weights (MGDA, CAGrad, IMTL-G,
    Aligned-MTL)."""
    return AggregationResult(shared=weights @ grads, task_weights=weights)


def clip_norm(update: Tensor, max_norm: float) -> Tensor:
    """``update`` scaled by ``max_norm / (‖update‖ + 1e-6)`` when that is below 1, as
    ``torch.nn.utils.clip_grad_norm_`` does (Nash-MTL's and FairGrad's reference code clip their update so);
    unchanged when ``max_norm`` is 0."""
    if max_norm <= 0:
        return update
    return update * (max_norm / (update.norm() + 1e-6)).clamp(max=1.0)


def require_losses(method: str, ctx: StepContext, num_tasks: int) -> Tensor:
    if ctx.losses is None:
        raise ValueError(f"{method} needs the raw losses in ctx.losses (mtl.step.backward fills them)")
    if ctx.losses.shape != (num_tasks,):
        raise ValueError(f"{method} expected {num_tasks} losses, got shape {tuple(ctx.losses.shape)}")
    return ctx.losses
