"""The benchmarks' workloads and method lists, defined once for every benchmark
(:mod:`benchmarks.side_by_side`, :mod:`benchmarks.step_time`, :mod:`benchmarks.gpu_check`): the QM9 MPNN
on real molecules (random molecule-sized graphs when QM9 cannot be read), a ResNet-18 HPS on random images,
IGBv2 brought to its costliest phase, and every method, taken from the registries."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.methods import canonical_method_name, valid_method_names
from mtl.models.base import MultiTaskModel
from mtl.models.hps import HPS

MODELS = ("mpnn", "resnet18")
DEFAULT_BATCH = {"mpnn": 128, "resnet18": 8}
NUM_TARGETS = 11
PAPER_COMBINATIONS = ("igbv1+max_norm", "igbv2+nash_mtl")
"""Balancer + aggregator pairs the papers report (IGB Alg. 3) beyond the registries' single methods."""
NOT_BENCHMARKED = ("stl", "sum")  # one task only; the plain sum is EW


def all_methods() -> list[str]:
    """Every method of the registries by its canonical name (``ew`` first, the named composites ``db_mtl``
    and ``imtl`` included), then :data:`PAPER_COMBINATIONS`."""
    names = sorted({canonical_method_name(n) for n in valid_method_names()} - set(NOT_BENCHMARKED))
    names.remove("ew")
    return ["ew", *names, *PAPER_COMBINATIONS]


def prefill_igbv2(balancer: Any, num_tasks: int, seed: int) -> bool:
    """Bring an IGBv2 balancer (alone or combined) past its base epoch with a full replay buffer, where its
    SAC bursts cost most; False (nothing done) for any other balancer."""
    if getattr(balancer, "agent", None) is None:
        return False
    balancer.end_epoch(balancer.base_epoch, torch.ones(num_tasks))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(balancer.buffer.capacity):
        s = torch.rand(num_tasks, generator=gen)
        balancer.buffer.add(s, num_tasks * torch.softmax(torch.randn(num_tasks, generator=gen), 0), 0.0, s)
    return True


def random_molecule_graphs(
    batch_size: int, atoms: int, seed: int, device: torch.device | str = "cpu"
) -> tuple[Any, Tensor]:
    """Random complete molecular graphs with QM9's feature sizes (11 node / 5 edge features, ``atoms`` ± 8
    atoms each) and 11 correlated, z-scored regression targets (U0, U, H and G nearly one quantity, as in
    QM9): the MPNN workload when QM9 cannot be read."""
    from torch_geometric.data import Batch, Data

    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for _ in range(batch_size):
        n = int(torch.randint(max(2, atoms - 8), atoms + 9, (1,), generator=gen))
        kind = torch.randint(0, 5, (n,), generator=gen)
        x = torch.cat(
            [F.one_hot(kind, 5).float(), torch.rand(n, 6, generator=gen).round()], dim=1
        )  # type one-hot, atomic number, aromatic, sp/sp2/sp3, #H (values only matter for their shapes)
        idx = torch.arange(n)
        src, dst = torch.meshgrid(idx, idx, indexing="ij")
        keep = src != dst
        edge_index = torch.stack([src[keep], dst[keep]])
        bond = torch.randint(0, 5, (edge_index.shape[1],), generator=gen)
        edge_attr = torch.cat(
            [F.one_hot(bond, 5)[:, :4].float(), 1 + 2 * torch.rand(edge_index.shape[1], 1, generator=gen)],
            dim=1,
        )
        graphs.append(Data(x=x, edge_index=edge_index, edge_attr=edge_attr))
    batch = Batch.from_data_list(graphs).to(device)
    # correlated targets like QM9's (U0, U, H and G are nearly the same quantity), z-scored
    mixing = torch.randn(NUM_TARGETS, 4, generator=gen)
    mixing[7:10] = mixing[6] + 0.01 * torch.randn(3, 4, generator=gen)
    targets = torch.randn(batch_size, 4, generator=gen) @ mixing.T
    targets = targets + 0.3 * torch.randn(batch_size, NUM_TARGETS, generator=gen)
    targets = (targets - targets.mean(dim=0)) / targets.std(dim=0)
    return batch, targets.to(device)


