"""CAGrad's dual min_{w ∈ Δ} F(w) = ⟨g_w, g_0⟩ + c‖g_0‖‖g_w‖ solved to optimality, with certificates checked
here independently of the solver: the KKT conditions (∂F/∂w_i ≥ λ, equality on the support) and strong
duality with CAGrad's primal max_{‖d − g_0‖ ≤ c‖g_0‖} min_i ⟨g_i, d⟩."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl.aggregators import AGGREGATORS
from mtl.aggregators.cagrad import (
    cagrad_gap,
    cagrad_objective,
    cagrad_weights,
    cagrad_weights_slsqp,
    solve_cagrad_exact,
)
from mtl.context import StepContext
from mtl.errors import ConfigError

C = 0.4


def random_grads(seed: int, tasks: int = 11, dim: int = 200, span: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grads = rng.standard_normal((tasks, dim))
    return grads * 10.0 ** rng.uniform(-span / 2, span / 2, (tasks, 1))


def kkt_violation(grads: np.ndarray, w: np.ndarray, c: float) -> float:
    """max over tasks of the KKT violation of F at w, relative to max_i ‖g_i‖ · ‖g_0‖ (computed from G)."""
    g0 = grads.mean(0)
    gw = w @ grads
    rho = c * np.linalg.norm(g0)
    grad_f = grads @ (g0 + rho * gw / np.linalg.norm(gw))  # ⟨g_i, d(w)⟩
    lam = grad_f[w > 1e-9].mean()
    scale = np.linalg.norm(grads, axis=1).max() * np.linalg.norm(g0)
    below = (lam - grad_f).max()  # ∂F/∂w_i ≥ λ
    support = np.abs(grad_f[w > 1e-9] - lam).max()  # = λ on the support
    return float(max(below, support) / scale)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("span", [0.0, 6.0])
def test_certified_optimum_on_random_and_badly_scaled_matrices(seed, span):
    grads = random_grads(seed, span=span)
    gram = grads @ grads.T
    sol = solve_cagrad_exact(gram, C)
    scale = np.sqrt(gram.diagonal().max()) * np.linalg.norm(grads.mean(0))
    assert sol.weights.min() >= 0 and sol.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert sol.gap <= 1e-9 * scale
    assert kkt_violation(grads, sol.weights, C) < 1e-7
    # strong duality: the primal point d(w) is feasible and attains F(w)
    g0, gw = grads.mean(0), sol.weights @ grads
    d = g0 + C * np.linalg.norm(g0) * gw / np.linalg.norm(gw)
    assert (grads @ d).min() == pytest.approx(sol.objective, rel=1e-9, abs=1e-9 * scale)
    # no point of the simplex does better (random and vertex probes)
    probes = np.random.default_rng(seed).dirichlet(np.ones(len(gram)) * 0.3, size=500)
    probes = np.vstack([probes, np.eye(len(gram))])
    values = [cagrad_objective(p, gram, C) for p in probes]
    assert min(values) >= sol.objective - 1e-9 * scale
    # and it is never worse than the reference code's SLSQP
    assert sol.objective <= cagrad_objective(cagrad_weights_slsqp(gram, C), gram, C) + 1e-9 * scale


def test_slsqp_stops_at_non_optimal_points_the_exact_solver_does_not():
    """The issue's observation on 11 × 10,000 matrices: SLSQP reports success far from the optimum."""
    failures = 0
    for seed in range(6):
        grads = random_grads(seed, dim=10_000, span=6.0)
        gram = grads @ grads.T
        exact = solve_cagrad_exact(gram, C)
        slsqp = cagrad_objective(cagrad_weights_slsqp(gram, C), gram, C)
        assert exact.gap <= 1e-9 * np.sqrt(gram.diagonal().max()) * np.linalg.norm(grads.mean(0))
        failures += slsqp > exact.objective * (1 + 1e-3) + 1e-9
    assert failures >= 1


def test_the_gap_is_an_upper_bound_of_the_suboptimality():
    grads = random_grads(3, tasks=5)
    gram = grads @ grads.T
    best = solve_cagrad_exact(gram, C).objective
    for w in np.random.default_rng(0).dirichlet(np.ones(5), size=50):
        assert cagrad_objective(w, gram, C) - best <= cagrad_gap(w, gram, C) + 1e-9


def test_orthogonal_pair_closed_form():
    # g_1 ⟂ g_2, unit norms: by symmetry w = (½, ½)
    sol = solve_cagrad_exact(np.eye(2), C)
    assert np.allclose(sol.weights, [0.5, 0.5], atol=1e-12)
    g0_norm = np.sqrt(0.5)
    assert sol.objective == pytest.approx(0.5 + C * g0_norm * np.sqrt(0.5), rel=1e-12)


def test_rank_deficient_and_duplicated_gradients():
    base = random_grads(1, tasks=3, dim=4)
    grads = np.vstack([base, base[:2] * 1e3, base[:1]])  # T = 6 > rank 3
    gram = grads @ grads.T
    sol = solve_cagrad_exact(gram, C)
    assert sol.gap <= 1e-9 * np.sqrt(gram.diagonal().max()) * np.linalg.norm(grads.mean(0))


def test_aggregator_solver_choice():
    grads = torch.from_numpy(random_grads(2, tasks=4, dim=30, span=4.0))
    ctx = StepContext(epoch=0, step=1)
    exact = AGGREGATORS.build("cagrad", context={"num_tasks": 4})
    assert exact.solver == "exact"
    slsqp = AGGREGATORS.build("cagrad", context={"num_tasks": 4}, solver="slsqp")
    gram = (grads @ grads.T).numpy()
    w_ref = cagrad_weights_slsqp(gram, C)
    assert np.allclose(cagrad_weights(gram, C, "slsqp"), w_ref)
    assert np.allclose(cagrad_weights(gram, C), solve_cagrad_exact(gram, C).weights)
    for agg in (exact, slsqp):
        out = agg(grads, ctx)
        assert torch.isfinite(out.shared).all()
    with pytest.raises(ConfigError, match="solver must be one of exact, slsqp"):
        AGGREGATORS.build("cagrad", context={"num_tasks": 4}, solver="cvx")
