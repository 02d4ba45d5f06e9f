"""Per-step diagnostics in the epoch records (DB-MTL paper Fig. 10): task weights, per-task gradient norms
and the mean pairwise cosine similarity of the task gradients, for the new methods."""

import math

import pytest
import torch

from mtl.config import TrainConfig
from mtl.gradients import gradient_diagnostics
from mtl.train import Trainer

TASKS = ("t0", "t1", "t2")


def _trainer(method, **kwargs):
    return Trainer(
        TrainConfig(
            dataset="synthetic",
            method=method,
            seed=0,
            epochs=2,
            batch_size=32,
            method_kwargs=kwargs,
            dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 8},
        )
    )


def _spy(trainer):
    """Record every step's gradient matrix and aggregation result."""
    seen = []
    aggregator = trainer.method.aggregator
    original = aggregator.forward

    def forward(grads, ctx):
        result = original(grads, ctx)
        seen.append((grads.clone(), result))
        return result

    aggregator.forward = forward
    return seen


@pytest.mark.parametrize("method", ["mgda", "gradnorm", "imtl_g", "moco", "igbv2+cagrad"])
def test_reported_weights_are_the_aggregators_task_weights(method):
    trainer = _trainer(method)
    seen = _spy(trainer)
    record = trainer.run_epoch()
    weights = torch.stack([r.task_weights for _, r in seen]).double().mean(dim=0)
    norms = torch.stack([gradient_diagnostics(g)[0] for g, _ in seen]).double().mean(dim=0)
    cos = sum(gradient_diagnostics(g)[1] for g, _ in seen) / len(seen)
    for t, task in enumerate(TASKS):
        assert record[f"weight/{task}"] == pytest.approx(float(weights[t]), rel=1e-6)
        assert record[f"grad_norm/{task}"] == pytest.approx(float(norms[t]), rel=1e-6)
    assert record["grad_cos"] == pytest.approx(cos, rel=1e-6, abs=1e-9)
    assert -1.0 <= record["grad_cos"] <= 1.0


@pytest.mark.parametrize("method", ["pcgrad", "gradvac", "graddrop", "metabalance", "mtadam"])
def test_methods_without_task_weights_report_the_balancers(method):
    record = _trainer(method).run_epoch()
    for task in TASKS:
        assert record[f"weight/{task}"] == 1.0
        assert math.isfinite(record[f"grad_norm/{task}"]) and record[f"grad_norm/{task}"] > 0
    assert math.isfinite(record["grad_cos"])


def test_igbv2_alone_reports_its_weights_and_measured_gradients():
    trainer = _trainer("igbv2")
    record = trainer.run_epoch()
    weights = [record[f"weight/{t}"] for t in TASKS]
    assert sum(weights) == pytest.approx(3.0, rel=1e-6) and weights != [1.0, 1.0, 1.0]
    # grad_diagnostics (default on) measures G on the first step of the epoch for aggregator-free methods
    assert all(math.isfinite(record[f"grad_norm/{t}"]) for t in TASKS)
    assert math.isfinite(record["grad_cos"])
