"""A synthetic *fair* study (issue 22): every (method, configuration) × 3 seeds, paper defaults marked.

Dataset ``fairsyn`` (tasks t0, t1; metric mae, lower is better; published reference t0 = 1, t1 = 2). Methods
``ew``, ``static``, ``db_mtl`` and ``famo`` (``famo`` has no paper-default rows), each with configurations
``lr`` ∈ {1e-3 (the paper default), 3e-3, 1e-2}, seeds 0-2, 5 epochs, written by the project's own
:class:`results_store.writer.ResultsWriter`; the trial rows then get the study side's new columns
``paper_default`` (bool), ``config_id`` (str), ``cpus``/``gpus`` (``famo`` rows store no ``cpus``, so
1 CPU is assumed for them). Per-epoch values are seeded pseudo-random around a per-(method, configuration)
level, so the best validation epoch and the last-k mean differ. ``db_mtl``'s tuned configuration beats
tuned ``ew`` on every seed by construction (level +6 vs ≤ +1, noise ±1).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from results_store.identity import TrialInfo
from results_store.writer import ResultsWriter

STUDY = "fair"
DATASET = "fairsyn"
REF = {"t0": 1.0, "t1": 2.0}
EPOCHS = 5
SEEDS = (0, 1, 2)
LRS = (1e-3, 3e-3, 1e-2)
DEFAULT_LR = 1e-3
PARTS = {"ew": ("ew", None), "static": ("static", None), "db_mtl": ("si", "max_norm"), "famo": ("famo", None)}
# level of Δp (%) per (method, lr): the validation and test values scatter around it
LEVEL = {
    "ew": {1e-3: 0.0, 3e-3: 1.0, 1e-2: -2.0},
    "static": {1e-3: -1.0, 3e-3: 2.0, 1e-2: 0.5},
    "db_mtl": {1e-3: 3.0, 3e-3: 6.0, 1e-2: 1.0},
    "famo": {1e-3: 2.0, 3e-3: -3.0, 1e-2: 4.0},
}
CPUS = {"ew": 2, "static": 2, "db_mtl": 4, "famo": None}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _metrics(level: float, rng: np.random.Generator) -> dict[str, float]:
    """Task metrics (mae) whose Δp against ``REF`` scatters around ``level``."""
    out = {}
    for task, ref in REF.items():
        improvement = (level + rng.uniform(-1.0, 1.0)) / 100.0
        out[task] = round(ref * (1.0 - improvement), 6)
    return out


def _dp(metrics: dict[str, float]) -> float:
    return 100.0 * float(np.mean([-(metrics[t] - r) / r for t, r in REF.items()]))


def records(method: str, lr: float, seed: int) -> list[dict]:
    rng = np.random.default_rng([list(PARTS).index(method), LRS.index(lr), seed])
    level = LEVEL[method][lr]
    out = []
    for epoch in range(EPOCHS):
        val, test = _metrics(level, rng), _metrics(level, rng)
        rec = {"epoch": epoch, "lr": lr, "steps": 10, "time_epoch": 1.0 + 0.1 * epoch}
        rec.update({"time_train": 0.8, "time_eval": 0.2})
        for task in REF:
            rec[f"val/{task}/mae"] = val[task]
            rec[f"test/{task}/mae"] = test[task]
            rec[f"train_loss/{task}"] = 1.0 / (epoch + 1)
        rec["val_delta_p"], rec["test_delta_p"] = _dp(val), _dp(test)
        rec["val_delta_m"], rec["test_delta_m"] = -_dp(val), -_dp(test)
        out.append(rec)
    return out


def config_id(method: str, lr: float) -> str:
    return f"{method}-c{LRS.index(lr)}"


def write_fair_study(root: str) -> str:
    """Write the study under ``root``; returns its folder."""
    w = ResultsWriter(root, STUDY)
    index = 0
    for method, (balancer, aggregator) in PARTS.items():
        for lr in LRS:
            for seed in SEEDS:
                trial_id = f"{method}_lr{LRS.index(lr)}_s{seed}"
                info = TrialInfo(
                    STUDY,
                    DATASET,
                    method,
                    trial_id,
                    seed,
                    {"lr": lr},
                    {"lr": "float"},
                    balancer=balancer,
                    aggregator=aggregator,
                    directions={f"{t}/mae": False for t in REF},
                )
                recs = records(method, lr, seed)
                for rec in recs:
                    w.write_epoch(info, rec, host="n", device="cpu", node_id="n")
                start = T0 + dt.timedelta(minutes=10 * index)
                minutes = 2 + index % 5  # trial wall time: 2-6 minutes
                path = w.write_trial(
                    info,
                    status="completed",
                    records=recs,
                    max_epochs=EPOCHS,
                    wall_time=60.0 * minutes,
                    host="n",
                    device="cpu",
                    node_id="n",
                    started_at=start,
                    ended_at=start + dt.timedelta(minutes=minutes),
                )
                _add_columns(w, path, lr == DEFAULT_LR and method != "famo", config_id(method, lr), method)
                index += 1
    return w.root


def _add_columns(writer: ResultsWriter, path: str, default: bool, cid: str, method: str) -> None:
    """The study side's new trial columns, added to the row as the writer wrote it."""
    table = pq.read_table(path, filesystem=writer.fs)
    for name in ("paper_default", "config_id", "cpus", "gpus"):
        if name in table.column_names:
            table = table.drop_columns([name])
    table = table.append_column(pa.field("paper_default", pa.bool_()), pa.array([default]))
    table = table.append_column(pa.field("config_id", pa.string()), pa.array([cid]))
    if CPUS[method] is not None:
        table = table.append_column(pa.field("cpus", pa.float64()), pa.array([float(CPUS[method])]))
    table = table.append_column(pa.field("gpus", pa.float64()), pa.array([0.0]))
    with writer.fs.open_output_stream(path) as out:
        pq.write_table(table, out)
