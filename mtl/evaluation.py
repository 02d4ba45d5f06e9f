"""Multi-task performance summaries relative to single-task references (DESIGN §4).

Both functions take nested mappings ``task -> metric -> value``; ``higher_is_better`` has the same shape
with booleans. Every metric of ``reference`` must be present in ``result``; extra metrics in ``result``
are ignored. Both return percent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from mtl.errors import ConfigError

NestedValues = Mapping[str, Mapping[str, float]]
NestedFlags = Mapping[str, Mapping[str, bool]]


def _relative_terms(
    result: NestedValues, reference: NestedValues, higher_is_better: NestedFlags, sign_if_higher: int
) -> dict[str, list[float]]:
    """Per task, the list of ``±(M − M_ref)/M_ref`` with sign +1 for higher-is-better metrics when
    ``sign_if_higher`` is +1 (Δp), and −1 (Δm)."""
    if not reference:
        raise ConfigError("the reference is empty")
    terms: dict[str, list[float]] = {}
    for task, ref_metrics in reference.items():
        if task not in result:
            raise ConfigError(f"task '{task}' of the reference is missing from the result")
        if task not in higher_is_better:
            raise ConfigError(f"task '{task}' has no higher_is_better flags")
        terms[task] = []
        for metric, ref in ref_metrics.items():
            if metric not in result[task]:
                raise ConfigError(f"metric '{task}/{metric}' of the reference is missing from the result")
            if metric not in higher_is_better[task]:
                raise ConfigError(f"metric '{task}/{metric}' has no higher_is_better flag")
            ref = float(ref)
            if ref == 0.0 or not math.isfinite(ref):
                raise ConfigError(
                    f"reference value of '{task}/{metric}' must be finite and non-zero, got {ref}"
                )
            value = float(result[task][metric])
            sign = sign_if_higher if higher_is_better[task][metric] else -sign_if_higher
            terms[task].append(sign * (value - ref) / ref)
        if not terms[task]:
            raise ConfigError(f"task '{task}' of the reference has no metrics")
    return terms


def delta_p(result: NestedValues, reference: NestedValues, higher_is_better: NestedFlags) -> float:
    """Δp (DB-MTL paper Eq. 3-4), higher is better:
    ``100 · (1/T) Σ_t (1/N_t) Σ_i (−1)^{s_{t,i}} (M_{t,i} − M^ref_{t,i}) / M^ref_{t,i}``,
    ``s = 1`` when lower is better. Each task counts equally, whatever its number of metrics."""
    terms = _relative_terms(result, reference, higher_is_better, sign_if_higher=+1)
    per_task = [sum(v) / len(v) for v in terms.values()]
    return 100.0 * sum(per_task) / len(per_task)


def delta_m(result: NestedValues, reference: NestedValues, higher_is_better: NestedFlags) -> float:
    """Δm (IGB paper Eq. 5), lower is better:
    ``100 · (1/K) Σ_k (−1)^{δ_k} (M_k − M^ref_k) / M^ref_k`` over all K metrics, ``δ = 1`` when higher is
    better. Each metric counts equally."""
    terms = _relative_terms(result, reference, higher_is_better, sign_if_higher=-1)
    flat = [x for v in terms.values() for x in v]
    return 100.0 * sum(flat) / len(flat)
