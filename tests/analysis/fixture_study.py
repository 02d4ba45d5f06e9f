"""A small study written by the project's own :class:`results_store.writer.ResultsWriter`, with hand-chosen
numbers.

``synthetic`` (tasks t0, t1; metric mae, lower is better; STL reference t0 = 1, t1 = 2; CPU):
  ew, si, max_norm: one configuration, seeds 0-2, completed;
  db_mtl: configurations C1-C5 (β, σ, α strategy) × seeds 0-2, completed; C2 has the best *test* results but
  not the best validation Δp (selection must use validation); one stopped trial (β = 0.1) and one failed
  trial (β = 0.1, σ = 0.5), both with a validation Δp higher than every completed trial.
``toy_cls`` (tasks a, b; metric acc, higher is better; reference a = 80, b = 90; GPU):
  ew seeds 0-1 completed; db_mtl seed 0 completed and seed 1 running; igbv1 only a stopped trial;
  rlw only a failed trial that wrote nothing but its trial row.

Every trial's test metrics at its best validation epoch are given below (``TEST``); other epochs get worse
metrics, so a table that read the wrong epoch would show it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from results_store.identity import TrialInfo
from results_store.writer import ResultsWriter

STUDY = "fixture"
HP_TYPES = {"beta": "float", "beta_sigma": "float", "alpha_strategy": "str"}
REF = {"synthetic": {"t0": 1.0, "t1": 2.0}, "toy_cls": {"a": 80.0, "b": 90.0}}
HIGHER = {"synthetic": False, "toy_cls": True}
METRIC = {"synthetic": "mae", "toy_cls": "acc"}
DEVICE = {"synthetic": "cpu", "toy_cls": "cuda:0 (NVIDIA H100 80GB HBM3)"}
# each method's (balancer, aggregator), as study.trial stores them (mtl.methods.parse_method)
PARTS = {
    "ew": ("ew", None),
    "si": ("si", None),
    "max_norm": ("ew", "max_norm"),
    "db_mtl": ("si", "max_norm"),
    "igbv1": ("igbv1", None),
    "rlw": ("rlw", None),
}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # the study's first trial starts here
NODES = ("node-a", "node-b")
TIMES = {  # seconds per epoch, per (dataset, method)
    ("synthetic", "ew"): (0.9, 1.0, 1.1),
    ("synthetic", "si"): (0.9, 1.0, 1.1),
    ("synthetic", "max_norm"): (1.8, 2.0, 2.2),
    ("synthetic", "db_mtl"): (2.7, 3.0, 3.3),
    ("toy_cls", "ew"): (10.0, 10.0, 10.0),
    ("toy_cls", "db_mtl"): (20.0, 20.0, 20.0),
    ("toy_cls", "igbv1"): (15.0, 15.0, 15.0),
}

C1 = {"beta": 0.5, "beta_sigma": 0.0, "alpha_strategy": "max"}
C2 = {"beta": 0.9, "beta_sigma": 0.0, "alpha_strategy": "max"}
C3 = {"beta": 0.5, "beta_sigma": 0.5, "alpha_strategy": "max"}
C4 = {"beta": 0.9, "beta_sigma": 0.5, "alpha_strategy": "max"}
C5 = {"beta": 0.5, "beta_sigma": 0.0, "alpha_strategy": "mean"}
C_STOP = {"beta": 0.1, "beta_sigma": 0.0, "alpha_strategy": "max"}
C_FAIL = {"beta": 0.1, "beta_sigma": 0.5, "alpha_strategy": "max"}


@dataclass
class Spec:
    dataset: str
    method: str
    name: str  # configuration name
    hp: dict
    seed: int
    test: tuple[float, float]  # test metrics at the best validation epoch
    best_val: float  # val Δp at the best validation epoch
    status: str = "completed"
    epochs: int = 3
    best_epoch: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def trial_id(self) -> str:
        return f"{self.method}_{self.name}_s{self.seed}"


def delta_p(dataset: str, metrics: tuple[float, float]) -> float:
    """Δp (DB-MTL Eq. 3-4) against ``REF`` by hand."""
    sign = 1.0 if HIGHER[dataset] else -1.0
    refs = list(REF[dataset].values())
    return 100.0 * sum(sign * (m - r) / r for m, r in zip(metrics, refs)) / len(refs)


def specs() -> list[Spec]:
    s = []
    for seed, test in enumerate([(1.0, 2.0), (1.1, 2.2), (0.9, 2.4)]):  # Δp 0, -10, -5
        s.append(
            Spec(
                "synthetic",
                "ew",
                "c0",
                {},
                seed,
                test,
                best_val=-2.0 - seed,
                best_epoch=2 if seed == 0 else 1,
            )
        )
    for seed, test in enumerate([(0.9, 2.0), (1.0, 1.9), (0.95, 2.1)]):  # Δp 5, 2.5, 0
        s.append(Spec("synthetic", "si", "c0", {}, seed, test, best_val=1.0))
    for seed, test in enumerate([(1.0, 1.8), (0.9, 2.0), (1.0, 2.0)]):  # Δp 5, 5, 0
        s.append(Spec("synthetic", "max_norm", "c0", {}, seed, test, best_val=1.5))
    db = [
        ("c1", C1, [4.0, 5.0, 6.0], [(0.8, 1.8), (0.9, 1.8), (0.85, 1.9)]),  # Δp 15, 10, 10
        ("c2", C2, [1.0, 2.0, 3.0], [(0.5, 1.0)] * 3),  # Δp 50: best on test, not on validation
        ("c3", C3, [3.0, 3.0, 3.0], [(0.9, 1.9)] * 3),  # Δp 7.5
        ("c4", C4, [0.0, 1.0, 2.0], [(1.0, 2.0)] * 3),  # Δp 0
        ("c5", C5, [2.0, 2.0, 2.0], [(0.95, 1.95)] * 3),  # Δp 3.75
    ]
    for name, hp, vals, tests in db:
        for seed in range(3):
            s.append(Spec("synthetic", "db_mtl", name, hp, seed, tests[seed], best_val=vals[seed]))
    s.append(Spec("synthetic", "db_mtl", "stop", C_STOP, 0, (0.7, 1.5), 10.0, status="stopped", epochs=2))
    s.append(
        Spec(
            "synthetic",
            "db_mtl",
            "fail",
            C_FAIL,
            0,
            (0.6, 1.2),
            20.0,
            status="failed",
            epochs=2,
            best_epoch=0,
        )
    )
    for seed, test in enumerate([(80.0, 90.0), (84.0, 90.0)]):  # Δp 0, 2.5
        s.append(Spec("toy_cls", "ew", "c0", {}, seed, test, best_val=1.0))
    s.append(Spec("toy_cls", "db_mtl", "c1", C1, 0, (88.0, 99.0), 5.0))  # Δp 10
    s.append(Spec("toy_cls", "db_mtl", "c1", C1, 1, (84.0, 94.5), 4.0, status="running", epochs=2))  # Δp 5
    s.append(Spec("toy_cls", "igbv1", "c0", {}, 0, (82.0, 91.8), 3.0, status="stopped", epochs=2))  # Δp 2.25
    s.append(Spec("toy_cls", "rlw", "c0", {}, 0, (0.0, 0.0), math.nan, status="failed", epochs=0))
    return s


def _records(spec: Spec) -> list[dict]:
    tasks = list(REF[spec.dataset])
    worse = -5.0 if HIGHER[spec.dataset] else 0.5
    times = TIMES.get((spec.dataset, spec.method), (1.0, 1.0, 1.0))
    records = []
    for epoch in range(spec.epochs):
        best = epoch == spec.best_epoch
        test = spec.test if best else tuple(m + worse for m in spec.test)
        val_dp = spec.best_val if best else spec.best_val - 1.0 - epoch
        rec = {
            "epoch": epoch,
            "lr": 1e-3,
            "steps": 10,
            "time_train": times[epoch] * 0.8,
            "time_eval": times[epoch] * 0.2,
            "time_epoch": times[epoch],
            "val_delta_p": val_dp,
            "val_delta_m": -val_dp,
            "test_delta_p": delta_p(spec.dataset, test),
            "test_delta_m": -delta_p(spec.dataset, test),
        }
        per_task = spec.method in ("max_norm", "db_mtl", "igbv1")
        for i, (task, ref) in enumerate(REF[spec.dataset].items()):
            rec[f"test/{task}/{METRIC[spec.dataset]}"] = test[i]
            rec[f"val/{task}/{METRIC[spec.dataset]}"] = ref * (
                1 + (1 if HIGHER[spec.dataset] else -1) * val_dp / 100
            )
            rec[f"train_loss/{task}"] = (i + 1) / (epoch + 1)
            rec[f"val_loss/{task}"] = (i + 1) / (epoch + 1.5)
            rec[f"weight/{task}"] = 1.0
            rec[f"grad_norm/{task}"] = 10.0 ** (1 - i) / (epoch + 1) if per_task else math.nan
        rec["grad_cos"] = 0.1 * epoch - 0.05 if per_task else math.nan
        records.append(rec)
    if spec.status == "failed" and records:  # the last epoch went non-finite
        records[-1]["val_delta_p"] = math.nan
        records[-1][f"train_loss/{tasks[0]}"] = math.nan
    return records


def schedule(index: int, spec: Spec) -> tuple[dt.datetime, dt.datetime | None, str]:
    """(started_at, ended_at, node) of the ``index``-th trial: two nodes take trials in turn, a trial every
    100 s on each (node-b 1 s later), each running its wall time (< 100 s); running trials have no end."""
    node = NODES[index % 2]
    start = T0 + dt.timedelta(seconds=100.0 * (index // 2) + (index % 2))
    if spec.status == "running":
        return start, None, node
    return start, start + dt.timedelta(seconds=wall_time(spec)), node


def wall_time(spec: Spec) -> float:
    return sum(r["time_epoch"] for r in _records(spec)) + 1.0


def write_study(root: str) -> str:
    """Write the fixture study under ``root``; returns the study folder."""
    w = ResultsWriter(root, STUDY)
    for index, spec in enumerate(specs()):
        metric = METRIC[spec.dataset]
        directions = {f"{task}/{metric}": HIGHER[spec.dataset] for task in REF[spec.dataset]}
        balancer, aggregator = PARTS[spec.method]
        info = TrialInfo(
            STUDY,
            spec.dataset,
            spec.method,
            spec.trial_id,
            spec.seed,
            spec.hp,
            HP_TYPES,
            balancer=balancer,
            aggregator=aggregator,
            directions=directions,
        )
        records = _records(spec)
        device = DEVICE[spec.dataset]
        started, ended, node = schedule(index, spec)
        for i, rec in enumerate(records):
            bad = spec.status == "failed" and i == len(records) - 1
            w.write_epoch(
                info, rec, status="nonfinite" if bad else "ok", host=node, device=device, node_id=node
            )
        error = "non-finite metric: epoch 1: val_delta_p" if spec.status == "failed" else None
        w.write_trial(
            info,
            status=spec.status,
            records=records,
            error=error,
            max_epochs=3,
            wall_time=wall_time(spec),
            host=node,
            device=device,
            node_id=node,
            started_at=started,
            ended_at=ended,
            train_config={"seed": spec.seed},
        )
    return w.root


def trials_of(dataset: str, method: str, name: str | None = None) -> list[Spec]:
    """The specs of a (dataset, method[, configuration]), completed or running only."""
    return [
        s
        for s in specs()
        if s.dataset == dataset
        and s.method == method
        and (name is None or s.name == name)
        and s.status in ("completed", "running")
    ]
