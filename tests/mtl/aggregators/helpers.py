"""Shared helpers for the aggregator tests."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from mtl.aggregators import AGGREGATORS
from mtl.context import StepContext

HAS_CVXPY = importlib.util.find_spec("cvxpy") is not None
ALL_AGGREGATORS = AGGREGATORS.names()
# aggregators whose result depends on a seeded random draw besides the gradients
STOCHASTIC = {"pcgrad", "gradvac", "graddrop"}


def params(names=ALL_AGGREGATORS):
    """pytest params for aggregator names; Nash-MTL is skipped without its optional cvxpy."""
    return [
        pytest.param(n, marks=pytest.mark.skipif(not HAS_CVXPY, reason="cvxpy not installed"))
        if n == "nash_mtl"
        else n
        for n in names
    ]


def build(name: str, num_tasks: int, seed: int = 0, **kwargs):
    context = {"num_tasks": num_tasks, "task_names": [f"t{i}" for i in range(num_tasks)], "seed": seed}
    return AGGREGATORS.build(name, context=context, **kwargs)


def ctx(step: int = 1, losses=None, num_tasks: int = 2, param_sizes=None, dtype=torch.float64) -> StepContext:
    if losses is None:
        losses = torch.linspace(0.5, 2.0, num_tasks, dtype=dtype)
    losses = torch.as_tensor(losses, dtype=dtype)
    return StepContext(epoch=0, step=step, losses=losses, param_sizes=param_sizes)


def random_grads(num_tasks: int, dim: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scales = 10.0 ** torch.empty(num_tasks, 1, dtype=dtype).uniform_(-1, 1, generator=g)
    return torch.randn(num_tasks, dim, generator=g, dtype=dtype) * scales
