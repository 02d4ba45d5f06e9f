"""Slot utilisation of a paper_qm9-shaped study on a simulated GPU cluster: one pool vs one group at a time.

A ``ray.cluster_utils.Cluster`` of ``--nodes`` nodes, each declaring ``--gpus-per-node`` GPUs (the trials run
on CPU but are scheduled as GPU trials at ``--gpus-per-trial``, as ``paper_qm9.yaml`` asks: 0.25) and many
virtual CPUs (trials are light; ``cpus_per_trial`` 1). The study has the shape of ``paper_qm9.yaml``:
``--groups`` methods on one dataset x 3 seeds, nothing searched, no early stopping, ``max_concurrent_trials``
= the slots; its trials are the real trial function on a small synthetic dataset.

Both engines run in one process on the same cluster, side by side:

* ``pool`` — :func:`study.runner.run_study` on the whole study (every group in one Tune experiment);
* ``serial`` — the engine before it, reproduced here: one group at a time, each its own study
  (``run_study`` on a one-method copy), the next group starting when the previous one has finished.

Reported per engine: wall time (Ray start-up excluded), Σ trial busy time (each trial's own ``wall_time``
from its ``trials/`` row), slot utilisation = Σ busy / (slots x wall), and steady-state utilisation = the
mean number of busy slots / slots from the first trial start until the last trial starts (while trials are
still waiting for a slot, every slot should be busy), each trial busy from ``ended_at − wall_time`` to
``ended_at`` (its trial function's whole run, set-up included).

Run::

    RAY_AUTH_MODE=disabled python -m benchmarks.cluster_utilization --nodes 2 --gpus-per-node 1 \\
        --groups 8 --epochs 12 --n-train 2048 --out benchmarks/results/cluster_utilization_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

METHODS = ["ew", "si", "gls", "rlw", "uw", "dwa", "imtl_l", "db_mtl", "igbv1", "mgda", "pcgrad", "cagrad"]


def study_document(
    name: str,
    storage: str,
    address: str,
    groups: int,
    epochs: int,
    slots: int,
    gpus_per_trial: float,
    n_train: int = 512,
) -> dict[str, Any]:
    """``paper_qm9.yaml``'s shape on a small synthetic dataset."""
    if not 1 <= groups <= len(METHODS):
        raise SystemExit(f"--groups must be between 1 and {len(METHODS)}")
    return {
        "name": name,
        "datasets": [
            {"name": "synthetic", "kwargs": {"n_train": n_train, "n_val": 128, "n_test": 128, "hidden": 16}}
        ],
        "methods": METHODS[:groups],
        "seeds": [0, 1, 2],
        "train": {"epochs": epochs, "batch_size": 64, "device": "auto"},  # no real GPU: auto runs on CPU
        "search": {"algorithm": "grid"},
        "scheduler": {"type": "none"},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": gpus_per_trial, "max_concurrent_trials": slots},
        "storage": storage,
        "ray": {"address": address, "num_cpus": None, "object_store_memory": None, "env": {}},
        "max_failures": 1,
    }


def busy_slots_steady(trials: pd.DataFrame, slots: int) -> float:
    """Mean busy slots / slots from the first trial start until the last trial starts."""
    end = pd.to_datetime(trials["updated_at"], utc=True)
    if "ended_at" in trials:  # when each trial ended (results schema 2); older rows: their last update
        end = pd.to_datetime(trials["ended_at"], utc=True).fillna(end)
    # the trial function's whole run (its `started_at` is taken after the trainer and dataset are built)
    start = end - pd.to_timedelta(trials["wall_time"], unit="s")
    t0, t1 = start.min(), start.max()
    if t1 <= t0:
        return float("nan")
    busy = sum(max(0.0, (min(e, t1) - max(s, t0)).total_seconds()) for s, e in zip(start, end, strict=True))
    return busy / (slots * (t1 - t0).total_seconds())


def measure(engine: str, document: dict[str, Any], slots: int) -> dict[str, Any]:
    from results_store.reader import read_trials
    from study.runner import run_study, study_location
    from study.schema import validate_study

    study = validate_study(document)
    wall = 0.0
    if engine == "pool":
        report = run_study(study)
        wall = report.wall_time - report.ray_start_time
        locations = [study_location(study)]
    else:  # one group at a time, each its own study, as the serial engine ran them
        locations = []
        for method in document["methods"]:
            one = validate_study({**document, "name": f"{document['name']}_{method}", "methods": [method]})
            report = run_study(one)
            wall += report.wall_time - report.ray_start_time
            locations.append(study_location(one))
    trials = pd.concat([read_trials(loc) for loc in locations], ignore_index=True)
    busy = float(trials["wall_time"].sum())
    return {
        "engine": engine,
        "trials": len(trials),
        "statuses": trials["status"].value_counts().to_dict(),
        "wall_s": wall,
        "busy_s": busy,
        "utilisation": busy / (slots * wall),
        "steady_state_utilisation": busy_slots_steady(trials, slots),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--gpus-per-node", type=int, default=1)
    parser.add_argument("--gpus-per-trial", type=float, default=0.25)
    parser.add_argument("--cpus-per-node", type=int, default=16, help="virtual CPUs each node declares")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--n-train", type=int, default=512, help="synthetic training examples per trial")
    parser.add_argument("--engines", default="pool,serial")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray.cluster_utils import Cluster

    slots = int(args.nodes * args.gpus_per_node / args.gpus_per_trial)
    node = {
        "num_cpus": args.cpus_per_node,
        "num_gpus": args.gpus_per_node,
        "object_store_memory": 80 * 1024**2,
    }
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    results = []
    try:
        for _ in range(args.nodes - 1):
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        with tempfile.TemporaryDirectory(prefix="cluster-util-") as tmp:
            for engine in args.engines.split(","):
                document = study_document(
                    f"util_{engine}",
                    str(Path(tmp) / "results"),
                    cluster.address,
                    args.groups,
                    args.epochs,
                    slots,
                    args.gpus_per_trial,
                    args.n_train,
                )
                t0 = time.perf_counter()
                results.append(measure(engine, document, slots))
                print(f"{engine}: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()

    print(
        f"{args.nodes} nodes x {args.gpus_per_node} GPU, {args.gpus_per_trial} GPU per trial: {slots} slots; "
        f"{args.groups} groups x 3 seeds, {args.epochs} epochs"
    )
    print(f"{'engine':8} {'trials':>6} {'wall s':>8} {'busy s':>8} {'util':>6} {'steady':>7}")
    for r in results:
        print(
            f"{r['engine']:8} {r['trials']:6d} {r['wall_s']:8.1f} {r['busy_s']:8.1f} "
            f"{r['utilisation']:6.1%} {r['steady_state_utilisation']:7.1%}"
        )
    if len(results) == 2:
        print(f"wall time serial / pool: {results[1]['wall_s'] / results[0]['wall_s']:.2f}x")
    if args.out:
        record = {
            "args": vars(args),
            "slots": slots,
            "results": results,
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        }
        Path(args.out).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
