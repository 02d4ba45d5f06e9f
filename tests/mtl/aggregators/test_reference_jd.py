"""UPGrad and DualProj against torchjd 0.18.0 (``torchjd.aggregation.UPGrad`` / ``DualProj``, quadprog):
live on seeded random matrices, pinned golden values, the defining property and the options.

Tolerances: the update to 1e-9 (float64) / 1e-6 (float32) of the largest task-gradient norm, the weights to
1e-9 / 1e-6 absolute. Measured over 400 seeded matrices (T ≤ 50) per dtype and method: float64 ≤ 3.6e-15
(update, relative) and ≤ 1.1e-13 (weights); float32 bit-identical (the Gramian is formed in float32 as torchjd
forms it, and its upper triangle is the one quadprog reads).
"""

import ast
import inspect

import numpy as np
import pytest
import torch

import mtl.aggregators.dual_cone as dual_cone_module
import mtl.aggregators.jd as jd_module
from mtl.aggregators.dual_cone import project_weights
from mtl.aggregators.jd import DualProj, UPGrad, jd_gramian
from mtl.errors import ConfigError
from tests.mtl.aggregators.helpers import build, ctx, random_grads

F64 = torch.float64
TOL = {torch.float64: 1e-9, torch.float32: 1e-6}
NAMES = ["upgrad", "dualproj"]


def _torchjd(name, pref=None, norm_eps=1e-4, reg_eps=1e-4):
    aggregation = pytest.importorskip("torchjd.aggregation")
    linalg = pytest.importorskip("torchjd.linalg")
    pytest.importorskip("quadprog")
    cls = {"upgrad": aggregation.UPGrad, "dualproj": aggregation.DualProj}[name]
    return cls(pref, linalg.QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps))


def _ours(name, grads, **kwargs):
    num_tasks = grads.shape[0]
    return build(name, num_tasks, **kwargs)(
        grads, ctx(1, torch.ones(num_tasks), num_tasks, dtype=grads.dtype)
    )


def _random_case(seed, dtype):
    """T in 1..16, P in 1..40 (often P < T: rank-deficient), scales over two decades, and by seed a
    duplicated task, a task that is the sum of two others, or an exactly opposite pair."""
    gen = torch.Generator().manual_seed(seed)
    num_tasks = int(torch.randint(1, 17, (1,), generator=gen))
    dim = int(torch.randint(1, 41, (1,), generator=gen))
    grads = random_grads(num_tasks, dim, seed, dtype=torch.float64)
    if num_tasks > 2 and seed % 3 == 0:
        grads[2] = grads[0] + grads[1]
    if num_tasks > 1 and seed % 4 == 1:
        grads[1] = -grads[0]
    if num_tasks > 3 and seed % 5 == 2:
        grads[3] = grads[0]
    return grads.to(dtype)


def _assert_matches(ours, ref_shared, ref_weights, grads):
    tol = TOL[grads.dtype] * float(grads.norm(dim=1).max())
    assert ours.shared.dtype == grads.dtype
    torch.testing.assert_close(ours.shared, ref_shared, rtol=0, atol=tol)
    torch.testing.assert_close(ours.task_weights, ref_weights.to(grads.dtype), rtol=0, atol=TOL[grads.dtype])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(12))
def test_equals_torchjd_on_random_matrices(name, dtype, seed):
    grads = _random_case(seed, dtype)
    ref = _torchjd(name)
    _assert_matches(_ours(name, grads), ref(grads), ref.weighting(grads), grads)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", range(4))
def test_equals_torchjd_with_options(name, seed):
    """A preference vector (some entries negative), other eps values, and the norm_eps threshold."""
    grads = _random_case(100 + seed, F64)
    num_tasks = grads.shape[0]
    gen = torch.Generator().manual_seed(seed)
    pref = torch.rand(num_tasks, generator=gen, dtype=F64) * 2 - (0.3 if seed % 2 else 0.0)
    norm_eps, reg_eps = [(1e-4, 1e-4), (0.0, 1e-6), (1e-4, 1e-2), (1e3, 1e-4)][seed]
    ref = _torchjd(name, pref, norm_eps, reg_eps)
    ours = _ours(name, grads, pref_vector=pref.tolist(), norm_eps=norm_eps, reg_eps=reg_eps)
    _assert_matches(ours, ref(grads), ref.weighting(grads), grads)


