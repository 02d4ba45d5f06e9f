"""Loss-balancing baselines: formulas against hand computation."""

import math

import pytest
import torch

from mtl.context import StepContext
from mtl.errors import NonFiniteLossError
from mtl.methods import build_method
from mtl.step import check_finite

TASKS = ["t0", "t1", "t2"]
CTX = StepContext(epoch=0, step=1)
L = torch.tensor([0.5, 20.0, 3000.0])


def test_ew_and_si_terms():
    torch.testing.assert_close(build_method("ew", TASKS).balancer(L, CTX).terms, L)
    torch.testing.assert_close(build_method("si", TASKS).balancer(L, CTX).terms, torch.log(L + 1e-8))


def test_gls_gradient_is_that_of_the_geometric_mean():
    losses = L.clone().requires_grad_(True)
    build_method("gls", TASKS).balancer(losses, CTX).terms.sum().backward()
    ref = L.clone().requires_grad_(True)
    torch.prod(ref).pow(1 / 3).backward()
    torch.testing.assert_close(losses.grad, ref.grad)


def test_rlw_is_seeded_and_sums_to_t():
    a = build_method("rlw", TASKS, seed=3).balancer
    b = build_method("rlw", TASKS, seed=3).balancer
    wa = [a(L, CTX).weights for _ in range(3)]
    wb = [b(L, CTX).weights for _ in range(3)]
    for x, y in zip(wa, wb):
        torch.testing.assert_close(x, y)
        assert float(x.sum()) == pytest.approx(3.0)
    assert not torch.equal(wa[0], wa[1])
    c = build_method("rlw", TASKS, seed=0).balancer
    c.load_state_dict(a.state_dict())
    torch.testing.assert_close(c(L, CTX).weights, a(L, CTX).weights)


def test_uw_terms_follow_kendall():
    uw = build_method("uw", TASKS).balancer
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.0, 1.0, -1.0]))
    s = torch.tensor([0.0, 1.0, -1.0])
    out = uw(L, CTX)
    torch.testing.assert_close(out.terms, L / (2 * torch.exp(s)) + s / 2)
    torch.testing.assert_close(out.weights, 0.5 * torch.exp(-s))
    out.terms.sum().backward()
    # d/ds [L e^{-s}/2 + s/2] = -L e^{-s}/2 + 1/2
    torch.testing.assert_close(uw.log_var.grad, -L * torch.exp(-s) / 2 + 0.5)


def test_imtl_l_terms():
    b = build_method("imtl_l", TASKS).balancer
    with torch.no_grad():
        b.scale.copy_(torch.tensor([0.5, 0.0, -2.0]))
    s = torch.tensor([0.5, 0.0, -2.0])
    torch.testing.assert_close(b(L, CTX).terms, torch.exp(s) * L - s)


def test_dwa_uses_the_last_two_epoch_means():
    b = build_method("dwa", TASKS, temperature=2.0).balancer
    torch.testing.assert_close(b(L, CTX).weights, torch.ones(3))
    b.end_epoch(0, torch.tensor([1.0, 2.0, 4.0]))
    torch.testing.assert_close(b(L, CTX).weights, torch.ones(3))
    b.end_epoch(1, torch.tensor([0.5, 2.0, 2.0]))
    w = torch.tensor([0.5, 1.0, 0.5])
    torch.testing.assert_close(b(L, CTX).weights, 3 * torch.softmax(w / 2.0, 0))
    c = build_method("dwa", TASKS).balancer
    c.load_state_dict(b.state_dict())
    torch.testing.assert_close(c(L, CTX).weights, b(L, CTX).weights)


def test_igbv1_switches_at_the_end_of_epoch_1():
    b = build_method("igbv1", TASKS).balancer
    assert b.log
    torch.testing.assert_close(b(L, CTX).weights, torch.ones(3))
    b.end_epoch(0, torch.tensor([9.0, 9.0, 9.0]))  # epoch 0: not the base epoch
    torch.testing.assert_close(b(L, CTX).weights, torch.ones(3))
    base = torch.tensor([1.0, 10.0, 1000.0])
    b.end_epoch(1, base)
    expected = 3 * torch.softmax(L / base, dim=0)
    out = b(L, CTX)
    torch.testing.assert_close(out.weights, expected)
    torch.testing.assert_close(out.terms, expected * torch.log(L + 1e-8))
    b.end_epoch(2, torch.tensor([5.0, 5.0, 5.0]))  # L_base stays fixed
    torch.testing.assert_close(b(L, CTX).weights, expected)
    c = build_method("igbv1", TASKS).balancer
    c.load_state_dict(b.state_dict())
    torch.testing.assert_close(c(L, CTX).weights, expected)


def test_stl_trains_one_task():
    out = build_method("stl", TASKS, task="t1").balancer(L, CTX)
    torch.testing.assert_close(out.terms, torch.tensor([0.0, 20.0, 0.0]))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_names_the_task(bad):
    with pytest.raises(NonFiniteLossError, match="task 't1'") as info:
        check_finite(torch.tensor([1.0, bad, 2.0]), TASKS, StepContext(epoch=3, step=17))
    assert info.value.task == "t1" and "epoch 3" in str(info.value) and "step 17" in str(info.value)
