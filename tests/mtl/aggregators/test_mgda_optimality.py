"""MGDA's min-norm solver is optimal whatever the gradients' scales: the KKT certificate of
min_{w ∈ Δ} ‖Σ_t w_t g_t‖² (⟨g_j, d⟩ ≥ ‖d‖² for every j, equality where w_j > 0), checked on G itself."""

from __future__ import annotations

import pytest
import torch

from mtl.aggregators.mgda import MGDA, min_norm_weights
from mtl.context import StepContext

RTOL = 1e-7


def certificate_violation(grads: torch.Tensor, w: torch.Tensor) -> float:
    """The largest violation of the optimality conditions, relative to the rounding scale
    ‖g_j‖ Σ_i w_i ‖g_i‖ of ⟨g_j, d⟩ (so 0 means optimal; an absolute threshold would be meaningless here)."""
    d = w @ grads
    dd = float(d @ d)
    gd = grads @ d
    norms = grads.norm(dim=1)
    scale = norms * float(w @ norms)
    below = ((dd - gd) / scale).clamp_min(0.0)  # ⟨g_j, d⟩ ≥ ‖d‖²
    on_support = ((gd - dd).abs() / scale)[w > 1e-9]  # equality on the support
    return max(float(below.max()), float(on_support.max()) if on_support.numel() else 0.0)


def test_the_issues_badly_scaled_example():
    grads = torch.tensor([[1e-3, 0.0], [0.0, 1e-3], [1e3, 1e3]], dtype=torch.float64)
    w = min_norm_weights(grads @ grads.T)
    assert torch.allclose(w, torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64), atol=1e-12)
    assert float((w @ grads).norm()) == pytest.approx(2**-0.5 * 1e-3, rel=1e-10)
    assert certificate_violation(grads, w) < RTOL


@pytest.mark.parametrize("seed", range(30))
def test_certificate_on_norms_spanning_twelve_orders_of_magnitude(seed):
    gen = torch.Generator().manual_seed(seed)
    num_tasks = int(torch.randint(2, 12, (1,), generator=gen))
    dim = int(torch.randint(2, 40, (1,), generator=gen))
    grads = torch.randn(num_tasks, dim, generator=gen, dtype=torch.float64)
    exponents = torch.rand(num_tasks, generator=gen, dtype=torch.float64) * 12 - 6
    exponents[0], exponents[-1] = -6.0, 6.0  # the span is exactly 12 orders of magnitude
    grads = grads / grads.norm(dim=1, keepdim=True) * (10.0**exponents).unsqueeze(1)
    if seed % 3 == 0:  # also the conflict-free case: all gradients in one half-space
        grads = grads.abs()
    w = min_norm_weights(grads @ grads.T)
    assert float(w.min()) >= 0.0 and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert certificate_violation(grads, w) < RTOL


def test_rank_deficient_and_duplicated_gradients_keep_the_certificate():
    base = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.cat([base * 1e-5, base[:2] * 1e5, base[:1] * 1e-5])  # repeats and rank 3 < T = 6
    w = min_norm_weights(grads @ grads.T)
    assert certificate_violation(grads, w) < RTOL


def test_the_aggregator_update_is_the_min_norm_point_times_T():
    grads = torch.tensor([[1e-3, 0.0], [0.0, 1e-3], [1e3, 1e3]])
    out = MGDA(3)(grads, StepContext(epoch=0, step=1))
    assert torch.allclose(out.task_weights, torch.tensor([1.5, 1.5, 0.0]), atol=1e-6)
    assert torch.allclose(out.shared, torch.tensor([1.5e-3, 1.5e-3]), rtol=1e-5)
