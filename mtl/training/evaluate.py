"""The evaluation loop: a split's metrics and per-sample mean task losses, with the model as it is now."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from mtl.data import MTLDataset
from mtl.models.base import MultiTaskModel


@torch.no_grad()
def evaluate(
    model: MultiTaskModel,
    dataset: MTLDataset,
    split: str,
    batch_size: int,
    device: torch.device,
    loader: Callable[..., Iterable[Any]] | None = None,
) -> tuple[dict, list[float]]:
    """Metrics ``{task: {metric: value}}`` and mean per-task loss over a whole split. ``loader``: where the
    batches come from (default ``dataset.loader``; the trainer passes its device-resident loader).

    The split's loss is the mean of the per-batch mean losses weighted by each batch's number of samples of
    that task (``targets[task].shape[0]``), i.e. the per-sample mean: an unweighted mean of batch means
    would over-count a short last batch."""
    model.eval()
    acc = dataset.metric_accumulator()
    task_names = [t.name for t in dataset.tasks]
    loss_sum = torch.zeros(len(task_names), dtype=torch.float64)
    counts = torch.zeros(len(task_names), dtype=torch.float64)
    for inputs, targets in (loader or dataset.loader)(split, batch_size, shuffle=False, seed=0, epoch=0):
        inputs, targets = dataset.to_device(inputs, device), dataset.to_device(targets, device)
        preds = model(inputs)
        sizes = torch.tensor([float(targets[t].shape[0]) for t in task_names], dtype=torch.float64)
        loss_sum += dataset.losses(preds, targets).detach().double().cpu() * sizes
        counts += sizes
        acc.update(preds, targets)
    model.train()
    return acc.compute(), (loss_sum / counts.clamp_min(1.0)).tolist()
