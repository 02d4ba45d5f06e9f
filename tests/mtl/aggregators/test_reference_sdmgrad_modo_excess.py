"""SDMGrad, MoDo and ExcessMTL against torchjd 0.18 (live and golden) and LibMTL's update rules.

The references are stateful, so every comparison runs several consecutive steps on one reference object.
Inputs: the single-batch formulation, ``SDMGradWeighting`` and ``MoDoWeighting`` fed ``A = G Gᵀ``;
``ExcessMTL`` fed ``G``.

Tolerances: ours runs torchjd's sequence of floating-point operations in ``G``'s dtype, so the results are
expected to be identical; the live tests allow 1e-12 (float64) and 1e-6 (float32) relative to the largest
entry (measured: 0 in both dtypes, every step). LibMTL's rules are re-written here in their own operation
order (NumPy float64 cumulative-sum projection, ``G (Gᵀ λ)``, a multiplicative update), so they agree up to
rounding: MoDo 1e-10 relative (measured 0-1e-15); SDMGrad 1e-6, because with LibMTL's ``lr = 5`` the inner
projected heavy-ball iteration is not contractive (``lr · ‖A‖ > 2``) and amplifies rounding differences
over its 20 iterations and the warm-started steps (measured 3.7e-8); ExcessMTL 1e-5, because ours (as
torchjd) divides by ``Ê⁰ + 1e-7`` where LibMTL divides by ``Ê⁰`` (measured below).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from mtl.aggregators.mgda import min_norm_weights
from mtl.aggregators.simplex import project_onto_simplex
from mtl.errors import ConfigError
from tests.mtl.aggregators.helpers import build, ctx, random_grads

tj = pytest.importorskip("torchjd.aggregation")

NAMES = ("sdmgrad", "modo", "excess_mtl")
TOL = {torch.float64: 1e-12, torch.float32: 1e-6}


def _sequence(num_tasks: int, dim: int, seed: int, steps: int, dtype=torch.float64) -> list[torch.Tensor]:
    """``steps`` gradient matrices around one seeded base (per-task norms spanning 10^±1), as in training:
    each task keeps its scale, rescaled by ~25 % and perturbed by ~30 % noise per step."""
    base = random_grads(num_tasks, dim, seed, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 7919)
    out = []
    for _ in range(steps):
        rescale = 1.0 + 0.25 * torch.randn(num_tasks, 1, generator=gen, dtype=torch.float64)
        noise = torch.randn(num_tasks, dim, generator=gen, dtype=torch.float64)
        out.append((base * rescale + 0.3 * base.norm(dim=1, keepdim=True) / dim**0.5 * noise).to(dtype))
    return out


def _jumping(num_tasks: int, dim: int, seed: int, steps: int, dtype=torch.float64) -> list[torch.Tensor]:
    """Independent matrices whose per-task scales jump by up to 100x between steps (a harder case)."""
    return [random_grads(num_tasks, dim, 1000 * seed + k, dtype=dtype) for k in range(steps)]


def _step(agg, grads, k):
    t = grads.shape[0]
    return agg(grads, ctx(k, torch.ones(t, dtype=grads.dtype), t, dtype=grads.dtype))


def _reference(name: str, **kwargs):
    """The torchjd object and a function (object, G) -> (weights, update)."""
    if name == "sdmgrad":
        ref = tj.SDMGradWeighting(**kwargs)
    elif name == "modo":
        ref = tj.MoDoWeighting(**kwargs)
    else:
        agg = tj.ExcessMTL(**kwargs)

        def excess(g):
            update = agg(g)
            return agg.weighting._weights.clone(), update

        return excess

    def weighting(g):
        w = ref(g @ g.T)
        return w, w @ g

    return weighting


# our keyword arguments -> torchjd's, for the same configuration
CONFIGS = {
    "sdmgrad": [
        ({}, {}),
        ({"lamda": 0.0, "niter": 5}, {"lambda_": 0.0, "n_iter": 5}),
        (
            {"lamda": 1.5, "lr": 2.0, "momentum": 0.0, "pref_vector": [0.5, 0.3, 0.2]},
            {
                "lambda_": 1.5,
                "lr": 2.0,
                "momentum": 0.0,
                "pref_vector": torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64),
            },
        ),
    ],
    "modo": [
        ({}, {}),
        ({"gamma": 0.01, "rho": 0.0}, {"gamma": 0.01, "rho": 0.0}),
        ({"gamma": 1.0}, {"gamma": 1.0}),
    ],
    "excess_mtl": [
        ({"raw_first_step": True}, {}),
        ({"n_warmup_steps": 3}, {"n_warmup_steps": 3}),
        ({"robust_step_size": 0.1, "n_warmup_steps": 1}, {"robust_step_size": 0.1, "n_warmup_steps": 1}),
    ],
}

CASES = [(2, 5), (3, 17), (3, 4), (5, 40), (7, 3)]


def _live_worst(name, ours_kw, ref_kw, sequences) -> float:
    worst = 0.0
    for grads_seq in sequences:
        num_tasks = grads_seq[0].shape[0]
        pref = ours_kw.get("pref_vector")
        if pref is not None and len(pref) != num_tasks:
            continue
        ours = build(name, num_tasks, **ours_kw)
        ref = _reference(name, **ref_kw)
        for k, grads in enumerate(grads_seq, start=1):
            res = _step(ours, grads, k)
            w, update = ref(grads)
            assert res.shared.dtype == grads.dtype
            scale = max(float(update.abs().max()), 1e-300)
            worst = max(worst, float((res.shared - update).abs().max()) / scale)
            worst = max(worst, float((res.task_weights - w).abs().max()))
    return worst


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(("name", "config"), [(n, i) for n in NAMES for i in range(len(CONFIGS[n]))])
def test_equals_torchjd_step_after_step(name, config, dtype):
    """Five steps on each of five smooth sequences and five with jumping scales (T from 2 to 7, T > P too)."""
    sequences = [_sequence(t, p, seed, 5, dtype) for seed, (t, p) in enumerate(CASES)]
    sequences += [_jumping(t, p, seed, 5, dtype) for seed, (t, p) in enumerate(CASES)]
    ours_kw, ref_kw = CONFIGS[name][config]
    worst = _live_worst(name, ours_kw, ref_kw, sequences)
    assert worst <= TOL[dtype], (ours_kw, worst)


@pytest.mark.parametrize("name", NAMES)
def test_a_resumed_copy_still_equals_torchjd(name):
    """Three steps, a state-dict round trip (through torch.save), three more: still torchjd's results."""
    ours_kw = {"raw_first_step": True} if name == "excess_mtl" else {}
    grads_seq = _sequence(4, 11, 5, 6)
    ours, ref = build(name, 4, **ours_kw), _reference(name)
    for k, grads in enumerate(grads_seq[:3], start=1):
        _step(ours, grads, k)
        ref(grads)
    buffer = io.BytesIO()
    torch.save(ours.state_dict(), buffer)
    buffer.seek(0)
    resumed = build(name, 4, seed=99, **ours_kw)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for k, grads in enumerate(grads_seq[3:], start=4):
        res = _step(resumed, grads, k)
        w, update = ref(grads)
        assert torch.equal(res.task_weights, w) and torch.equal(res.shared, update)


