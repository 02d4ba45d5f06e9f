"""The best epoch of a training run: the one definition of the rule (standard library only).

A run's best epoch is the epoch record with the highest finite validation Δp (``val_delta_p``, higher is
better), the earliest on ties; a run without a finite one has none. ``mtl train`` reports it, a study's
``trials/`` row stores it (:mod:`results_store.selection`) and a study trial reports it to Ray Tune, all
through
:func:`best_record`. Choosing the best *configuration* over seeds is :mod:`results_store.selection`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

SCORE = "val_delta_p"
"""The record key an epoch is judged by."""


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def best_record(records: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The record with the highest finite :data:`SCORE` (earliest on ties), or None when none is finite."""
    best = None
    for record in records:
        value = record.get(SCORE)
        if _finite(value) and (best is None or value > best[SCORE]):
            best = record
    return best
