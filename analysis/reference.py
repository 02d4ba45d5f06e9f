"""What Δp and Δm are measured against: the published STL rows the trials ran with, or the study's own
STL runs.

**Paper** (the default, :data:`PAPER`): Δp/Δm as the trials stored them, against the published single-task
row of each trial's setting (``train.reference_table``, else the dataset's default table in
``mtl.data.references``).

**Study** (:data:`STUDY`, ``analysis ... --reference study``): at CPU scale the published rows (full
datasets, hundreds of epochs) dwarf every difference between methods (QM9 on 1,000 molecules: every Δp near
−5,000 %). A study that ran ``stl`` trials (method ``stl``, one trial per task and seed, searched or fixed
``task``) on the same data can be its own reference:

1. each STL trial's best validation epoch is the one with the best validation metrics *of its own task*
   (Δp of that task alone, DB-MTL Eq. 3-4, against the trial's first epoch: any fixed positive scale
   ranks a single metric the same);
2. where a task's STL trials ran several configurations, the one with the best mean over seeds of that
   score wins (the selection rule, :mod:`results_store.selection`, restricted to one task);
3. the reference of task ``t`` is the mean over seeds of those trials' validation metrics (for validation
   Δp) and test metrics (for test Δp) at their best validation epochs;
4. every other trial is rescored from its stored epoch rows: validation Δp/Δm of every epoch against the
   validation reference, the best validation epoch chosen again on that Δp, and test Δp/Δm and the test
   metrics taken at that epoch.

Torch-free: Δp and Δm are :func:`mtl.evaluation.delta_p` / :func:`~mtl.evaluation.delta_m` (pure Python).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.metrics import higher_is_better, metric_columns
from mtl.evaluation import delta_m, delta_p

PAPER = "paper"
STUDY = "study"
CHOICES = (PAPER, STUDY)
STL = "stl"
Nested = dict[str, dict[str, float]]

PAPER_LABEL = (
    "Δp/Δm against the published STL row each trial ran with (train.reference_table, else the dataset's "
    "default table in mtl.data.references)"
)
SYNTHETIC_LABEL = (
    "Δp/Δm on synthetic data against each task's Bayes-optimal error (the MAE of the noise, s_t·σ·√(2/π)): "
    "Δp ≤ 0, 0 the best attainable"
)
"""The synthetic dataset has no published row: its reference is what `study run` names too."""


def paper_label(dataset: str) -> str:
    """What a dataset's stored Δp/Δm are measured against, in words (as `study run` says it)."""
    return SYNTHETIC_LABEL if dataset == "synthetic" else PAPER_LABEL


@dataclass
class StudyReference:
    """One dataset's reference from the study's own STL trials (module docstring)."""

    dataset: str
    val: Nested
    test: Nested
    seeds: dict[str, list[int]] = field(default_factory=dict)
    configs: dict[str, str] = field(default_factory=dict)
    stl_epochs: dict[str, int] = field(default_factory=dict)
    """STL trial id -> its best validation epoch on its own task (step 1)."""

    def label(self) -> str:
        per_task = sorted({len(s) for s in self.seeds.values()})
        seeds = "/".join(str(n) for n in per_task)
        return (
            f"Δp/Δm on {self.dataset} against the study's own STL runs ({len(self.seeds)} tasks, {seeds} "
            "seed(s) each; val and test metrics at each STL trial's best validation epoch, mean over seeds)"
        )


def _nested_flags(pairs: list[tuple[str, str]], stored: Mapping[tuple[str, str], bool]) -> dict:
    flags: dict[str, dict[str, bool]] = {}
    for task, metric in pairs:
        flag = higher_is_better(metric, task, None, stored)
        if flag is None:
            raise ValueError(
                f"metric '{task}/{metric}' has no known direction: cannot score against STL runs"
            )
        flags.setdefault(task, {})[metric] = flag
    return flags