# -- golden values: torchjd 0.18.0 after three steps on _sequence(3, 6, seed=11, steps=3), computed once -
# (name, our kwargs, weights, update); torchjd's kwargs: the same values under its names, and its default
# ExcessMTL is ours with raw_first_step=True
GOLDEN = [
    ("sdmgrad", {}, [0.8461538461538461, 0.07692307692307691, 0.07692307692307691],
     [0.5267273191594979, 0.266530150637529, -0.390549983807034, -0.11000099163697363, -0.7805378840637653,
      -0.16219137532440792]),
    ("sdmgrad", {"lamda": 1.0, "niter": 3}, [0.6666666666666666, 0.16666666666666666, 0.16666666666666666],
     [1.2886802793449266, 0.7765761672052401, -0.4230375603265003, 0.0822581530112152, -1.377885923683198,
      -0.6365595762789618]),
    ("modo", {}, [0.0, 0.0, 1.0],
     [-4.349056830090053, 4.72667840783238, -0.02946506840989427, 5.120986951952323, -6.6213672790071945,
      -1.2287281349332182]),
    ("modo", {"gamma": 0.001}, [0.3863812908626507, 0.2595241561827932, 0.3540945529545562],
     [1.6777306099981424, 1.767462121916745, -0.4251378926237127, 0.7914694525192021, -2.5967513790632037,
      -1.2667025341126854]),
    ("excess_mtl", {"raw_first_step": True},
     [3.569895582839784e-15, 0.9999999917729591, 8.227037368188669e-09],
     [12.586639239398153, 0.6153872263334123, -1.0579463264977855, -3.5282597859570872, -0.5718471981589004,
      -3.568269062611029]),
    ("excess_mtl", {"n_warmup_steps": 1}, [0.5626830610266045, 0.11722066048940447, 0.32009627848399097],
     [0.012188080507116394, 1.4891051873741659, -0.3375319366894205, 1.0710016793760864, -2.3376019506872994,
      -0.6740608287796219]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "weights", "update"), GOLDEN)
