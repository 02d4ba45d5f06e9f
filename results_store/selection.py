"""The one answer to "best": the best epoch of a trial, the best configuration over seeds, the protocols.

**The best epoch of a trial** is the epoch with the highest finite validation Δp, the earliest on ties
(:func:`mtl.best_epoch.best_record`, defined in ``mtl`` so that ``mtl train`` reports the same epoch without
pandas). A trial's ``trials/`` row stores its test and validation results at that epoch
(:func:`summarize_records`).

**The best configuration.** Within a study a method may run many hyperparameter configurations (the
values of its ``hp/*`` columns), each with several seeds. For every (dataset, method) the tables, and
``study run``'s summary, report *one* configuration, chosen on validation only, as the papers do
(:func:`select`):

1. eligible trials are those with status ``completed`` or ``running`` and a finite ``best_val_delta_p``;
   if a (dataset, method) has none, its ``stopped`` trials (ended early by ASHA) are used instead and the
   row is flagged; ``failed`` trials never count;
2. trials are grouped into configurations by their label (:mod:`results_store.labels`: the ``config_id`` where
   stored, else the ``hp/*`` values; nulls are "not searched");
3. the configuration with the highest *mean over its seeds* of ``best_val_delta_p`` wins (ties: the one
   with more seeds, then the first in sorted order);
4. its trials' test results — taken at each trial's own best validation epoch, as stored in ``trials/`` —
   are then averaged over seeds (mean ± sample std, ``ddof=1``).

The same rule, restricted to subsets (e.g. one value of β), gives the hyperparameter figures; across the
methods of a dataset, :func:`best_selection` picks the best of the chosen configurations by the same score.

**Selection protocols**: which epochs a trial's ``best_val_delta_p`` and test values come from.

Two protocols (issue 22, DESIGN §9); every table, comparison, figure and report of :mod:`analysis` reads
the trial values :func:`apply` puts into the ``trials`` table, and names the protocol in its caption:

``best_val`` (default; DB-MTL, IGB, LibMTL):
    each trial's test (and validation) metrics, Δp and Δm at its best validation epoch (the epoch with the
    highest finite validation Δp), exactly as ``trials/`` stores them (or as :mod:`analysis.reference`
    rescored them). Its validation score is ``best_val_delta_p``.

``last_k`` (nash-mtl's NYUv2 protocol, k = 10: "the test performance averaged over the last 10 epochs",
AvivNavon/nash-mtl ``experiments/nyuv2/README.md``, after Liu et al. 2019 / CAGrad):
    each trial's test and validation metrics are the mean over its last ``min(k, epochs it recorded)``
    epochs (fewer than k when the trial ran fewer epochs, e.g. one ASHA stopped; the number used is in the
    ``selection_epochs`` column). nash-mtl computes Δm *of the averaged metrics*. Δp (DB-MTL Eq. 3-4) and
    Δm (IGB Eq. 5) are affine in the metrics for a fixed reference, so Δp/Δm of the mean metrics equals
    the mean of the per-epoch Δp/Δm; this module takes the mean of the stored (or rescored) per-epoch
    ``test_delta_p``/``test_delta_m``/``val_delta_p``/``val_delta_m``, which needs no reference and is
    identical. A non-finite value in the window makes that trial's value non-finite (the trial is then
    not eligible, as a failed one). The trial's validation score (``best_val_delta_p``, the column the
    configuration choice of :mod:`analysis.load` reads) becomes the mean validation Δp of the same epochs,
    so configurations are still chosen on validation only, under the same protocol.

Under ``--reference study`` the STL reference itself stays as :mod:`analysis.reference` defines it (each
STL trial's best validation epoch on its own task); the protocol applies to the rescored epoch rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mtl.best_epoch import SCORE as EPOCH_SCORE
from mtl.best_epoch import best_record
from results_store.labels import CONFIG, with_config

SCORE = "best_val_delta_p"
"""The trials column holding each trial's validation score under the protocol (configuration choice)."""
ELIGIBLE = ("completed", "running")
FALLBACK = ("stopped",)


