"""Which epochs of a trial its reported numbers come from: the one place the selection protocol is defined.

Two protocols (issue 22, DESIGN §9); every table, comparison, figure and report of :mod:`analysis` reads
the trial values this module puts into the ``trials`` table, and names the protocol in its caption:

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

from dataclasses import dataclass

import numpy as np
import pandas as pd

BEST_VAL = "best_val"
LAST_K = "last_k"
CHOICES = (BEST_VAL, LAST_K)
DEFAULT_K = 10
SCORE = "best_val_delta_p"
"""The trials column holding each trial's validation score under the protocol (configuration choice)."""
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
