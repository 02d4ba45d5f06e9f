"""Study-level throughput: trials per hour and Ray's scheduling overhead per trial.

Runs one ASHA + Optuna study of many short trials (DB-MTL on a tiny synthetic dataset: a few epochs of a few
batches each) on a local Ray, through the real ``study`` code path (:func:`study.runner.run_study`: Tune,
the trial function, per-epoch Parquet rows and trainer states), and reports

* trials per hour, over the whole run and excluding Ray's start-up;
* overhead per trial: slot time not spent inside a trial, ``(concurrency × wall − Σ trial wall) / trials``
  (actor start, scheduling, searcher and scheduler, result and checkpoint handling, the driver's callback);
* time inside trials that is not training or evaluation (building the trainer and dataset, Parquet rows,
  state files): ``Σ (trial wall − trial training and evaluation) / trials``.

Run::

    RAY_AUTH_MODE=disabled python -m benchmarks.study_overhead --trials 100 \\
        --out benchmarks/results/study_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def study_document(
    name: str,
    storage: str,
    trials: int,
    epochs: int = 4,
    concurrency: int = 2,
    cpus: int = 2,
    search: str = "optuna",
) -> dict[str, Any]:
    """The study: DB-MTL (β, σ, α strategy) + lr on a tiny synthetic dataset, ASHA (grace 1, η 2)."""
    return {
        "name": name,
        "datasets": [
            {"name": "synthetic", "kwargs": {"n_train": 128, "n_val": 64, "n_test": 64, "hidden": 16}}
        ],
        "methods": [
            {
                "name": "db_mtl",
                "space": {
                    "beta": {"choice": [0.1, 0.5, 0.9]},
                    "beta_sigma": {"choice": [0.0, 0.5]},
                    "alpha_strategy": {"choice": ["max", "mean", "min"]},
                },
            }
        ],
        "space": {"lr": {"loguniform": [1.0e-4, 1.0e-2]}},
        "seeds": [0],
        "train": {"epochs": epochs, "batch_size": 64, "device": "cpu"},
        "search": {"algorithm": search, "seed": 0, "num_samples": trials},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": concurrency},
        "storage": storage,
        "ray": {"address": None, "num_cpus": cpus, "object_store_memory": 80 * 1024**2},
        "max_failures": 1,
    }


def measure(
    trials: int = 100,
    epochs: int = 4,
    concurrency: int = 2,
    cpus: int = 2,
    search: str = "optuna",
    storage: str | None = None,
    printer: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the study and return its figures (see the module docstring)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from results_store.reader import read_epochs, read_trials
    from study.runner import run_study
    from study.schema import validate_study

    tmp = None
    if storage is None:
        tmp = tempfile.TemporaryDirectory(prefix="study-overhead-")
        storage = tmp.name
    name = f"overhead{trials}"
    study = validate_study(study_document(name, storage, trials, epochs, concurrency, cpus, search))
    load_start = os.getloadavg()
    report = run_study(study, printer=printer)
    location = report.location
    t = read_trials(location)
    e = read_epochs(location)
    if tmp is not None:
        tmp.cleanup()
    n = len(t)
    wall = report.wall_time
    ray_start = report.ray_start_time
    inside = float(t["wall_time"].fillna(0).sum())
    work = float(t["time_total"].fillna(0).sum())
    active = wall - ray_start
    slots = min(concurrency, cpus)
    out = {
        "trials": n,
        "epochs_run": len(e),
        "statuses": {str(k): int(v) for k, v in t["status"].value_counts().items()},
        "epochs_per_trial_mean": len(e) / n if n else 0.0,
        "wall_s": wall,
        "ray_start_s": ray_start,
        "trials_per_hour": 3600.0 * n / wall if wall else 0.0,
        "trials_per_hour_excluding_ray_start": 3600.0 * n / active if active else 0.0,
        "sum_trial_wall_s": inside,
        "sum_train_eval_s": work,
        "concurrency": slots,
        "overhead_per_trial_s": (slots * active - inside) / n if n else 0.0,
        "in_trial_overhead_per_trial_s": (inside - work) / n if n else 0.0,
        "train_eval_per_trial_s": work / n if n else 0.0,
        "meta": {
            "search": search,
            "scheduler": "asha grace 1, reduction 2",
            "epochs_max": epochs,
            "cpus": cpus,
            "host": platform.node(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - wall)),
        },
    }
    return out


def markdown(out: dict[str, Any]) -> str:
    m = out["meta"]
    return "\n".join(
        [
            f"{out['trials']}-trial ASHA + {m['search']} study of DB-MTL on tiny synthetic data (≤ "
            f"{m['epochs_max']} epochs, {out['epochs_run']} epochs run), local Ray with {m['cpus']} CPUs, "
            f"{out['concurrency']} trials at a time (load {m['loadavg_start'][0]:.1f} at start)",
            "",
            "| figure | value |",
            "| --- | ---: |",
            f"| wall time (s) | {out['wall_s']:.1f} |",
            f"| Ray start-up (s) | {out['ray_start_s']:.1f} |",
            f"| trials per hour | {out['trials_per_hour']:.0f} |",
            f"| trials per hour, excluding Ray start-up | {out['trials_per_hour_excluding_ray_start']:.0f} |",
            f"| scheduling overhead per trial (s): slot time outside trials | "
            f"{out['overhead_per_trial_s']:.2f} |",
            f"| in-trial overhead per trial (s): set-up, Parquet rows, states | "
            f"{out['in_trial_overhead_per_trial_s']:.2f} |",
            f"| training + evaluation per trial (s) | {out['train_eval_per_trial_s']:.2f} |",
            f"| trial statuses | {', '.join(f'{v} {k}' for k, v in out['statuses'].items())} |",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    p.add_argument("--search", choices=("optuna", "random"), default="optuna")
    p.add_argument("--storage", default=None, help="keep the study here (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=None, help="JSON figures (and a .md table next to it)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    args = p.parse_args(argv)
    printer = (lambda _line: None) if args.quiet else print
    out = measure(args.trials, args.epochs, args.concurrency, args.cpus, args.search, args.storage, printer)
    table = markdown(out)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
        args.out.with_suffix(".md").write_text(table + "\n")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
