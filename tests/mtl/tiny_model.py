"""A two-parameter shared encoder with scalar heads, small enough to differentiate by hand."""

from __future__ import annotations

import torch
from torch import nn

from mtl.models.base import MultiTaskModel


class TinyModel(MultiTaskModel):
    """``z = x·θ`` (θ ∈ R²), ``pred_t = a_t z``; loss ``L_t = mean((a_t z − y_t)²)``."""

    def __init__(self, theta, heads):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))
        self.a = nn.ParameterList([nn.Parameter(torch.tensor(float(v), dtype=torch.float64)) for v in heads])

    def encode(self, x):
        return x @ self.theta

    def decode(self, z):
        return {f"t{i}": a * z for i, a in enumerate(self.a)}

    def shared_parameters(self):
        return iter([self.theta])

    def task_parameters(self):
        return iter(self.a)


def losses_of(model, x, y):
    preds = model(x)
    return torch.stack([((preds[f"t{i}"] - y[:, i]) ** 2).mean() for i in range(y.shape[1])])
