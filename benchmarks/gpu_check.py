"""The device check: one script, one JSON, ≤ 8 minutes on one GPU (issue 15).

Sections (every timed step is CUDA-synchronised before and after; warm-up steps first; the configurations
of a section are interleaved, one step of each per round in a rotated order, so drift hits all alike):

* ``qm9_batches``: seconds per batch of the QM9 host loader (collate on the host, copy to the device) and of
  the device-resident gather (:mod:`mtl.data.qm9.device`), alternating, and their ratio;
* ``qm9_step``: seconds per training step on the QM9 MPNN (batch 128, a batch of real molecules gathered
  on the device) of EW, SI, IGBv2, DB-MTL, MGDA and Nash-MTL in the ``exact`` and ``exact_vmap`` gradient
  modes (the step of :mod:`benchmarks.side_by_side`: forward, losses, :func:`mtl.step.backward`, Adam; IGBv2
  in its actor phase with its SAC burst amortised), with DB-MTL/EW and IGBv2/EW per mode and for each
  method's fastest exact mode (what ``grad_mode: auto`` would pick);
* ``nyuv2_step``: an NYUv2-shaped DeepLabV3+/dilated-ResNet-50 HPS step (fixture files written in the
  published ``.npy`` layout at 288×384 and read by :class:`mtl.data.nyuv2.NYUv2`, batch 8): images/s of EW
  and DB-MTL and their ratio;
* ``packed``: QM9 trials (the trainer, device-resident batches, ``--packed-method``) as separate processes
  on one GPU: 4 at once (each capped at 0.25 of the GPU's memory, as Ray's ``gpus_per_trial: 0.25`` packs
  them) against 1 alone; molecules/s over the common window and the GPU utilisation sampled from
  ``nvidia-smi`` during it (null where ``nvidia-smi`` is not available);
* each step section also gives the workload's **T-VJP floor** ``(F + T·B) / (F + B)`` (``F`` the forward
  pass with the losses, ``B`` one backward of their sum: the least a method needing every task's exact
  gradient can cost relative to EW) with DB-MTL's ratio to it, and the **operators per step** of each method
  (kernels launched on a GPU; on a CPU the compute operators, :mod:`benchmarks.op_count`); a method that
  cannot be built here (an optional solver missing) is listed under ``skipped`` with the reason;
* ``goals``: issue 23's targets on the H200 (QM9 EW step ≤ 10 ms at batch 128, DB-MTL/EW ≤ 2.5, IGBv2/EW
  ≤ 1.10, NYUv2 DB-MTL within 1.05× of its T-VJP floor, 4 packed EW trials ≥ 27,000 molecules/s) against
  what was measured. They are GPU goals: on a CPU they are reported, not met.

Run on a GPU machine (QM9 from the installed ``qm9pack``; a subset is featurised once into the QM9 cache)::

    python -m benchmarks.gpu_check --device cuda --out benchmarks/results/gpu_check.json

``--device cpu --small`` (the tests): QM9's first 100 source rows (``limit``, featurised in a second, no
cache), an MPNN of width 16 and batch 8, NYUv2 at 32×32 with batch 2, one timed step per configuration, the
packed trials each training for half a second. ``--sections`` runs a subset (e.g. ``qm9_batches,qm9_step``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.side_by_side import Bench, Config, make_config
from benchmarks.workloads import Workload
from mtl.gradients import EXACT_MODES
from mtl.methods import parse_method

QM9_METHODS = ("ew", "si", "igbv2", "db_mtl", "mgda", "nash_mtl", "famo", "upgrad", "fairgrad")
NYUV2_METHODS = ("ew", "db_mtl")
RATIO_PAIRS = (("db_mtl", "ew"), ("igbv2", "ew"))
GOALS_AT_MOST = {
    "qm9_ew_step_ms": 10.0,  # batch 128 (measured on the H200: 23.5 ms)
    "qm9_db_mtl_over_ew": 2.5,  # (6.77x)
    "qm9_igbv2_over_ew": 1.10,  # (1.34x)
    "nyuv2_db_mtl_over_floor": 1.05,  # DB-MTL/EW within 1.05x of its T-VJP floor (2.52x vs ~2.3x)
}
GOALS_AT_LEAST = {"packed_molecules_per_s": 27_000.0}  # 4 packed EW trials (13,359)
PACKED_TRIALS = 4
PACKED_FRACTION = 0.25


@dataclass(frozen=True)
class Sizes:
    """Everything ``--small`` changes."""

    qm9: dict[str, Any]  # QM9Dataset kwargs
    qm9_model: dict[str, Any]  # QM9Dataset.build_model kwargs
    qm9_batch: int
    qm9_steps: int
    qm9_warmup: int
    batch_rounds: int
    nyuv2_resolution: tuple[int, int]
    nyuv2_batch: int
    nyuv2_train_files: int
    nyuv2_steps: int
    nyuv2_warmup: int
    nyuv2_modes: tuple[str, ...]
    packed_seconds: float
    packed_warmup_steps: int
    packed_timeout: float


FULL = Sizes(
    qm9={"subset": 2600},
    qm9_model={},
    qm9_batch=128,
    qm9_steps=15,
    qm9_warmup=5,
    batch_rounds=30,
    nyuv2_resolution=(288, 384),
    nyuv2_batch=8,
    nyuv2_train_files=10,
    nyuv2_steps=8,
    nyuv2_warmup=3,
    nyuv2_modes=EXACT_MODES,
    packed_seconds=30.0,
    packed_warmup_steps=20,
    packed_timeout=240.0,
)
SMALL = Sizes(
    qm9={"limit": 100},
    qm9_model={"dim": 16},
    qm9_batch=8,
    qm9_steps=1,
    qm9_warmup=1,
    batch_rounds=3,
    nyuv2_resolution=(32, 32),
    nyuv2_batch=2,
    nyuv2_train_files=4,
    nyuv2_steps=1,
    nyuv2_warmup=0,
    nyuv2_modes=("exact",),
    packed_seconds=0.5,
    packed_warmup_steps=1,
    packed_timeout=180.0,
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def rotated(items: Sequence[Any], r: int) -> list[Any]:
    shift = r % len(items)
    return [*items[shift:], *items[:shift]]


# -- QM9 batching ------------------------------------------------------------------------------------------
def qm9_batches(dataset: Any, device: torch.device, batch_size: int, rounds: int) -> dict[str, Any]:
    """Seconds per batch: the host loader plus its copy to ``device`` against the device-resident gather,
    alternating batch by batch (rotated start) over ``rounds`` epochs' first batches."""
    resident = dataset.device_loader(device)
    n = min(dataset.split_size("train") // batch_size, 8) or 1

    def host(epoch: int) -> None:
        for k, (graphs, targets) in enumerate(dataset.loader("train", batch_size, True, 0, epoch)):
            dataset.to_device(graphs, device), dataset.to_device(targets, device)
            if k + 1 >= n:
                break

    def gathered(epoch: int) -> None:
        for k, _ in enumerate(resident.loader("train", batch_size, True, 0, epoch)):
            if k + 1 >= n:
                break

    times: dict[str, list[float]] = {"host": [], "device": []}
    for r in range(rounds + 1):  # round 0: warm-up
        for name, fn in rotated([("host", host), ("device", gathered)], r):
            sync(device)
            t0 = time.perf_counter()
            fn(r)
            sync(device)
            if r:
                times[name].append((time.perf_counter() - t0) / n)
    host_s, device_s = statistics.median(times["host"]), statistics.median(times["device"])
    return {
        "batch_size": batch_size,
        "batches_per_round": n,
        "rounds": rounds,
        "resident_mib": resident.nbytes() / 2**20,
        "host_loader_s_per_batch": host_s,
        "device_gather_s_per_batch": device_s,
        "host_over_device": host_s / device_s,
    }


# -- timed steps (side_by_side's Bench: every step from the same weights) --------------------------------
def time_configs(bench: Bench, configs: list[Config], steps: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Median seconds per step of each configuration, interleaved round by round; IGBv2's SAC burst (every
    ``update_every`` steps) timed once and amortised."""
    for r in range(warmup + steps):
        for cfg in rotated(configs, r):
            dt, _ = bench.timed_step(cfg, k=r + 2)  # from 2: never an IGBv2 burst step
            if r >= warmup:
                cfg.times.append(dt)
    out: dict[str, dict[str, Any]] = {}
    for cfg in configs:
        burst = 0.0
        if cfg.epoch == 5:  # IGBv2 in its actor phase (side_by_side.make_config)
            balancer = cfg.method.balancer
            bench.sync()
            t0 = time.perf_counter()
            balancer.train_agent()
            bench.sync()
            cfg.sac_burst_s = time.perf_counter() - t0
            burst = cfg.sac_burst_s / balancer.update_every
        out.setdefault(cfg.method_name, {})[cfg.mode] = {
            "step_s": statistics.median(cfg.times) + burst,
            "steps_s": list(cfg.times),
            "sac_burst_s": cfg.sac_burst_s,
        }
    return out


def step_ratios(
    steps: dict[str, dict[str, dict[str, Any]]], modes: Sequence[str], pairs: Sequence[tuple[str, str]]
) -> dict[str, dict[str, float]]:
    """``{mode or "fastest": {"a/b": step_s(a) / step_s(b)}}``; "fastest" uses each method's fastest mode."""
    fastest = {m: min(steps[m][mode]["step_s"] for mode in modes) for m in steps}
    out: dict[str, dict[str, float]] = {}
    for mode in modes:
        out[mode] = {f"{a}/{b}": steps[a][mode]["step_s"] / steps[b][mode]["step_s"] for a, b in pairs}
    out["fastest"] = {f"{a}/{b}": fastest[a] / fastest[b] for a, b in pairs}
    return out


def buildable(names: Sequence[str], tasks: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The methods of ``names`` that can be built here, and why each other one cannot (e.g. Nash-MTL without
    its optional solver): a method the check cannot build is reported as skipped, never a crash."""
    from mtl.methods import build_method

    ok, skipped = [], {}
    for name in names:
        try:
            build_method(name, list(tasks))
        except Exception as exc:  # a missing optional solver, anything else: reported, not raised
            skipped[name] = f"{type(exc).__name__}: {exc}"
            continue
        ok.append(name)
    return ok, skipped


def tvjp_floor(bench: Bench, rounds: int, steps: dict[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """The T-VJP floor of the workload (:meth:`Bench.floor_times`: forward ``F``, one backward ``B``) and
    DB-MTL's step ratio to EW against it (each method in its fastest exact mode)."""
    forward, backward = bench.floor_times(rounds)
    tasks = len(bench.w.task_names)
    floor = (forward + tasks * backward) / (forward + backward)
    out: dict[str, Any] = {"forward_s": forward, "backward_s": backward, "tasks": tasks, "floor": floor}
    if "db_mtl" in methods and "ew" in methods:
        fastest = {m: min(v["step_s"] for v in steps[m].values()) for m in ("db_mtl", "ew")}
        out["db_mtl_over_ew"] = fastest["db_mtl"] / fastest["ew"]
        out["db_mtl_over_floor"] = out["db_mtl_over_ew"] / floor
    return out


def step_ops(bench: Bench, configs: Sequence[Config], k: int) -> dict[str, dict[str, int]]:
    """Per method (``exact`` mode): the kernels one step launches on a GPU (profiler CUDA events), or on a
    CPU the compute operators it dispatches (:func:`benchmarks.op_count.count_ops`, the proxy)."""
    from torch.profiler import ProfilerActivity, profile

    from benchmarks.op_count import count_ops

    cuda = bench.device.type == "cuda"
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    out: dict[str, dict[str, int]] = {}
    for cfg in configs:
        if cfg.mode != "exact":
            continue
        bench.restore()
        with profile(activities=activities) as prof:
            bench.step(cfg, k)
            bench.sync()
        counted = count_ops(prof.events())
        entry = {"ops": counted["ops"], "host_syncs": counted["host_syncs"]}
        if cuda:
            entry["kernels"] = sum(1 for e in prof.events() if e.device_type.name == "CUDA")
        out[cfg.method_name] = entry
    return out


def qm9_step(dataset: Any, device: torch.device, sizes: Sizes, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    graphs, targets = next(
        iter(dataset.device_loader(device).loader("train", sizes.qm9_batch, True, seed, 0))
    )
    names = list(dataset.task_names)
    workload = Workload(
        "mpnn",
        dataset.build_model(**sizes.qm9_model),
        graphs,
        lambda preds: dataset.losses(preds, targets),
        names,
        f"QM9 MPNN, batch {sizes.qm9_batch}",
    )
    bench = Bench(workload, device)
    methods, skipped = buildable(QM9_METHODS, names)
    configs = [make_config(workload, m, mode, seed, device) for mode in EXACT_MODES for m in methods]
    steps = time_configs(bench, configs, sizes.qm9_steps, sizes.qm9_warmup)
    return {
        "batch_size": sizes.qm9_batch,
        "nodes": int(graphs.num_nodes),
        "edges": int(graphs.edge_index.shape[1]),
        "shared_parameters": sum(p.numel() for p in bench.shared),
        "modes": list(EXACT_MODES),
        "methods": methods,
        "skipped": skipped,
        "steps": sizes.qm9_steps,
        "warmup": sizes.qm9_warmup,
        "step_s": steps,
        "fastest_mode": {m: min(EXACT_MODES, key=lambda mode: steps[m][mode]["step_s"]) for m in steps},
        "ratios": step_ratios(steps, EXACT_MODES, RATIO_PAIRS),
        "tvjp_floor": tvjp_floor(bench, sizes.qm9_steps, steps, methods),
        "ops_per_step": step_ops(bench, configs, k=2),
    }


# -- NYUv2 ---------------------------------------------------------------------------------------------------
def write_nyuv2_fixture(
    root: Path, n_train: int, n_test: int, resolution: tuple[int, int], seed: int
) -> Path:
    """Random samples in NYUv2's published layout (MTAN/LibMTL release): ``{train,val}/{image,label,depth,
    normal}/{i}.npy``; image H×W×3 float32 in [0, 1], label H×W float32 (13 classes, −1 ignore), depth
    H×W×1 float32 metres (0 invalid), normal H×W×3 float32 unit vectors (all-zero invalid)."""
    rng = np.random.default_rng(seed)
    h, w = resolution
    for folder, n in (("train", n_train), ("val", n_test)):
        for sub in ("image", "label", "depth", "normal"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            normal = rng.normal(size=(h, w, 3)).astype(np.float32)
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normal[rng.random((h, w)) < 0.1] = 0
            depth = (10 * rng.random((h, w, 1))).astype(np.float32)
            depth[rng.random((h, w, 1)) < 0.1] = 0
            arrays = {
                "image": rng.random((h, w, 3), dtype=np.float32),
                "label": rng.integers(-1, 13, size=(h, w)).astype(np.float32),
                "depth": depth,
                "normal": normal,
            }
            for sub, array in arrays.items():
                np.save(root / folder / sub / f"{i}.npy", array)
    return root


def nyuv2_step(device: torch.device, sizes: Sizes, seed: int, workdir: Path) -> dict[str, Any]:
    import warnings

    from mtl.data.nyuv2 import NYUv2

    root = write_nyuv2_fixture(workdir / "nyuv2", sizes.nyuv2_train_files, 1, sizes.nyuv2_resolution, seed)
    dataset = NYUv2(root=root, augment=False, resolution=sizes.nyuv2_resolution, val_fraction=0.1)
    images, targets = next(iter(dataset.loader("train", sizes.nyuv2_batch, shuffle=True, seed=seed, epoch=0)))
    if images.shape[0] != sizes.nyuv2_batch:
        raise RuntimeError(f"the NYUv2 fixture gave a batch of {images.shape[0]}, not {sizes.nyuv2_batch}")
    targets = {t: v.to(device) for t, v in targets.items()}
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random initialisation: timing only
        model = dataset.build_model("hps")
    names = list(dataset.task_names)
    workload = Workload(
        "deeplab",
        model,
        images,
        lambda preds: dataset.losses(preds, targets),
        names,
        "NYUv2 DeepLabV3+ (dilated ResNet-50) HPS",
    )
    bench = Bench(workload, device)
    configs = [
        make_config(workload, m, mode, seed, device) for mode in sizes.nyuv2_modes for m in NYUV2_METHODS
    ]
    steps = time_configs(bench, configs, sizes.nyuv2_steps, sizes.nyuv2_warmup)
    fastest = {m: min(steps[m][mode]["step_s"] for mode in sizes.nyuv2_modes) for m in steps}
    floor = tvjp_floor(bench, sizes.nyuv2_steps, steps, NYUV2_METHODS)
    return {
        "resolution": list(sizes.nyuv2_resolution),
        "batch_size": sizes.nyuv2_batch,
        "shared_parameters": sum(p.numel() for p in bench.shared),
        "modes": list(sizes.nyuv2_modes),
        "methods": list(NYUV2_METHODS),
        "steps": sizes.nyuv2_steps,
        "warmup": sizes.nyuv2_warmup,
        "step_s": steps,
        "images_per_s": {m: sizes.nyuv2_batch / fastest[m] for m in NYUV2_METHODS},
        "ratios": step_ratios(steps, sizes.nyuv2_modes, [("db_mtl", "ew")]),
        "tvjp_floor": floor,
        "ops_per_step": step_ops(bench, configs, k=2),
    }


# -- packed trials -------------------------------------------------------------------------------------------
class UtilisationSampler:
    """Samples ``nvidia-smi`` GPU utilisation (percent) with timestamps in a background thread."""

    def __init__(self, device: torch.device, period: float = 0.2) -> None:
        self.period = period
        self.samples: list[tuple[float, float]] = []
        index = device.index if device.index is not None else 0
        visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        gpu = visible[index].strip() if index < len(visible) else str(index)  # nvidia-smi sees every GPU
        self.command = [
            "nvidia-smi",
            f"--id={gpu}",
            "--query-gpu=utilization.gpu",
            "--format=csv,noheader,nounits",
        ]
        self.available = device.type == "cuda" and shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> UtilisationSampler:
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                text = subprocess.run(self.command, capture_output=True, text=True, timeout=5).stdout
                self.samples.append((time.time(), float(text.strip().splitlines()[0])))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.period)

    def mean(self, start: float, end: float) -> float | None:
        """Mean utilisation over ``[start, end]`` (epoch seconds); None without samples there."""
        inside = [u for t, u in self.samples if start <= t <= end]
        return statistics.fmean(inside) if inside else None


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One packed trial: the trainer on QM9 (device-resident batches), a few warm-up steps, a barrier with
    its siblings, then whole training epochs for ``packed_seconds``; writes its counts (steps, molecules:
    the last batch of an epoch may be partial) and its wall-clock window."""
    from mtl.config import TrainConfig
    from mtl.data import build_dataset
    from mtl.train import Trainer

    sizes = SMALL if args.small else FULL
    device = torch.device(args.device)
    if device.type == "cuda" and args.fraction < 1:
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(args.fraction, index)
    dataset = build_dataset("qm9", progress=False, **sizes.qm9)
    config = TrainConfig.from_dict(
        {
            "dataset": "qm9",
            "method": args.packed_method,
            "seed": args.seed,
            "epochs": 1,
            "batch_size": sizes.qm9_batch,
            "device": args.device,
            "device_batches": True,
            "grad_diagnostics": False,
            "dataset_kwargs": dict(sizes.qm9),
            "model_kwargs": dict(sizes.qm9_model),
        }
    )
    trainer = Trainer(config, dataset=dataset)
    trainer.config.max_steps_per_epoch = sizes.packed_warmup_steps
    trainer.train_epoch()  # warm-up (allocator, kernels)
    sync(device)
    barrier = Path(args.barrier)
    (barrier / f"ready-{os.getpid()}").touch()
    deadline = time.time() + sizes.packed_timeout
    while len(list(barrier.glob("ready-*"))) < args.barrier_count:
        if time.time() > deadline:
            raise TimeoutError("packed trials: siblings never became ready")
        time.sleep(0.01)
    trainer.config.max_steps_per_epoch = None
    steps = molecules = 0
    start = time.time()
    while time.time() - start < sizes.packed_seconds:
        steps += trainer.train_epoch()["steps"]  # train_epoch ends with a device-to-host read: synchronised
        molecules += dataset.split_size("train")  # a whole epoch
        trainer.epoch += 1
    end = time.time()
    out = {"steps": steps, "molecules": molecules, "start": start, "end": end}
    Path(args.worker_out).write_text(json.dumps(out))
    return out


def launch_trials(count: int, args: argparse.Namespace, workdir: Path, fraction: float) -> dict[str, Any]:
    """``count`` worker processes at once on the device; throughput over their common window."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"packed{count}-", dir=workdir))
    outs = [run_dir / f"worker{i}.json" for i in range(count)]
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--worker", "--device", args.device]
    command += ["--packed-method", args.packed_method, "--seed", str(args.seed), "--fraction", str(fraction)]
    command += ["--barrier", str(run_dir), "--barrier-count", str(count)] + (
        ["--small"] if args.small else []
    )
    env = dict(os.environ)
    if args.small:
        env.setdefault("OMP_NUM_THREADS", "1")
    sizes = SMALL if args.small else FULL
    device = torch.device(args.device)
    with UtilisationSampler(device) as sampler:
        logs = [o.with_suffix(".log") for o in outs]  # files, not pipes: a full pipe would stall a worker
        procs = []
        for o, log_path in zip(outs, logs, strict=True):
            with open(log_path, "w") as log_file:
                procs.append(
                    subprocess.Popen(
                        [*command, "--worker-out", str(o)], env=env, stdout=log_file, stderr=subprocess.STDOUT
                    )
                )
        deadline = time.time() + sizes.packed_timeout + 60
        errors = []
        for p, log_path in zip(procs, logs, strict=True):
            try:
                p.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.returncode != 0:
                errors.append(log_path.read_text()[-2000:])
    if errors:
        raise RuntimeError(f"packed trial worker(s) failed:\n{errors[0]}")
    workers = [json.loads(o.read_text()) for o in outs]
    start, end = min(w["start"] for w in workers), max(w["end"] for w in workers)
    molecules = sum(w["molecules"] for w in workers)
    return {
        "trials": count,
        "gpu_fraction": fraction,
        "wall_s": end - start,
        "molecules": molecules,
        "molecules_per_s": molecules / (end - start),
        "utilization_percent": sampler.mean(start, end),
        "workers": workers,
    }


def packed(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    alone = launch_trials(1, args, workdir, fraction=1.0)
    together = launch_trials(PACKED_TRIALS, args, workdir, fraction=PACKED_FRACTION)
    return {
        "method": args.packed_method,
        "batch_size": (SMALL if args.small else FULL).qm9_batch,
        "alone": alone,
        "packed": together,
        "packed_over_alone": together["molecules_per_s"] / alone["molecules_per_s"],
    }


# -- the run -------------------------------------------------------------------------------------------------
def goals(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's targets on the H200 against what was measured (no verdict from a CPU or ``--small``)."""
    q = out["qm9_step"]
    at_most = {
        "qm9_ew_step_ms": 1e3 * min(v["step_s"] for v in q["step_s"]["ew"].values()),
        "qm9_db_mtl_over_ew": q["ratios"]["fastest"]["db_mtl/ew"],
        "qm9_igbv2_over_ew": q["ratios"]["fastest"]["igbv2/ew"],
        "nyuv2_db_mtl_over_floor": out["nyuv2_step"]["tvjp_floor"]["db_mtl_over_floor"],
    }
    at_least = {"packed_molecules_per_s": out["packed"]["packed"]["molecules_per_s"]}
    on_gpu = out["meta"]["device_type"] == "cuda" and not out["meta"]["small"]

    def verdict(ok: bool) -> bool | None:
        return ok if on_gpu else None  # GPU goals: no verdict from a CPU or a --small run

    result = {
        k: {"target_at_most": GOALS_AT_MOST[k], "measured": v, "met": verdict(v <= GOALS_AT_MOST[k])}
        for k, v in at_most.items()
    }
    for k, v in at_least.items():
        target = GOALS_AT_LEAST[k]
        result[k] = {"target_at_least": target, "measured": v, "met": verdict(v >= target)}
    return result


def check_consistency(out: dict[str, Any]) -> None:
    """Raise ValueError unless every time is positive and finite and every ratio is its quotient (for the
    sections ``out`` holds)."""

    def positive(value: float, where: str) -> None:
        if not (isinstance(value, float) and math.isfinite(value) and value > 0):
            raise ValueError(f"{where}: {value!r} is not a positive finite number")

    if "qm9_batches" in out:
        b = out["qm9_batches"]
        for key in ("host_loader_s_per_batch", "device_gather_s_per_batch", "host_over_device"):
            positive(b[key], f"qm9_batches {key}")
        if not math.isclose(
            b["host_over_device"],
            b["host_loader_s_per_batch"] / b["device_gather_s_per_batch"],
            rel_tol=1e-12,
        ):
            raise ValueError("qm9_batches host_over_device is not the quotient of the times")
    for section, methods in (("qm9_step", QM9_METHODS), ("nyuv2_step", NYUV2_METHODS)):
        if section not in out:
            continue
        s = out[section]
        expected = [m for m in methods if m not in s.get("skipped", {})]  # skipped: not buildable here
        if sorted(s["step_s"]) != sorted(expected):
            raise ValueError(f"{section}: methods {sorted(s['step_s'])}, expected {sorted(expected)}")
        floor = s.get("tvjp_floor")
        if floor is not None:
            for key in ("forward_s", "backward_s", "floor"):
                positive(floor[key], f"{section} tvjp_floor {key}")
            expect = (floor["forward_s"] + floor["tasks"] * floor["backward_s"]) / (
                floor["forward_s"] + floor["backward_s"]
            )
            if not math.isclose(floor["floor"], expect, rel_tol=1e-12):
                raise ValueError(f"{section} tvjp_floor is not (F + T·B) / (F + B)")
        for m, by_mode in s["step_s"].items():
            for mode in s["modes"]:
                positive(by_mode[mode]["step_s"], f"{section} {m}/{mode}")
        for key, ratios in s["ratios"].items():
            for pair, value in ratios.items():
                a, b = pair.split("/")
                if key == "fastest":
                    num = min(s["step_s"][a][mode]["step_s"] for mode in s["modes"])
                    den = min(s["step_s"][b][mode]["step_s"] for mode in s["modes"])
                else:
                    num, den = s["step_s"][a][key]["step_s"], s["step_s"][b][key]["step_s"]
                positive(value, f"{section} {key} {pair}")
                if not math.isclose(value, num / den, rel_tol=1e-12):
                    raise ValueError(f"{section} {key} {pair} = {value}, but the times give {num / den}")
    if "nyuv2_step" in out:
        s = out["nyuv2_step"]
        for m in NYUV2_METHODS:
            best = min(s["step_s"][m][mode]["step_s"] for mode in s["modes"])
            if not math.isclose(s["images_per_s"][m], s["batch_size"] / best, rel_tol=1e-12):
                raise ValueError(f"nyuv2_step images_per_s[{m}] is not batch_size / step_s")
    if "packed" not in out:
        return
    p = out["packed"]
    for key in ("alone", "packed"):
        positive(p[key]["molecules_per_s"], f"packed {key} molecules_per_s")
        if not math.isclose(p[key]["molecules_per_s"], p[key]["molecules"] / p[key]["wall_s"], rel_tol=1e-12):
            raise ValueError(f"packed {key}: molecules_per_s is not molecules / wall_s")
    positive(p["packed_over_alone"], "packed_over_alone")
    if not math.isclose(
        p["packed_over_alone"], p["packed"]["molecules_per_s"] / p["alone"]["molecules_per_s"]
    ):
        raise ValueError("packed_over_alone is not the quotient of the throughputs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--small", action="store_true", help="tiny shapes and few steps (CPU tests)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--packed-method", default="ew", help="the method the packed QM9 trials train")
    p.add_argument(
        "--sections",
        default="qm9_batches,qm9_step,nyuv2_step,packed",
        help="comma-separated subset of the sections (default: all)",
    )
    # worker mode (one packed trial; started by the script itself)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--barrier", default=None, help=argparse.SUPPRESS)
    p.add_argument("--barrier-count", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    return p


SECTIONS = ("qm9_batches", "qm9_step", "nyuv2_step", "packed")


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.worker:
        return run_worker(args)
    sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; valid: {', '.join(SECTIONS)}")
    for name in (*QM9_METHODS, args.packed_method):
        parse_method(name)  # a bad name fails before any work
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here (use --device cpu --small for a dry run)")
    sizes = SMALL if args.small else FULL
    if args.small and device.type == "cpu":
        torch.set_num_threads(1)  # tiny shapes on a shared CPU: threads only wait on each other
    t_start = time.perf_counter()
    out: dict[str, Any] = {
        "meta": {
            "device": device_name(device),
            "device_type": device.type,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "small": bool(args.small),
            "threads": torch.get_num_threads(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "qm9": dict(sizes.qm9),
            "sections": sections,
        }
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, args.out)

    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        workdir = Path(tmp)
        if {"qm9_batches", "qm9_step", "packed"} & set(sections):
            from mtl.data import build_dataset

            t0 = time.perf_counter()
            dataset = build_dataset("qm9", progress=not args.small, **sizes.qm9)
            out["meta"]["qm9_build_s"] = time.perf_counter() - t0
            out["meta"]["qm9_molecules"] = {s: dataset.split_size(s) for s in ("train", "val", "test")}
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("qm9_batches", lambda: qm9_batches(dataset, device, sizes.qm9_batch, sizes.batch_rounds)),
            ("qm9_step", lambda: qm9_step(dataset, device, sizes, args.seed)),
            ("nyuv2_step", lambda: nyuv2_step(device, sizes, args.seed, workdir)),
            ("packed", lambda: packed(args, workdir)),
        ]
        for name, fn in steps:
            if name not in sections:
                continue
            t0 = time.perf_counter()
            out[name] = fn()
            out[name]["section_s"] = time.perf_counter() - t0
            log(f"{name}: {out[name]['section_s']:.1f}s")
            save()
    check_consistency(out)
    if set(SECTIONS) <= set(sections):
        out["goals"] = goals(out)
    out["meta"]["wall_s"] = time.perf_counter() - t_start
    save()
    log(summary(out))
    return out


def summary(out: dict[str, Any]) -> str:
    """A few lines for the log (the JSON holds everything)."""
    lines = [f"{out['meta']['device']} ({out['meta']['device_type']}), {out['meta']['wall_s']:.0f} s"]
    if "qm9_batches" in out:
        b = out["qm9_batches"]
        lines.append(
            f"QM9 batch: host loader {b['host_loader_s_per_batch'] * 1e3:.2f} ms, device gather "
            f"{b['device_gather_s_per_batch'] * 1e3:.2f} ms ({b['host_over_device']:.2f}x)"
        )
    for section in ("qm9_step", "nyuv2_step"):
        if section in out:
            for mode, ratios in out[section]["ratios"].items():
                text = ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
                lines.append(f"{section} [{mode}]: {text}")
    if "nyuv2_step" in out:
        ips = out["nyuv2_step"]["images_per_s"]
        lines.append("NYUv2 images/s: " + ", ".join(f"{m} {v:.1f}" for m, v in ips.items()))
    if "packed" in out:
        p = out["packed"]
        lines.append(
            f"packed: {p['packed']['molecules_per_s']:.0f} vs {p['alone']['molecules_per_s']:.0f} "
            f"molecules/s ({p['packed_over_alone']:.2f}x); utilisation "
            f"{p['packed']['utilization_percent']} vs {p['alone']['utilization_percent']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
