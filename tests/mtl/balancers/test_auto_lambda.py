"""Auto-Lambda (Liu et al. 2022) against the authors' algorithm (lorenmt/auto-lambda @0fc8431
``auto_lambda.py`` + ``trainer_dense.py``) re-derived here, pinned numbers, exact restore, the trainer."""

import copy

import pytest
import torch
from torch import nn

from mtl.config import TrainConfig
from mtl.context import StepContext
from mtl.errors import ConfigError
from mtl.methods import build_method
from mtl.step_hooks import StepProbe
from mtl.train import fit
from tests.mtl.resume import assert_resume_is_bit_identical

TASKS = ["t0", "t1", "t2"]
CTX = StepContext(epoch=0, step=1)
# λ after 4 steps of the scenario below (float64), computed once with the re-derived reference (which
# perturbs θ in place, θ + εg − 2εg + εg: it agrees with our copies to ~1e-15, not to the last bit)
PINNED_WEIGHTS = [0.13561019416974177, 0.13291718472410782, 0.1382828918478364]


class Net(nn.Module):
    def __init__(self, batch_norm: bool = False):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(4, 6), nn.BatchNorm1d(6) if batch_norm else nn.Identity(), nn.Tanh()
        )
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in TASKS)

    def forward(self, x):
        z = self.encoder(x)
        return [head(z).squeeze(-1) for head in self.heads]


def task_losses(preds, y):
    return [((p - y[:, i]) ** 2).mean() for i, p in enumerate(preds)]


class ReferenceAutoLambda:
    """The authors' AutoLambda class, re-derived: model_ copy, virtual step, unrolled backward, FD Hessian."""

    def __init__(self, model, weight_init, primary):
        self.model, self.model_ = model, copy.deepcopy(model)
        self.meta_weights = torch.tensor([weight_init] * 3, requires_grad=True, dtype=torch.float64)
        self.primary = primary

    def _loss(self, model, x, y, weights):
        return sum(w * loss for w, loss in zip(weights, task_losses(model(x), y)))

    def virtual_step(self, x, y, alpha, optim):
        grads = torch.autograd.grad(self._loss(self.model, x, y, self.meta_weights), self.model.parameters())
        with torch.no_grad():
            for w, w_, g in zip(self.model.parameters(), self.model_.parameters(), grads):
                group = optim.param_groups[0]
                m = (
                    optim.state[w].get("momentum_buffer", 0.0) * group["momentum"]
                    if "momentum" in group
                    else 0
                )
                w_.copy_(w - alpha * (m + g + group["weight_decay"] * w))

    def unrolled_backward(self, x, y, vx, vy, alpha, optim):
        self.virtual_step(x, y, alpha, optim)
        loss = self._loss(self.model_, vx, vy, self.primary)
        d_model = torch.autograd.grad(loss, tuple(self.model_.parameters()), allow_unused=True)
        norm = torch.cat([d.view(-1) for d in d_model]).norm()
        eps = 0.01 / norm
        with torch.no_grad():
            for p, d in zip(self.model.parameters(), d_model):
                p += eps * d
        dp = torch.autograd.grad(self._loss(self.model, x, y, self.meta_weights), self.meta_weights)[0]
        with torch.no_grad():
            for p, d in zip(self.model.parameters(), d_model):
                p -= 2 * eps * d
        dn = torch.autograd.grad(self._loss(self.model, x, y, self.meta_weights), self.meta_weights)[0]
        with torch.no_grad():
            for p, d in zip(self.model.parameters(), d_model):
                p += eps * d
        self.meta_weights.grad = -alpha * (dp - dn) / (2.0 * eps)


def _data(steps):
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps):
        x, vx = torch.randn(16, 4, generator=gen), torch.randn(16, 4, generator=gen)
        scale = torch.tensor([1.0, 3.0, 0.3])
        batches.append(
            ((x.double(), (x[:, :3] * scale).double()), (vx.double(), (vx[:, :3] * scale).double()))
        )
    return batches


