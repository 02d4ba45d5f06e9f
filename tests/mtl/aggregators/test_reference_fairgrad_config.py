"""FairGrad, ConFIG, M-ConFIG and CR-MOGM against their references (torchjd 0.18, conflictfree 0.1.8).

Tolerances (relative to the largest entry of the reference's result):
- float64: FairGrad (``solver="least_squares"``) and ConFIG vs torchjd 1e-12 (measured: 0 and 0);
  ConFIG vs conflictfree 1e-11 (lstsq / the two-task closed form vs pinv; measured 1.3e-14);
  M-ConFIG vs conflictfree 1e-9 (its Adam-like division amplifies rounding; measured 2.4e-12).
- float32 inputs: our solves run in float64, so they are compared with the reference run on the same
  values in float64 (FairGrad 1e-5, measured 1.5e-7) and with the reference in float32 (ConFIG 1e-4,
  measured 3.5e-6).
"""

from __future__ import annotations

import copy
import io
import math
import warnings

import numpy as np
import pytest
import torch

from mtl.aggregators.cr_mogm import WEIGHTING_AGGREGATORS
from mtl.aggregators.fairgrad import fairgrad_residual, fairgrad_weights_newton
from mtl.errors import ConfigError
from tests.mtl.aggregators.helpers import HAS_CVXPY, build, ctx, random_grads

tj = pytest.importorskip("torchjd.aggregation")


def _cases(n: int = 24):
    """Seeded (T, P, seed): 2-7 tasks, P from 3 to 60 (including T > P), norms spanning 10^±1."""
    return [(2 + s % 6, (3, 8, 20, 60)[s % 4], s) for s in range(n)]


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max()) / max(float(ref.abs().max()), 1e-300)


def _step(agg, grads, k=1):
    return agg(
        grads, ctx(k, torch.ones(grads.shape[0], dtype=grads.dtype), grads.shape[0], dtype=grads.dtype)
    )


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


G11 = random_grads(3, 6, seed=11)

# -- FairGrad --------------------------------------------------------------------------------------
# torchjd 0.18 FairGrad(alpha)(G11) (= Σ_t w_t g_t), computed once
GOLDEN_FAIRGRAD = {
    1.0: [0.08549166852778267, 0.16205382579980376, -0.4022789663983492, -0.08145184566319624,
          -1.660749457015756, -0.1996952758840262],
    2.0: [-0.13054994592650437, -0.004146770451772364, -0.6038211572267009, -0.4005312356733097,
          -1.1597504827751033, 0.16677234635342902],
}  # fmt: skip


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_fairgrad_golden(alpha):
    res = _step(build("fairgrad", 3, alpha=alpha, max_norm=0.0, solver="least_squares"), G11)
    expected = torch.tensor(GOLDEN_FAIRGRAD[alpha], dtype=torch.float64)
    torch.testing.assert_close(res.shared / 3, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.task_weights @ G11, res.shared)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0, 5.0])
def test_fairgrad_least_squares_equals_torchjd(alpha):
    worst = 0.0
    for num_tasks, dim, seed in _cases(12):
        grads = random_grads(num_tasks, dim, seed)
        ours = _step(build("fairgrad", num_tasks, alpha=alpha, max_norm=0.0, solver="least_squares"), grads)
        worst = max(worst, _rel(ours.shared / num_tasks, tj.FairGrad(alpha)(grads)))
    assert worst <= 1e-12, worst


