"""A synthetic multi-task regression benchmark with deliberately different loss scales (for fast tests).

``x ~ N(0, I_d)``; a shared latent ``h = tanh(A x)``; task t: ``y_t = s_t (w_tᵀ h + c_t sin(v_tᵀ x) + σ ε)``,
``ε ~ N(0, 1)``. The scales ``s_t`` (default 1, 10, 100) make the MSE losses differ by orders of
magnitude, the regime loss-scale-invariant methods (SI, DB-MTL, IGB) are built for.
The shipped reference is the Bayes-optimal MAE ``s_t σ √(2/π)``, so Δp measures the distance from the
best attainable error (it is ≤ 0 up to sampling noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.checks import check_architecture
from mtl.config import TrainDefaults
from mtl.data.base import MetricAccumulator, MTLDataset, Nested, TaskSpec, epoch_order
from mtl.data.registry import DATASETS
from mtl.errors import ConfigError
from mtl.models.base import MultiTaskModel
from mtl.models.hps import HPS, mlp
from mtl.models.moe import MOE_ARCHITECTURES, MOE_ARGUMENTS, build_moe_model, moe_arguments
from mtl.models.moe_experts import MLPFamily

MAX_SAMPLES = 10_000_000
"""Samples per split: held in memory as float32 inputs (a bound on what a synthetic split can mean here)."""
MAX_WIDTH = 65_536
"""Input, latent and hidden widths."""
MAX_TASKS = 1_000


class MAEAccumulator(MetricAccumulator):
    """Mean absolute error per scalar-regression task."""

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = list(task_names)
        self.abs_err = {t: 0.0 for t in self.task_names}
        self.count = 0

    def update(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None:
        for t in self.task_names:
            self.abs_err[t] += float((preds[t].reshape(-1) - targets[t].reshape(-1)).abs().sum())
        self.count += int(next(iter(targets.values())).shape[0])

    def compute(self) -> Nested:
        if self.count == 0:
            raise ValueError("no samples were evaluated")
        return {t: {"mae": self.abs_err[t] / self.count} for t in self.task_names}


@DATASETS.register("synthetic")
class SyntheticRegression(MTLDataset):
    name = "synthetic"
    defaults = TrainDefaults(batch_size=64, epochs=20)  # Adam, lr 1e-3
    architectures = ("hps", *MOE_ARCHITECTURES)
    model_arguments = ("hidden", *MOE_ARGUMENTS)
    reference_note = (
        "each task's Bayes-optimal MAE s_t·σ·√(2/π): Δp ≤ 0, where 0 is the best attainable error and "
        "−100% means twice it"
    )

    def __init__(
        self,
        num_tasks: int = 3,
        scales: Sequence[float] | None = None,
        n_train: int = 2000,
        n_val: int = 500,
        n_test: int = 500,
        input_dim: int = 16,
        latent_dim: int = 8,
        noise: float = 0.5,
        data_seed: int = 0,
        hidden: int = 64,
    ) -> None:
        self.check_arguments(
            {
                "num_tasks": num_tasks,
                "scales": scales,
                "n_train": n_train,
                "n_val": n_val,
                "n_test": n_test,
                "input_dim": input_dim,
                "latent_dim": latent_dim,
                "noise": noise,
                "data_seed": data_seed,
                "hidden": hidden,
            }
        )
        scales = list(scales) if scales is not None else [10.0**i for i in range(num_tasks)]
        self.tasks = tuple(TaskSpec(f"t{i}", {"mae": False}) for i in range(num_tasks))
        self.scales = [float(s) for s in scales]
        self.noise = float(noise)
        self.input_dim = input_dim
        self.hidden = hidden
        gen = torch.Generator().manual_seed(int(data_seed))
        a = torch.randn(latent_dim, input_dim, generator=gen) / math.sqrt(input_dim)
        w = torch.randn(num_tasks, latent_dim, generator=gen)
        v = torch.randn(num_tasks, input_dim, generator=gen) / math.sqrt(input_dim)
        c = torch.rand(num_tasks, generator=gen)
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            x = torch.randn(n, input_dim, generator=gen)
            clean = torch.tanh(x @ a.T) @ w.T + c * torch.sin(x @ v.T)
            y = (clean + noise * torch.randn(n, num_tasks, generator=gen)) * torch.tensor(self.scales)
            self.splits[split] = (x, y)

    @classmethod
    def task_names_for(cls, args: Mapping[str, Any]) -> list[str]:
        return [f"t{i}" for i in range(int(args.get("num_tasks", 3)))]

    @classmethod
    def check_arguments(cls, args: Mapping[str, Any]) -> None:
        super().check_arguments(args)
        num_tasks = args.get("num_tasks", 3)
        if not 1 <= num_tasks <= MAX_TASKS:
            raise ConfigError(f"synthetic num_tasks must be in [1, {MAX_TASKS}], got {num_tasks}")
        scales = args.get("scales")
        if scales is not None and (len(scales) != num_tasks or any(not s > 0 for s in scales)):
            raise ConfigError(f"synthetic scales must be {num_tasks} positive numbers, got {list(scales)}")
        for key in ("n_train", "n_val", "n_test", "input_dim", "latent_dim", "hidden"):
            limit = MAX_SAMPLES if key.startswith("n_") else MAX_WIDTH
            if key in args and not 1 <= args[key] <= limit:
                raise ConfigError(f"synthetic {key} must be in [1, {limit:,}], got {args[key]}")
        if "noise" in args and not args["noise"] > 0:
            raise ConfigError(f"synthetic noise must be > 0, got {args['noise']}")

    @classmethod
    def check_model_arguments(cls, architecture: str, kwargs: Mapping[str, Any]) -> None:
        super().check_model_arguments(architecture, kwargs)
        moe_arguments(cls.name, architecture, kwargs)
        hidden = kwargs.get("hidden", 1)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or not 1 <= hidden <= MAX_WIDTH:
            raise ConfigError(
                f"synthetic model argument hidden must be an integer in [1, {MAX_WIDTH:,}], got {hidden!r}"
            )

    @property
    def reference(self) -> Nested:
        bayes = math.sqrt(2.0 / math.pi) * self.noise
        return {t.name: {"mae": s * bayes} for t, s in zip(self.tasks, self.scales)}

    def split_size(self, split: str) -> int:
        return self.splits[split][0].shape[0]

    def loader(self, split: str, batch_size: int, shuffle: bool, seed: int, epoch: int) -> Iterator[Any]:
        x, y = self.splits[split]
        n = x.shape[0]
        order = epoch_order(n, shuffle, seed, epoch)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], {t.name: y[idx, i] for i, t in enumerate(self.tasks)}

    def build_model(self, architecture: str = "hps", **kwargs: Any) -> MultiTaskModel:
        """HPS, or a MoE architecture (:mod:`mtl.models.moe`) whose experts are copies of the MLP encoder."""
        self.check_model_arguments(architecture, kwargs)
        architecture = check_architecture(self.name, architecture, self.architectures)
        hidden = int(kwargs.pop("hidden", self.hidden))
        if architecture in MOE_ARCHITECTURES:
            heads = {t.name: nn.Linear(hidden, 1) for t in self.tasks}
            family = MLPFamily([self.input_dim, hidden, hidden])
            return build_moe_model(architecture, family, heads, dataset=self.name, **kwargs)
        encoder = mlp([self.input_dim, hidden, hidden])
        return HPS(encoder, {t.name: nn.Linear(hidden, 1) for t in self.tasks})

    def losses(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([F.mse_loss(preds[t.name].reshape(-1), targets[t.name]) for t in self.tasks])

    def metric_accumulator(self) -> MAEAccumulator:
        return MAEAccumulator(self.task_names)
