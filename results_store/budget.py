"""The one rule for what a trial cost: device-seconds from its ``trials/`` row.

A trial holds its slot for its ``wall_time``: the seconds its attempts ran (training, evaluation, writing,
start-up), summed over attempts, *without* the time between them -- a seed paused at an ASHA rung for its
configuration's other seeds, a retry queued after a lost node. ``ended_at − started_at`` spans those waits,
so it serves only for rows without a ``wall_time`` (none since schema 2), and ``updated_at − started_at``
for a row that has neither. Times ``gpus`` when the trial held GPUs (GPU-hours), else ``cpus``
(CPU-core-hours; 1 core where rows predate the resource columns). ``study run``'s budget lines and
``analysis fair`` both count with :func:`trial_hours`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def slot_seconds(trials: pd.DataFrame) -> pd.Series:
    """Per row: the seconds the trial held its slot (module docstring); NaN where nothing tells."""
    index = trials.index
    wall = trials["wall_time"].astype(float) if "wall_time" in trials else pd.Series(np.nan, index=index)
    if "started_at" in trials:
        start = pd.to_datetime(trials["started_at"], utc=True)
        for column in ("ended_at", "updated_at"):
            if column in trials:
                span = (pd.to_datetime(trials[column], utc=True) - start).dt.total_seconds().clip(lower=0.0)
                wall = wall.fillna(span)
    return wall


def device_factor(trials: pd.DataFrame) -> tuple[pd.Series, str]:
    """Per row: ``gpus`` where the trial held GPUs, else ``cpus`` (1 if unknown); and the unit."""
    index = trials.index
    gpus = trials["gpus"].astype(float).fillna(0.0) if "gpus" in trials else pd.Series(0.0, index=index)
    cpus = trials["cpus"].astype(float).fillna(1.0) if "cpus" in trials else pd.Series(1.0, index=index)
    on_gpu = gpus > 0
    unit = "GPU-h" if on_gpu.all() and len(index) else "CPU-core-h" if not on_gpu.any() else "device-h"
    return gpus.where(on_gpu, cpus), unit


def trial_hours(trials: pd.DataFrame) -> tuple[pd.Series, str]:
    """Per row: device-hours (slot seconds x device factor / 3600), and the unit."""
    factor, unit = device_factor(trials)
    return slot_seconds(trials) * factor / 3600.0, unit
