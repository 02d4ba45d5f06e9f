"""Optional solver dependencies fail loudly: at construction when missing, at the step when a solve fails."""

import sys

import pytest
import torch

from mtl.errors import ConfigError
from mtl.methods import build_method
from tests.mtl.aggregators.helpers import HAS_CVXPY, build, ctx

needs_cvxpy = pytest.mark.skipif(not HAS_CVXPY, reason="cvxpy not installed")


def test_nash_mtl_without_cvxpy_fails_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)  # makes `import cvxpy` raise ImportError
    with pytest.raises(ConfigError, match="cvxpy"):
        build_method("nash_mtl", ["a", "b"])
    with pytest.raises(ConfigError, match="cvxpy"):
        build_method("igbv2+nash_mtl", ["a", "b"])


def test_other_methods_do_not_need_cvxpy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    for name in ("mgda", "cagrad", "igbv2+pcgrad", "imtl"):
        build_method(name, ["a", "b"])


@needs_cvxpy
def test_nash_mtl_unknown_or_missing_solver_fails_at_construction(monkeypatch):
    with pytest.raises(ConfigError, match="not installed"):
        build("nash_mtl", 2, solver="NOSUCHSOLVER")
    import cvxpy

    monkeypatch.setattr(cvxpy, "installed_solvers", lambda: ["SCS"])
    with pytest.raises(ConfigError, match="ECOS or CLARABEL"):
        build("nash_mtl", 2)


@needs_cvxpy
def test_nash_mtl_prefers_the_reference_solver():
    import cvxpy

    expected = "ECOS" if "ECOS" in cvxpy.installed_solvers() else "CLARABEL"
    assert build("nash_mtl", 2).solver == expected


@needs_cvxpy
def test_a_failing_solve_raises_instead_of_falling_back(monkeypatch):
    from mtl.aggregators.nash import SolverError

    agg = build("nash_mtl", 2)
    grads = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    agg._build_problem()

    def broken(*args, **kwargs):
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(agg._problem, "solve", broken)
    with pytest.raises(SolverError, match="solver crashed"):
        agg(grads, ctx())


# (G̃·1)_0 < 0: from α = 1 the reference's linearised sub-problem is unbounded
CONFLICT = torch.tensor([[0.7, 1.9, -0.7], [-1.3, -0.5, -0.3], [0.2, 0.5, 0.5]], dtype=torch.float64)


@needs_cvxpy
def test_a_sub_problem_without_solution_keeps_the_weights_loudly():
    agg = build("nash_mtl", 3)
    assert float((CONFLICT @ CONFLICT.T).sum(dim=1).min()) < 0
    with pytest.warns(RuntimeWarning, match="keeping the previous weights"):
        res = agg(CONFLICT, ctx(1, torch.ones(3), 3))
    torch.testing.assert_close(res.task_weights, torch.ones(3, dtype=torch.float64))  # the reference's α
    assert agg.unsolved == 1
    assert agg.state_dict()["_extra_state"]["unsolved"] == 1


@needs_cvxpy
def test_a_sub_problem_without_solution_can_raise():
    from mtl.aggregators.nash import SolverError

    with pytest.raises(SolverError, match=r"unbounded|infeasible"):
        build("nash_mtl", 3, on_unsolved="raise")(CONFLICT, ctx(1, torch.ones(3), 3))


@needs_cvxpy
def test_degenerate_data_raises():
    from mtl.aggregators.nash import SolverError

    g = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    with pytest.raises(SolverError, match=r"nash_mtl: the \w+ solve"):
        build("nash_mtl", 2)(torch.stack([g, -g]), ctx())


def test_cagrad_without_scipy_fails_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ConfigError, match="scipy"):
        build_method("cagrad", ["a", "b"], solver="slsqp")
    build_method("cagrad", ["a", "b"])  # the exact solver (default) needs no scipy
