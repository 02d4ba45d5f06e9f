"""The fast paths of the gradient engine and the trainer compute what the plain paths compute.

* ``exact_vmap`` with the shared representation (one batched VJP through the encoder only, heads per task)
  gives the same ``G`` and head gradients as separate autograd calls and as the plain ``exact`` loop;
* a whole training run with ``exact_vmap`` matches ``exact``;
* the trainer sums its epoch statistics on the device: the number of host reads per epoch does not grow with
  the number of steps (only the finiteness checks of DESIGN §2 synchronise per step).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import mtl
from mtl.config import TrainConfig
from mtl.context import StepContext
from mtl.data import build_dataset
from mtl.gradients import combine_others, gradient_diagnostics, gradient_diagnostics_tensor, task_gradients
from mtl.methods import build_method
from mtl.step import backward
from mtl.train import Trainer


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    data = build_dataset("synthetic", n_train=16, n_val=4, n_test=4, hidden=8)
    model = data.build_model().double()
    x, y = next(iter(data.loader("train", 16, shuffle=False, seed=0, epoch=0)))
    return data, model, x.double(), {k: v.double() for k, v in y.items()}


def _separate(data, model, x, y, params):
    rows = []
    for t in range(len(data.tasks)):
        losses = data.losses(model(x), y)
        grads = torch.autograd.grad(torch.log(losses[t]), params, allow_unused=True, materialize_grads=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("per_task", [False, True])
def test_batched_vjp_through_the_representation_equals_separate_autograd_calls(per_task):
    data, model, x, y = _setup()
    shared, heads = list(model.shared_parameters()), list(model.task_parameters())
    expected = _separate(data, model, x, y, shared)
    expected_heads = _separate(data, model, x, y, heads)
    z = model.encode(x)
    terms = torch.log(data.losses(model.decode(z), y))
    grads = task_gradients(terms, shared, heads, mode="exact_vmap", rep=z, per_task_others=per_task)
    torch.testing.assert_close(grads.matrix, expected, rtol=1e-10, atol=1e-12)
    weights = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64) if per_task else None
    got = torch.cat([g.reshape(-1) for g in combine_others(grads, weights)])
    w = weights if weights is not None else torch.ones(3, dtype=torch.float64)
    torch.testing.assert_close(got, (w[:, None] * expected_heads).sum(0), rtol=1e-10, atol=1e-12)
    # and the plain loop (preallocated matrix) gives the same numbers
    z = model.encode(x)
    loop = task_gradients(torch.log(data.losses(model.decode(z), y)), shared, heads, mode="exact")
    torch.testing.assert_close(loop.matrix, expected, rtol=1e-10, atol=1e-12)


def test_mixed_dtype_shared_parameters_promote():
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float32))
    b = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    terms = torch.stack([(a.double() * 2).sum() + b.sum(), (a.double() ** 2).sum() * b.sum()])
    grads = task_gradients(terms, [a, b])
    assert grads.matrix.dtype == torch.float64
    torch.testing.assert_close(
        grads.matrix, torch.tensor([[2.0, 2.0, 1.0], [6.0, 12.0, 5.0]], dtype=torch.float64)
    )


@pytest.mark.parametrize("method", ["db_mtl", "mgda", "ew"])
def test_step_with_exact_vmap_and_rep_equals_exact(method):
    grads_by_mode = {}
    for mode in ("exact", "exact_vmap"):
        data, model, x, y = _setup()
        m = build_method(method, data.task_names, beta=0.0, beta_sigma=0.0) if method == "db_mtl" else None
        m = m or build_method(method, data.task_names)
        z = model.encode(x)
        stats = backward(
            m,
            data.losses(model.decode(z), y),
            StepContext(epoch=0, step=1),
            task_names=data.task_names,
            shared_params=list(model.shared_parameters()),
            other_params=list(model.task_parameters()),
            grad_mode=mode,
            rep=z if mode == "exact_vmap" else None,
            diagnostics=True,
        )
        grads_by_mode[mode] = ([p.grad.clone() for p in model.parameters()], stats)
    (ga, sa), (gb, sb) = grads_by_mode["exact"], grads_by_mode["exact_vmap"]
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(sa.grad_norms, sb.grad_norms)
    assert isinstance(sa.grad_cos, torch.Tensor) and sa.grad_cos.dim() == 0  # no host sync in the step
    torch.testing.assert_close(sa.grad_cos, sb.grad_cos)


def test_diagnostics_tensor_matches_float_version():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    _norms, cos = gradient_diagnostics_tensor(g)
    assert cos.dim() == 0 and float(cos) == pytest.approx(gradient_diagnostics(g)[1])
    assert torch.isnan(gradient_diagnostics_tensor(g[:1])[1])


def _config(**overrides):
    base = dict(
        dataset="synthetic",
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 16},
        method="db_mtl",
        epochs=2,
        batch_size=16,
        device="cpu",
    )
    return TrainConfig.from_dict({**base, **overrides})


def test_training_with_exact_vmap_matches_exact():
    a = Trainer(_config(grad_mode="exact"))
    b = Trainer(_config(grad_mode="exact_vmap"))
    for _ in range(2):
        ra, rb = a.run_epoch(), b.run_epoch()
        for key in ra:
            if key.startswith(("train_loss/", "weight/", "grad_norm/", "val/", "test/")) or key == "grad_cos":
                assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), key
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["ew", "db_mtl"])
def test_epoch_statistics_are_read_from_the_device_once_per_epoch(method, monkeypatch):
    """Count the explicit device-to-host reads (``.cpu()``, ``.item()``, ``.tolist()``, ``float(t)``) made by
    ``mtl`` code inside ``train_epoch``: they must not grow with the number of steps. (torch's Adam reads its
    step counters, which live on the host, with ``.item()``: not a device synchronisation, not counted.)"""
    counts = {"n": 0}
    package = str(Path(mtl.__file__).parent)
    for name in ("cpu", "item", "tolist", "__float__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            if sys._getframe(1).f_code.co_filename.startswith(package):
                counts["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def reads(steps: int) -> tuple[int, dict]:
        trainer = Trainer(_config(method=method, max_steps_per_epoch=steps, epochs=1))
        counts["n"] = 0
        out = trainer.train_epoch()
        return counts["n"], out

    few, out_few = reads(2)
    many, out_many = reads(6)
    assert out_few["steps"] == 2 and out_many["steps"] == 6
    assert few == many, (few, many)
    if method == "db_mtl":
        assert -1.0 <= out_many["grad_cos"] <= 1.0
