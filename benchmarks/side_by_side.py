"""Per-step time of every method relative to EW, measured side by side, per model and gradient mode.

This is the engine behind ``python -m benchmarks.step_time --model mpnn|resnet18 --modes exact,rep``
(it also runs as ``python -m benchmarks.side_by_side`` with the same arguments).

Workloads (hard parameter sharing, one shared representation ``z``):

* ``mpnn``: the QM9 Gilmer MPNN of :mod:`mtl.models.mpnn` with 11 ``Linear(64, 1)`` heads on one batch of
  real QM9 molecules (complete graphs; a ``subset`` of the dataset, i.e. a seeded random sample, ~18 atoms
  per molecule with hydrogens; featurized once into the QM9 cache), MSE losses; random molecule-sized
  graphs if QM9 cannot be read;
* ``resnet18``: torchvision's ResNet-18 trunk + global average pooling (``z`` is ``[B, 512]``) with 3 linear
  31-way heads (Office-31 style, one input batch shared by the tasks), random 224×224 images, cross-entropy.

One step is what the trainer does (:class:`mtl.train.Trainer`): forward (``encode`` then ``decode``), the T
losses, :func:`mtl.step.backward` of the method with the gradient mode, the optimiser step (Adam).

Side by side: every (method, mode) pair is a configuration with its own method object; each round runs one
step of every configuration (in a rotated order), each preceded by an EW step of the same gradient mode, all
from the *same* model weights (restored before each step, outside the timer), so every configuration does
the same work on the same numbers. Reported per configuration: the median step time over the ``--steps``
rounds after ``--warmup``, the median of its paired ratios to the EW step measured right before it (wall
time: robust to the slow drift of a shared machine's load), and the same ratio in process CPU time (robust
to other processes taking the CPU away, which inflates wall time only).

Peak memory (one extra step per configuration, not timed): on CUDA ``torch.cuda.max_memory_allocated``
above what was allocated before the step; on CPU the peak of the PyTorch CPU allocator's total allocation
during the step above its start, from the profiler's memory events.

Lower bound for ``exact`` per-task gradients: next to the EW and DB-MTL steps of each round, one backward
of ``z`` through the encoder alone is timed (``t_enc``). A method that needs all T per-task gradients of the
shared parameters costs at least an EW step plus one extra encoder backward per task, ``EW + T·t_enc`` (the
issue's bound); a tighter one counts the EW step's own backward as one of the T, ``EW + (T−1)·t_enc``.
DB-MTL/EW is reported against both, each ratio formed within a round.

IGBv2 is timed in its actor phase (epoch 5) with a full replay buffer, and its SAC burst (every
``update_every`` steps) is timed once per configuration and amortised into its step time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmarks.workloads import (
    MODELS,
    Workload,
    all_methods,
    build_workload,
    prefill_igbv2,
)
from mtl.context import StepContext
from mtl.methods import Method, build_method
from mtl.step import backward
from mtl.step_hooks import StepProbe

MODES = ("exact", "exact_vmap", "rep")


def _to_device(x: Any, device: torch.device) -> Any:
    return x.to(device) if hasattr(x, "to") else x


# -- configurations ------------------------------------------------------------------------------------------
@dataclass
class Config:
    method_name: str
    mode: str
    method: Method
    optimizer: torch.optim.Optimizer | None
    epoch: int
    times: list[float] = field(default_factory=list)  # wall seconds per timed step
    cpu: list[float] = field(default_factory=list)  # process CPU seconds per timed step
    ew_times: list[float] = field(default_factory=list)  # the EW step timed just before each step
    ew_cpu: list[float] = field(default_factory=list)
    enc_times: list[float] = field(default_factory=list)  # encoder backward timed next to each step
    sac_burst_s: float | None = None
    peak_bytes: int | None = None

    @property
    def label(self) -> str:
        return f"{self.method_name}/{self.mode}"


def make_config(workload: Workload, name: str, mode: str, seed: int, device: torch.device) -> Config:
    method = build_method(name, workload.task_names, seed=seed).to(device)
    igb = prefill_igbv2(method.balancer, len(workload.task_names), seed)
    extra = list(method.extra_parameters())
    optimizer = torch.optim.Adam(extra, lr=1e-3) if extra else None
    return Config(name, mode, method, optimizer, epoch=5 if igb else 0)


class Bench:
    """Holds the workload, the shared optimiser and the snapshot every step starts from."""

    def __init__(self, workload: Workload, device: torch.device) -> None:
        self.w = workload
        self.device = device
        self.model = workload.model.to(device)
        self.model.train()
        self.inputs = _to_device(workload.inputs, device)
        self.shared = [p for p in self.model.shared_parameters() if p.requires_grad]
        self.heads = [p for p in self.model.task_parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.snapshot = copy.deepcopy(self.model.state_dict())

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def restore(self) -> None:
        self.model.load_state_dict(self.snapshot)
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, cfg: Config, k: int) -> None:
        """One training step of ``cfg`` (global step ``k``; kept off IGBv2's SAC burst steps), with the
        method's step hooks as the trainer calls them (FAMO's extra forward, Auto-Lambda's meta step)."""
        if cfg.optimizer is not None:
            cfg.optimizer.zero_grad(set_to_none=True)
        ctx = StepContext(epoch=cfg.epoch, step=k, step_in_epoch=k, steps_per_epoch=1000)
        probe = self.probe(cfg, ctx) if cfg.method.has_step_hooks else None
        if probe is not None:
            cfg.method.before_step(probe)
        z = self.model.encode(self.inputs)
        losses = self.w.loss_fn(self.model.decode(z))
        backward(
            cfg.method,
            losses,
            ctx,
            task_names=self.w.task_names,
            shared_params=self.shared,
            other_params=self.heads + list(cfg.method.extra_parameters()),
            grad_mode=cfg.mode,
            rep=z if cfg.mode != "exact" else None,
        )
        self.optimizer.step()
        if cfg.optimizer is not None:
            cfg.optimizer.step()
        if probe is not None:
            probe.losses = losses.detach()
            cfg.method.after_step(probe)

    def probe(self, cfg: Config, ctx: StepContext) -> StepProbe:
        """The step hooks' view of this workload (its one batch serves as the meta/validation batch too)."""
        return StepProbe(
            ctx=ctx,
            inputs=self.inputs,
            targets=None,
            losses=None,
            model=self.model,
            optimizer=self.optimizer,
            compute_losses=lambda inputs, _targets: self.w.loss_fn(self.model(inputs)),
            validation_batch=(lambda split="val": (self.inputs, None))
            if cfg.method.needs_validation_batch
            else None,
        )

    def floor_times(self, rounds: int, warmup: int = 1) -> tuple[float, float]:
        """Median seconds of the forward pass with the losses (``F``) and of one backward of their sum
        (``B``), interleaved: the terms of a step's T-VJP floor, ``(F + T·B) / (F + B)``, the least a method
        that needs every task's exact gradient can cost relative to EW."""
        forward, backward_ = [], []
        for r in range(warmup + rounds):
            self.restore()
            self.sync()
            t0 = time.perf_counter()
            losses = self.w.loss_fn(self.model(self.inputs))
            self.sync()
            t1 = time.perf_counter()
            losses.sum().backward()
            self.sync()
            t2 = time.perf_counter()
            if r >= warmup:
                forward.append(t1 - t0)
                backward_.append(t2 - t1)
        return statistics.median(forward), statistics.median(backward_)

    def timed_step(self, cfg: Config, k: int) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) of one step."""
        self.restore()
        self.sync()
        t0, c0 = time.perf_counter(), time.process_time()
        self.step(cfg, k)
        self.sync()
        return time.perf_counter() - t0, time.process_time() - c0

    def encoder_backward(self) -> float:
        """Seconds of one backward of ``z`` through the encoder alone (cotangent: ∂ΣL/∂z)."""
        self.restore()
        z = self.model.encode(self.inputs)
        (cotangent,) = torch.autograd.grad(self.w.loss_fn(self.model.decode(z)).sum(), z, retain_graph=True)
        self.sync()
        t0 = time.perf_counter()
        torch.autograd.grad(z, self.shared, grad_outputs=cotangent)
        self.sync()
        return time.perf_counter() - t0

    def peak_bytes(self, cfg: Config, k: int) -> int:
        """Peak memory allocated during one step above what was allocated before it."""
        self.restore()
        if self.device.type == "cuda":
            self.sync()
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.step(cfg, k)
            self.sync()
            return int(torch.cuda.max_memory_allocated(self.device) - before)
        return cpu_peak_bytes(lambda: self.step(cfg, k))


def cpu_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of the PyTorch CPU allocator's total allocation while ``fn`` runs, above its value at the start
    (from the profiler's ``[memory]`` events, which carry the running total after each allocation/free)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f).get("traceEvents", [])
    finally:
        os.unlink(path)
    memory = [
        e["args"] for e in events if e.get("name") == "[memory]" and "Total Allocated" in e.get("args", {})
    ]
    if not memory:
        return 0
    # the reporter's running total is process-wide; its value before the first event is the baseline
    start = min(memory, key=lambda a: a.get("Ev Idx", 0))
    base = start["Total Allocated"] - start.get("Bytes", 0)
    return int(max(0, max(a["Total Allocated"] for a in memory) - base))


# -- the run -------------------------------------------------------------------------------------------------
def expand_methods(methods: Sequence[str]) -> list[str]:
    out: list[str] = []
    for m in methods:
        for name in all_methods() if m == "all" else m.split(","):
            if name and name not in out:
                out.append(name)
    if "ew" in out:
        out.remove("ew")
    return ["ew", *out]


def run(
    model: str,
    modes: Sequence[str],
    methods: Sequence[str],
    steps: int = 3,
    warmup: int = 1,
    batch_size: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    memory: bool = True,
    log: Callable[[str], None] = print,
    save: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Time every (method, mode) side by side; returns ``{"meta": ..., "results": [...], "bound": ...}``."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"unknown gradient mode(s) {bad}; valid: {', '.join(MODES)}")
    if steps < 1 or warmup < 0:
        raise ValueError("steps must be >= 1 and warmup >= 0")
    dev = torch.device(device)
    workload = build_workload(model, batch_size, seed)
    bench = Bench(workload, dev)
    names = expand_methods(methods)
    configs = [make_config(workload, n, mode, seed, dev) for mode in modes for n in names]
    meta: dict[str, Any] = {
        "model": model,
        "workload": workload.description,
        **workload.meta,
        "shared_parameters": sum(p.numel() for p in bench.shared),
        "tasks": len(workload.task_names),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "steps": steps,
        "warmup": warmup,
        "modes": list(modes),
        "methods": names,
        "loadavg_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    log(json.dumps(meta))
    ew_of = {c.mode: c for c in configs if c.method_name == "ew"}
    t_run = time.perf_counter()
    for r in range(warmup + steps):
        t_round = time.perf_counter()
        timed = r >= warmup
        shift = r % len(configs)
        for cfg in configs[shift:] + configs[:shift]:
            k = r + 2  # from 2: never an IGBv2 burst step
            if cfg.method_name != "ew":  # its EW reference, measured right before it
                ew_wall, ew_cpu = bench.timed_step(ew_of[cfg.mode], k)
            dt, cpu = bench.timed_step(cfg, k)
            if cfg.method_name == "ew":
                ew_wall, ew_cpu = dt, cpu
            enc = (
                bench.encoder_backward()
                if cfg.mode == "exact" and cfg.method_name in ("ew", "db_mtl")
                else None
            )
            if timed:
                cfg.times.append(dt)
                cfg.cpu.append(cpu)
                cfg.ew_times.append(ew_wall)
                cfg.ew_cpu.append(ew_cpu)
                if enc is not None:
                    cfg.enc_times.append(enc)
        log(
            f"round {r + 1}/{warmup + steps} ({'timed' if timed else 'warm-up'}) "
            f"{time.perf_counter() - t_round:.1f}s; load {os.getloadavg()[0]:.1f}"
        )
        if save is not None and timed:
            save(_summary(configs, meta, done=False))
    for cfg in configs:  # IGBv2: one SAC burst, amortised over its update interval
        if cfg.epoch == 5:
            b = cfg.method.balancer
            t0 = time.perf_counter()
            b.train_agent()
            cfg.sac_burst_s = time.perf_counter() - t0
    if memory:
        for cfg in configs:
            cfg.peak_bytes = bench.peak_bytes(cfg, k=2)
    meta["loadavg_end"] = os.getloadavg()
    meta["wall_s"] = time.perf_counter() - t_run
    out = _summary(configs, meta, done=True)
    if save is not None:
        save(out)
    return out


def _summary(configs: list[Config], meta: dict[str, Any], done: bool) -> dict[str, Any]:
    """Medians per configuration. Ratios are paired: each step over the EW step timed right before it."""
    results = []
    for c in configs:
        burst = c.sac_burst_s / c.method.balancer.update_every if c.sac_burst_s is not None else 0.0
        wall = [t + burst for t in c.times]
        cpu = [t + burst for t in c.cpu]
        ratios = [t / e for t, e in zip(wall, c.ew_times, strict=True)]
        cpu_ratios = [t / e for t, e in zip(cpu, c.ew_cpu, strict=True)]
        results.append(
            {
                "method": c.method_name,
                "mode": c.mode,
                "needs_task_gradients": c.method.needs_task_gradients,
                "step_s": statistics.median(wall) if wall else None,
                "steps_s": wall,
                "cpu_s": cpu,
                "ratio_to_ew": statistics.median(ratios) if ratios else None,
                "ratios": ratios,
                "cpu_ratio_to_ew": statistics.median(cpu_ratios) if cpu_ratios else None,
                "ew_steps_s": c.ew_times,
                "sac_burst_s": c.sac_burst_s,
                "peak_mib": None if c.peak_bytes is None else c.peak_bytes / 2**20,
            }
        )
    out: dict[str, Any] = {"meta": meta, "results": results, "complete": done}
    ew = next((c for c in configs if c.method_name == "ew" and c.mode == "exact"), None)
    db = next((c for c in configs if c.method_name == "db_mtl" and c.mode == "exact"), None)
    if ew is not None and ew.enc_times:
        tasks = meta["tasks"]
        t_enc = statistics.median(ew.enc_times + (db.enc_times if db else []))
        t_ew = statistics.median(ew.times)
        bound = {
            "encoder_backward_s": t_enc,
            "ew_step_s": t_ew,
            "lower_bound_s": t_ew + tasks * t_enc,
            "lower_bound_ratio": (t_ew + tasks * t_enc) / t_ew,
            "tight_lower_bound_s": t_ew + (tasks - 1) * t_enc,
            "tight_lower_bound_ratio": (t_ew + (tasks - 1) * t_enc) / t_ew,
        }
        if db is not None and db.enc_times:
            # per round: DB-MTL's step, the EW step right before it and the encoder backward right after
            rounds = list(zip(db.times, db.ew_times, db.enc_times, strict=False))
            bound["db_mtl_rounds"] = [
                {"db_mtl_s": d, "ew_s": e, "encoder_backward_s": b} for d, e, b in rounds
            ]
            bound["db_mtl_ratio"] = statistics.median(d / e for d, e, _ in rounds)
            bound["db_mtl_lower_bound_ratio"] = statistics.median((e + tasks * b) / e for _, e, b in rounds)
            bound["db_mtl_tight_bound_ratio"] = statistics.median(
                (e + (tasks - 1) * b) / e for _, e, b in rounds
            )
            bound["db_mtl_over_bound"] = statistics.median(d / (e + tasks * b) for d, e, b in rounds)
            bound["db_mtl_over_tight_bound"] = statistics.median(
                d / (e + (tasks - 1) * b) for d, e, b in rounds
            )
        out["bound"] = bound
    return out


def markdown(out: dict[str, Any]) -> str:
    meta = out["meta"]
    lines = [
        f"{meta['workload']}; {meta['shared_parameters']:,} shared parameters; {meta['device']}, "
        f"{meta['threads']} threads, torch {meta['torch']}; median of {meta['steps']} side-by-side rounds "
        f"after {meta['warmup']} warm-up (load {meta['loadavg_start'][0]:.1f} at start)",
        "",
        "| method | mode | s/step | × EW (paired) | × EW (CPU time) | peak MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in out["results"]:
        note = f" (SAC burst {r['sac_burst_s']:.2f} s amortised)" if r.get("sac_burst_s") else ""
        peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        ratio = "" if r["ratio_to_ew"] is None else f"{r['ratio_to_ew']:.2f}"
        cpu = "" if r.get("cpu_ratio_to_ew") is None else f"{r['cpu_ratio_to_ew']:.2f}"
        step = "" if r["step_s"] is None else f"{r['step_s']:.3f}"
        lines.append(f"| {r['method']}{note} | {r['mode']} | {step} | {ratio} | {cpu} | {peak} |")
    b = out.get("bound")
    if b:
        lines += [
            "",
            f"Encoder backward alone: {b['encoder_backward_s']:.3f} s; "
            f"EW step (exact run) {b['ew_step_s']:.3f} s; T = {meta['tasks']}.",
            f"Lower bound EW + T·t_enc = {b['lower_bound_s']:.3f} s ({b['lower_bound_ratio']:.2f} × EW); "
            f"tight bound EW + (T−1)·t_enc = {b['tight_lower_bound_s']:.3f} s "
            f"({b['tight_lower_bound_ratio']:.2f} × EW).",
        ]
        if "db_mtl_ratio" in b:
            lines.append(
                f"DB-MTL (exact) / EW = {b['db_mtl_ratio']:.2f} against a bound of "
                f"{b['db_mtl_lower_bound_ratio']:.2f} (tight: {b['db_mtl_tight_bound_ratio']:.2f}) measured "
                "in "
                f"the same rounds: {b['db_mtl_over_bound']:.2f} × the bound, "
                f"{b['db_mtl_over_tight_bound']:.2f} × the tight bound."
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="mpnn")
    p.add_argument("--modes", default="exact,rep", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument(
        "--methods", nargs="*", default=["all"], help="names (or comma lists); 'all' = every method"
    )
    p.add_argument("--steps", type=int, default=3, help="timed side-by-side rounds")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 (mpnn), 8 (resnet18)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--out", type=Path, default=None, help="JSON results (and a .md table next to it)")
    return p


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    def save(out: dict[str, Any]) -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=1))

    out = run(
        args.model,
        [m for m in args.modes.split(",") if m],
        args.methods,
        steps=args.steps,
        warmup=args.warmup,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        memory=not args.no_memory,
        log=log,
        save=save,
    )
    table = markdown(out)
    log(table)
    if args.out is not None:
        args.out.with_suffix(".md").write_text(table + "\n")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