@dataclass
class Workload:
    """A model, one fixed batch and its per-task loss function."""

    name: str
    model: MultiTaskModel
    inputs: Any
    loss_fn: Callable[[dict[str, Tensor]], Tensor]
    task_names: list[str]
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


class PooledResNet18(nn.Module):
    """ResNet-18 trunk (torchvision, random weights) + global average pooling: images -> ``[B, 512]``."""

    def __init__(self) -> None:
        super().__init__()
        from mtl.models.resnet import ResNetTrunk

        self.trunk = ResNetTrunk("resnet18", warn=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(x).mean(dim=(2, 3))


def resnet18_workload(
    batch_size: int = 8, tasks: int = 3, classes: int = 31, image: int = 224, seed: int = 0
) -> Workload:
    torch.manual_seed(seed)
    names = [f"t{i}" for i in range(tasks)]
    model = HPS(PooledResNet18(), {t: nn.Linear(512, classes) for t in names})
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, image, image, generator=gen)
    labels = torch.randint(0, classes, (tasks, batch_size), generator=gen)

    def loss_fn(preds: dict[str, Tensor]) -> Tensor:
        return torch.stack([F.cross_entropy(preds[t], labels[i]) for i, t in enumerate(names)])

    return Workload(
        "resnet18",
        model,
        images,
        loss_fn,
        names,
        f"ResNet-18 HPS, {tasks} linear {classes}-way heads, batch {batch_size} at {image}px",
        {"batch_size": batch_size, "tasks": tasks, "image": image},
    )


def mpnn_workload(batch_size: int = 128, seed: int = 0) -> Workload:
    from mtl.models.mpnn import MPNNEncoder

    torch.manual_seed(seed)
    try:  # real molecules: a seeded random sample of QM9 (the subset's own, cached, featurized molecules)
        from mtl.data.qm9 import SPLIT_PERIOD, QM9Dataset

        data = QM9Dataset(subset=max(SPLIT_PERIOD, batch_size * 13 // 11 + 26), progress=False)
        graphs, targets = next(iter(data.loader("train", batch_size, shuffle=True, seed=seed, epoch=0)))
        model = data.build_model()
        names = list(data.task_names)

        def loss_fn(preds: dict[str, Tensor]) -> Tensor:
            return data.losses(preds, targets)

        source = "QM9 molecules (qm9pack), complete graphs"
    except Exception as exc:  # QM9 not available: molecule-sized random graphs
        print(f"note: QM9 unavailable ({type(exc).__name__}: {exc}); using random graphs", file=sys.stderr)
        graphs, y = random_molecule_graphs(batch_size, 18, seed)
        names = [f"t{i}" for i in range(11)]
        model = HPS(MPNNEncoder(), {t: nn.Linear(64, 1) for t in names})

        def loss_fn(preds: dict[str, Tensor]) -> Tensor:
            return torch.stack([F.mse_loss(preds[t].squeeze(-1), y[:, i]) for i, t in enumerate(names)])

        source = "random molecule-sized complete graphs"
    return Workload(
        "mpnn",
        model,
        graphs,
        loss_fn,
        names,
        f"QM9 MPNN (mtl.models.mpnn), 11 heads, batch {batch_size}: {source}",
        {
            "batch_size": batch_size,
            "nodes": int(graphs.num_nodes),
            "edges": int(graphs.edge_index.shape[1]),
            "source": source,
        },
    )


def build_workload(name: str, batch_size: int | None = None, seed: int = 0) -> Workload:
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; valid: {', '.join(MODELS)}")
    bs = batch_size or DEFAULT_BATCH[name]
    return mpnn_workload(bs, seed) if name == "mpnn" else resnet18_workload(bs, seed=seed)