def test_golden(name, kwargs, weights, update):
    agg = build(name, 3, **kwargs)
    for k, grads in enumerate(_sequence(3, 6, 11, 3), start=1):
        res = _step(agg, grads, k)
    f64 = torch.float64
    torch.testing.assert_close(res.task_weights, torch.tensor(weights, dtype=f64), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(res.shared, torch.tensor(update, dtype=f64), rtol=1e-13, atol=1e-14)


# -- LibMTL's update rules (median-research-group/LibMTL weighting/*.py), single batch --------------------
def _libmtl_projection(v: np.ndarray, s: float = 1.0) -> np.ndarray:
    """LibMTL SDMGrad.euclidean_proj_simplex: the cumulative-sum form in float64 NumPy."""
    v = v.astype(np.float64)
    if v.sum() == s and np.all(v >= 0):
        return v
    u = np.sort(v)[::-1]
    cssv = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, len(v) + 1) > (cssv - s))[0][-1]
    return (v - (cssv[rho] - s) / (rho + 1.0)).clip(min=0)


def _libmtl_sdmgrad(grads, w, lamda, niter, lr):
    """LibMTL SDMGrad.backward with ξ = ξ' = ζ (its ``lr`` is hard-coded to 5, momentum 0.5)."""
    gg = grads @ grads.T
    scale = gg.diag().clamp(min=0).sqrt().mean()
    gg = gg / (scale.pow(2) + 1e-8)
    g_mean = gg.mean(dim=1)
    w = w.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=lr, momentum=0.5)
    for _ in range(niter):
        opt.zero_grad()
        w.grad = gg @ w.detach() + lamda * g_mean
        opt.step()
        w.data.copy_(torch.from_numpy(_libmtl_projection(w.data.numpy())))
    w = w.detach()
    return w, ((grads * w.view(-1, 1)).sum(0) + lamda * grads.mean(dim=0)) / (1 + lamda)


def _libmtl_modo(grads, lambd, gamma, rho):
    """LibMTL MoDo.backward with all three batches equal: ``λ ← Π(λ − γ (G (Gᵀ λ) + ρ λ))``."""
    return project_onto_simplex(lambd - gamma * (grads @ (grads.T @ lambd) + rho * lambd))


def _libmtl_excess(grads_seq, step_size):
    """LibMTL (and the authors') ExcessMTL.backward: weights start at 1, sum to T, no step at step 1."""
    t = grads_seq[0].shape[0]
    weight, grad_sum, initial = torch.ones(t, dtype=torch.float64), torch.zeros_like(grads_seq[0]), None
    out = []
    for grads in grads_seq:
        w = torch.zeros(t, dtype=torch.float64)
        for i in range(t):
            grad_sum[i] += grads[i] ** 2
            w[i] = grads[i] * (1 / torch.sqrt(grad_sum[i] + 1e-7)) @ grads[i]
        if initial is None:
            initial = w
        else:
            weight = weight * torch.exp(w / initial * step_size)
            weight = weight / weight.sum() * t
        out.append(weight)
    return out


def _rel(a, b):
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-300)


@pytest.mark.parametrize("lamda", [0.0, 0.3, 2.0])
def test_sdmgrad_equals_libmtl_single_batch(lamda):
    worst = 0.0
    for seed, (t, p) in enumerate(CASES[:4]):
        agg = build("sdmgrad", t, lamda=lamda, lr=5.0)
        w = torch.full((t,), 1.0 / t, dtype=torch.float64)
        for k, grads in enumerate(_sequence(t, p, seed, 3), start=1):
            res = _step(agg, grads, k)
            w, update = _libmtl_sdmgrad(grads, w, lamda, 20, 5.0)
            worst = max(worst, _rel(res.shared, update))
    assert worst <= 1e-6, worst


def test_modo_equals_libmtl_single_batch():
    worst = 0.0
    for seed, (t, p) in enumerate(CASES):
        agg = build("modo", t, gamma=0.001)
        lambd = torch.full((t,), 1.0 / t, dtype=torch.float64)
        for k, grads in enumerate(_sequence(t, p, seed, 5), start=1):
            res = _step(agg, grads, k)
            lambd = _libmtl_modo(grads, lambd, 0.001, 0.1)
            worst = max(worst, _rel(res.task_weights, lambd), _rel(res.shared, lambd @ grads))
    assert worst <= 1e-10, worst


