"""Which tasks and metrics a study reports, and whether each is better high or low — without torch.

The task/metric lists come from the column names the writer stores (``test/<task>/<metric>``, see
:mod:`results_store.columns`). Each metric's direction is the one the study stored with its rows
(``higher_is_better/<task>/<metric>``, schema version 2: the dataset's own declaration in ``mtl.data``),
read by :func:`stored_directions`. Δp (DB-MTL Eq. 3-4) is higher-is-better and Δm (IGB Eq. 5) and times
lower-is-better by definition.

Only for studies written before directions were stored (schema version 1) does the direction fall back to
the metric *name*, by the table below (:func:`guess_direction`), which mirrors the metrics of
:mod:`mtl.metrics` and the datasets of DESIGN §5:

* lower is better: ``mae``, ``mse``, ``rmse``, ``loss``, ``abs_err``, ``rel_err`` (and any ``*err*``),
  ``mean`` and ``median`` (surface-normal angle errors in degrees), ``angle*``;
* higher is better: ``miou``, ``pix_acc``, ``acc`` (and ``*acc*``), ``within_*`` (% of normals within t°),
  ``f1``, ``auc``, ``r2``.

Unknown directions are ``None``: tables show them without an arrow and mark no best value. Callers can
override any direction with a ``{metric: bool}`` or ``{(task, metric): bool}`` mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from results_store.columns import DIRECTION_PREFIX, direction_columns

LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "loss", "abs_err", "rel_err", "err", "mean", "median"})
HIGHER_IS_BETTER = frozenset({"miou", "pix_acc", "acc", "accuracy", "f1", "auc", "r2"})

# the papers' column order (DB-MTL Tables 1-4); anything else follows alphabetically
TASK_ORDER = ("segmentation", "semantic", "depth", "normal", "amazon", "dslr", "webcam")
TASK_ORDER += ("Art", "Clipart", "Product", "Real_World", "mu", "alpha", "homo", "lumo", "r2", "zpve")
TASK_ORDER += ("u0", "u", "h", "g", "cv")
METRIC_ORDER = ("miou", "pix_acc", "abs_err", "rel_err", "mean", "median")
METRIC_ORDER += ("within_11_25", "within_22_5", "within_30", "acc", "mae")

Directions = Mapping[str, bool] | Mapping[tuple[str, str], bool]


Stored = Mapping[tuple[str, str], bool]


def stored_directions(frame: pd.DataFrame) -> dict[tuple[str, str], bool]:
    """``{(task, metric): higher_is_better}`` from the ``higher_is_better/<task>/<metric>`` columns the
    study stored (schema version 2; empty for older studies). Pass a frame of one dataset."""
    out: dict[tuple[str, str], bool] = {}
    for column in direction_columns(frame):
        task, _, metric = column.removeprefix(DIRECTION_PREFIX).partition("/")
        values = frame[column].dropna()
        if not values.empty:
            out[(task, metric)] = bool(values.iloc[0])
    return out


def _by_definition(name: str) -> bool | None:
    if name.endswith("delta_p"):
        return True
    if name.endswith("delta_m") or name.startswith("time"):
        return False
    return None


def guess_direction(metric: str) -> bool | None:
    """The direction of ``metric`` from its name alone (the table in the module docstring): only for
    studies that stored no directions (schema version 1)."""
    name = metric.lower()
    if name in LOWER_IS_BETTER:
        return False
    if name in HIGHER_IS_BETTER or name.startswith("within"):
        return True
    if "err" in name or name.startswith("angle"):
        return False
    if "acc" in name or "iou" in name:
        return True
    return None


def higher_is_better(
    metric: str,
    task: str | None = None,
    overrides: Directions | None = None,
    stored: Stored | None = None,
) -> bool | None:
    """``True`` if a higher ``metric`` is better, ``False`` if lower is, ``None`` if unknown.

    In order: ``overrides`` (``metric`` or ``(task, metric)`` -> flag); Δp/Δm/time by definition; the
    study's ``stored`` directions (:func:`stored_directions`) — when a study stored any, a metric it did
    not store is unknown; only with none stored (``stored`` empty or None, a schema-1 study) the name
    (:func:`guess_direction`).
    """
    if overrides:
        if (task, metric) in overrides:
            return bool(overrides[(task, metric)])  # type: ignore[index]
        if metric in overrides:
            return bool(overrides[metric])  # type: ignore[index]
    defined = _by_definition(metric.lower())
    if defined is not None:
        return defined
    if stored:
        return stored.get((task, metric)) if task is not None else None
    return guess_direction(metric)


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
    pairs: Iterable[tuple[str, str]], overrides: Directions | None = None, stored: Stored | None = None
) -> dict[str, dict[str, bool | None]]:
    """Nested ``task -> metric -> higher_is_better`` (the shape of ``mtl.evaluation``'s flags)."""
    out: dict[str, dict[str, bool | None]] = {}
    for task, metric in pairs:
        out.setdefault(task, {})[metric] = higher_is_better(metric, task, overrides, stored)
    return out