def test_fairgrad_float32_equals_torchjd_on_the_same_values():
    worst = 0.0
    for num_tasks, dim, seed in _cases(12):
        if num_tasks > dim:  # no root: scipy's stopping point is ill-conditioned (weights ~1e3), skip
            continue
        grads = random_grads(num_tasks, dim, seed, dtype=torch.float32)
        ours = _step(build("fairgrad", num_tasks, max_norm=0.0, solver="least_squares"), grads)
        assert ours.shared.dtype == torch.float32
        worst = max(worst, _rel(ours.shared.double() / num_tasks, tj.FairGrad(1.0)(grads.double())))
    assert worst <= 1e-5, worst


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad_newton_solves_the_weight_equation(alpha):
    """Ban & Ji Eq. 4, G Gᵀ w = w^{-1/α}, to rounding; the reference's scipy solve stops well short of it."""
    newton_worst = ref_worst = 0.0
    for num_tasks, dim, seed in _cases(16):
        if num_tasks > dim:
            continue  # rank-deficient K: a root need not exist
        grads = random_grads(num_tasks, dim, seed)
        res = _step(build("fairgrad", num_tasks, alpha=alpha, max_norm=0.0), grads)
        w = (res.task_weights / num_tasks).numpy()
        gram = (grads @ grads.T).numpy()
        assert np.all(w > 0)
        newton_worst = max(
            newton_worst,
            np.linalg.norm(fairgrad_residual(gram, w, alpha)) / np.linalg.norm(w ** (-1 / alpha)),
        )
        ref = _step(build("fairgrad", num_tasks, alpha=alpha, max_norm=0.0, solver="least_squares"), grads)
        w_ref = (ref.task_weights / num_tasks).numpy()
        ref_worst = max(
            ref_worst,
            np.linalg.norm(fairgrad_residual(gram, w_ref, alpha)) / np.linalg.norm(w_ref ** (-1 / alpha)),
        )
    assert newton_worst <= 1e-10, newton_worst
    assert newton_worst <= ref_worst