@pytest.mark.parametrize("name", NAMES)
def test_tiny_gradients_fall_back_to_the_mean_as_in_torchjd(name):
    """torchjd's norm_eps is an absolute threshold on Σ‖g_t‖²: below it the result is the plain mean."""
    grads = torch.tensor([[1.0, 0.0], [-1.0, 0.2]], dtype=F64) * 1e-3
    ours = _ours(name, grads)
    torch.testing.assert_close(ours.task_weights, torch.full((2,), 0.5, dtype=F64))
    ref = _torchjd(name)
    torch.testing.assert_close(ours.shared, ref(grads), rtol=0, atol=1e-18)
    # norm_eps = 0 turns it off: the result is then scale-equivariant
    unscaled = _ours(name, grads * 1e3, norm_eps=0.0)
    torch.testing.assert_close(_ours(name, grads, norm_eps=0.0).shared * 1e3, unscaled.shared)


# golden values: torchjd 0.18.0 (quadprog 0.1.14) on these matrices, float64, default arguments unless
# a preference vector is given; (case, method, pref, weights, update)
CASES = {
    "conflict_pair": [[1.0, 0.0], [-1.0, 1.0]],
    "three_tasks": [[2.0, -1.0, 0.0, 1.0], [-1.0, 3.0, 1.0, 0.0], [-3.0, -2.0, 1.0, 0.5]],
    "rank_deficient": [[1.0, 0.0], [-1.0, 0.2], [0.5, 1.0]],
}
GOLDEN = [
    (
        "conflict_pair",
        "upgrad",
        None,
        [0.999850044986504, 0.7499625056241563],
        [0.24988753936234764, 0.7499625056241563],
    ),
    ("conflict_pair", "dualproj", None, [0.5, 0.5], [0.0, 0.5]),
    (
        "conflict_pair",
        "upgrad",
        [0.5, 1.0],
        [1.499700089973008, 1.2499625056241563],
        [0.24973758434885163, 1.2499625056241563],
    ),
    (
        "conflict_pair",
        "dualproj",
        [0.5, 1.0],
        [0.9997000899730081, 0.9999999999999999],
        [-0.000299910026991812, 0.9999999999999999],
    ),
    (
        "three_tasks",
        "upgrad",
        None,
        [1.0830708292577929, 0.743615284199744, 0.5732959464675664],
        [-0.29736146508685746, 0.0011831304063063541, 1.3169112306673103, 1.369718802491576],
    ),
    (
        "three_tasks",
        "dualproj",
        None,
        [0.47197640117994094, 0.3333333333333333, 0.3333333333333333],
        [-0.3893805309734515, -0.13864306784660763, 0.6666666666666666, 0.6386430678466076],
    ),
    (
        "three_tasks",
        "upgrad",
        [0.5, 1.0, 1.0],
        [2.749212487773378, 1.9747895150930552, 1.5611778950913744],
        [-1.1598982248204224, 0.05280026732303833, 3.53596741018443, 3.529801435319065],
    ),
    (
        "three_tasks",
        "dualproj",
        [0.5, 1.0, 1.0],
        [1.4159292035398225, 1.0, 1.0],
        [-1.168141592920355, -0.41592920353982255, 2.0, 1.9159292035398225],
    ),
    (
        "rank_deficient",
        "upgrad",
        None,
        [0.6665570360684681, 0.7498682307872484, 0.3333333333333333],
        [0.08335547194788631, 0.483306979490783],
    ),
    (
        "rank_deficient",
        "dualproj",
        None,
        [0.3333333333333333, 0.41653489745391564, 0.3333333333333333],
        [0.08346510254608433, 0.41664031282411645],
    ),
    (
        "rank_deficient",
        "upgrad",
        [0.5, 1.0, 1.0],
        [1.4996711082054044, 1.7689875029918443, 1.0],
        [0.23068360521356013, 1.353797500598369],
    ),
    (
        "rank_deficient",
        "dualproj",
        [0.5, 1.0, 1.0],
        [0.5, 1.0000000000000093, 1.0],
        [-9.325873406851315e-15, 1.200000000000002],
    ),
]


