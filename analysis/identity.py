"""What each row's method *is*: its balancer and aggregator, as the study stored them (DESIGN §6).

Since schema version 2 every row carries the canonical method name (the ``method`` partition) and its parts
``balancer`` and ``aggregator`` (``mtl.methods.parse_method``), so analysis code finds a method by what it
does, never by a list of spellings: DB-MTL is balancer ``si`` (the log transform) with aggregator
``max_norm`` (DB-MTL Alg. 1), whatever the study file called it.

Studies written before (schema version 1) have no such columns. :func:`with_identity` fills them for the
method names those studies could hold that analysis looks for (:data:`LEGACY_PARTS`, the spellings the v1
tables and plots recognised); any other v1 method keeps null parts and is simply not found by
:func:`has_parts`. Nothing else in :mod:`analysis` knows a method's spellings.
"""

from __future__ import annotations

import pandas as pd

BALANCER, AGGREGATOR = "balancer", "aggregator"
NO_AGGREGATOR = None

# (balancer, aggregator) of the DB-MTL Table 5 variants: neither, log only, max-norm only, both
EW = ("ew", NO_AGGREGATOR)
SI = ("si", NO_AGGREGATOR)
MAX_NORM = ("ew", "max_norm")
DB_MTL = ("si", "max_norm")

# Fallback for schema-version-1 studies only: the method names v1 analysis recognised, and their parts.
LEGACY_PARTS: dict[str, tuple[str, str | None]] = {
    "ew": EW,
    "si": SI,
    "log": SI,
    "max_norm": MAX_NORM,
    "ew+max_norm": MAX_NORM,
    "db_mtl": DB_MTL,
    "log+max_norm": DB_MTL,
    "si+max_norm": DB_MTL,
    "stl": ("stl", NO_AGGREGATOR),
}


def with_identity(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``balancer``/``aggregator`` columns: as stored, or (rows that stored neither, i.e.
    schema version 1) from :data:`LEGACY_PARTS` by method name."""
    if frame.empty or "method" not in frame.columns:
        return frame
    frame = frame.copy()
    for column in (BALANCER, AGGREGATOR):
        if column not in frame.columns:
            frame[column] = None
    missing = frame[BALANCER].isna() & frame[AGGREGATOR].isna()
    if missing.any():
        parts = frame.loc[missing, "method"].map(lambda m: LEGACY_PARTS.get(str(m), (None, None)))
        frame.loc[missing, BALANCER] = parts.map(lambda p: p[0])
        frame.loc[missing, AGGREGATOR] = parts.map(lambda p: p[1])
    return frame


def has_parts(frame: pd.DataFrame, parts: tuple[str, str | None]) -> pd.Series:
    """Rows whose method is balancer ``parts[0]`` with aggregator ``parts[1]`` (None: no aggregator)."""
    if frame.empty or BALANCER not in frame.columns:
        return pd.Series(False, index=frame.index)
    balancer, aggregator = parts
    same_aggregator = frame[AGGREGATOR].isna() if aggregator is None else frame[AGGREGATOR] == aggregator
    return (frame[BALANCER] == balancer) & same_aggregator


def methods_with(frame: pd.DataFrame, parts: tuple[str, str | None]) -> list[str]:
    """The method names (canonical: one per method since schema version 2) that are ``parts``."""
    if frame.empty:
        return []
    return sorted(set(frame.loc[has_parts(frame, parts), "method"].dropna()))
