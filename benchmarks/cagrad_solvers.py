"""How often CAGrad's exact solver and the reference code's SLSQP disagree on real QM9 gradient matrices.

Trains CAGrad (``solver="exact"``) on a QM9 subset and, at every step, solves the dual of the step's Gram
matrix ``K = G Gᵀ`` (11 × 11, from the MPNN's exact per-task gradients) with both solvers: the exact one
(:func:`mtl.aggregators.cagrad.solve_cagrad_exact`, with its certified gap) and SLSQP
(:func:`mtl.aggregators.cagrad.cagrad_weights_slsqp`). Reported per step: both objectives, SLSQP's excess
over the certified optimum (relative), the L1 distance of the weights, and the angle between the two
resulting updates; and the counts of steps where SLSQP's objective exceeds the optimum by more than 1e-6
and 1e-3 (relative).

    MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=1000000000 \\
        python -m benchmarks.cagrad_solvers --subset 2000 --steps 20 \\
        --out benchmarks/results/cagrad_solvers.json
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from mtl.aggregators import cagrad
from mtl.config import TrainConfig
from mtl.train import Trainer


def compare(gram: np.ndarray, c: float) -> dict[str, float]:
    exact = cagrad.solve_cagrad_exact(gram, c)
    w_slsqp = cagrad.cagrad_weights_slsqp(gram, c)
    f_slsqp = cagrad.cagrad_objective(w_slsqp, gram, c)
    scale = math.sqrt(float(gram.diagonal().max())) * math.sqrt(max(float(gram.mean()), 0.0))

    def update(w: np.ndarray) -> np.ndarray:  # d = g_0 + (c‖g_0‖/‖g_w‖) g_w, as coefficients on the g_t
        g0_norm = math.sqrt(max(float(gram.mean()), 0.0))
        gw_norm = math.sqrt(max(float(w @ gram @ w), 0.0))
        return np.full(len(w), 1.0 / len(w)) + c * g0_norm / max(gw_norm, 1e-300) * w

    a, b = update(exact.weights), update(w_slsqp)
    cos = float(a @ gram @ b / math.sqrt(max(float(a @ gram @ a) * float(b @ gram @ b), 1e-300)))
    return {
        "objective_exact": exact.objective,
        "objective_slsqp": f_slsqp,
        "certified_gap_exact": exact.gap,
        "excess_slsqp_relative": (f_slsqp - exact.objective) / scale,
        "weights_l1": float(np.abs(exact.weights - w_slsqp).sum()),
        "update_angle_deg": math.degrees(math.acos(min(1.0, max(-1.0, cos)))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--c", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    grams: list[np.ndarray] = []
    original = cagrad.CAGrad.forward

    def recording(self, grads, ctx):  # type: ignore[no-untyped-def]
        g64 = grads.double()
        grams.append((g64 @ g64.T).cpu().numpy())
        return original(self, grads, ctx)

    cagrad.CAGrad.forward = recording  # type: ignore[method-assign]
    config = TrainConfig(
        dataset="qm9",
        method="cagrad",
        seed=args.seed,
        epochs=1,
        max_steps_per_epoch=args.steps,
        method_kwargs={"c": args.c},
        dataset_kwargs={"subset": args.subset, "progress": False},
    )
    trainer = Trainer(config)
    while len(grams) < args.steps:  # a small subset's epoch may have fewer steps
        trainer.train_epoch()
        trainer.epoch += 1
    grams = grams[: args.steps]
    rows = [compare(g, args.c) for g in grams]
    summary = {
        "steps": len(rows),
        "slsqp_excess_gt_1e-6": sum(r["excess_slsqp_relative"] > 1e-6 for r in rows),
        "slsqp_excess_gt_1e-3": sum(r["excess_slsqp_relative"] > 1e-3 for r in rows),
        "max_excess_slsqp_relative": max(r["excess_slsqp_relative"] for r in rows),
        "max_weights_l1": max(r["weights_l1"] for r in rows),
        "max_update_angle_deg": max(r["update_angle_deg"] for r in rows),
        "max_certified_gap_exact_relative": max(
            r["certified_gap_exact"] / max(abs(r["objective_exact"]), 1e-300) for r in rows
        ),
    }
    for i, r in enumerate(rows):
        print(
            f"step {i + 1:>3}  F exact {r['objective_exact']:.6e} (gap {r['certified_gap_exact']:.1e})  "
            f"SLSQP {r['objective_slsqp']:.6e}  excess {r['excess_slsqp_relative']:.1e}  "
            f"|Δw|₁ {r['weights_l1']:.1e}  angle {r['update_angle_deg']:.2e}°"
        )
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "summary": summary, "steps": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
