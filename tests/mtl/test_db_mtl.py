"""DB-MTL's update equals Alg. 1 of the DB-MTL paper, step by step, computed by hand (numpy)."""

import numpy as np
import pytest
import torch

from mtl.context import StepContext
from mtl.methods import build_method
from mtl.step import backward
from tests.mtl.tiny_model import TinyModel, losses_of

EPS = 1e-8
X = np.array([[1.0, -2.0], [0.5, 3.0]])
Y = np.array([[1.0, 20.0, -300.0], [-2.0, 10.0, 500.0]])  # three tasks on very different scales
THETA0 = [0.3, -0.1]
HEADS0 = [1.0, 2.0, -1.5]
LR = 0.01


def alpha_by_hand(norms, strategy, constant):
    return {
        "max": norms.max(),
        "min": norms.min(),
        "mean": norms.mean(),
        "median": float(np.median(norms)),
        "constant": constant,
    }[strategy]


def algorithm1_by_hand(steps, beta, sigma, strategy, constant=1.0):
    """DB-MTL Alg. 1 with plain gradient descent, differentiated by hand."""
    theta, a = np.array(THETA0), np.array(HEADS0)
    ema = np.zeros((3, 2))
    shared_updates, head_grads = [], []
    for k in range(1, steps + 1):
        z = X @ theta
        residual = a[None, :] * z[:, None] - Y  # [B, T]
        loss = (residual**2).mean(axis=0)
        grad_theta = np.stack([(2 * residual[:, t, None] * a[t] * X).mean(axis=0) for t in range(3)])
        grad_theta = grad_theta / (loss[:, None] + EPS)  # ∇θ log(L_t + ε)
        grad_head = (2 * residual * z[:, None]).mean(axis=0) / (loss + EPS)  # ∇a_t log(L_t + ε), no EMA
        beta_k = beta / k**sigma
        ema = beta_k * ema + (1 - beta_k) * grad_theta
        norms = np.linalg.norm(ema, axis=1)
        alpha = alpha_by_hand(norms, strategy, constant)
        update = (alpha * ema / (norms[:, None] + EPS)).sum(axis=0)
        shared_updates.append(update)
        head_grads.append(grad_head)
        theta = theta - LR * update
        a = a - LR * grad_head
    return shared_updates, head_grads


@pytest.mark.parametrize("strategy", ["max", "min", "mean", "median", "constant"])
@pytest.mark.parametrize(("beta", "sigma"), [(0.9, 0.5), (0.5, 0.0), (0.1, 0.5)])
def test_db_mtl_matches_algorithm1(strategy, beta, sigma):
    steps = 4
    expected_shared, expected_heads = algorithm1_by_hand(steps, beta, sigma, strategy, constant=2.5)
    model = TinyModel(THETA0, HEADS0)
    method = build_method(
        "db_mtl", ["t0", "t1", "t2"], beta=beta, beta_sigma=sigma, alpha_strategy=strategy, alpha_constant=2.5
    )
    x, y = torch.tensor(X), torch.tensor(Y)
    for k in range(1, steps + 1):
        for p in model.parameters():
            p.grad = None
        losses = losses_of(model, x, y)
        backward(
            method,
            losses,
            StepContext(epoch=0, step=k),
            task_names=["t0", "t1", "t2"],
            shared_params=list(model.shared_parameters()),
            other_params=list(model.task_parameters()),
        )
        np.testing.assert_allclose(model.theta.grad.numpy(), expected_shared[k - 1], rtol=1e-9, atol=1e-12)
        heads = np.array([float(a.grad) for a in model.a])
        np.testing.assert_allclose(heads, expected_heads[k - 1], rtol=1e-9, atol=1e-12)
        with torch.no_grad():
            for p in model.parameters():
                p -= LR * p.grad


def test_max_norm_first_step_golden_values():
    """Golden values: with ĝ = 0 and β_1 = β, the first EMA is (1 − β) g; α = max norm."""
    from mtl.aggregators.basic import MaxNorm

    grads = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)  # norms 5 and 1
    agg = MaxNorm(2, beta=0.5, beta_sigma=0.0)
    out = agg(grads, StepContext(epoch=0, step=1)).shared
    # ĝ = 0.5 g -> norms 2.5, 0.5; α = 2.5; update = 2.5 * ([0.6, 0.8] + [0, 1])
    torch.testing.assert_close(out, torch.tensor([1.5, 4.5], dtype=torch.float64), rtol=1e-7, atol=1e-7)
    # second step, σ = 0: ĝ = 0.5 ĝ + 0.5 g = 0.75 g -> same directions, α = 3.75
    out = agg(grads, StepContext(epoch=0, step=2)).shared
    torch.testing.assert_close(out, torch.tensor([2.25, 6.75], dtype=torch.float64), rtol=1e-7, atol=1e-7)


def test_beta_schedule():
    from mtl.aggregators.basic import MaxNorm

    agg = MaxNorm(2, beta=0.9, beta_sigma=0.5)
    assert agg.beta_at(1) == pytest.approx(0.9)
    assert agg.beta_at(4) == pytest.approx(0.45)
    assert MaxNorm(2, beta=0.9, beta_sigma=0.0).beta_at(100) == pytest.approx(0.9)


def test_max_norm_state_round_trip():
    from mtl.aggregators.basic import MaxNorm

    grads = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    a = MaxNorm(3)
    a(grads, StepContext(epoch=0, step=1))
    b = MaxNorm(3)
    b.load_state_dict(a.state_dict())
    ctx = StepContext(epoch=0, step=2)
    torch.testing.assert_close(a(grads * 2, ctx).shared, b(grads * 2, ctx).shared, rtol=0, atol=0)
