"""Reading a paper-scale study's results before and after compaction (DESIGN §6), in one run.

Builds a study shaped like ``search_spaces/paper_qm9.yaml`` — its 24 methods × 3 seeds = 72 trials on QM9's
11 tasks, ``--epochs`` epochs each (default 280: about 20,000 epoch rows) — with the project's own writer
(:class:`results_store.writer.ResultsWriter`, the realistic columns of an ``mtl.train`` record: per-task train
loss, weight, gradient norm, validation loss, validation and test MAE, Δp/Δm, times), one Parquet file per
(trial, epoch) as trials write them. Then it times, as a user runs them (each command a fresh process, so
Python start-up and imports count):

* ``study status PATH`` and ``analysis leaderboard PATH`` (the issue's goal: ≤ 2 s on the 2-core machine);
* ``analysis delta-m PATH``, which reads every epoch row (the IGB time column);
* and the same work in this (warm) process, without Python start-up and imports: the part the results
  layout decides (``study status`` imports torch to re-validate ``study.yaml`` and Ray to read Tune's
  state, which costs seconds on its own);

once on the per-epoch files, then ``study compact PATH`` (timed), then the same again on one file per trial.

Run::

    python -m benchmarks.results_scale --out benchmarks/results/results_scale_cpu.json

(``--epochs 20`` for a quick look; building 20,000 files takes a minute or two on 2 cores.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STUDY_FILE = ROOT / "search_spaces" / "paper_qm9.yaml"
TASKS = ("mu", "alpha", "homo", "lumo", "r2", "zpve", "u0", "u", "h", "g", "cv")


def _study():
    from study.schema import load_study

    return load_study(STUDY_FILE, storage="unused")


def _record(epoch: int, rng: random.Random, per_task_grads: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "epoch": epoch,
        "lr": 1e-3 * 0.7 ** (epoch // 50),
        "steps": 860,
        "time_train": 40.0 + rng.random(),
        "time_eval": 4.0 + rng.random(),
        "val_delta_p": -50.0 + 40.0 * (1 - math.exp(-epoch / 60)) + rng.gauss(0, 1),
        "test_delta_p": -52.0 + 40.0 * (1 - math.exp(-epoch / 60)) + rng.gauss(0, 1),
        "val_delta_m": 50.0 - 40.0 * (1 - math.exp(-epoch / 60)),
        "test_delta_m": 52.0 - 40.0 * (1 - math.exp(-epoch / 60)),
        "grad_cos": rng.uniform(-0.1, 0.3) if per_task_grads else math.nan,
    }
    rec["time_epoch"] = rec["time_train"] + rec["time_eval"]
    for task in TASKS:
        rec[f"train_loss/{task}"] = rng.uniform(0.01, 1.0)
        rec[f"weight/{task}"] = rng.uniform(0.5, 1.5)
        rec[f"grad_norm/{task}"] = rng.uniform(0.1, 10.0) if per_task_grads else math.nan
        rec[f"val_loss/{task}"] = rng.uniform(0.01, 1.0)
        rec[f"val/{task}/mae"] = rng.uniform(0.01, 100.0)
        rec[f"test/{task}/mae"] = rng.uniform(0.01, 100.0)
    return rec


def _write_trial(args: tuple[str, str, str, str, int, int, int, str | None, dict[str, Any]]) -> int:
    """Write one trial's epoch files and its trials/ row (run in a worker process)."""
    from results_store.identity import TrialInfo
    from results_store.writer import ResultsWriter

    storage, study, method, balancer, aggregator_seed, seed, epochs, aggregator, timing = args
    rng = random.Random(aggregator_seed)
    info = TrialInfo(
        study,
        "qm9",
        method,
        f"{method.replace('+', '_')}_{seed:05d}",
        seed,
        balancer=balancer,
        aggregator=aggregator,
        directions={f"{task}/mae": False for task in TASKS},
    )
    writer = ResultsWriter(storage, study)
    records = []
    for epoch in range(epochs):
        record = _record(epoch, rng, aggregator is not None)
        writer.write_epoch(info, record, host=timing["host"], device="cuda:0", node_id=timing["node"])
        records.append(record)
    writer.write_trial(
        info,
        status="completed",
        records=records,
        max_epochs=epochs,
        wall_time=sum(r["time_epoch"] for r in records),
        host=timing["host"],
        device="cuda:0",
        node_id=timing["node"],
        started_at=timing["start"],
        ended_at=timing["end"],
    )
    return epochs


