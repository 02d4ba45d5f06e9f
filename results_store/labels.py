"""The one labeler of hyperparameter configurations: ``beta=0.5, lr=0.001`` from a row's ``hp/*`` columns.

Tables, figures and ``study run``'s summary name a configuration by this label; :func:`with_config` adds it
to a frame as the :data:`CONFIG` column, which :mod:`results_store.selection` groups the seeds of one
configuration by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from results_store.columns import CONFIG_ID, HP_PREFIX, hp_columns

CONFIG = "config"
"""The column :func:`with_config` adds: the configuration's label."""
DEFAULT_LABEL = "default"
"""The label of a configuration that sets no searched hyperparameter."""
NOT_PART = ("hp/seed",)
"""``hp/`` columns that are not part of a configuration (a study may search the seed)."""


def _format_value(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    return str(value)


def config_label(row: pd.Series, columns: Sequence[str]) -> str:
    """``beta=0.5, beta_sigma=0, alpha_strategy=max`` from a row's non-null ``hp/*`` values
    (:data:`DEFAULT_LABEL` if none)."""
    parts = []
    for column in columns:
        value = row[column]
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            continue
        parts.append(f"{column.removeprefix(HP_PREFIX)}={_format_value(value)}")
    return ", ".join(parts) or DEFAULT_LABEL


def with_config(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a :data:`CONFIG` column labelling each row's hyperparameter configuration
    (:data:`NOT_PART` left out). Labels are made once per distinct configuration, not per row.

    Where rows carry ``config_id``, it identifies the configuration: rows of one ``config_id`` share a
    label, and two ``config_id`` with the same ``hp/*`` values (of one dataset and method) get the id
    appended (``lr=0.001 [c3]``), so they stay apart; rows without one are grouped by their ``hp/*``
    values."""
    if frame.empty:
        return frame
    columns = [c for c in hp_columns(frame) if c not in NOT_PART]
    frame = frame.copy()
    if not columns:
        frame[CONFIG] = DEFAULT_LABEL
    else:
        keys = frame[columns].astype(object).where(frame[columns].notna(), None)
        as_tuples = pd.Series(list(keys.itertuples(index=False, name=None)), index=frame.index)
        labels = {v: config_label(pd.Series(v, index=columns), columns) for v in set(as_tuples)}
        frame[CONFIG] = [labels[values] for values in as_tuples]
    if CONFIG_ID in frame.columns and frame[CONFIG_ID].notna().any():
        frame[CONFIG] = _separate_equal_labels(frame)
    return frame


def _separate_equal_labels(frame: pd.DataFrame) -> list[str]:
    """The :data:`CONFIG` labels with ``[config_id]`` appended where two ids of one (dataset, method) share
    a label."""
    scope_columns = [c for c in ("dataset", "method") if c in frame.columns]
    scopes = list(frame[scope_columns].astype(str).itertuples(index=False, name=None))
    ids = [None if pd.isna(v) else str(v) for v in frame[CONFIG_ID]]
    first: dict[tuple, str] = {}  # (scope, config_id) -> the hp label of its first row
    for scope, cid, label in zip(scopes, ids, frame[CONFIG]):
        if cid is not None:
            first.setdefault((scope, cid), label)
    count: dict[tuple, int] = {}
    for (scope, _), label in first.items():
        count[(scope, label)] = count.get((scope, label), 0) + 1
    labels = []
    for scope, cid, label in zip(scopes, ids, frame[CONFIG]):
        if cid is not None:
            label = first[(scope, cid)]
            label = f"{label} [{cid}]" if count[(scope, label)] > 1 else label
        labels.append(label)
    return labels
