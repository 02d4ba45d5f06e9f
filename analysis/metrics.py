"""Which tasks and metrics a study reports, and whether each is better high or low — without torch.

The task/metric lists come from the column names the writer stores (``test/<task>/<metric>``, see
:mod:`study.results`). The results hold no ``higher_is_better`` flags, so the direction comes from the metric
*name*, by the table below, which mirrors the metrics of :mod:`mtl.metrics` and the datasets of DESIGN §5:

* lower is better: ``mae``, ``mse``, ``rmse``, ``loss``, ``abs_err``, ``rel_err`` (and any ``*err*``),
  ``mean`` and ``median`` (surface-normal angle errors in degrees), ``angle*``;
* higher is better: ``miou``, ``pix_acc``, ``acc`` (and ``*acc*``), ``within_*`` (% of normals within t°),
  ``f1``, ``auc``, ``r2``.

Unknown names have direction ``None``: tables show them without an arrow and mark no best value. Callers can
override any direction with a ``{metric: bool}`` or ``{(task, metric): bool}`` mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "loss", "abs_err", "rel_err", "err", "mean", "median"})
HIGHER_IS_BETTER = frozenset({"miou", "pix_acc", "acc", "accuracy", "f1", "auc", "r2"})

# the papers' column order (DB-MTL Tables 1-4); anything else follows alphabetically
TASK_ORDER = ("segmentation", "semantic", "depth", "normal", "amazon", "dslr", "webcam")
TASK_ORDER += ("Art", "Clipart", "Product", "Real_World", "mu", "alpha", "homo", "lumo", "r2", "zpve")
TASK_ORDER += ("u0", "u", "h", "g", "cv")
METRIC_ORDER = ("miou", "pix_acc", "abs_err", "rel_err", "mean", "median")
METRIC_ORDER += ("within_11_25", "within_22_5", "within_30", "acc", "mae")

Directions = Mapping[str, bool] | Mapping[tuple[str, str], bool]


def higher_is_better(
    metric: str, task: str | None = None, overrides: Directions | None = None
) -> bool | None:
    """``True`` if a higher ``metric`` is better, ``False`` if lower is, ``None`` if unknown.

    ``overrides`` maps ``metric`` or ``(task, metric)`` to a flag and wins over the built-in table.
    ``test_delta_p``/``val_delta_p`` (Δp, DB-MTL Eq. 3-4) are higher-is-better; Δm (IGB Eq. 5) and times
    lower.
    """
    if overrides:
        if (task, metric) in overrides:
            return bool(overrides[(task, metric)])  # type: ignore[index]
        if metric in overrides:
            return bool(overrides[metric])  # type: ignore[index]
    name = metric.lower()
    if name.endswith("delta_p"):
        return True
    if name.endswith("delta_m") or name.startswith("time"):
        return False
    if name in LOWER_IS_BETTER:
        return False
    if name in HIGHER_IS_BETTER or name.startswith("within"):
        return True
    if "err" in name or name.startswith("angle"):
        return False
    if "acc" in name or "iou" in name:
        return True
    return None


def _rank(order: tuple[str, ...], name: str) -> tuple[int, str]:
    return (order.index(name), "") if name in order else (len(order), name)


def metric_columns(frame: pd.DataFrame, split: str = "test") -> list[tuple[str, str]]:
    """``(task, metric)`` pairs of the ``<split>/<task>/<metric>`` columns that hold any value in ``frame``,
    in the papers' order (tasks as in DB-MTL Tables 1-4, then alphabetically; metrics likewise)."""
    pairs = []
    for column in frame.columns:
        parts = column.split("/")
        if len(parts) == 3 and parts[0] == split and frame[column].notna().any():
            pairs.append((parts[1], parts[2]))
    tasks = sorted({t for t, _ in pairs}, key=lambda t: _rank(TASK_ORDER, t))
    return sorted(pairs, key=lambda p: (tasks.index(p[0]), _rank(METRIC_ORDER, p[1])))


def tasks_of(frame: pd.DataFrame, prefix: str) -> list[str]:
    """Tasks of the per-task columns ``<prefix>/<task>`` (e.g. ``grad_norm``) that hold any value."""
    out = [c.split("/", 1)[1] for c in frame.columns if c.startswith(prefix + "/") and frame[c].notna().any()]
    return sorted(out, key=lambda t: _rank(TASK_ORDER, t))


def arrow(flag: bool | None) -> str:
    """↑ for higher-is-better, ↓ for lower-is-better, nothing when unknown."""
    return "" if flag is None else ("↑" if flag else "↓")


def directions(
    pairs: Iterable[tuple[str, str]], overrides: Directions | None = None
) -> dict[str, dict[str, bool | None]]:
    """Nested ``task -> metric -> higher_is_better`` (the shape of ``mtl.evaluation``'s flags)."""
    out: dict[str, dict[str, bool | None]] = {}
    for task, metric in pairs:
        out.setdefault(task, {})[metric] = higher_is_better(metric, task, overrides)
    return out
