"""Per-step time of each MTL method relative to EW on the QM9 MPNN (batch 128).

One step = forward, the 11 task losses, the method's backward (:func:`mtl.step.backward`, ``exact`` per-task
gradients for methods with an aggregator) and the optimiser step, as in the trainer. The model is the
Gilmer MPNN of :mod:`mtl.models.mpnn` with 11 ``Linear(64, 1)`` heads, fed random
molecule-sized graphs: ``--atoms`` atoms on average (default 18, as QM9 with hydrogens), complete graphs,
11 node features and 5 edge features, 11 correlated z-scored regression targets.

IGBv2 trains its SAC agent in bursts (every 50 steps from epoch 3): its time is reported as the plain step
(actor phase) plus the burst amortised over 50 steps, with a full replay buffer (the worst case: 50 updates of
256 transitions). Nash-MTL's time includes its cvxpy solves.

``--mode components`` (for a small shared CPU machine) times full steps only for EW, ``sum`` (the exact
per-task gradients every aggregator method pays for) and ``--validate`` methods, and times each method's
balancer and aggregator on a gradient matrix G [11, P] recorded from the MPNN; a method's step is then
estimated as the ``sum`` step plus its aggregator's and balancer's extra time. ``--mode full`` (default)
times every method's full step.

``--model mpnn|resnet18 --modes exact,rep`` (either option) runs :mod:`benchmarks.side_by_side` instead:
every method in every gradient mode, full steps measured side by side in one run, ratios to EW, peak
memory, and the lower bound of one extra encoder backward per task.

Run (glibc's allocator trims too eagerly for the MPNN, DESIGN §7)::

    MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=1000000000 \\
        python -m benchmarks.step_time --steps 5 --out benchmarks/results/step_time_cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from benchmarks.workloads import all_methods, prefill_igbv2, random_molecule_graphs
from mtl.context import StepContext
from mtl.methods import build_method
from mtl.models.hps import HPS
from mtl.models.mpnn import MPNNEncoder
from mtl.step import backward
from mtl.step_hooks import StepProbe

TASKS = [f"t{i}" for i in range(11)]


def build_encoder() -> tuple[nn.Module, str]:
    """The shared encoder every step is timed on, and its name for the results file."""
    return MPNNEncoder(), "mtl.models.mpnn.MPNNEncoder"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepRunner:
    """One method's model, optimiser and step; :meth:`run` times one full training step."""

    def __init__(self, name: str, batch: Any, targets: Tensor, device: torch.device, seed: int) -> None:
        torch.manual_seed(seed)
        encoder, _ = build_encoder()
        self.name, self.batch, self.targets, self.device = name, batch, targets, device
        self.model = HPS(encoder, {t: nn.Linear(64, 1) for t in TASKS}).to(device)
        self.method = build_method(name, TASKS, seed=seed).to(device)
        self.shared = [p for p in self.model.shared_parameters() if p.requires_grad]
        self.others = [p for p in self.model.task_parameters() if p.requires_grad]
        self.others += list(self.method.extra_parameters())
        params = [*self.model.parameters(), *self.method.extra_parameters()]
        self.optimizer = torch.optim.Adam(params, lr=1e-3)
        self.igb = getattr(self.method.balancer, "agent", None) is not None
        self.epoch = 5 if self.igb else 0  # IGBv2: the actor phase
        self.k = 1
        self.times: list[float] = []
        if self.igb:
            prefill_igbv2(self.method.balancer, len(TASKS), seed)

    def run(self, record: bool = True) -> None:
        # k starts at 2 so IGBv2 never hits its (k - 1) % 50 == 0 burst inside the timed steps
        self.k += 1
        sync(self.device)
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        ctx = StepContext(epoch=self.epoch, step=self.k, step_in_epoch=self.k, steps_per_epoch=1000)
        probe = None
        if self.method.has_step_hooks:  # FAMO's extra forward, Auto-Lambda's meta step: as the trainer does
            probe = StepProbe(
                ctx=ctx,
                inputs=self.batch,
                targets=self.targets,
                losses=None,
                model=self.model,
                optimizer=self.optimizer,
                compute_losses=self.losses_of,
                validation_batch=(lambda split="val": (self.batch, self.targets))
                if self.method.needs_validation_batch
                else None,
            )
            self.method.before_step(probe)
        losses = self.losses_of(self.batch, self.targets)
        backward(
            self.method,
            losses,
            ctx,
            task_names=TASKS,
            shared_params=self.shared,
            other_params=self.others,
            diagnostics=False,
        )
        self.optimizer.step()
        if probe is not None:
            probe.losses = losses.detach()
            self.method.after_step(probe)
        sync(self.device)
        if record:
            self.times.append(time.perf_counter() - t0)

    def losses_of(self, batch: Any, targets: Tensor) -> Tensor:
        preds = self.model(batch)
        return torch.stack([F.mse_loss(preds[t].squeeze(-1), targets[:, i]) for i, t in enumerate(TASKS)])

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.name,
            "step_s": statistics.median(self.times),
            "steps_s": self.times,
        }
        if self.igb:
            b = self.method.balancer
            t0 = time.perf_counter()
            b.train_agent()
            out["sac_burst_s"] = time.perf_counter() - t0
            out["step_s"] += out["sac_burst_s"] / b.update_every
        return out


