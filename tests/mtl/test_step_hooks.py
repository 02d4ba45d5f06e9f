"""Step hooks (DESIGN §8, mtl.step_hooks): who has them, when the trainer calls them, what they cost, and the
validation stream's exact resume."""

import math

import pytest
import torch

from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.balancers.simple import EqualWeighting
from mtl.config import TrainConfig
from mtl.data.synthetic import SyntheticRegression
from mtl.methods import Method, MethodSpec, build_method
from mtl.step_hooks import BatchStream, StepProbe
from mtl.train import Trainer

TASKS = ["t0", "t1", "t2"]
DATA = {"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 16}


def _config(method, epochs=2, **kw):
    return TrainConfig(
        dataset="synthetic", method=method, seed=0, epochs=epochs, batch_size=32, dataset_kwargs=DATA, **kw
    )


class Recorder(EqualWeighting):
    """EW that records what its hooks see."""

    def __init__(self, num_tasks, needs_validation_batch=False):
        super().__init__(num_tasks)
        self.needs_validation_batch = needs_validation_batch
        self.calls = []

    def before_step(self, probe: StepProbe) -> None:
        grads_clear = all(p.grad is None for p in probe.model.parameters())
        params = [p.detach().clone() for p in probe.model.parameters()]
        val = probe.validation_batch("val") if probe.validation_batch is not None else None
        self.calls.append(("before", probe.ctx.step, probe.losses, grads_clear, params, val))

    def after_step(self, probe: StepProbe) -> None:
        moved = any(
            not torch.equal(p, q) for p, q in zip(probe.model.parameters(), self.calls[-1][4], strict=True)
        )
        self.calls.append(("after", probe.ctx.step, probe.losses, moved, probe.lr))


class AfterOnly(Aggregator):
    def __init__(self, num_tasks):
        super().__init__(num_tasks)
        self.seen = []

    def forward(self, grads, ctx):
        return AggregationResult(shared=grads.sum(0))

    def after_step(self, probe):
        self.seen.append(probe.ctx.step)


def test_only_parts_that_override_a_hook_have_step_hooks():
    for name in ("ew", "si", "db_mtl", "stch", "dwa", "uw", "pcgrad"):
        assert not build_method(name, TASKS).has_step_hooks, name
    for name in ("famo", "auto_lambda", "autolambda", "famo+pcgrad"):
        assert build_method(name, TASKS).has_step_hooks, name
    assert build_method("auto_lambda", TASKS).needs_validation_batch
    assert not build_method("famo", TASKS).needs_validation_batch
    method = Method(MethodSpec("x", "ew", "x"), EqualWeighting(3), AfterOnly(3))
    assert method.has_step_hooks and not method.needs_validation_batch
    assert EqualWeighting(3).before_step(None) is None  # the defaults are no-ops
    assert EqualWeighting(3).after_step(None) is None


def test_the_method_forwards_the_hooks_to_both_parts():
    trainer = Trainer(_config("ew+sum", epochs=1))
    spec = trainer.method.spec
    trainer.method = Method(spec, Recorder(3), AfterOnly(3))
    trainer.train_epoch()
    assert [c[0] for c in trainer.method.balancer.calls] == ["before", "after"] * 3
    assert trainer.method.aggregator.seen == [1, 2, 3]


def test_the_trainer_calls_the_hooks_around_the_step():
    trainer = Trainer(_config("ew", epochs=1))
    recorder = Recorder(3, needs_validation_batch=True)
    trainer.method.balancer = recorder
    seen_losses = []
    original = trainer.train_step

    def train_step(*args, **kwargs):
        losses, stats = original(*args, **kwargs)
        seen_losses.append(losses.detach())
        return losses, stats

    trainer.train_step = train_step
    trainer.train_epoch()
    calls = recorder.calls
    assert [(c[0], c[1]) for c in calls] == [
        (kind, step) for step in (1, 2, 3) for kind in ("before", "after")
    ]
    for before, after, losses in zip(calls[::2], calls[1::2], seen_losses, strict=True):
        assert before[2] is None and before[3]  # no losses yet, gradients zeroed
        assert torch.equal(after[2], losses) and after[3]  # the step's losses; the optimiser has stepped
        assert after[4] == trainer.current_lr()
        x, y = before[5]
        assert x.shape[0] == 32 and set(y) == set(TASKS)
    # 32 validation examples make one batch a pass: three draws are the first batch of pass 2
    assert trainer.state_dict()["streams"] == {"val": {"cycle": 2, "index": 1}}


@pytest.mark.parametrize(("method", "per_step"), [("ew", 1), ("db_mtl", 1), ("famo", 2), ("auto_lambda", 5)])
def test_forwards_per_step(method, per_step):
    """EW pays nothing; FAMO one extra forward (after the step); Auto-Lambda four (virtual step, validation,
    two finite-difference points)."""
    trainer = Trainer(_config(method, epochs=1))
    count = []
    trainer.model.register_forward_hook(lambda *_: count.append(1))
    out = trainer.train_epoch()
    assert len(count) == per_step * out["steps"]


def test_batch_stream_is_a_pure_function_of_its_position():
    data = SyntheticRegression(**{k: v for k, v in DATA.items() if k != "hidden"})
    stream = BatchStream(data.loader, "train", 32, seed=0)
    first = [stream.next()[0] for _ in range(7)]  # 3 batches a pass: passes 0, 1 and one of pass 2
    assert stream.state_dict() == {"cycle": 2, "index": 1}
    assert not torch.equal(first[0], first[3])  # a new shuffle each pass
    again = BatchStream(data.loader, "train", 32, seed=0)
    again.load_state_dict({"cycle": 1, "index": 2})
    assert torch.equal(again.next()[0], first[5])
    assert torch.equal(again.next()[0], first[6])
    train_order = next(iter(data.loader("train", 32, shuffle=True, seed=0, epoch=0)))[0]
    assert not torch.equal(first[0], train_order)  # not the training order


def test_state_round_trip_restores_the_stream():
    trainer = Trainer(_config("auto_lambda", epochs=1))
    trainer.train_epoch()
    state = trainer.state_dict()
    assert state["streams"] == {"train": {"cycle": 0, "index": 3}}
    nxt = trainer.validation_batch("train")
    other = Trainer(_config("auto_lambda", epochs=1))
    other.load_state_dict(state)
    x, y = other.validation_batch("train")
    assert torch.equal(x, nxt[0]) and all(torch.equal(y[t], nxt[1][t]) for t in TASKS)


@pytest.mark.parametrize("method", ["famo+pcgrad", "auto_lambda+pcgrad"])
def test_grad_mode_auto_probe_leaves_hooked_methods_bit_identical(method):
    """The ``auto`` probe runs hooked steps; the trainer's state (method state, streams) is restored."""
    auto = Trainer(_config(method, grad_mode="auto"))
    records = [auto.run_epoch(), auto.run_epoch()]
    assert auto.probe_times  # the probe ran hooked steps
    plain = Trainer(_config(method, grad_mode=auto.grad_mode_chosen))
    for ra in records:
        rb = plain.run_epoch()
        for key in ra:
            if key.startswith(("time_", "probe_time/")) or key == "grad_mode_chosen":
                continue
            a, b = ra[key], rb[key]
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), key
    assert auto.state_dict()["streams"] == plain.state_dict()["streams"]
    for p, q in zip(auto.method.state_dict().values(), plain.method.state_dict().values(), strict=True):
        assert _same_state(p, q)


def _same_state(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