def _values(row: pd.Series, split: str, pairs: list[tuple[str, str]]) -> Nested:
    out: Nested = {}
    for task, metric in pairs:
        out.setdefault(task, {})[metric] = float(row[f"{split}/{task}/{metric}"])
    return out


def _finite(nested: Nested) -> bool:
    return all(math.isfinite(v) for metrics in nested.values() for v in metrics.values())


def _safe(func, result: Nested, reference: Nested, flags: dict) -> float:
    if not _finite(result):
        return math.nan
    try:
        return float(func(result, reference, flags))
    except Exception:  # a zero or missing reference value: no score
        return math.nan


def _task_scores(epochs: pd.DataFrame, task: str, pairs: list[tuple[str, str]], flags: dict) -> pd.Series:
    """Per epoch row, Δp of ``task`` alone (validation) against the trial's first epoch (step 1)."""
    mine = [(t, m) for t, m in pairs if t == task]
    epochs = epochs.sort_values("epoch")
    first = _values(epochs.iloc[0], "val", mine)
    scale = {
        t: {m: (v if v != 0 and math.isfinite(v) else 1.0) for m, v in ms.items()} for t, ms in first.items()
    }
    return pd.Series(
        [_safe(delta_p, _values(r, "val", mine), scale, {task: flags[task]}) for _, r in epochs.iterrows()],
        index=epochs.index,
    )


def _best_row(epochs: pd.DataFrame, scores: pd.Series) -> pd.Series | None:
    finite = scores[np.isfinite(scores.astype(float))]
    return None if finite.empty else epochs.loc[finite.idxmax()]


def study_reference(trials: pd.DataFrame, epochs: pd.DataFrame, dataset: str) -> StudyReference:
    """The reference of ``dataset`` from its ``stl`` trials (module docstring, steps 1-3).

    Raises :class:`ValueError` naming what is missing: no STL trials, or tasks without any.
    """
    from results_store.labels import CONFIG, with_config

    mine = trials[(trials["dataset"] == dataset)] if not trials.empty else trials
    pairs = metric_columns(mine, "val")
    tasks = sorted({t for t, _ in pairs})
    stl = mine[(mine["method"] == STL) & (mine["status"] != "failed")] if not mine.empty else mine
    if stl.empty:
        raise ValueError(
            f"--reference study: the study has no finished stl trials on {dataset} (add method stl with "
            "space {task: {grid: [...]}} to the study, one trial per task and seed)"
        )
    if "hp/task" not in stl.columns or stl["hp/task"].isna().all():
        raise ValueError(f"--reference study: the stl trials on {dataset} record no task (hp/task)")
    missing = sorted(set(tasks) - set(stl["hp/task"].dropna()))
    if missing:
        raise ValueError(f"--reference study: no stl trial on {dataset} for task(s) {', '.join(missing)}")
    stl = stl if CONFIG in stl.columns else with_config(stl)
    flags = _nested_flags(pairs, _stored(mine))
    ep = epochs[(epochs["dataset"] == dataset) & (epochs["method"] == STL)]
    val: Nested = {}
    test: Nested = {}
    seeds: dict[str, list[int]] = {}
    configs: dict[str, str] = {}
    stl_epochs: dict[str, int] = {}
    for task in tasks:
        best_rows: list[tuple[str, int, pd.Series, float]] = []
        for _, trial in stl[stl["hp/task"] == task].iterrows():
            rows = ep[ep["trial_id"] == trial["trial_id"]]
            if rows.empty:
                continue
            scores = _task_scores(rows, task, pairs, flags)
            best = _best_row(rows.sort_values("epoch"), scores)
            if best is not None:
                best_rows.append((str(trial[CONFIG]), int(trial["seed"]), best, float(scores.max())))
                stl_epochs[str(trial["trial_id"])] = int(best["epoch"])
        if not best_rows:
            raise ValueError(
                f"--reference study: no stl trial on {dataset} for task {task} finished an epoch"
            )
        by_config: dict[str, list[tuple[int, pd.Series, float]]] = {}
        for config, seed, row, score in best_rows:
            by_config.setdefault(config, []).append((seed, row, score))
        # step 2: best mean validation score of this task over seeds (ties: more seeds, then the name)
        chosen = max(
            sorted(by_config), key=lambda c: (np.mean([s for _, _, s in by_config[c]]), len(by_config[c]))
        )
        picked = by_config[chosen]
        configs[task], seeds[task] = chosen, sorted(seed for seed, _, _ in picked)
        for metric in [m for t, m in pairs if t == task]:
            val.setdefault(task, {})[metric] = float(
                np.mean([r[f"val/{task}/{metric}"] for _, r, _ in picked])
            )
            test.setdefault(task, {})[metric] = float(
                np.mean([r[f"test/{task}/{metric}"] for _, r, _ in picked])
            )
    return StudyReference(dataset, val, test, seeds, configs, stl_epochs)