def build(storage: str, epochs: int, workers: int) -> tuple[str, int]:
    """Write the study under ``storage``; returns (study folder, epoch rows)."""
    from mtl.methods import parse_method

    study = _study()
    location = Path(storage) / study.name
    location.mkdir(parents=True, exist_ok=True)
    (location / "study.yaml").write_text(study.model_copy(update={"storage": storage}).to_yaml())
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    jobs = []
    for i, group in enumerate(study.groups()):
        spec = parse_method(group.method)
        for seed in study.seeds:
            k = len(jobs)
            start = t0 + dt.timedelta(hours=10 * (k // 8))
            timing = {"host": f"gpu{k % 2}", "node": f"node{k % 2}", "start": start}
            timing["end"] = start + dt.timedelta(hours=9)
            jobs.append(
                (
                    storage,
                    study.name,
                    group.method,
                    spec.balancer,
                    1000 * i + seed,
                    seed,
                    epochs,
                    spec.aggregator,
                    timing,
                )
            )
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = sum(pool.map(_write_trial, jobs))
    return str(location), rows


def timed_command(argv: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def _in_process(location: str) -> dict[str, float]:
    """The results work each command does, timed in this (warm) process: what compaction changes."""
    from analysis.load import load_study
    from analysis.render import render
    from analysis.tables import delta_m_table, leaderboard
    from results_store.reader import read_epochs, read_trials
    from study.runner import describe_best, status_table

    def timed(work) -> float:
        t = time.perf_counter()
        work()
        return time.perf_counter() - t

    def status() -> None:
        trials = read_trials(location)
        status_table(trials).to_string()
        describe_best(trials)

    def board() -> None:
        study = load_study(location)
        for dataset in study.datasets:
            render(leaderboard(study, dataset))

    def delta_m() -> None:
        study = load_study(location)
        for dataset in study.datasets:
            render(delta_m_table(study, dataset))

    read_trials(location)  # warm-up: first use of pyarrow's dataset machinery
    return {
        "status: read + tables (in process)": timed(status),
        "leaderboard: read + table (in process)": timed(board),
        "delta-m: read epochs + table (in process)": timed(delta_m),
        "read_epochs (in process)": timed(lambda: read_epochs(location)),
    }


def measure(location: str) -> dict[str, float]:
    py = sys.executable
    out = {
        "`study status` (command)": timed_command([py, "-m", "study.cli", "status", location]),
        "`analysis leaderboard` (command)": timed_command([py, "-m", "analysis", "leaderboard", location]),
        "`analysis delta-m` (command)": timed_command([py, "-m", "analysis", "delta-m", location]),
    }
    out.update(_in_process(location))
    return out


def count_files(location: str) -> int:
    return sum(1 for _ in Path(location, "epochs").rglob("*.parquet"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=280, help="epochs per trial (72 trials)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes writing")
    parser.add_argument("--storage", default=None, help="where to build the study (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    from results_store.compaction import compact_study

    with tempfile.TemporaryDirectory(prefix="results-scale-") as tmp:
        storage = args.storage or tmp
        t = time.perf_counter()
        location, rows = build(storage, args.epochs, args.workers)
        built = time.perf_counter() - t
        files_before = count_files(location)
        print(f"built {location}: {rows} epoch rows in {files_before} files ({built:.0f} s)", flush=True)
        before = measure(location)
        t = time.perf_counter()
        report = compact_study(location)
        compact_s = time.perf_counter() - t
        print(f"study compact: {report.summary()} ({compact_s:.1f} s)", flush=True)
        files_after = count_files(location)
        after = measure(location)
    print(f"\n{'':44s} {'per-epoch files':>16s} {'compacted':>12s}")
    print(f"{'epoch files':44s} {files_before:>16d} {files_after:>12d}")
    for key in before:
        print(f"{key:44s} {before[key]:>15.2f}s {after[key]:>11.2f}s")
    print(f"{'study compact':44s} {compact_s:>15.2f}s")
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "trials": 72,
        "epochs_per_trial": args.epochs,
        "epoch_rows": rows,
        "files_before": files_before,
        "files_after": files_after,
        "seconds_before": before,
        "seconds_after": after,
        "compact_seconds": compact_s,
        "command": "python -m benchmarks.results_scale"
        + (f" --epochs {args.epochs}" if args.epochs != 280 else ""),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