# -- the best epoch of a trial ---------------------------------------------------------------------------
def summarize_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The metric part of a ``trials/`` row: the best epoch (:func:`mtl.best_epoch.best_record`) and the
    results at that epoch."""
    best = best_record(records)
    out: dict[str, Any] = {
        "epochs_done": len(records),
        "best_epoch": None if best is None else int(best["epoch"]),
        "best_val_delta_p": None if best is None else float(best[EPOCH_SCORE]),
        "time_total": float(sum(r.get("time_epoch", 0.0) or 0.0 for r in records)),
    }
    source = best if best is not None else {}
    keys = [k for k in (records[-1] if records else {}) if k.startswith(("test/", "val/"))]
    for key in ("test_delta_p", "test_delta_m", "val_delta_m", *keys):
        out[key] = source.get(key)
    return out


# -- the best configuration over seeds -------------------------------------------------------------------
def eligible_trials(trials: pd.DataFrame, statuses: Sequence[str] = ELIGIBLE) -> pd.DataFrame:
    """Trials with one of ``statuses`` and a finite ``best_val_delta_p``."""
    if trials.empty or SCORE not in trials.columns:
        return trials.iloc[0:0]
    ok = trials["status"].isin(list(statuses)) & np.isfinite(trials[SCORE].astype(float))
    return trials[ok]


def best_config(trials: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """The trials of the best configuration in each group of ``by`` (module docstring, rule 3).

    ``trials`` must already be eligible (:func:`eligible_trials`) and carry
    :data:`results_store.labels.CONFIG`.
    Returns those trials, with an added ``selected_val`` column (the configuration's mean
    ``best_val_delta_p``).
    """
    if trials.empty:
        return trials.assign(selected_val=pd.Series(dtype=float))
    keys = list(by)
    stats = (
        trials.groupby([*keys, CONFIG], dropna=False, sort=True)[SCORE].agg(["mean", "count"]).reset_index()
    )
    stats = stats.sort_values(
        [*keys, "mean", "count", CONFIG], ascending=[True] * len(keys) + [False, False, True]
    )
    chosen = stats.groupby(keys, dropna=False, sort=False).head(1) if keys else stats.head(1)
    chosen = chosen[[*keys, CONFIG, "mean"]].rename(columns={"mean": "selected_val"})
    return trials.merge(chosen, on=[*keys, CONFIG], how="inner")


@dataclass
class Selection:
    """The trials a table reports for one (dataset, method), and why (module docstring)."""

    dataset: str
    method: str
    config: str
    trials: pd.DataFrame
    fallback_stopped: bool = False

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.trials["seed"])

    @property
    def running(self) -> bool:
        return bool((self.trials["status"] == "running").any())

    @property
    def score(self) -> float:
        """The configuration's mean validation score over its seeds (what it was chosen by)."""
        return float(self.trials["selected_val"].iloc[0])

    def mean(self, column: str) -> float:
        """The mean over the configuration's seeds of ``column`` (NaN where absent)."""
        if column not in self.trials.columns:
            return float("nan")
        return float(self.trials[column].astype(float).mean())


def select(
    trials: pd.DataFrame,
    dataset: str,
    method: str,
    restrict: Callable[[pd.DataFrame], pd.Series] | None = None,
) -> Selection | None:
    """The best configuration of ``method`` on ``dataset`` and its trials, or None if it has no eligible
    trial (not even a stopped one). ``restrict``: a row mask over the method's trials to choose among (e.g.
    its paper-default rows, :func:`analysis.fair.select_default`)."""
    if trials.empty:
        return None
    mine = trials[(trials["dataset"] == dataset) & (trials["method"] == method)]
    if restrict is not None:
        mine = mine[restrict(mine)]
    if CONFIG not in mine.columns:
        mine = with_config(mine)
    pool, fallback = eligible_trials(mine), False
    if pool.empty:
        pool, fallback = eligible_trials(mine, FALLBACK), True
    if pool.empty:
        return None
    chosen = best_config(pool)
    return Selection(dataset, method, str(chosen[CONFIG].iloc[0]), chosen, fallback)


def best_selection(chosen: Iterable[Selection]) -> Selection | None:
    """The best of several methods' chosen configurations (of one dataset) by the same rule: the highest
    mean validation score, then more seeds, then the first method in sorted order; None if none."""
    ranked = sorted(chosen, key=lambda s: (-s.score, -len(s.trials), s.method))
    return ranked[0] if ranked else None


# -- selection protocols ---------------------------------------------------------------------------------
BEST_VAL = "best_val"
LAST_K = "last_k"
CHOICES = (BEST_VAL, LAST_K)
DEFAULT_K = 10
EPOCHS_USED = "selection_epochs"
"""Column added under ``last_k``: how many epochs each trial's values average (``min(k, epochs)``)."""
_KEY = ("dataset", "method", "trial_id")
_SCALARS = ("val_delta_p", "val_delta_m", "test_delta_p", "test_delta_m")


