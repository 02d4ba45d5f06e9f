"""How busy the cluster's trial slots were, from a study's ``trials/`` rows alone (DESIGN §6).

Every trial row records when the trial started (``started_at``) and ended (``ended_at``, UTC; null while it
runs) and on which node (``node_id``, ``host``). A trial occupies one slot from start to end, so

    utilisation = Σ_trials busy time / (slots × wall time)

where ``slots`` is how many trials the cluster can run at once (e.g. 8 GPUs at ``gpus_per_trial: 0.25`` give
32; the results do not know the cluster, so the caller says) and the wall time is the window from the first
start to the last end, or a window the caller gives (e.g. to leave out Ray's start-up or a ramp-down);
busy time is clipped to the window. A trial still running counts until its row's ``updated_at``.
A trial restored after an interrupted driver counts from its first start (``started_at`` is kept across
restarts), so a gap while the driver was down counts as busy: measure such studies per run with a window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

Timestamp = pd.Timestamp | dt.datetime | str


@dataclass(frozen=True)
class Utilisation:
    """Σ busy seconds over ``trials`` trials, in ``slots`` slots, over a window of ``wall_s`` seconds."""

    busy_s: float
    wall_s: float
    slots: float
    trials: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None

    @property
    def value(self) -> float:
        """busy / (slots × wall), in [0, 1] when ``slots`` is the true capacity; NaN for an empty window."""
        capacity = self.slots * self.wall_s
        return self.busy_s / capacity if capacity > 0 else float("nan")

    def summary(self) -> str:
        return (
            f"utilisation {100 * self.value:.1f}% ({self.busy_s:.1f} trial-s busy / ({self.slots:g} slots × "
            f"{self.wall_s:.1f} s wall), {self.trials} trials)"
        )


def busy_intervals(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per trial that has started: ``trial_id``, ``node_id``, ``host``, ``start``, ``end`` (UTC;
    ``end`` is ``ended_at``, or ``updated_at`` while the trial runs)."""
    needed = {"started_at", "updated_at"}
    if trials.empty or not needed <= set(trials.columns):
        return pd.DataFrame(columns=["trial_id", "node_id", "host", "start", "end"])
    ended = trials["ended_at"] if "ended_at" in trials.columns else pd.Series(pd.NaT, index=trials.index)
    out = pd.DataFrame(
        {
            "trial_id": trials["trial_id"],
            "node_id": trials.get("node_id"),
            "host": trials.get("host"),
            "start": pd.to_datetime(trials["started_at"], utc=True),
            "end": pd.to_datetime(ended, utc=True).fillna(pd.to_datetime(trials["updated_at"], utc=True)),
        }
    )
    out = out[out["start"].notna() & out["end"].notna()]
    return out[out["end"] >= out["start"]].reset_index(drop=True)


def _utc(value: Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utilisation(
    trials: pd.DataFrame,
    slots: float,
    start: Timestamp | None = None,
    end: Timestamp | None = None,
) -> Utilisation:
    """Slot utilisation of ``trials`` (a ``trials/`` frame, :func:`results_store.reader.read_trials`) on a
    cluster
    of ``slots`` concurrent trial slots, over [``start``, ``end``] (default: first start to last end)."""
    if slots <= 0:
        raise ValueError(f"slots must be positive, got {slots}")
    spans = busy_intervals(trials)
    if spans.empty:
        return Utilisation(0.0, 0.0, float(slots), 0, _utc(start), _utc(end))
    lo = _utc(start) or spans["start"].min()
    hi = _utc(end) or spans["end"].max()
    if hi < lo:
        raise ValueError(f"the window ends ({hi}) before it starts ({lo})")
    clipped_start = spans["start"].clip(lower=lo, upper=hi)
    clipped_end = spans["end"].clip(lower=lo, upper=hi)
    busy = (clipped_end - clipped_start).dt.total_seconds()
    inside = int((busy > 0).sum())
    return Utilisation(float(busy.sum()), (hi - lo).total_seconds(), float(slots), inside, lo, hi)


def peak_concurrency(trials: pd.DataFrame) -> int:
    """The most trials that were running at one moment (an end and a start at the same instant do not
    overlap)."""
    spans = busy_intervals(trials)
    if spans.empty:
        return 0
    times = np.concatenate([spans["start"].to_numpy(), spans["end"].to_numpy()])
    steps = np.concatenate([np.ones(len(spans), dtype=int), -np.ones(len(spans), dtype=int)])
    order = np.lexsort((steps, times))  # at equal times, ends (-1) first
    return int(np.cumsum(steps[order]).max())


def by_node(trials: pd.DataFrame) -> pd.DataFrame:
    """Per node (``node_id``, else ``host``): trials, busy seconds, first start and last end."""
    spans = busy_intervals(trials)
    if spans.empty:
        return pd.DataFrame(columns=["node", "trials", "busy_s", "first_start", "last_end"])
    node = spans["node_id"].fillna(spans["host"]).fillna("?") if "node_id" in spans else spans["host"]
    spans = spans.assign(node=node, busy_s=(spans["end"] - spans["start"]).dt.total_seconds())
    return (
        spans.groupby("node")
        .agg(
            trials=("trial_id", "count"),
            busy_s=("busy_s", "sum"),
            first_start=("start", "min"),
            last_end=("end", "max"),
        )
        .reset_index()
    )