@pytest.mark.parametrize("seed", range(6))
def test_fairgrad_alpha_one_is_proportional_fairness(seed):
    """α = 1: w_t ⟨g_t, d⟩ = 1 for every task (d = Σ w_t g_t), i.e. the proportional-fairness optimum:
    d maximises Σ_t log ⟨g_t, d⟩ over the ball ‖d‖ ≤ ‖d*‖ (checked against random feasible directions)."""
    grads = random_grads(3, 10, seed) + random_grads(1, 10, 50 + seed)
    res = _step(build("fairgrad", 3, alpha=1.0, max_norm=0.0), grads)
    w, d = res.task_weights / 3, res.shared / 3
    torch.testing.assert_close(w * (grads @ d), torch.ones(3, dtype=torch.float64), rtol=1e-10, atol=1e-10)
    best = float(torch.log(grads @ d).sum())
    dirs = d + 0.3 * d.norm() * torch.randn(
        4000, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    dirs = dirs / dirs.norm(dim=1, keepdim=True) * d.norm()
    inner = dirs @ grads.T
    ok = (inner > 0).all(dim=1)
    assert float(torch.log(inner[ok]).sum(dim=1).max()) <= best + 1e-12


def test_fairgrad_newton_agrees_with_the_reference_where_it_converges():
    """Equal-scale gradients: scipy stops close to the root, and both agree to its tolerance."""
    gen = torch.Generator().manual_seed(3)
    grads = torch.randn(4, 30, generator=gen, dtype=torch.float64) + 1.0
    a = _step(build("fairgrad", 4, max_norm=0.0), grads).task_weights
    b = _step(build("fairgrad", 4, max_norm=0.0, solver="least_squares"), grads).task_weights
    torch.testing.assert_close(a, b, rtol=1e-5, atol=0)


def test_fairgrad_no_root_falls_back_with_a_warning():
    g = random_grads(1, 5, seed=4)[0]
    grads = torch.stack([g, -g])
    _, converged = fairgrad_weights_newton((grads @ grads.T).numpy(), 1.0)
    assert not converged
    agg = build("fairgrad", 2)
    with pytest.warns(RuntimeWarning, match="no positive root"):
        res = _step(agg, grads)
    assert torch.isfinite(res.shared).all() and agg.unsolved == 1


def test_fairgrad_scaling_clipping_and_alpha_zero():
    grads = random_grads(3, 8, seed=5) * 10
    res = _step(build("fairgrad", 3, max_norm=1.0), grads)
    assert float(res.shared.norm()) == pytest.approx(1.0, rel=1e-5)
    unclipped = _step(build("fairgrad", 3, max_norm=0.0), grads).shared
    torch.testing.assert_close(res.shared / res.shared.norm(), unclipped / unclipped.norm())
    zero = _step(build("fairgrad", 3, alpha=0.0, max_norm=0.0), grads)
    torch.testing.assert_close(zero.shared, grads.sum(dim=0))
    for bad in ({"alpha": -1.0}, {"max_norm": -1.0}, {"solver": "lbfgs"}):
        with pytest.raises(ConfigError):
            build("fairgrad", 3, **bad)


# -- ConFIG ----------------------------------------------------------------------------------------
cf_grad = pytest.importorskip("conflictfree.grad_operator")
cf_momentum = pytest.importorskip("conflictfree.momentum_operator")
cf_weight = pytest.importorskip("conflictfree.weight_model")


class _Ones(cf_weight.WeightModel):
    """conflictfree's EqualWeight in the gradients' dtype (its own returns float32, which lstsq rejects
    for float64 gradients)."""

    def get_weights(self, gradients, losses=None, device=None):
        return torch.ones(gradients.shape[0], dtype=gradients.dtype, device=gradients.device)


# torchjd 0.18 ConFIG()(G11) and conflictfree 0.1.8 ConFIG_update(G11), computed once
GOLDEN_CONFIG_TORCHJD = [1.0876695935587648, 1.228975945453924, -2.950508783011133, -0.5225223915181592,
                         -12.916031413369394, -1.8371000126661854]  # fmt: skip
GOLDEN_CONFIG_CONFLICTFREE = [1.0876695935587648, 1.2289759454539255, -2.9505087830111347,
                              -0.5225223915181605, -12.916031413369394, -1.8371000126661843]  # fmt: skip
# conflictfree ConFIGOperator().calculate_gradient(random_grads(2, 5, seed=12)) (two-task closed form)
GOLDEN_CONFIG_DOUBLE = [-2.5857791030548984, 1.0802292144828434, 1.4360295818713271, -2.6872920109757845,
                        0.8263257536531888]  # fmt: skip


def test_config_golden():
    res = _step(build("config", 3), G11)
    for golden in (GOLDEN_CONFIG_TORCHJD, GOLDEN_CONFIG_CONFLICTFREE):
        torch.testing.assert_close(
            res.shared, torch.tensor(golden, dtype=torch.float64), rtol=1e-12, atol=1e-12
        )
    two = _step(build("config", 2), random_grads(2, 5, seed=12))
    torch.testing.assert_close(
        two.shared, torch.tensor(GOLDEN_CONFIG_DOUBLE, dtype=torch.float64), rtol=1e-12, atol=1e-12
    )
    assert res.task_weights is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_config_equals_torchjd_and_conflictfree(dtype):
    tol_tj, tol_cf = (1e-12, 1e-11) if dtype == torch.float64 else (1e-4, 1e-4)
    worst_tj = worst_cf = worst_op = 0.0
    for num_tasks, dim, seed in _cases(40):
        grads = random_grads(num_tasks, dim, seed, dtype=dtype)
        ours = _step(build("config", num_tasks), grads).shared
        assert ours.dtype == dtype
        worst_tj = max(worst_tj, _rel(ours, tj.ConFIG()(grads)))
        worst_cf = max(worst_cf, _rel(ours, cf_grad.ConFIG_update(grads, weight_model=_Ones())))
        operator = cf_grad.ConFIGOperator(weight_model=_Ones())  # two tasks: ConFIG_update_double
        worst_op = max(worst_op, _rel(ours, operator.calculate_gradient(grads)))
    assert worst_tj <= tol_tj, worst_tj
    assert max(worst_cf, worst_op) <= tol_cf, (worst_cf, worst_op)


@pytest.mark.parametrize(("num_tasks", "dim", "seed"), [c for c in _cases(24) if c[0] <= c[1]])
def test_config_has_equal_positive_cosines(num_tasks, dim, seed):
    """Liu et al. Eq. 2: the update makes the same (positive) angle with every task gradient, and its length
    is the sum of the gradients' projections on it."""
    grads = random_grads(num_tasks, dim, seed)
    grads[0] = -0.7 * grads[1] + 0.1 * grads[0]  # a conflicting pair
    d = _step(build("config", num_tasks), grads).shared
    cos = (grads @ d) / (grads.norm(dim=1) * d.norm())
    torch.testing.assert_close(cos, cos.mean().expand_as(cos), rtol=1e-9, atol=1e-12)
    assert float(cos.min()) > 0 and float((grads @ d).min()) > 0
    unit = d / d.norm()
    assert float(d.norm()) == pytest.approx(float((grads @ unit).sum()), rel=1e-12)


# -- M-ConFIG --------------------------------------------------------------------------------------
# conflictfree PseudoMomentumOperator(3).calculate_gradient([0, 1, 2], rows) at the 3rd call with the rows of
# random_grads(3, 6, seed=20 + k), k = 1, 2, 3 (computed once)
GOLDEN_M_CONFIG = [-0.699702579100333, 0.25149583287849414, -0.5068559521186097, -0.8802780323779476,
                   -0.6424179131661508, 0.5338010917095134]  # fmt: skip


def test_m_config_golden():
    agg = build("m_config", 3)
    for k in range(1, 4):
        res = _step(agg, random_grads(3, 6, seed=20 + k), k)
    torch.testing.assert_close(
        res.shared, torch.tensor(GOLDEN_M_CONFIG, dtype=torch.float64), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("schedule", ["all", "cyclic"])
def test_m_config_equals_conflictfree(schedule):
    worst = 0.0
    for num_tasks, dim, seed in _cases(12):
        reference = cf_momentum.PseudoMomentumOperator(
            num_tasks, gradient_operator=cf_grad.ConFIGOperator(weight_model=_Ones())
        )
        agg = build("m_config", num_tasks, schedule=schedule)
        base = random_grads(1, dim, 1000 + seed)
        for k in range(1, 3 * num_tasks + 2):
            grads = base + random_grads(num_tasks, dim, 100 * seed + k)
            if schedule == "all":
                ref = reference.calculate_gradient(list(range(num_tasks)), list(grads.unbind(0)))
            else:
                i = (k - 1) % num_tasks
                ref = reference.calculate_gradient(i, grads[i])
            ours = _step(agg, grads, k).shared
            if float(ref.abs().max()) == 0.0:
                assert float(ours.abs().max()) == 0.0  # cyclic warm-up: no update before every task is seen
                continue
            worst = max(worst, _rel(ours, ref))
    assert worst <= 1e-9, worst


def test_m_config_cyclic_resumes_exactly():
    def grads_at(k):
        return random_grads(1, 9, 7) + random_grads(3, 9, 300 + k)

    straight = build("m_config", 3, schedule="cyclic")
    for k in range(1, 3):
        _step(straight, grads_at(k), k)
    resumed = build("m_config", 3, schedule="cyclic")
    resumed.load_state_dict(_roundtrip(straight.state_dict()))
    for k in range(3, 9):
        assert torch.equal(_step(straight, grads_at(k), k).shared, _step(resumed, grads_at(k), k).shared)


def test_m_config_rejects_bad_kwargs():
    for bad in ({"beta_1": 1.0}, {"beta_2": -0.1}, {"schedule": "random"}):
        with pytest.raises(ConfigError):
            build("m_config", 3, **bad)


# -- CR-MOGM ---------------------------------------------------------------------------------------
class _Replay(tj.Weighting):
    """A torchjd weighting that returns given weights in turn (feeds CRMOGMWeighting the same λ̂_k)."""

    def __init__(self, weights):
        super().__init__()
        self.weights = list(weights)

    def forward(self, stat, /):
        return self.weights.pop(0)


# torchjd CRMOGMWeighting(_Replay(e_0, e_1, e_2), alpha=0.9) after three calls (computed once)
GOLDEN_CR_MOGM = [0.81, 0.08999999999999998, 0.09999999999999998]


def test_cr_mogm_golden_ema():
    class _Unit(torch.nn.Module):  # a stand-in inner aggregator returning e_{k-1} at step k
        weights_heads = False

        def forward(self, grads, context):
            from mtl.aggregators.base import AggregationResult

            w = torch.eye(3, dtype=grads.dtype)[context.step - 1]
            return AggregationResult(shared=w @ grads, task_weights=w)

    agg = build("cr_mogm", 3, beta=0.9)
    agg.inner = _Unit()
    grads = random_grads(3, 4, seed=1)
    for k in range(1, 4):
        res = _step(agg, grads, k)
    expected = torch.tensor(GOLDEN_CR_MOGM, dtype=torch.float64)
    torch.testing.assert_close(res.task_weights, expected, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(res.shared, expected @ grads)


INNERS = [n for n in WEIGHTING_AGGREGATORS if n != "nash_mtl" or HAS_CVXPY]


@pytest.mark.parametrize("inner", INNERS)
@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_cr_mogm_equals_torchjd(inner, beta):
    """The same λ̂_k (a copy of the inner aggregator) through torchjd's CRMOGMWeighting."""
    num_tasks = 3
    agg = build("cr_mogm", num_tasks, inner=inner, beta=beta)
    shadow = copy.deepcopy(agg.inner)
    steps = [random_grads(1, 10, 5) + 0.6 * random_grads(num_tasks, 10, 40 + k) for k in range(1, 6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lam_hat = [_step(shadow, g, k).task_weights for k, g in enumerate(steps, start=1)]
        reference = tj.CRMOGMWeighting(_Replay(lam_hat), alpha=beta)
        for k, grads in enumerate(steps, start=1):
            res = _step(agg, grads, k)
            expected = reference(grads @ grads.T)
            torch.testing.assert_close(res.task_weights, expected, rtol=1e-14, atol=1e-14)
            torch.testing.assert_close(res.shared, expected @ grads, rtol=1e-12, atol=1e-12)
    assert agg.weights_heads == agg.inner.weights_heads


def test_cr_mogm_ema_formula_over_steps():
    beta = 0.7
    agg = build("cr_mogm", 4, inner="mgda", beta=beta)
    mgda = build("mgda", 4)
    lam = None
    for k in range(1, 6):
        grads = random_grads(4, 12, seed=k)
        lam_hat = _step(mgda, grads, k).task_weights
        lam = lam_hat if lam is None else beta * lam + (1 - beta) * lam_hat
        res = _step(agg, grads, k)
        torch.testing.assert_close(res.task_weights, lam, rtol=1e-14, atol=1e-15)
        torch.testing.assert_close(res.shared, lam @ grads)
        assert math.isclose(float(res.task_weights.sum()), 4.0, rel_tol=1e-12)  # MGDA's weights sum to T


def test_cr_mogm_resumes_exactly_with_a_stateful_inner():
    def inputs(k):
        grads = random_grads(1, 8, 9) + 0.5 * random_grads(3, 8, 60 + k)
        return grads, ctx(k, torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64) / k, 3)

    straight = build("cr_mogm", 3, inner="gradnorm", beta=0.8)
    for k in range(1, 4):
        straight(*inputs(k))
    state = _roundtrip(straight.state_dict())
    assert any(key.startswith("inner.") for key in state)
    resumed = build("cr_mogm", 3, inner="gradnorm", beta=0.8, seed=99)
    resumed.load_state_dict(state)
    for k in range(4, 8):
        a, b = straight(*inputs(k)), resumed(*inputs(k))
        assert torch.equal(a.shared, b.shared) and torch.equal(a.task_weights, b.task_weights)


def test_cr_mogm_validates_its_kwargs():
    with pytest.raises(ConfigError, match="mgda") as info:
        build("cr_mogm", 3, inner="pcgrad")
    assert "returns task weights" in str(info.value)
    with pytest.raises(ConfigError):
        build("cr_mogm", 3, inner="no_such_method")
    with pytest.raises(ConfigError):
        build("cr_mogm", 3, beta=1.5)
    assert build("cr_mogm", 3, inner="MGDA").inner_name == "mgda"