def _run(steps=4, primary_tasks=None):
    """(ours λ per step, reference λ per step, max |Δθ| between the two models)."""
    torch.manual_seed(0)
    ours_model = Net().double()
    ref_model = copy.deepcopy(ours_model)
    ours_opt = torch.optim.SGD(ours_model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    kwargs = {} if primary_tasks is None else {"primary_tasks": primary_tasks}
    balancer = build_method("auto_lambda", TASKS, meta_lr=0.01, **kwargs).balancer.double()
    balancer.meta_weights.fill_(0.1)  # 0.1 in float64, as the reference's tensor (not float32's 0.1)
    mask = balancer.primary.tolist()
    ref = ReferenceAutoLambda(ref_model, 0.1, mask)
    meta_opt = torch.optim.Adam([ref.meta_weights], lr=0.01)
    ours_w, ref_w = [], []
    for (x, y), (vx, vy) in _data(steps):
        meta_opt.zero_grad()
        ref.unrolled_backward(x, y, vx, vy, 0.1, ref_opt)
        meta_opt.step()
        ref_opt.zero_grad()
        sum(w * loss for w, loss in zip(ref.meta_weights, task_losses(ref_model(x), y))).backward()
        ref_opt.step()
        ref_w.append(ref.meta_weights.detach().clone())

        def compute(inputs, targets):
            return torch.stack(task_losses(ours_model(inputs), targets))

        ours_opt.zero_grad()
        probe = StepProbe(CTX, x, y, None, ours_model, ours_opt, compute, lambda split="val", b=(vx, vy): b)
        balancer.before_step(probe)
        balancer(compute(x, y), CTX).terms.sum().backward()
        ours_opt.step()
        ours_w.append(balancer.meta_weights.clone())
    diff = max(
        float((a.detach() - b.detach()).abs().max())
        for a, b in zip(ours_model.parameters(), ref_model.parameters())
    )
    return ours_w, ref_w, diff


def test_matches_the_reference_step_by_step():
    ours, ref, model_diff = _run()
    worst = max(float((a - b).abs().max()) for a, b in zip(ours, ref))
    assert worst < 1e-12, worst
    assert model_diff < 1e-12, model_diff
    assert not torch.equal(ours[-1], torch.full((3,), 0.1, dtype=torch.float64))
    torch.testing.assert_close(
        ours[-1], torch.tensor(PINNED_WEIGHTS, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_primary_tasks_restrict_the_validation_loss():
    ours, ref, _ = _run(steps=2, primary_tasks=["t1"])
    torch.testing.assert_close(ours[-1], ref[-1], rtol=0, atol=1e-12)
    assert build_method("auto_lambda", TASKS, primary_tasks=["t1"]).balancer.primary.tolist() == [0, 1, 0]
    with pytest.raises(ConfigError, match="primary_tasks"):
        build_method("auto_lambda", TASKS, primary_tasks=["nope"])
    with pytest.raises(ConfigError, match="meta_split"):
        build_method("auto_lambda", TASKS, meta_split="test")


def test_the_model_rng_and_buffers_are_restored_exactly():
    torch.manual_seed(1)
    model = Net(batch_norm=True).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    (x, y), (vx, vy) = _data(1)[0]
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    balancer = build_method("auto_lambda", TASKS).balancer.double()

    def compute(inputs, targets):
        return torch.stack(task_losses(model(inputs), targets))

    balancer.before_step(StepProbe(CTX, x, y, None, model, opt, compute, lambda split="val": (vx, vy)))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    assert not torch.equal(balancer.meta_weights, torch.full((3,), 0.1, dtype=torch.float64))


def _config(epochs=3, **kw):
    return TrainConfig(
        dataset="synthetic",
        method="autolambda",
        method_kwargs={"meta_lr": 0.01},
        seed=0,
        epochs=epochs,
        batch_size=32,
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 16},
        **kw,
    )


def test_resume_is_bit_identical():
    straight, _ = assert_resume_is_bit_identical(_config(), epochs=3, stop_after=1)
    assert straight.state_dict()["streams"]["train"]["index"] > 0


def test_trains_and_learns_the_weights():
    records = fit(_config(epochs=3))
    assert records[-1]["train_loss/t2"] < records[0]["train_loss/t2"]
    assert all(records[-1][f"weight/{t}"] != pytest.approx(0.1, abs=1e-6) for t in TASKS)