def _stored(frame: pd.DataFrame) -> dict[tuple[str, str], bool]:
    from analysis.metrics import stored_directions

    return stored_directions(frame)


def rescore(trials: pd.DataFrame, epochs: pd.DataFrame, references: Mapping[str, StudyReference]):
    """``(trials, epochs)`` with Δp/Δm recomputed against ``references`` (dataset -> reference; step 4).

    Epoch rows get new ``val_delta_p``/``test_delta_p``/``val_delta_m``/``test_delta_m``; each trial's
    ``best_epoch``, ``best_val_delta_p``, test and val Δp/Δm and ``val/*``/``test/*`` metrics are taken
    at the best validation epoch by the new Δp. Datasets without a reference keep their stored values.
    """
    trials, epochs = trials.copy(), epochs.copy()
    for dataset, ref in references.items():
        e_mask = epochs["dataset"] == dataset
        if not e_mask.any():
            continue
        pairs = [(t, m) for t, ms in ref.val.items() for m in ms]
        flags = _nested_flags(pairs, _stored(trials[trials["dataset"] == dataset]))
        sub = epochs[e_mask]
        for split, reference in (("val", ref.val), ("test", ref.test)):
            results = [_values(r, split, pairs) for _, r in sub.iterrows()]
            epochs.loc[e_mask, f"{split}_delta_p"] = [_safe(delta_p, x, reference, flags) for x in results]
            epochs.loc[e_mask, f"{split}_delta_m"] = [_safe(delta_m, x, reference, flags) for x in results]
        sub = epochs[e_mask]
        carry = ["val_delta_m", "test_delta_p", "test_delta_m"]
        carry += [c for c in sub.columns if c.startswith(("val/", "test/"))]
        for index, trial in trials[trials["dataset"] == dataset].iterrows():
            rows = sub[(sub["method"] == trial["method"]) & (sub["trial_id"] == trial["trial_id"])]
            if trial["method"] == STL:  # an STL trial: its own task's best epoch (its row is the reference)
                epoch = ref.stl_epochs.get(str(trial["trial_id"]))
                rows = rows[rows["epoch"] == epoch] if epoch is not None else rows.iloc[0:0]
            best = _best_row(rows, rows["val_delta_p"]) if not rows.empty else None
            if best is None:
                trials.loc[index, ["best_val_delta_p", *carry[:3]]] = math.nan
                continue
            trials.loc[index, "best_epoch"] = int(best["epoch"])
            trials.loc[index, "best_val_delta_p"] = float(best["val_delta_p"])
            for column in carry:
                if column in trials.columns:
                    trials.loc[index, column] = best[column]
    return trials, epochs


__all__ = [
    "CHOICES",
    "PAPER",
    "PAPER_LABEL",
    "STUDY",
    "SYNTHETIC_LABEL",
    "StudyReference",
    "paper_label",
    "rescore",
    "study_reference",
]
