"""Operators one training step launches, per model and method: the CPU proxy of the GPU's kernel launches.

A lone QM9 trial on an H200 is launch-bound (DESIGN §10: an EW step launched 1,293 kernels, ~9.6 ms of device
time in a 23.5 ms step), so the number of operators a step dispatches is what a faster GPU step has to cut.
This counts them on any machine: :class:`torch.profiler.profile` records one full training step
(:meth:`mtl.train.Trainer.train_step`: forward, losses, the method's backward, the optimiser step) after one
warm-up step, and the count is the number of *leaf* ``aten::`` operators (those that call no other recorded
operator) that compute something: on a GPU each is about one kernel launch. Leaves that only make a view or
allocate (:data:`METADATA_OPS`) and host synchronisations (``aten::item``, ``aten::_local_scalar_dense``: a
device-to-host copy each) are counted apart.

Run::

    python -m benchmarks.op_count --out benchmarks/results/op_count_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from mtl.config import TrainConfig
from mtl.train import Trainer

SYNC_OPS = ("aten::item", "aten::_local_scalar_dense")
METADATA_OPS = frozenset(
    f"aten::{name}"
    for name in (
        "view as_strided resolve_conj resolve_neg empty empty_strided empty_like detach detach_ alias t "
        "transpose permute unsqueeze squeeze expand select slice split chunk narrow unbind _unsafe_view "
        "_reshape_alias reshape lift_fresh set_ is_nonzero result_type"
    ).split()
)
"""Leaf operators that only make a view or allocate (no kernel launch on a GPU): counted apart."""
WORKLOADS: dict[str, dict[str, Any]] = {
    "qm9": {
        "dataset": "qm9",
        "dataset_kwargs": {"subset": 520},
        "batch_size": 128,
        "about": "QM9 Gilmer MPNN (hps), 11 tasks, batch 128 on real molecules",
    },
    "synthetic": {
        "dataset": "synthetic",
        "dataset_kwargs": {"n_train": 256, "n_val": 32, "n_test": 32},
        "batch_size": 128,
        "about": "synthetic MLP (hps), 3 tasks, batch 128",
    },
}
DEFAULT_METHODS = ("ew", "db_mtl", "igbv2", "famo", "upgrad")


def count_ops(events: Any) -> dict[str, Any]:
    """Leaf ``aten::`` operators of a profile (and the host syncs among them), by name."""
    leaves: Counter[str] = Counter()
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        if any(child.name.startswith("aten::") for child in event.cpu_children):
            continue
        leaves[event.name] += 1
    syncs = sum(leaves[name] for name in SYNC_OPS)
    compute = Counter({k: v for k, v in leaves.items() if k not in METADATA_OPS and k not in SYNC_OPS})
    return {
        "ops": sum(compute.values()),
        "metadata_ops": sum(leaves.values()) - sum(compute.values()) - syncs,
        "host_syncs": syncs,
        "top": dict(compute.most_common(10)),
    }


def step_ops(workload: str, method: str, grad_mode: str = "exact", seed: int = 0) -> dict[str, Any]:
    """Profile one training step of ``method`` on ``workload`` (after one warm-up step)."""
    spec = WORKLOADS[workload]
    config = TrainConfig(
        dataset=spec["dataset"],
        method=method,
        seed=seed,
        epochs=1,
        batch_size=spec["batch_size"],
        dataset_kwargs=dict(spec["dataset_kwargs"]),
        grad_mode=grad_mode,
        device="cpu",
    )
    trainer = Trainer(config)
    inputs, targets = next(iter(trainer.loader("train", config.batch_size, shuffle=True, seed=seed, epoch=0)))
    inputs = trainer.dataset.to_device(inputs, trainer.device)
    targets = trainer.dataset.to_device(targets, trainer.device)
    steps = trainer.steps_per_epoch()
    trainer.train_step(inputs, targets, 0, steps, grad_mode)  # warm-up: lazy state, caches
    trainer.global_step += 1
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.train_step(inputs, targets, 1, steps, grad_mode)
    return count_ops(prof.events())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--grad-mode", default="exact")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the count does not depend on threads; one thread keeps the profile small
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "grad_mode": args.grad_mode,
        "workloads": {},
    }
    for workload in args.workloads.split(","):
        rows: dict[str, Any] = {}
        for method in args.methods.split(","):
            rows[method] = step_ops(workload, method, args.grad_mode)
            ratio = rows[method]["ops"] / rows[next(iter(rows))]["ops"]
            print(
                f"{workload:<10} {method:<14} {rows[method]['ops']:>6} ops ({ratio:.2f}x the first), "
                f"{rows[method]['host_syncs']} host syncs"
            )
        out["workloads"][workload] = {"about": WORKLOADS[workload]["about"], "methods": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
