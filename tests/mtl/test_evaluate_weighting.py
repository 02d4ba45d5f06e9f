"""``evaluate``'s split loss is the per-sample mean: per-batch mean losses weighted by batch size (a short
last batch must not count as much as a full one)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from mtl.data import build_dataset
from mtl.training.evaluate import evaluate


def test_split_loss_is_the_per_sample_mean_with_an_unequal_last_batch():
    ds = build_dataset("synthetic", n_train=16, n_val=70, n_test=16)
    torch.manual_seed(0)
    model = ds.build_model()
    _, losses = evaluate(model, ds, "val", batch_size=64, device=torch.device("cpu"))  # batches of 64 and 6
    x, y = ds.splits["val"]
    model.eval()
    with torch.no_grad():
        preds = model(x)
    expected = [float(F.mse_loss(preds[t.name].reshape(-1), y[:, i])) for i, t in enumerate(ds.tasks)]
    assert torch.allclose(
        torch.tensor(losses, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64), rtol=1e-5
    )
    # the batch-size-independent answer: one batch holding the whole split gives the same
    _, whole = evaluate(model, ds, "val", batch_size=70, device=torch.device("cpu"))
    assert torch.allclose(torch.tensor(losses), torch.tensor(whole), rtol=1e-5)
