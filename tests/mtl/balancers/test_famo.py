"""FAMO (Liu et al. 2023) against torchjd 0.18 (live), the authors' update re-derived, and pinned numbers."""

import pytest
import torch
from torch import nn

from mtl.balancers.famo import FAMO
from mtl.balancers.inner_adam import InnerAdam
from mtl.config import TrainConfig
from mtl.context import StepContext
from mtl.methods import build_method
from mtl.step_hooks import StepProbe
from mtl.train import fit
from tests.mtl.resume import assert_resume_is_bit_identical

TASKS = ["t0", "t1", "t2"]
CTX = StepContext(epoch=0, step=1)

# logits ξ after 8 FAMO steps of the linear-regression scenario below (float64, seed 0), computed once with
# torchjd 0.18 torchjd.scalarization.FAMO(3, lr=0.025, weight_decay=1e-3)
PINNED_LOGITS = [-0.17457272831541615, 0.20010219769563756, -0.20147946887195478]


def _scenario(steps: int = 8):
    """The authors' ``famo.py`` demo, small: per-column MSE of a linear model, SGD, FAMO update on the same
    data after each step. Yields ("step", losses, our BalanceResult) and ("update", losses after the step,
    our balancer) in turn."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(64, 3, generator=gen, dtype=torch.float64) * torch.tensor(
        [1.0, 10.0, 0.1], dtype=torch.float64
    )
    model = nn.Linear(5, 3).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(3, 5, generator=gen, dtype=torch.float64))
        model.bias.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ours = FAMO(3).double()

    def losses_of(inputs, targets):
        return (targets - model(inputs)).pow(2).mean(0)

    for _ in range(steps):
        losses = losses_of(x, y)
        opt.zero_grad()
        result = ours(losses, CTX)
        yield "step", losses.detach(), result
        result.terms.sum().backward()
        opt.step()
        probe = StepProbe(CTX, x, y, losses.detach(), model, opt, losses_of)
        ours.after_step(probe)
        with torch.no_grad():
            yield "update", losses_of(x, y).detach(), ours


def test_inner_adam_is_bit_identical_to_torch_adam():
    gen = torch.Generator().manual_seed(1)
    mine = torch.zeros(4)
    ref = torch.zeros(4, requires_grad=True)
    adam = InnerAdam(4, lr=0.025, weight_decay=1e-3)
    torch_adam = torch.optim.Adam([ref], lr=0.025, weight_decay=1e-3)
    for _ in range(30):
        grad = torch.randn(4, generator=gen)
        adam.step(mine, grad)
        ref.grad = grad.clone()
        torch_adam.step()
        assert torch.equal(mine, ref.detach())


def test_weights_give_the_gradient_of_the_log_sum_objective():
    """λ_t = z_t / (c D_t): ∂/∂L of Σ ℓ_t equals ∂/∂L of the authors' Σ z_t log D_t / c (c detached)."""
    balancer = FAMO(3).double()
    balancer.logits.copy_(torch.tensor([0.3, -0.2, 0.1]))
    losses = torch.tensor([0.5, 20.0, 3000.0], dtype=torch.float64, requires_grad=True)
    balancer(losses, CTX).terms.sum().backward()
    ref_losses = losses.detach().clone().requires_grad_(True)
    z = torch.softmax(balancer.logits, -1)
    d = ref_losses - 0.0 + 1e-8
    c = (z / d).sum().detach()
    (d.log() * z / c).sum().backward()  # authors' get_weighted_loss
    torch.testing.assert_close(losses.grad, ref_losses.grad, rtol=0, atol=1e-15)
    # the weights on ∇ log L are convex: λ_t D_t / Σ λ_s D_s = z_t
    weights = balancer(losses.detach(), CTX).weights
    torch.testing.assert_close((weights * losses.detach()).sum(), torch.tensor(1.0, dtype=torch.float64) / c)


def test_matches_torchjd_famo_step_by_step():
    torchjd_scalarization = pytest.importorskip("torchjd.scalarization")
    ref = torchjd_scalarization.FAMO(3, lr=0.025, weight_decay=1e-3).double()
    worst = 0.0
    for kind, losses, obj in _scenario():
        if kind == "step":
            ref_losses = losses.clone().requires_grad_(True)
            ref(ref_losses).backward()  # ∂(torchjd's objective)/∂L_t: FAMO's weight on ∇L_t
            worst = max(worst, float((obj.weights - ref_losses.grad).abs().max()))
        else:
            ref.update(losses)
            worst = max(worst, float((obj.logits - ref._w.detach()).abs().max()))
    assert worst < 1e-12, worst


def test_logits_are_pinned():
    *_, (_, _, balancer) = list(_scenario())
    torch.testing.assert_close(
        balancer.logits, torch.tensor(PINNED_LOGITS, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_logit_update_is_the_authors_softmax_vjp_with_adam():
    """The authors' ``update``: d = ∂softmax(ξ)/∂ξ ᵀ δ, then torch Adam(lr=w_lr, weight_decay=gamma)."""
    balancer = FAMO(3, w_lr=0.1, gamma=0.01)
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1, weight_decay=0.01)
    gen = torch.Generator().manual_seed(2)
    for _ in range(5):
        before, after = torch.rand(3, generator=gen) + 0.5, torch.rand(3, generator=gen) + 0.5
        delta = (before + 1e-8).log() - (after + 1e-8).log()
        balancer.update_logits(delta)
        z = torch.softmax(w, -1)
        d = z * (delta - (z * delta).sum())  # J_softmax^T δ in closed form
        opt.zero_grad()
        w.grad = d.detach()
        opt.step()
        torch.testing.assert_close(balancer.logits, w.detach(), rtol=0, atol=1e-7)


def test_state_holds_the_logits_and_adam_moments():
    method = build_method("famo", TASKS, w_lr=0.05)
    method.balancer.update_logits(torch.tensor([0.1, -0.3, 0.2]))
    state = method.state_dict()
    assert {"balancer.logits", "balancer.logit_adam.exp_avg", "balancer.logit_adam.exp_avg_sq"} <= set(state)
    other = build_method("famo", TASKS, w_lr=0.05)
    other.load_state_dict(state)
    delta = torch.tensor([0.2, 0.1, -0.1])
    method.balancer.update_logits(delta)
    other.balancer.update_logits(delta)
    assert torch.equal(method.balancer.logits, other.balancer.logits)
    assert list(method.extra_parameters()) == []  # the logits never reach the model's optimiser


def _config(epochs=3, **kw):
    return TrainConfig(
        dataset="synthetic",
        method="famo",
        seed=0,
        epochs=epochs,
        batch_size=32,
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 16},
        **kw,
    )


def test_resume_is_bit_identical():
    assert_resume_is_bit_identical(_config(epochs=3), epochs=3, stop_after=1)


def test_trains_and_moves_the_logits():
    records = fit(_config(epochs=4))
    assert records[-1]["train_loss/t2"] < records[0]["train_loss/t2"]
    weights = [records[-1][f"weight/{t}"] for t in TASKS]
    assert all(w > 0 for w in weights)
    assert weights[0] > weights[1] > weights[2]  # FAMO's λ ∝ z / L: the scales are 1, 10, 100
