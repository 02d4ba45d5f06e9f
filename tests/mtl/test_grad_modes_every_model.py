"""Every model's training step runs in every gradient mode, and the batched mode reaches no fused RNN kernel.

On an H200, ``exact_vmap`` failed for QM9 ("Batching rule not implemented for aten::_cudnn_rnn_backward"): the
MPNN's GRU and Set2Set's LSTM ran as fused cuDNN RNNs, whose backward vmap cannot batch. The models now
compute them from their cell equations (:mod:`mtl.models.rnn_cells`). A CPU cannot run cuDNN, so the test
checks the cause instead: no fused RNN operator (cuDNN's or any backend's) is dispatched in any mode's step,
and the exact modes give the same update. The architectures come from each dataset's ``architectures``, so a
new one is covered automatically.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from mtl.config import TrainConfig
from mtl.data import DATASETS
from mtl.grad_probe import GradModeError, mode_failure
from mtl.models.resnet import RandomInitWarning
from mtl.train import Trainer
from tests.mtl.data.vision_fixtures import single_thread, write_dense, write_office  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

FUSED_RNN_OPS = frozenset(
    f"aten::{name}"
    for name in (
        "gru lstm rnn_tanh rnn_relu _cudnn_rnn _cudnn_rnn_backward miopen_rnn miopen_rnn_backward "
        "_thnn_fused_gru_cell _thnn_fused_lstm_cell gru_cell lstm_cell mkldnn_rnn_layer "
        "mkldnn_rnn_layer_backward"
    ).split()
)
FAST = {"synthetic": None, "qm9": ("hps",), "office31": ("hps",)}
"""What runs by default (None: every architecture); the rest (full-size QM9 mixtures of MPNN experts,
ResNet/SegNet vision models: seconds to a minute and more a step on the CPU) is marked slow. The MoE
architectures run every mode at small sizes in ``tests/mtl/models/test_moe.py``."""


def _dataset_kwargs(name: str, tmp: object) -> dict:
    if name == "synthetic":
        return {"n_train": 64, "n_val": 16, "n_test": 16, "hidden": 8}
    if name == "qm9":
        return {"limit": 400, "progress": False}
    if name == "office31":
        return {"root": str(write_office(tmp / "office")), "image_size": 32}
    return {"root": str(write_dense(tmp / "nyu", n_train=4, n_test=2, resolution=(32, 32), num_classes=13)),
            "resolution": [32, 32]}  # fmt: skip


def _cases():
    out = []
    for dataset in ("synthetic", "qm9", "office31", "nyuv2"):
        for arch in DATASETS.factory(dataset).architectures:
            fast = dataset in FAST and (FAST[dataset] is None or arch in FAST[dataset])
            marks = [] if fast else [pytest.mark.slow]
            out.append(pytest.param(dataset, arch, marks=marks, id=f"{dataset}-{arch}"))
    return out


def _step(config: TrainConfig, mode: str) -> tuple[list[torch.Tensor], set[str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        trainer = Trainer(config)
    batch = next(iter(trainer.loader("train", config.batch_size, shuffle=True, seed=0, epoch=0)))
    inputs, targets = (trainer.dataset.to_device(b, trainer.device) for b in batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_step(inputs, targets, 0, 1, mode)
    ops = {e.name for e in prof.events()}
    return [p.detach().clone() for p in trainer.model.parameters()], ops


@pytest.mark.parametrize(("dataset", "arch"), _cases())
def test_every_mode_steps_and_no_fused_rnn_is_reached(dataset, arch, tmp_path):
    config = TrainConfig(
        dataset=dataset,
        method="db_mtl",
        architecture=arch,
        epochs=1,
        batch_size=4,
        device="cpu",
        dataset_kwargs=_dataset_kwargs(dataset, tmp_path),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        has_rep = Trainer(config).model.has_shared_representation
    modes = ["exact", "exact_vmap"] + (["rep"] if has_rep else [])
    after = {}
    for mode in modes:
        params, ops = _step(config, mode)
        assert not ops & FUSED_RNN_OPS, f"{mode} dispatched {sorted(ops & FUSED_RNN_OPS)}"
        assert all(torch.isfinite(p).all() for p in params)
        after[mode] = params
    for a, b in zip(after["exact"], after["exact_vmap"]):  # the two exact modes: the same update
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_mode_failure_names_the_operator():
    exc = RuntimeError(
        "Batching rule not implemented for aten::_cudnn_rnn_backward. We could not generate a fallback."
    )
    reason = mode_failure("exact_vmap", exc)
    assert reason.startswith("exact_vmap: aten::_cudnn_rnn_backward cannot be batched by vmap")
    assert mode_failure("exact_vmap", ValueError("odd")) == "exact_vmap: ValueError: odd"
    assert issubclass(GradModeError, Exception)


class _Unbatchable(torch.autograd.Function):
    """Identity forward; its backward calls an operator vmap cannot batch (as cuDNN's RNN backward was on
    CUDA; a host read here, which fails the same way on every device)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        float(grad.sum())  # a host read: "Batching rule not implemented for aten::item"
        return grad


def _unbatchable_trainer(grad_mode: str) -> Trainer:
    trainer = Trainer(
        TrainConfig(
            dataset="synthetic",
            method="db_mtl",
            epochs=1,
            batch_size=32,
            device="cpu",
            grad_mode=grad_mode,
            dataset_kwargs={"n_train": 64, "n_val": 16, "n_test": 16, "hidden": 8},
        )
    )
    encoder = trainer.model.encoder
    trainer.model.encoder = torch.nn.Sequential(encoder, _UnbatchableModule())
    return trainer


class _UnbatchableModule(torch.nn.Module):
    def forward(self, x):
        return _Unbatchable.apply(x)


def test_a_requested_mode_that_cannot_run_fails_at_the_first_step_naming_the_operator():
    trainer = _unbatchable_trainer("exact_vmap")
    with pytest.raises(GradModeError, match=r"exact_vmap: aten::item cannot be batched by vmap") as info:
        trainer.run_epoch()
    assert "use grad_mode 'exact' or 'auto'" in str(info.value)
    _unbatchable_trainer("exact").run_epoch()  # the loop runs the same model


def test_auto_records_and_warns_why_it_rejected_a_mode():
    from mtl.train import GradModeWarning

    trainer = _unbatchable_trainer("auto")
    with pytest.warns(GradModeWarning, match=r"rejected exact_vmap: aten::item cannot be batched"):
        record = trainer.run_epoch()
    assert record["grad_mode_chosen"] == "exact"
    assert record["grad_mode_rejected"].startswith("exact_vmap: aten::item cannot be batched by vmap")
    assert trainer.state_dict()["probe_rejected"] == trainer.probe_rejected  # a resumed trial keeps it
