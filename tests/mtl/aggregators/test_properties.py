"""Properties every aggregator shares, and the defining property of each (seeded random matrices)."""

import numpy as np
import pytest
import torch

from mtl.aggregators.aligned import alignment_matrix
from mtl.aggregators.mgda import min_norm_weights
from mtl.aggregators.projection import project_conflicting
from tests.mtl.aggregators.helpers import ALL_AGGREGATORS, STOCHASTIC, build, ctx, params, random_grads

SHAPES = [(2, 5), (3, 17), (5, 40)]


def _run(agg, grads_seq, losses_seq, param_sizes=None):
    out = []
    for k, (g, losses) in enumerate(zip(grads_seq, losses_seq), start=1):
        out.append(agg(g, ctx(k, losses, g.shape[0], param_sizes, g.dtype)))
    return out


@pytest.mark.parametrize("name", params())
@pytest.mark.parametrize(("num_tasks", "dim"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_finiteness(name, num_tasks, dim, dtype):
    agg = build(name, num_tasks)
    grads = [random_grads(num_tasks, dim, seed=s, dtype=dtype).abs() + 0.1 * (s - 1) for s in range(3)]
    losses = [torch.rand(num_tasks, generator=torch.Generator().manual_seed(s)) + 0.1 for s in range(3)]
    for res in _run(agg, grads, losses):
        assert res.shared.shape == (dim,) and res.shared.dtype == dtype
        assert torch.isfinite(res.shared).all()
        if agg.weights_heads:
            assert res.task_weights is not None
        if res.task_weights is not None:
            assert res.task_weights.shape == (num_tasks,) and torch.isfinite(res.task_weights).all()


def _permutation_case(name):
    num_tasks = 2 if name in STOCHASTIC - {"graddrop"} else 4
    # mostly aligned gradients, so Nash-MTL's bargaining problem is feasible
    base = torch.randn(1, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grads = [base + 0.6 * random_grads(num_tasks, 12, seed=s) for s in range(3)]
    losses = [torch.linspace(0.3, 3.0, num_tasks, dtype=torch.float64) * (1 + 0.1 * s) for s in range(3)]
    return num_tasks, grads, losses


@pytest.mark.parametrize("name", params())
def test_permuting_the_tasks_permutes_the_result(name):
    """Relabelling the tasks leaves the shared update unchanged and permutes the task weights."""
    num_tasks, grads, losses = _permutation_case(name)
    perm = torch.tensor([1, 0] if num_tasks == 2 else [2, 0, 3, 1])
    kwargs_a, kwargs_b = {}, {}
    if name == "metabalance":  # its target task must follow the relabelling
        kwargs_b = {"main_task": int((perm == 0).nonzero())}
    if name == "mtadam":  # its anchor task's running norm rescales later steps: compare the first
        grads, losses = grads[:1], losses[:1]
    a = _run(build(name, num_tasks, **kwargs_a), grads, losses)
    b = _run(build(name, num_tasks, **kwargs_b), [g[perm] for g in grads], [v[perm] for v in losses])
    rtol = {"nash_mtl": 2e-3, "cagrad": 1e-4, "mtadam": 1e-5}.get(name, 1e-8)
    for ra, rb in zip(a, b):
        torch.testing.assert_close(rb.shared, ra.shared, rtol=rtol, atol=rtol * float(ra.shared.abs().max()))
        if ra.task_weights is not None:
            torch.testing.assert_close(rb.task_weights, ra.task_weights[perm], rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name", params())
def test_identical_gradients_keep_their_direction(name):
    g = random_grads(1, 9, seed=3)
    grads = g.repeat(3, 1)
    agg = build(name, 3)
    for k in range(1, 4):
        res = agg(grads, ctx(k, [1.0, 2.0, 0.5], 3))
        if name in ("mtadam", "m_config"):  # an Adam direction: elementwise sign(g) once normalised
            assert torch.equal(torch.sign(res.shared), torch.sign(g[0]))
            continue
        cos = torch.nn.functional.cosine_similarity(res.shared, g[0], dim=0)
        assert float(cos) > 1 - 1e-9, float(cos)


CONFLICT_AVERSE = ["mgda", "pcgrad", "gradvac", "imtl_g", "cagrad", "aligned_mtl"]


@pytest.mark.parametrize("name", CONFLICT_AVERSE)
def test_exactly_opposite_gradients_cancel(name):
    g = random_grads(1, 6, seed=4)[0]
    res = build(name, 2)(torch.stack([g, -g]), ctx(1, [1.0, 1.0], 2))
    assert float(res.shared.norm()) < 1e-6 * float(g.norm())


@pytest.mark.parametrize("name", params(["mgda", "nash_mtl", "pcgrad", "imtl_g"]))
@pytest.mark.parametrize("seed", range(4))
def test_update_does_not_conflict_with_any_task(name, seed):
    """MGDA, Nash-MTL, and (for two tasks) PCGrad and IMTL-G give a direction with ⟨d, g_t⟩ ≥ 0 for all t."""
    num_tasks = 2 if name in ("pcgrad", "imtl_g") else 4
    base = random_grads(1, 8, seed=100 + seed)
    noise = 1.5 if name != "nash_mtl" else 0.8
    grads = base + noise * base.norm() / 8**0.5 * random_grads(num_tasks, 8, seed=seed) / 10
    grads[0] = -0.5 * grads[1] + 0.3 * base[0]  # a conflicting pair
    res = build(name, num_tasks)(grads, ctx(1, torch.ones(num_tasks), num_tasks))
    assert float((grads @ res.shared).min()) >= -1e-9 * float(grads.norm() ** 2)


# -- MGDA ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(25))
def test_mgda_is_the_min_norm_point_of_the_convex_hull(seed):
    gen = torch.Generator().manual_seed(seed)
    num_tasks = int(torch.randint(2, 9, (1,), generator=gen))
    grads = random_grads(num_tasks, int(torch.randint(2, 20, (1,), generator=gen)), seed=seed)
    if seed % 4 == 0:
        grads[1] = grads[0]  # duplicated task
    res = build("mgda", num_tasks)(grads, ctx(1, torch.ones(num_tasks), num_tasks))
    w = res.task_weights / num_tasks
    assert float(w.min()) >= 0 and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    x = res.shared / num_tasks
    torch.testing.assert_close(x, w @ grads)
    # optimality certificate of the min-norm point x of conv{g_t}: ⟨g_j, x⟩ ≥ ‖x‖² for every j
    assert float((grads @ x).min() - x @ x) >= -1e-9 * float((grads**2).sum(dim=1).max())
    # and no point of the hull found by brute-force sampling is shorter
    samples = torch.distributions.Dirichlet(torch.ones(num_tasks, dtype=torch.float64)).sample((4000,))
    assert float((samples @ grads).norm(dim=1).min()) >= float(x.norm()) - 1e-9


@pytest.mark.parametrize("normalization", ["l2", "loss", "loss+"])
def test_mgda_normalisations_weight_the_raw_gradients(normalization):
    grads = random_grads(3, 7, seed=5)
    losses = torch.tensor([0.5, 2.0, 8.0], dtype=torch.float64)
    res = build("mgda", 3, normalization=normalization)(grads, ctx(1, losses, 3))
    n = {"l2": grads.norm(dim=1), "loss": losses, "loss+": losses * grads.norm(dim=1)}[normalization]
    scaled = grads / n.unsqueeze(1)
    expected = 3 * min_norm_weights(scaled @ scaled.T)
    torch.testing.assert_close(res.task_weights, expected)
    torch.testing.assert_close(res.shared, expected @ grads)


# -- PCGrad, GradVac, GradDrop ----------------------------------------------------------------------
def test_pcgrad_removes_exactly_the_conflicting_component():
    g1 = torch.tensor([1.0, 0.2, -0.5], dtype=torch.float64)
    g2 = torch.tensor([-2.0, 1.0, 0.3], dtype=torch.float64)  # g1 · g2 < 0
    pc = project_conflicting(torch.stack([g1, g2]), [[1], [0]])
    assert float(pc[0] @ g2) == pytest.approx(0.0, abs=1e-12)
    assert float(pc[1] @ g1) == pytest.approx(0.0, abs=1e-12)
    # the removed part is parallel to the other gradient
    assert float(torch.linalg.matrix_rank(torch.stack([g1 - pc[0], g2]))) == 1
    res = build("pcgrad", 2)(torch.stack([g1, g2]), ctx())
    torch.testing.assert_close(res.shared, pc.sum(dim=0))


def test_pcgrad_leaves_non_conflicting_gradients_alone():
    grads = random_grads(4, 10, seed=1).abs()  # all pairwise dots > 0
    res = build("pcgrad", 4)(grads, ctx(1, torch.ones(4), 4))
    torch.testing.assert_close(res.shared, grads.sum(dim=0))


def test_gradvac_with_a_zero_target_is_pcgrad():
    """With β = 0 the target cosine stays 0 and GradVac's Eq. 4 is PCGrad's projection."""
    grads = [random_grads(4, 10, seed=s) for s in range(3)]
    losses = [torch.ones(4)] * 3
    a = _run(build("gradvac", 4, seed=3, beta=0.0), grads, losses)
    b = _run(build("pcgrad", 4, seed=3), grads, losses)
    for ra, rb in zip(a, b):
        torch.testing.assert_close(ra.shared, rb.shared, rtol=1e-6, atol=1e-8)


def test_gradvac_raises_the_cosine_to_its_target():
    """After the update, cos(g_i^PC, g_j) equals the EMA target it was below (two tasks, one group)."""
    agg = build("gradvac", 2, beta=0.5)
    g = torch.tensor([[1.0, 0.0], [-0.6, 0.8]], dtype=torch.float64)  # cos = -0.6
    agg(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64), ctx(1))  # targets -> 0.5 * 0 = 0
    target = float(agg.rho[0, 1, 0])
    pc = g.clone()
    res = agg(g, ctx(2))
    # recover g_0^PC: the update is g_0^PC + g_1^PC; recompute g_0^PC alone with the same rule
    phi = -0.6
    coef = (target * (1 - phi**2) ** 0.5 - phi * (1 - target**2) ** 0.5) / (1 - target**2) ** 0.5
    pc[0] = g[0] + coef * g[1]
    cos = float(pc[0] @ g[1] / (pc[0].norm() * g[1].norm()))
    assert cos == pytest.approx(target, abs=1e-9)
    assert torch.isfinite(res.shared).all()


def test_gradvac_tensor_granularity_treats_groups_separately():
    """Group 0 conflicts, group 1 does not: only group 0 is changed (first step: target 0 = PCGrad)."""
    grads = torch.tensor([[1.0, 0.0, 1.0, 1.0], [-1.0, 1.0, 1.0, 2.0]], dtype=torch.float64)
    agg = build("gradvac", 2, granularity="tensor")
    res = agg(grads, ctx(1, param_sizes=(2, 2)))
    expected = torch.tensor([0.5, 1.5, 2.0, 3.0], dtype=torch.float64)
    # group 0 as PCGrad on ((1,0), (-1,1)): (0.5, 0.5) + (0, 1); group 1 untouched: (1,1) + (1,2)
    torch.testing.assert_close(res.shared, expected)
    assert agg.rho.shape == (2, 2, 2)


@pytest.mark.parametrize("seed", range(5))
def test_graddrop_keeps_one_sign_per_coordinate(seed):
    grads = random_grads(4, 50, seed=seed)
    res = build("graddrop", 4, seed=seed)(grads, ctx(1, torch.ones(4), 4))
    pos = grads.clamp_min(0).sum(dim=0)
    neg = grads.clamp_max(0).sum(dim=0)
    ok = torch.isclose(res.shared, pos) | torch.isclose(res.shared, neg)
    assert bool(ok.all())


def test_graddrop_with_full_leak_is_the_sum():
    grads = random_grads(3, 20, seed=2)
    res = build("graddrop", 3, leak=1.0)(grads, ctx(1, torch.ones(3), 3))
    torch.testing.assert_close(res.shared, grads.sum(dim=0))


# -- IMTL-G, CAGrad, Aligned-MTL ------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(10))
def test_imtl_g_has_equal_projections_on_unit_gradients(seed):
    num_tasks = 2 + seed % 5
    grads = random_grads(num_tasks, 12, seed=seed)
    res = build("imtl_g", num_tasks)(grads, ctx(1, torch.ones(num_tasks), num_tasks))
    unit = grads / grads.norm(dim=1, keepdim=True)
    proj = unit @ res.shared
    torch.testing.assert_close(proj, proj.mean().expand_as(proj), rtol=1e-7, atol=1e-9)
    assert float(res.task_weights.sum()) == pytest.approx(1.0, abs=1e-9)
    assert not res.task_weights.isnan().any()


def test_cagrad_with_c_zero_is_the_sum():
    grads = random_grads(3, 9, seed=8)
    res = build("cagrad", 3, c=0.0)(grads, ctx(1, torch.ones(3), 3))
    torch.testing.assert_close(res.shared, grads.sum(dim=0), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("seed", range(4))
def test_cagrad_maximises_the_worst_improvement_in_its_ball(seed):
    """CAGrad's d (before rescaling) solves max_{‖d − g0‖ ≤ c‖g0‖} min_t ⟨g_t, d⟩ (Liu et al. Eq. 5)."""
    c, num_tasks = 0.5, 3
    grads = random_grads(num_tasks, 3, seed=seed)
    res = build("cagrad", num_tasks, c=c, rescale=0)(grads, ctx(1, torch.ones(3), 3))
    d = res.shared / num_tasks
    g0 = grads.mean(dim=0)
    radius = c * float(g0.norm())
    assert float((d - g0).norm()) == pytest.approx(radius, rel=1e-4)
    dirs = torch.randn(20000, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    points = g0 + radius * dirs / dirs.norm(dim=1, keepdim=True)
    best_sampled = float((points @ grads.T).min(dim=1).values.max())
    assert float((grads @ d).min()) >= best_sampled - 1e-4 * float(grads.norm())


@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
def test_aligned_mtl_makes_the_gradients_orthogonal_with_equal_norms(scale_mode):
    grads = random_grads(4, 10, seed=9)
    b = alignment_matrix(grads, scale_mode)
    aligned = b @ grads
    gram = aligned @ aligned.T
    lam = torch.linalg.eigvalsh(grads @ grads.T)
    sigma2 = {"min": lam.min(), "median": torch.median(lam), "rmse": lam.mean()}[scale_mode]
    torch.testing.assert_close(gram, sigma2 * torch.eye(4, dtype=torch.float64), rtol=1e-8, atol=1e-8)
    res = build("aligned_mtl", 4, scale_mode=scale_mode)(grads, ctx(1, torch.ones(4), 4))
    torch.testing.assert_close(res.shared, aligned.sum(dim=0))


# -- Nash-MTL ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", params(["nash_mtl"]))
def test_nash_mtl_solves_the_bargaining_equation(name):
    base = random_grads(1, 10, seed=1)
    grads = base + 0.5 * float(base.norm()) / 10**0.5 * torch.randn(3, 10, dtype=torch.float64)
    agg = build(name, 3, max_norm=0.0)
    res = agg(grads, ctx(1, torch.ones(3), 3))
    alpha = res.task_weights
    # Navon et al. Eq. 4: Gᵀ G α = 1/α (the normalised Gram matrix only conditions the sub-problems)
    residual = grads @ grads.T @ alpha - 1 / alpha
    assert float(residual.norm()) < 1e-3 * float((1 / alpha).norm())
    torch.testing.assert_close(res.shared, alpha @ grads)


@pytest.mark.parametrize("name", params(["nash_mtl"]))
def test_nash_mtl_clips_and_reuses_weights(name):
    grads = random_grads(2, 6, seed=2).abs() * 10
    agg = build(name, 2, max_norm=1.0, update_weights_every=2)
    first = agg(grads, ctx(1, [1.0, 1.0]))
    assert float(first.shared.norm()) == pytest.approx(1.0, rel=1e-5)
    second = agg(grads * 3, ctx(2, [1.0, 1.0]))  # not an update step: the same α
    torch.testing.assert_close(second.task_weights, first.task_weights)


def test_every_aggregator_is_covered():
    """New aggregators must be added to these property tests (they are, via the registry)."""
    expected = {
        "aligned_mtl",
        "cagrad",
        "graddrop",
        "gradnorm",
        "gradvac",
        "imtl_g",
        "max_norm",
        "metabalance",
        "mgda",
        "moco",
        "mtadam",
        "nash_mtl",
        "pcgrad",
        "sum",
    }
    assert expected <= set(ALL_AGGREGATORS)
    assert np.all([isinstance(n, str) for n in ALL_AGGREGATORS])