def test_excess_mtl_equals_libmtl_with_sum_scale():
    """Ours divides by ``Ê⁰ + 1e-7`` (torchjd's guard against a zero baseline), LibMTL by ``Ê⁰``: with
    baselines of order ≥ 0.1 the weights agree to ~1e-6 relative."""
    worst = 0.0
    for seed, (t, p) in enumerate(CASES):
        seq = _sequence(t, p, seed, 5)
        agg = build("excess_mtl", t, scale="sum", weight_heads=True, robust_step_size=0.5)
        assert agg.weights_heads
        for k, (grads, ref) in enumerate(zip(seq, _libmtl_excess(seq, 0.5)), start=1):
            res = _step(agg, grads, k)
            worst = max(worst, _rel(res.task_weights, ref))
            torch.testing.assert_close(res.shared, res.task_weights @ grads)
    assert worst <= 1e-5, worst


# -- defining properties ----------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_sdmgrad_without_preference_pull_is_mgda(seed):
    """λ = 0: the inner problem is MGDA's min-norm QP; a stable step (1/L) and many iterations solve it (to
    1e-7 in ‖Gw‖²; the weights converge slowly where G Gᵀ is ill-conditioned)."""
    t = 2 + seed
    grads = _sequence(t, 9, seed, 1)[0]
    gram = grads @ grads.T
    normalised = gram / (gram.diag().sqrt().mean() ** 2 + 1e-8)  # the inner solve's scaling
    lr = 1.0 / float(torch.linalg.eigvalsh(normalised).max())
    res = _step(build("sdmgrad", t, lamda=0.0, lr=lr, momentum=0.5, niter=4000), grads, 1)
    w, best = res.task_weights, min_norm_weights(gram)
    assert float(w @ gram @ w) <= float(best @ gram @ best) * (1 + 1e-7)
    torch.testing.assert_close(w, best, rtol=0, atol=1e-4)


def test_sdmgrad_weights_mix_the_simplex_iterate_with_the_preference():
    pref = [0.6, 0.3, 0.1]
    agg = build("sdmgrad", 3, lamda=0.5, pref_vector=pref)
    for k, grads in enumerate(_sequence(3, 8, 4, 3), start=1):
        res = _step(agg, grads, k)
        w = agg.w
        assert float(w.min()) >= 0 and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
        expected = (w + 0.5 * torch.tensor(pref, dtype=torch.float64)) / 1.5
        torch.testing.assert_close(res.task_weights, expected)
        torch.testing.assert_close(res.shared, expected @ grads)
    big = _step(build("sdmgrad", 3, lamda=1e9, pref_vector=pref), _sequence(3, 8, 4, 1)[0], 1)
    torch.testing.assert_close(big.task_weights, torch.tensor(pref, dtype=torch.float64), rtol=0, atol=1e-8)


@pytest.mark.parametrize(("seed", "rho"), [(0, 0.0), (1, 0.0), (2, 0.5), (3, 2.0)])
def test_modo_iterates_converge_to_the_regularised_min_norm_weights(seed, rho):
    """For a fixed G, MoDo's λ steps are projected gradient descent on ½ λᵀ(G Gᵀ + ρ I)λ over the simplex:
    they converge to its minimiser, MGDA's weights for the Gram matrix G Gᵀ + ρ I."""
    t = 2 + seed
    grads = _sequence(t, 10, seed, 1)[0]
    gram = grads @ grads.T + rho * torch.eye(t, dtype=torch.float64)
    gamma = 1.0 / float(torch.linalg.eigvalsh(gram).max())
    agg = build("modo", t, gamma=gamma, rho=rho)
    for k in range(1, 3001):
        res = _step(agg, grads, k)
    torch.testing.assert_close(res.task_weights, min_norm_weights(gram), rtol=0, atol=1e-7)