def time_round_robin(
    names: list[str], batch: Any, targets: Tensor, device: torch.device, args: Any, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Full steps of every method, one step of each in turn (so a change in machine load hits all alike)."""
    runners = [StepRunner(n, batch, targets, device, args.seed) for n in names]
    for r in range(args.warmup + args.steps):
        for runner in runners:
            runner.run(record=r >= args.warmup)
        log(f"round {r}: " + ", ".join(f"{x.name} {x.times[-1]:.2f}" for x in runners if x.times))
    results = {x.name: x.result() for x in runners}
    del runners
    return results


def time_components(
    name: str, grads: Tensor, losses: Tensor, param_sizes: tuple[int, ...], repeats: int, seed: int
) -> dict[str, float]:
    """Seconds per step of a method's balancer and aggregator alone, on a recorded G with its rows rescaled
    at random each step (IGBv2: actor phase, plus its SAC burst amortised over ``update_every`` steps, full
    buffer)."""
    method = build_method(name, TASKS, seed=seed).to(grads.device)
    b = method.balancer
    igb = getattr(b, "agent", None) is not None
    if igb:
        prefill_igbv2(b, len(TASKS), seed)
    balancer_t, aggregator_t = [], []
    gen = torch.Generator().manual_seed(seed)
    for k in range(2, repeats + 3):
        # a different G each step (rows rescaled), so iterative solvers cannot reuse the last solution
        g_k = grads * torch.exp(0.3 * torch.randn(grads.shape[0], 1, generator=gen)).to(grads)
        ctx = StepContext(epoch=5 if igb else 0, step=k, steps_per_epoch=1000, losses=losses)
        sync(grads.device)
        t0 = time.perf_counter()
        method.balancer(losses.detach().requires_grad_(), ctx)
        sync(grads.device)
        t1 = time.perf_counter()
        if method.aggregator is not None:
            method.aggregator(g_k, dataclasses.replace(ctx, param_sizes=param_sizes))
        sync(grads.device)
        t2 = time.perf_counter()
        if k > 2:  # the first call is a warm-up
            balancer_t.append(t1 - t0)
            aggregator_t.append(t2 - t1)
    out = {"balancer_s": statistics.median(balancer_t), "aggregator_s": statistics.median(aggregator_t)}
    if hasattr(method.aggregator, "unsolved"):  # Nash-MTL: sub-problems without a solution
        out["unsolved"] = method.aggregator.unsolved
    if igb:
        t0 = time.perf_counter()
        b.train_agent()
        out["sac_burst_s"] = time.perf_counter() - t0
        out["balancer_s"] += out["sac_burst_s"] / b.update_every
    return out


def record_gradients(
    batch: Any, targets: Tensor, device: torch.device, seed: int
) -> tuple[Tensor, Tensor, tuple]:
    """One realistic G [11, P] (exact per-task gradients of the MPNN's shared parameters) and its losses."""
    from mtl.gradients import task_gradients

    torch.manual_seed(seed)
    encoder, _ = build_encoder()
    model = HPS(encoder, {t: nn.Linear(64, 1) for t in TASKS}).to(device)
    preds = model(batch)
    losses = torch.stack([F.mse_loss(preds[t].squeeze(-1), targets[:, i]) for i, t in enumerate(TASKS)])
    shared = [p for p in model.shared_parameters() if p.requires_grad]
    grads = task_gradients(losses, shared, mode="exact").matrix.detach()
    return grads, losses.detach(), tuple(p.numel() for p in shared)


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    ew = next(r["step_s"] for r in results if r["method"] == "ew")
    lines = [
        f"QM9 MPNN ({meta['encoder']}), batch {meta['batch_size']}, ~{meta['atoms']} atoms/graph, "
        f"{meta['device']}, {meta['threads']} threads, median of {meta['steps']} steps",
        "",
        "| method | s/step | × EW |",
        "| --- | ---: | ---: |",
    ]
    if meta.get("mode") == "components":
        lines[2:] = [
            "| method | s/step | × EW | balancer + aggregator s/step | measured full step s (× EW) |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
    for r in results:
        note = f" (incl. SAC burst {r['sac_burst_s']:.2f} s / 50)" if "sac_burst_s" in r else ""
        row = f"| {r['method']}{note} | {r['step_s']:.3f} | {r['step_s'] / ew:.2f} |"
        if meta.get("mode") == "components":
            extra = r.get("balancer_s", 0.0) + r.get("aggregator_s", 0.0)
            full = f"{r['full_step_s']:.3f} ({r['full_step_s'] / ew:.2f})" if "full_step_s" in r else ""
            row += f" {extra:.4f} | {full} |"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else argv
    if any(a.split("=")[0] in ("--model", "--modes") for a in argv):
        # every method x gradient mode side by side, on the MPNN or ResNet-18 (benchmarks/side_by_side.py)
        from benchmarks.side_by_side import main as side_by_side

        return side_by_side(argv, log=log)["results"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="*", default=all_methods())
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--atoms", type=int, default=18)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON (and .md)")
    parser.add_argument("--mode", choices=("full", "components"), default="full")
    parser.add_argument(
        "--validate", nargs="*", default=["mgda", "igbv2"], help="components mode: full steps"
    )
    parser.add_argument("--repeats", type=int, default=5, help="components mode: aggregator calls timed")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch, targets = random_molecule_graphs(args.batch_size, args.atoms, args.seed, device)
    meta = {
        "encoder": build_encoder()[1],
        "batch_size": args.batch_size,
        "atoms": args.atoms,
        "nodes": int(batch.num_nodes),
        "edges": int(batch.edge_index.shape[1]),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "torch": torch.__version__,
        "mode": args.mode,
        "loadavg_start": os.getloadavg(),
    }
    log(json.dumps(meta))
    results: list[dict[str, Any]] = []

    def save() -> None:
        if args.out is not None:  # keep partial results
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))

    if args.mode == "full":
        timed = time_round_robin(args.methods, batch, targets, device, args, log)
        results.extend(timed[name] for name in args.methods)
        save()
    else:
        full = time_round_robin(
            list(dict.fromkeys(["ew", "sum", *args.validate])), batch, targets, device, args, log
        )
        grads, losses, sizes = record_gradients(batch, targets, device, args.seed)
        meta["shared_parameters"] = int(grads.shape[1])
        base = (
            full["sum"]["step_s"]
            - time_components("sum", grads, losses, sizes, args.repeats, 0)["aggregator_s"]
        )
        for name in args.methods:
            comp = time_components(name, grads, losses, sizes, args.repeats, args.seed)
            if name == "ew":
                r = {"method": name, "step_s": full["ew"]["step_s"], **comp}
            else:
                has_aggregator = build_method(name, TASKS).aggregator is not None
                step = (
                    (base if has_aggregator else full["ew"]["step_s"])
                    + comp["aggregator_s"]
                    + comp["balancer_s"]
                )
                r = {"method": name, "step_s": step, **comp}
            if name in full:
                r["full_step_s"] = full[name]["step_s"]
            results.append(r)
            log(
                f"{name:20s} {r['step_s']:.3f} s/step (balancer {comp['balancer_s']:.4f}, "
                f"aggregator {comp['aggregator_s']:.4f})"
            )
            save()
        meta["loadavg_end"] = os.getloadavg()
        save()
    if any(r["method"] == "ew" for r in results):
        table = markdown(results, meta)
        log(table)
        if args.out is not None:
            args.out.with_suffix(".md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
