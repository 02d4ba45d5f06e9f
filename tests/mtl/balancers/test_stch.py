"""STCH (Lin et al. 2024): warm-up, fixed normaliser, torchjd 0.18 (live), the authors' loss re-derived."""

import pytest
import torch

from mtl.config import TrainConfig
from mtl.context import StepContext
from mtl.errors import ConfigError
from mtl.methods import build_method
from mtl.train import fit
from tests.mtl.resume import assert_resume_is_bit_identical

TASKS = ["t0", "t1", "t2"]
L = torch.tensor([0.5, 20.0, 3000.0], dtype=torch.float64)
NADIR = torch.tensor([1.0, 10.0, 1000.0], dtype=torch.float64)
# ∂/∂L of the objective at L with the normaliser NADIR, mu=0.5 (T μ logsumexp(log(L/n)/μ)), computed once
# with torchjd 0.18: 3 * STCH(0.5, weights=ones)(log(L / NADIR + 1e-20)) and autograd
PINNED_GRAD = [0.11320754716981135, 0.04528301886792452, 0.0006792452830188681]
PINNED_VALUE = 3.8759963286483465


def _ready(mu=0.5, warmup_epoch=0):
    balancer = build_method("stch", TASKS, mu=mu, warmup_epoch=warmup_epoch).balancer.double()
    balancer.end_epoch(warmup_epoch, NADIR)
    return balancer


def _objective_grad(balancer, losses, epoch=1):
    x = losses.clone().requires_grad_(True)
    out = balancer(x, StepContext(epoch=epoch, step=1))
    out.terms.sum().backward()
    return out, x.grad


def test_warmup_is_the_log_sum_and_records_the_last_warmup_epoch():
    balancer = build_method("stch", TASKS, warmup_epoch=2).balancer.double()
    for epoch in range(3):
        out = balancer(L, StepContext(epoch=epoch, step=1))
        torch.testing.assert_close(out.terms, torch.log(L + 1e-20))
        torch.testing.assert_close(out.weights, torch.ones(3, dtype=torch.float64))
        balancer.end_epoch(epoch, L * (epoch + 1))
    torch.testing.assert_close(balancer.nadir, L * 3)  # the losses of epoch warmup_epoch only


def test_equals_torchjd_stch_times_t_in_value_and_gradient():
    torchjd_scalarization = pytest.importorskip("torchjd.scalarization")
    balancer = _ready(mu=0.5)
    out, grad = _objective_grad(balancer, L)
    x = L.clone().requires_grad_(True)
    ref = 3 * torchjd_scalarization.STCH(0.5, weights=torch.ones(3, dtype=torch.float64))(
        torch.log(x / NADIR + 1e-20)
    )
    ref.backward()
    torch.testing.assert_close(out.terms.sum(), ref.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, x.grad, rtol=0, atol=1e-15)
    torch.testing.assert_close(grad, torch.tensor(PINNED_GRAD, dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(
        out.terms.sum(), torch.tensor(PINNED_VALUE, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_gradient_equals_the_authors_loss():
    """Xi-L/STCH (= LibMTL) STCH.py: l = log(L/n + 1e-20); T μ log Σ exp((l − max l)/μ), max detached."""
    balancer = _ready(mu=0.5)
    out, grad = _objective_grad(balancer, L)
    x = L.clone().requires_grad_(True)
    logs = torch.log(x / NADIR + 1e-20)
    reg = logs - torch.max(logs.data).detach()
    ref = 0.5 * torch.log(torch.sum(torch.exp(reg / 0.5))) * 3
    ref.backward()
    torch.testing.assert_close(grad, x.grad, rtol=0, atol=1e-15)
    # the value differs by the detached shift T·max l that the reference drops
    torch.testing.assert_close(out.terms.sum() - 3 * logs.max().detach(), ref.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(out.weights, 3 * torch.softmax(logs.detach() / 0.5, -1))


def test_log_space_is_stable_for_small_mu_and_huge_losses():
    balancer = _ready(mu=0.01)
    huge = torch.tensor([1e30, 1.0, 1e-30], dtype=torch.float64)
    out, grad = _objective_grad(balancer, huge)
    assert torch.isfinite(out.terms).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(out.weights, torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64))


def test_needs_the_normaliser_and_validates_arguments():
    balancer = build_method("stch", TASKS, warmup_epoch=0).balancer
    with pytest.raises(RuntimeError, match="normaliser"):
        balancer(L.float(), StepContext(epoch=1, step=1))
    with pytest.raises(ConfigError, match="mu"):
        build_method("stch", TASKS, mu=0.0)
    with pytest.raises(ConfigError, match="warmup_epoch"):
        build_method("stch", TASKS, warmup_epoch=-1)
    assert not build_method("stch", TASKS).has_step_hooks


def _config(epochs=3, **kw):
    return TrainConfig(
        dataset="synthetic",
        method="stch",
        method_kwargs={"warmup_epoch": 0, "mu": 0.5},
        seed=0,
        epochs=epochs,
        batch_size=32,
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 16},
        **kw,
    )


def test_resume_across_the_end_of_the_warmup_is_bit_identical():
    straight, _ = assert_resume_is_bit_identical(_config(), epochs=3, stop_after=0)
    assert straight.method.balancer.ready


def test_trains_and_balances_after_the_warmup():
    records = fit(_config())
    assert records[-1]["train_loss/t2"] < records[0]["train_loss/t2"]
    assert [records[0][f"weight/{t}"] for t in TASKS] == [1.0, 1.0, 1.0]
    after = [records[-1][f"weight/{t}"] for t in TASKS]
    assert sum(after) == pytest.approx(3.0) and after != [1.0, 1.0, 1.0]