def test_excess_mtl_weights_follow_the_accumulated_normalised_excess_risks():
    """Alg. 1 in closed form: α_K = softmax(log(1/T) + η Σ_{k=2}^{K} Ê_k / (Ê_1 + 1e-7)), Ê_k from Eq. 6-7
    written out per task and coordinate."""
    t, p, eta = 4, 7, 0.3
    seq = _sequence(t, p, 8, 5)
    agg = build("excess_mtl", t, robust_step_size=eta)
    total = torch.zeros(t, dtype=torch.float64)
    baseline = None
    for k, grads in enumerate(seq, start=1):
        res = _step(agg, grads, k)
        sq_sum = sum(g**2 for g in seq[:k])
        risk = torch.tensor(
            [
                sum(float(grads[i, j]) ** 2 / float(torch.sqrt(sq_sum[i, j] + 1e-7)) for j in range(p))
                for i in range(t)
            ],
            dtype=torch.float64,
        )
        if baseline is None:
            baseline = risk
        else:
            total += risk / (baseline + 1e-7)
        expected = torch.softmax(
            torch.log(torch.full((t,), 1.0 / t, dtype=torch.float64)) + eta * total, dim=0
        )
        torch.testing.assert_close(res.task_weights, expected, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(res.shared, expected @ grads)


def test_excess_mtl_shifts_weight_to_the_task_whose_excess_risk_grew():
    grads = _sequence(3, 6, 2, 1)[0]
    agg = build("excess_mtl", 3)
    first = _step(agg, grads, 1).task_weights
    torch.testing.assert_close(first, torch.full((3,), 1 / 3, dtype=torch.float64))  # no step at step 1
    grown = grads.clone()
    grown[1] *= 3.0
    second = _step(agg, grown, 2).task_weights
    assert int(second.argmax()) == 1 and float(second[1]) > 1 / 3 > float(second[0])


# -- the simplex projection, configuration, misuse -----------------------------------------------------
def test_simplex_projection_is_torchjds_and_optimal():
    from torchjd.aggregation._utils.simplex import project_onto_simplex as tj_project

    gen = torch.Generator().manual_seed(0)
    for m in (1, 2, 3, 5, 9):
        for dtype in (torch.float64, torch.float32):
            for scale in (0.01, 1.0, 30.0):
                y = (torch.randn(m, generator=gen, dtype=torch.float64) * scale).to(dtype)
                if m > 2:
                    y[1] = y[0]  # a tie
                p = project_onto_simplex(y)
                assert torch.equal(p, tj_project(y))
                assert float(p.min()) >= 0 and float(p.sum()) == pytest.approx(1.0, abs=1e-5)
                # optimality of the Euclidean projection: ⟨y − p, q − p⟩ ≤ 0 for every q in the simplex
                q = torch.distributions.Dirichlet(torch.ones(m, dtype=torch.float64)).sample((200,))
                inner = (q - p.double()) @ (y.double() - p.double())
                assert float(inner.max()) <= 1e-5 * (1 + float(y.abs().max()))
    on = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    torch.testing.assert_close(project_onto_simplex(on), on)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("sdmgrad", {"lamda": -0.1}),
        ("sdmgrad", {"niter": 0}),
        ("sdmgrad", {"niter": 2.5}),
        ("sdmgrad", {"lr": 0.0}),
        ("sdmgrad", {"momentum": 1.0}),
        ("sdmgrad", {"pref_vector": [0.5, 0.5]}),
        ("sdmgrad", {"scale": "max"}),
        ("modo", {"gamma": 0.0}),
        ("modo", {"rho": -1.0}),
        ("excess_mtl", {"robust_step_size": 0.0}),
        ("excess_mtl", {"n_warmup_steps": -1}),
        ("excess_mtl", {"raw_first_step": "yes"}),
        ("excess_mtl", {"bogus": 1}),
    ],
)
def test_bad_arguments_are_refused(name, kwargs):
    with pytest.raises(ConfigError):
        build(name, 3, **kwargs)


def test_aliases_and_scale_sum():
    grads = _sequence(3, 5, 1, 1)[0]
    for name, alias in (("excess_mtl", "excessmtl"), ("sdmgrad", "sdm_grad")):
        a, b = _step(build(name, 3), grads, 1), _step(build(alias, 3), grads, 1)
        assert torch.equal(a.shared, b.shared)
    for name in NAMES:
        mean, total = _step(build(name, 3), grads, 1), _step(build(name, 3, scale="sum"), grads, 1)
        torch.testing.assert_close(total.task_weights, 3 * mean.task_weights)
        torch.testing.assert_close(total.shared, 3 * mean.shared)


def test_excess_mtl_refuses_a_changed_gradient_size():
    agg = build("excess_mtl", 2)
    _step(agg, _sequence(2, 5, 0, 1)[0], 1)
    with pytest.raises(ValueError, match="fixed shape"):
        _step(agg, _sequence(2, 6, 0, 1)[0], 2)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sdmgrad", "modo", "excess_mtl"])
def test_trainer_resume_is_bit_identical(method):
    """The whole trainer (synthetic data, 4 epochs) resumes bit-identically with these aggregators."""
    from tests.mtl.aggregators.test_state import _config
    from tests.mtl.resume import assert_resume_is_bit_identical

    assert_resume_is_bit_identical(_config(method, method_kwargs={}), epochs=4, global_seed=4321)
