"""Golden values: each aggregator on small fixed matrices, worked out by hand from the papers' equations."""

import math

import pytest
import torch

from tests.mtl.aggregators.helpers import build, ctx, params

F64 = torch.float64


def t(*rows):
    return torch.tensor(rows, dtype=F64)


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), **kw)


def test_mgda_orthogonal_pair():
    res = build("mgda", 2)(t([1.0, 0.0], [0.0, 1.0]), ctx())
    close(res.task_weights, [1.0, 1.0])  # w = (½, ½), scaled to sum to T = 2
    close(res.shared, [1.0, 1.0])


def test_mgda_three_scaled_axes():
    # min-norm point of conv{e1, 2 e2, 3 e3}: w ∝ 1/‖g_t‖² = (36, 9, 4) / 49
    res = build("mgda", 3)(t([1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]), ctx(num_tasks=3))
    close(res.task_weights, [3 * 36 / 49, 3 * 9 / 49, 3 * 4 / 49])
    close(res.shared, [3 * 36 / 49, 3 * 18 / 49, 3 * 12 / 49])


def test_mgda_dominated_gradient():
    # the segment from (1, 0) to (2, 0): its min-norm point is the shorter gradient
    res = build("mgda", 2)(t([1.0, 0.0], [2.0, 0.0]), ctx())
    close(res.task_weights, [2.0, 0.0])
    close(res.shared, [2.0, 0.0])


def test_pcgrad_pair():
    # g1 = (1, 0), g2 = (-1, 1): g1' = g1 + ½ g2 = (½, ½); g2' = g2 + g1 = (0, 1)
    res = build("pcgrad", 2)(t([1.0, 0.0], [-1.0, 1.0]), ctx())
    close(res.shared, [0.5, 1.5])
    assert res.task_weights is None


def test_gradvac_two_steps():
    """Step 1 (targets 0) projects like PCGrad; the targets become β cos = -√½ / 2; step 2 lifts the cosine
    of (1, 0) and (-1, 1) from -√½ to that target (Wang et al. Eq. 4-5)."""
    grads = t([1.0, 0.0], [-1.0, 1.0])
    agg = build("gradvac", 2, beta=0.5)
    close(agg(grads, ctx(1)).shared, [0.5, 1.5])
    phi = -1 / math.sqrt(2)
    close(agg.rho[:, :, 0], [[0.0, 0.5 * phi], [0.5 * phi, 0.0]])
    target = 0.5 * phi
    sin_phi, sin_t = math.sqrt(1 - phi**2), math.sqrt(1 - target**2)
    # task 0: ‖g0‖ = 1, ‖g1‖ = √2; task 1: ‖g1‖ = √2, ‖g0‖ = 1
    w0 = 1 * (target * sin_phi - phi * sin_t) / (math.sqrt(2) * sin_t)
    w1 = math.sqrt(2) * (target * sin_phi - phi * sin_t) / (1 * sin_t)
    pc0 = [1.0 - w0, w0]
    pc1 = [-1.0 + w1, 1.0]
    res = agg(grads, ctx(2))
    close(res.shared, [pc0[0] + pc1[0], pc0[1] + pc1[1]], rtol=1e-7, atol=1e-7)
    close(agg.rho[0, 1, 0], 0.5 * target + 0.5 * phi)


def test_graddrop_fixed_draw():
    grads = t([1.0, -1.0, 2.0], [-1.0, -1.0, 1.0])
    u = torch.rand(3, generator=torch.Generator().manual_seed(11), dtype=F64)
    # purity P = (½, ≈0, ≈1): column 1 keeps the negatives, column 2 the positives
    first = 1.0 if 0.5 > float(u[0]) else -1.0
    res = build("graddrop", 2, seed=11)(grads, ctx())
    close(res.shared, [first, -2.0, 3.0])


