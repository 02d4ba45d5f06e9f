"""Makespan of a mixed study with and without longest-first dispatch, simulated on a cluster of slots.

The study's searcher (:class:`study.searcher.StudySearcher`, the real one) hands out every trial; a discrete
event simulation stands in for the cluster: ``--slots`` slots, each trial taking ``cost × epochs`` time units
(its group's declared per-step cost class, :func:`mtl.methods.step_cost`: T backward passes for a method
that needs every task's gradient, 1 for EW, ...). The same study is dispatched twice: in the old order (the
least-loaded group first, ties round-robin) and longest first (the costliest open group first). Both run the
same configurations per group (the searches do not depend on the dispatch order here: grid search, every
trial completes); only the order and so the makespan differ. On an H200, the DB-MTL group of a real study
started last and the study's tail was DB-MTL alone (issue 23).

Run::

    python -m benchmarks.longest_first --out benchmarks/results/longest_first.json
"""

from __future__ import annotations

import argparse
import heapq
import json
from pathlib import Path
from typing import Any

from mtl.methods import step_cost
from study.search import Param
from study.searcher import GroupSearch, StudySearcher

MIXED_METHODS = ("ew", "si", "static", "igbv2", "famo", "rlw", "uw", "db_mtl")
"""Seven cheap groups and DB-MTL (11 backward passes a step on QM9), listed last as in the H200 study."""


def simulate(
    methods: tuple[str, ...], seeds: int, slots: int, tasks: int, longest_first: bool, configs: int = 1
) -> dict[str, Any]:
    """Run the searcher against ``slots`` simulated slots; returns the makespan, the slot utilisation and
    what each group ran (its configurations and seeds, in the order they started)."""
    grid = Param.model_validate({"grid": [0.001 * (k + 1) for k in range(configs)]})
    space = {"lr": grid} if configs > 1 else {}
    groups = {
        m: GroupSearch(m, space, list(range(seeds)), "grid", 1, 0, study_name=f"sim.{m}") for m in methods
    }
    costs = {m: step_cost(m, tasks) for m in methods}
    searcher = StudySearcher(
        groups, "val_delta_p", "max", max_concurrent=slots, costs=costs if longest_first else None
    )
    clock, running, busy, started = 0.0, [], 0.0, {m: [] for m in methods}
    n = 0
    while True:
        while len(running) < slots:
            trial_id = f"t{n}"
            config = searcher.suggest(trial_id)
            if config is None or config == StudySearcher.FINISHED:
                break
            n += 1
            group = searcher.owner[trial_id]
            started[group].append({k: v for k, v in config.items() if not k.startswith("__")})
            heapq.heappush(running, (clock + costs[group], trial_id))
            busy += costs[group]
        if not running:
            break
        clock, trial_id = heapq.heappop(running)
        searcher.on_trial_complete(trial_id, {"val_delta_p": 0.0})
    return {
        "makespan": clock,
        "utilisation": busy / (slots * clock) if clock else 0.0,
        "trials": n,
        "ran": {m: sorted(map(repr, started[m])) for m in methods},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(MIXED_METHODS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--configs", type=int, default=2, help="configurations per group (grid)")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=11)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    methods = tuple(args.methods.split(","))
    before = simulate(methods, args.seeds, args.slots, args.tasks, longest_first=False, configs=args.configs)
    after = simulate(methods, args.seeds, args.slots, args.tasks, longest_first=True, configs=args.configs)
    out = {
        "methods": list(methods),
        "seeds": args.seeds,
        "configs": args.configs,
        "slots": args.slots,
        "tasks": args.tasks,
        "costs": {m: step_cost(m, args.tasks) for m in methods},
        "before": {k: v for k, v in before.items() if k != "ran"},
        "after": {k: v for k, v in after.items() if k != "ran"},
        "same_trials": before["ran"] == after["ran"],
        "makespan_ratio": after["makespan"] / before["makespan"],
    }
    print(
        f"makespan: round-robin {before['makespan']:.0f}, longest first {after['makespan']:.0f} "
        f"({out['makespan_ratio']:.2f}x); utilisation {before['utilisation']:.0%} -> "
        f"{after['utilisation']:.0%}; same trials: {out['same_trials']}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
