"""The dual-cone QP solver (Quinton & Rey 2024, Prop. 1): KKT conditions, a hand-solved case, and agreement
with quadprog (torchjd 0.18's solver, a test reference only)."""

import numpy as np
import pytest

from mtl.aggregators.dual_cone import kkt_residuals, project_weights, solve_dual_cone_qp

KKT_TOL = 1e-10


def _case(seed: int, singular_ok: bool = True):
    """A random Gramian and lower bound u: T ≤ 50, gradient norms over 6 decades, and (by seed) duplicated,
    zero, exactly opposite or fewer-than-T-dimensional gradients; regularised like torchjd or not."""
    rng = np.random.default_rng(seed)
    t = int(rng.integers(1, 51))
    p = int(rng.integers(1, 2 * t + 2)) if seed % 3 else int(rng.integers(1, t + 1))
    j = rng.standard_normal((t, p)) * 10.0 ** rng.uniform(-3, 3, (t, 1))
    if t > 2 and seed % 4 == 0:
        j[1] = j[0]
    if t > 2 and seed % 5 == 0:
        j[2] = -j[0]
    if t > 3 and seed % 7 == 0:
        j[3] = 0.0
    gram = j @ j.T
    if seed % 2 or not singular_ok:
        gram = gram / np.trace(gram) + 1e-4 * np.eye(t)  # torchjd's normalise + regularise
    u = rng.uniform(-0.3, 1.0, t) if seed % 3 == 0 else rng.uniform(0.0, 1.0, t)
    return gram, u


@pytest.mark.parametrize("seed", range(60))
def test_kkt_conditions_hold(seed):
    gram, u = _case(seed)
    sol = solve_dual_cone_qp(gram, u)
    res = kkt_residuals(gram, u, sol.v)
    assert max(res.values()) <= KKT_TOL, res
    np.testing.assert_allclose(sol.multipliers, gram @ sol.v, rtol=0, atol=1e-12 * np.abs(gram).max())


@pytest.mark.parametrize("seed", range(20))
def test_no_feasible_point_nearby_is_better(seed):
    """Convexity + KKT already imply optimality; this checks it independently of the certificate."""
    gram, u = _case(seed, singular_ok=False)
    v = solve_dual_cone_qp(gram, u).v
    best = v @ gram @ v
    rng = np.random.default_rng(1000 + seed)
    trials = v + np.abs(rng.standard_normal((500, u.size))) * 1e-3 * (np.abs(v).max() + 1e-12)
    trials = np.maximum(trials + rng.standard_normal(trials.shape) * 1e-3 * np.abs(v).max(), u)
    values = np.einsum("ki,ij,kj->k", trials, gram, trials)
    assert values.min() >= best * (1 - 1e-12) - 1e-15


def test_hand_solved_case():
    """K = [[1, -1], [-1, 4]], u = (1, 0): v = (1, v2) minimises 1 - 2 v2 + 4 v2², so v2 = 1/4 and
    λ = K v = (3/4, 0): the first constraint is active, the second free."""
    gram = np.array([[1.0, -1.0], [-1.0, 4.0]])
    sol = solve_dual_cone_qp(gram, np.array([1.0, 0.0]))
    np.testing.assert_allclose(sol.v, [1.0, 0.25], rtol=0, atol=1e-15)
    np.testing.assert_allclose(sol.multipliers, [0.75, 0.0], rtol=0, atol=1e-15)


def test_already_in_the_dual_cone_is_left_alone():
    gram = np.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 3.0]])  # no conflicts: K u ≥ 0 for u ≥ 0
    u = np.array([0.2, 0.3, 0.5])
    sol = solve_dual_cone_qp(gram, u)
    assert sol.iterations == 0 and np.array_equal(sol.v, u)


def test_opposite_gradients_project_to_zero():
    """g and -g: the dual cone is the hyperplane ⟨g, x⟩ = 0 and π(g) = 0, so J^T v = 0 (v1 = v2)."""
    gram = np.array([[1.0, -1.0], [-1.0, 1.0]])
    v = solve_dual_cone_qp(gram, np.array([0.5, 0.0])).v
    assert abs(v[0] - v[1]) <= 1e-15 and v[0] >= 0.5


def test_non_positive_u_gives_zero():
    """With u ≤ 0, v = 0 is feasible and has objective 0: the projection of J^T u is 0."""
    rng = np.random.default_rng(3)
    j = rng.standard_normal((5, 8))
    gram = j @ j.T
    v = solve_dual_cone_qp(gram, -rng.uniform(0.1, 1.0, 5)).v
    assert np.abs(j.T @ v).max() <= 1e-12 * np.abs(j).max()


@pytest.mark.parametrize("seed", range(30))
def test_matches_quadprog(seed):
    qpsolvers = pytest.importorskip("qpsolvers")
    pytest.importorskip("quadprog")
    gram, u = _case(seed, singular_ok=False)
    ref = qpsolvers.solve_qp(gram, np.zeros(u.size), -np.eye(u.size), -u, solver="quadprog")
    v = solve_dual_cone_qp(gram, u).v
    assert np.abs(v - ref).max() <= 1e-9 * np.abs(ref).max()


def test_project_weights_is_row_by_row():
    gram, _ = _case(11, singular_ok=False)
    rows = np.random.default_rng(0).uniform(0, 1, (4, gram.shape[0]))
    out = project_weights(gram, rows)
    assert out.shape == rows.shape
    for row, got in zip(rows, out):
        np.testing.assert_array_equal(got, solve_dual_cone_qp(gram, row).v)
    np.testing.assert_array_equal(project_weights(gram, rows[0]), out[0])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="gram must be"):
        solve_dual_cone_qp(np.eye(3), np.ones(2))
    with pytest.raises(ValueError, match="non-finite"):
        solve_dual_cone_qp(np.array([[np.nan]]), np.ones(1))
    gram, u = _case(2, singular_ok=False)
    assert solve_dual_cone_qp(gram, u).iterations > 1
    with pytest.raises(RuntimeError, match="did not converge"):
        solve_dual_cone_qp(gram, u, max_iter=1)


@pytest.mark.parametrize("seed", range(10))
def test_one_negative_bound_converges_to_zero(seed):
    """u = -c e_t (UPGrad with a negative preference entry): v = 0 is optimal and λ ≈ 0 everywhere. The
    stopping test's scale must come from |u| + |x|, not from v (≈ 0 here), or the method chases rounding
    noise (it cycled on such a case before)."""
    rng = np.random.default_rng(seed)
    t = int(rng.integers(8, 30))
    j = rng.standard_normal((t, int(rng.integers(t // 2, 2 * t))))
    gram = j @ j.T
    gram = gram / np.trace(gram) + 1e-6 * np.eye(t)
    u = np.zeros(t)
    u[int(rng.integers(t))] = -rng.uniform(0.01, 1.0)
    sol = solve_dual_cone_qp(gram, u)
    assert sol.iterations < 10 * t + 20
    assert max(kkt_residuals(gram, u, sol.v).values()) <= KKT_TOL
    assert float(sol.v @ gram @ sol.v) <= 1e-24
