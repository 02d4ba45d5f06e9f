"""IMTL-G when the shared gradient has fewer coordinates than there are tasks (P < T, rank G < T): the
equal-projection conditions leave only g = 0, and IMTL-G returns an affine combination with Σ α_t g_t = 0."""

from __future__ import annotations

import pytest
import torch

from mtl.aggregators.imtl import IMTLG, imtl_g_weights
from mtl.context import StepContext


@pytest.mark.parametrize(("tasks", "dim"), [(3, 1), (3, 2), (4, 2), (5, 3), (11, 4), (11, 10)])
def test_fewer_coordinates_than_tasks_gives_the_zero_update(tasks, dim):
    grads = torch.randn(
        tasks, dim, generator=torch.Generator().manual_seed(tasks * 100 + dim), dtype=torch.float64
    )
    alpha = imtl_g_weights(grads)
    assert torch.isfinite(alpha).all()
    assert float(alpha.sum()) == pytest.approx(1.0, abs=1e-10)  # still an affine combination
    update = alpha @ grads
    assert float(update.norm()) < 1e-10 * float(grads.norm(dim=1).max())  # the shared update is zero
    out = IMTLG(tasks)(grads, StepContext(epoch=0, step=1))
    assert torch.equal(out.task_weights, alpha) and float(out.shared.norm()) < 1e-10 * float(grads.norm())


@pytest.mark.parametrize(("tasks", "dim"), [(3, 3), (3, 50), (11, 11), (11, 200)])
def test_enough_coordinates_gives_equal_positive_projections(tasks, dim):
    grads = torch.randn(tasks, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64)
    alpha = imtl_g_weights(grads)
    update = alpha @ grads
    projections = grads @ update / grads.norm(dim=1)
    assert float(projections.min()) > 0
    assert torch.allclose(projections, projections.mean().expand_as(projections), rtol=1e-8)