@pytest.mark.parametrize(("case", "name", "pref", "weights", "update"), GOLDEN)
def test_golden_values(case, name, pref, weights, update):
    grads = torch.tensor(CASES[case], dtype=F64)
    kwargs = {} if pref is None else {"pref_vector": pref}
    res = _ours(name, grads, **kwargs)
    torch.testing.assert_close(res.task_weights, torch.tensor(weights, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(res.shared, torch.tensor(update, dtype=F64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", range(6))
def test_the_update_does_not_conflict_with_any_task(name, seed):
    """⟨d, g_t⟩ ≥ 0 for every t (Quinton & Rey 2024, non-conflicting). With torchjd's regularisation
    (K/tr K + ε I) w = λ ≥ 0 gives the exact bound ⟨d, g_t⟩ ≥ −ε tr(K) w_t; with ε = 0 it is ≥ 0."""
    base = random_grads(1, 10, seed=200 + seed)
    grads = base + 2.0 * float(base.norm()) * random_grads(6, 10, seed=seed) / 10
    grads[1] = -0.7 * grads[0] + 0.1 * base[0]  # a strongly conflicting pair
    scale = float((grads**2).sum())
    res = _ours(name, grads)
    bound = -1e-4 * scale * res.task_weights - 1e-12 * scale
    assert bool(((grads @ res.shared) >= bound).all())
    exact = _ours(name, grads, reg_eps=0.0)
    assert float((grads @ exact.shared).min()) >= -1e-12 * scale
    if name == "upgrad":  # each projected gradient π_J(g_t / T) = Jᵀ v_t lies in the dual cone itself
        gram = jd_gramian(grads, 1e-4, 0.0)
        rows = project_weights(gram, np.diag(np.full(6, 1 / 6)))
        assert float((gram @ rows.T).min()) >= -1e-12
        torch.testing.assert_close(torch.from_numpy(rows.sum(axis=0)), exact.task_weights, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_exactly_opposite_gradients_cancel_without_regularisation(name):
    g = random_grads(1, 6, seed=4)[0]
    grads = torch.stack([g, -g])
    assert float(_ours(name, grads, reg_eps=0.0).shared.norm()) < 1e-12 * float(g.norm())
    # with torchjd's reg_eps = 1e-4 a residue of order 1e-4 ‖g‖ remains (torchjd gives the same)
    assert float(_ours(name, grads).shared.norm()) < 1e-4 * float(g.norm())


@pytest.mark.parametrize("name", NAMES)
def test_sum_scale_is_t_times_the_mean_scale(name):
    grads = _random_case(7, F64)
    mean, total = _ours(name, grads), _ours(name, grads, scale="sum")
    torch.testing.assert_close(total.task_weights, grads.shape[0] * mean.task_weights)
    torch.testing.assert_close(total.shared, grads.shape[0] * mean.shared)


def test_names_aliases_and_heads():
    assert isinstance(build("upgrad", 3), UPGrad)
    assert isinstance(build("dual_proj", 3), DualProj) and isinstance(build("DualProj", 3), DualProj)
    assert not UPGrad.weights_heads and not DualProj.weights_heads  # heads: gradient of Σ ℓ_t


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"norm_eps": -1.0},
        {"reg_eps": -1e-4},
        {"scale": "max"},
        {"pref_vector": [1.0, 2.0]},
        {"pref_vector": [1.0, float("nan"), 1.0]},
        {"pref_vector": "1,1,1"},
        {"pref_vector": [1.0, "a", 1.0]},
    ],
)
def test_bad_arguments_are_refused(name, kwargs):
    with pytest.raises(ConfigError):
        build(name, 3, **kwargs)


def test_no_runtime_dependency_on_the_references():
    for module in (jd_module, dual_cone_module):
        tree = ast.parse(inspect.getsource(module))
        imported = {
            a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }
        imported |= {
            n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
        }
        assert not imported & {"torchjd", "quadprog", "qpsolvers", "cvxpy", "scipy"}, imported