@dataclass(frozen=True)
class Protocol:
    """A selection protocol: ``name`` in :data:`CHOICES`; ``k`` is used by ``last_k`` only."""

    name: str = BEST_VAL
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        if self.name not in CHOICES:
            raise ValueError(f"unknown selection {self.name!r}; valid: {', '.join(CHOICES)}")
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"--last-k must be a positive integer, got {self.k!r}")

    @property
    def short(self) -> str:
        """``selection best_val`` or ``selection last_k, k = 10`` (every caption carries it)."""
        return f"selection {self.name}" + (f", k = {self.k}" if self.name == LAST_K else "")

    @property
    def where(self) -> str:
        """Where a trial's test metrics are read, in words (for titles)."""
        if self.name == BEST_VAL:
            return "test metrics at the best validation epoch"
        return f"test metrics averaged over the last {self.k} epochs"

    def label(self) -> str:
        """The protocol in one sentence (tables' notes, the report's header)."""
        if self.name == BEST_VAL:
            return (
                "Selection best_val: each trial's test metrics, Δp and Δm at its best validation epoch; the "
                "configuration with the best mean validation Δp over seeds is reported."
            )
        return (
            f"Selection last_k (k = {self.k}; nash-mtl's NYUv2 protocol): each trial's test metrics averaged "
            f"over its last {self.k} epochs (all of them when it ran fewer), Δp/Δm the mean of the per-epoch "
            "values (= Δp/Δm of the mean metrics: both are affine in the metrics); the configuration with "
            "the best mean over seeds of the same epochs' validation Δp is reported."
        )


def protocol(name: str = BEST_VAL, k: int = DEFAULT_K) -> Protocol:
    """A validated :class:`Protocol` (raises :class:`ValueError` for an unknown name or k < 1)."""
    return Protocol(name, k)


def _value_columns(epochs: pd.DataFrame) -> list[str]:
    metrics = [c for c in epochs.columns if c.startswith(("val/", "test/")) and c.count("/") == 2]
    return [c for c in _SCALARS if c in epochs.columns] + metrics


def last_k_values(epochs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per trial (``dataset``, ``method``, ``trial_id``): the mean of each value column over its last
    ``min(k, n)`` epoch rows (by ``epoch``), any non-finite value making that mean NaN, and the count used
    (:data:`EPOCHS_USED`)."""
    keys = [c for c in _KEY if c in epochs.columns]
    columns = _value_columns(epochs)
    if epochs.empty or not columns or "epoch" not in epochs.columns:
        return pd.DataFrame(columns=[*keys, *columns, EPOCHS_USED])
    ordered = epochs.sort_values([*keys, "epoch"], kind="stable")
    window = ordered.groupby(keys, sort=False, dropna=False).tail(k)
    values = window[columns].astype(float)
    values = values.where(np.isfinite(values), np.nan)
    by = [window[c] for c in keys]
    grouped = values.groupby(by, sort=False, dropna=False)
    bad = values.isna().groupby(by, sort=False, dropna=False).any()  # a non-finite epoch: no value
    means = grouped.mean().mask(bad)
    means[EPOCHS_USED] = grouped.size()
    return means.reset_index()


def apply(trials: pd.DataFrame, epochs: pd.DataFrame, chosen: Protocol) -> pd.DataFrame:
    """``trials`` with each trial's values taken under ``chosen`` (module docstring); ``trials`` itself is
    left as it is. ``best_val`` returns it unchanged; ``last_k`` replaces ``best_val_delta_p`` (the
    validation score), ``val_delta_m``, ``test_delta_p``, ``test_delta_m`` and every ``val/*``/``test/*``
    metric by the last-k means from ``epochs``, and adds :data:`EPOCHS_USED`. A trial without epoch rows
    gets NaN (never eligible)."""
    if chosen.name == BEST_VAL or trials.empty:
        return trials
    keys = [c for c in _KEY if c in trials.columns]
    means = last_k_values(epochs, chosen.k) if not epochs.empty else pd.DataFrame(columns=keys)
    out = trials.copy()
    merged = out[keys].merge(means, on=keys, how="left")
    merged.index = out.index
    for column in [c for c in merged.columns if c not in keys]:
        target = SCORE if column == "val_delta_p" else column
        out[target] = merged[column].astype(float)
    if EPOCHS_USED not in out.columns:
        out[EPOCHS_USED] = np.nan
    for column in (SCORE, "test_delta_p"):
        if column not in out.columns:
            out[column] = np.nan
    return out