def test_imtl_g_pair():
    # u1 = (1, 0), u2 = (0, 1); D = (1, -2), U = (1, -1): α2 = 1/3, α1 = 2/3; g = (2/3, 2/3)
    res = build("imtl_g", 2)(t([1.0, 0.0], [0.0, 2.0]), ctx())
    close(res.task_weights, [2 / 3, 1 / 3])
    close(res.shared, [2 / 3, 2 / 3])


def test_cagrad_orthogonal_pair():
    # g0 = (½, ½), ‖g0‖ = √½; w = (½, ½) by symmetry, ‖g_w‖ = √½; λ = c‖g0‖/‖g_w‖ = c = 0.4
    # d = g0 + 0.4 g_w = (0.7, 0.7); rescale 1: /(1 + c²); × T = 2
    res = build("cagrad", 2, c=0.4)(t([1.0, 0.0], [0.0, 1.0]), ctx())
    close(res.shared, [2 * 0.7 / 1.16] * 2, rtol=1e-6, atol=1e-7)
    close(res.task_weights, [2 * 0.7 / 1.16] * 2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("rescale", "divisor"), [(0, 1.0), (2, 1.4)])
def test_cagrad_rescale_options(rescale, divisor):
    res = build("cagrad", 2, c=0.4, rescale=rescale)(t([1.0, 0.0], [0.0, 1.0]), ctx())
    close(res.shared, [2 * 0.7 / divisor] * 2, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(("mode", "sigma"), [("min", 1.0), ("median", 1.0), ("rmse", math.sqrt(2.5))])
def test_aligned_mtl_pair(mode, sigma):
    # M = diag(1, 4): B = σ diag(1, ½) and α = B.sum(0) = σ (1, ½); the update σ (1, 1)
    res = build("aligned_mtl", 2, scale_mode=mode)(t([1.0, 0.0], [0.0, 2.0]), ctx())
    close(res.task_weights, [sigma, sigma / 2])
    close(res.shared, [sigma, sigma])


@pytest.mark.parametrize("name", params(["nash_mtl"]))
def test_nash_mtl_orthogonal_pair(name):
    # G Gᵀ = diag(1, 4): α_t (GGᵀα)_t = 1 gives α = 1/‖g_t‖ = (1, ½); update (1, 1), clipped to norm 1
    agg = build(name, 2)
    res = agg(t([1.0, 0.0], [0.0, 2.0]), ctx())
    close(res.task_weights, [1.0, 0.5], rtol=1e-3, atol=1e-3)
    close(res.shared, [1 / math.sqrt(2)] * 2, rtol=1e-4, atol=1e-4)
    unclipped = build(name, 2, max_norm=0.0)(t([1.0, 0.0], [0.0, 2.0]), ctx())
    close(unclipped.shared, [1.0, 1.0], rtol=1e-3, atol=1e-3)


def test_gradnorm_two_steps():
    """Step 1 uses w = (1, 1). G = w‖g‖ = (1, 3), Ḡ = 2, r = (1, 1): ∂L_grad/∂w = (-1, +3), one Adam step
    of 0.025 moves each weight by ∓0.025 (sum kept at T)."""
    grads = t([1.0, 0.0], [0.0, 3.0])
    agg = build("gradnorm", 2, alpha=1.5, weight_lr=0.025)
    first = agg(grads, ctx(1, [2.0, 4.0]))
    close(first.task_weights, [1.0, 1.0])
    close(first.shared, [1.0, 3.0])
    second = agg(grads, ctx(2, [2.0, 4.0]))
    close(second.task_weights, [1.025, 0.975], rtol=1e-6, atol=1e-8)
    close(second.shared, [1.025, 3 * 0.975], rtol=1e-6, atol=1e-8)


def test_gradnorm_restoring_force_follows_training_rates():
    """Equal gradient norms; task 1's loss falls slower (r_1 > 1): its weight must grow (alpha > 0)."""
    grads = t([1.0, 0.0], [0.0, 1.0])
    agg = build("gradnorm", 2, alpha=1.5)
    agg(grads, ctx(1, [1.0, 1.0]))
    for k in range(2, 6):
        res = agg(grads, ctx(k, [0.5, 1.0]))
    assert float(res.task_weights[1]) > 1.0 > float(res.task_weights[0])
    assert float(res.task_weights.sum()) == pytest.approx(2.0)


def test_moco_two_steps():
    grads = t([3.0, 0.0], [0.0, 4.0])
    losses = [1.0, 2.0]
    agg = build("moco", 2, beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.0)
    # step 1: g̃ = ((1, 0), (0, 2)); y = ½ g̃; λ = softmax(½ − 0.1 · diag(¼, 1) · ½)
    y = t([0.5, 0.0], [0.0, 1.0])
    lam = torch.softmax(torch.tensor([0.5 - 0.1 * 0.125, 0.5 - 0.1 * 0.5], dtype=F64), 0)
    res = agg(grads, ctx(1, losses))
    close(res.task_weights, lam)
    close(res.shared, lam @ y)
    # step 2: β_2 = ½/√2, γ_2 = 0.1/√2
    b2, g2 = 0.5 / math.sqrt(2), 0.1 / math.sqrt(2)
    y = y - b2 * (y - t([1.0, 0.0], [0.0, 2.0]))
    lam = torch.softmax(lam - g2 * (y @ y.T) @ lam, 0)
    res = agg(grads, ctx(2, losses))
    close(res.task_weights, lam)
    close(res.shared, lam @ y)


def test_metabalance_whole_and_per_tensor():
    grads = t([3.0, 0.0], [0.0, 1.0])
    # one group: m = 0.1 (3, 1); task 1 scaled by 0.7 · 3 + 0.3 = 2.4
    res = build("metabalance", 2, granularity="whole")(grads, ctx())
    close(res.shared, [3.0, 2.4])
    # per tensor (1, 1): in group 1 the main task's magnitude is 0, so task 1 keeps (1 − r) of its gradient
    res = build("metabalance", 2)(grads, ctx(param_sizes=(1, 1)))
    close(res.shared, [3.0, 0.3])


def test_metabalance_moving_average():
    agg = build("metabalance", 2, granularity="whole", beta=0.5, relax_factor=0.5)
    agg(t([2.0, 0.0], [0.0, 1.0]), ctx(1))  # m = (1, 0.5)
    res = agg(t([4.0, 0.0], [0.0, 1.0]), ctx(2))  # m = (2.5, 0.75): scale 0.5 · 10/3 + 0.5
    close(res.shared, [4.0, 0.5 * 2.5 / 0.75 + 0.5])


def test_mtadam_first_step_and_second_step():
    grads = t([3.0, 0.0], [0.0, 1.0])
    agg = build("mtadam", 2, granularity="whole")
    # step 1: n = (3, 1), task 1 rescaled to (0, 3); m̂ = g', √v̂ = |g'|; direction Σ m̂ / max_t(√v̂_t + ε)
    res = agg(grads, ctx(1))
    close(res.shared, [3 / (3 + 1e-8), 3 / (3 + 1e-8)])
    # step 2 with task 1 doubled: n = (3, 0.9 + 0.2) = (3, 1.1); g'_1 = (0, 2 · 3 / 1.1)
    g1 = 2 * 3 / 1.1
    m = [0.9 * 0.1 * 3 + 0.1 * 3, 0.9 * 0.1 * 3 + 0.1 * g1]
    v = [0.999 * 0.001 * 9 + 0.001 * 9, 0.999 * 0.001 * 9 + 0.001 * g1**2]
    bc1, bc2 = 1 - 0.9**2, 1 - 0.999**2
    # coordinate 0 has only task 0; coordinate 1 only task 1; the other task's denominator is ε
    expected = [m[0] / bc1 / (math.sqrt(v[0] / bc2) + 1e-8), m[1] / bc1 / (math.sqrt(v[1] / bc2) + 1e-8)]
    res = agg(t([3.0, 0.0], [0.0, 2.0]), ctx(2))
    close(res.shared, expected, rtol=1e-9, atol=1e-12)
