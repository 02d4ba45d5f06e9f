"""Paired comparison of two methods across seeds: is a gain real or noise?

With the same seeds for both methods (same data order, same initialisation), the per-seed differences
``d_s = a_s − b_s`` cancel the variance the seed shares between methods. :func:`paired_bootstrap` reports
their mean and a percentile bootstrap confidence interval (resampling the *pairs* with replacement,
``n_boot`` times, with a seeded generator so the interval is reproducible). With only a handful of seeds
(the papers use 3) the interval is coarse — it can never be wider than the range of the differences — so
read it together with ``n_pairs``. No paper reports this; DB-MTL and IGB give mean ± std per method only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.load import Study
from analysis.metrics import Stored, higher_is_better
from results_store.selection import select

SMALL_N = 5  # below this many pairs the summary warns that the percentile interval is optimistic


@dataclass(frozen=True)
class PairedComparison:
    """The result of :func:`paired_bootstrap` (difference = ``a − b``)."""

    a: str
    b: str
    metric: str
    n_pairs: int
    seeds: tuple[int, ...]
    mean_a: float
    mean_b: float
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    n_boot: int
    higher_is_better: bool | None
    unpaired_seeds: tuple[int, ...] = ()

    @property
    def significant(self) -> bool:
        """True when the confidence interval excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def verdict(self) -> str:
        """Which method is better at this confidence, or that the data cannot tell."""
        if not self.significant:
            return "no clear difference (the interval contains 0)"
        if self.higher_is_better is None:
            return f"{self.a} {'higher' if self.mean_diff > 0 else 'lower'} than {self.b}"
        a_better = (self.mean_diff > 0) == self.higher_is_better
        return f"{self.a if a_better else self.b} is better"

    def summary(self) -> str:
        """One line for the terminal or a report."""
        pct = round(100 * self.confidence)
        extra = f"; unpaired seeds ignored: {list(self.unpaired_seeds)}" if self.unpaired_seeds else ""
        if self.n_pairs < SMALL_N:
            extra += (
                f" (caution: with {self.n_pairs} pairs the bootstrap interval is only as wide as the data)"
            )
        return (
            f"{self.metric}: {self.a} − {self.b} = {self.mean_diff:+.3f} "
            f"[{pct}% CI {self.ci_low:+.3f}, {self.ci_high:+.3f}] over {self.n_pairs} paired seeds "
            f"{list(self.seeds)} ({self.a} {self.mean_a:.3f}, {self.b} {self.mean_b:.3f}) — "
            f"{self.verdict}{extra}"
        )


def paired_bootstrap(
    a: pd.Series | dict[int, float],
    b: pd.Series | dict[int, float],
    *,
    names: tuple[str, str] = ("a", "b"),
    metric: str = "test_delta_p",
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    stored: Stored | None = None,
) -> PairedComparison:
    """Mean of ``a[s] − b[s]`` over the seeds ``s`` both have, with a percentile bootstrap CI.

    ``stored``: the metric directions the study stored (:func:`analysis.metrics.stored_directions`), which
    say whether the difference favours ``a``.

    ``a`` and ``b`` map seed -> value (a Series indexed by seed, or a dict). Non-finite values are dropped;
    seeds present in only one side are listed in ``unpaired_seeds``. Raises :class:`ValueError` if fewer than
    2 seeds pair up (a single difference has no spread to resample).
    """
    sa, sb = pd.Series(a, dtype=float), pd.Series(b, dtype=float)
    sa, sb = sa[np.isfinite(sa)], sb[np.isfinite(sb)]
    if sa.index.has_duplicates or sb.index.has_duplicates:
        raise ValueError("each seed may appear once per method (average repeated trials first)")
    common = sorted(set(sa.index) & set(sb.index))
    unpaired = tuple(sorted(set(sa.index) ^ set(sb.index)))
    if len(common) < 2:
        raise ValueError(
            f"a paired comparison needs at least 2 seeds run by both methods; {names[0]} has seeds "
            f"{sorted(sa.index)}, {names[1]} has {sorted(sb.index)} (shared: {common})"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    x, y = sa.loc[common].to_numpy(), sb.loc[common].to_numpy()
    d = x - y
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return PairedComparison(
        a=names[0],
        b=names[1],
        metric=metric,
        n_pairs=len(d),
        seeds=tuple(int(s) for s in common),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        mean_diff=float(d.mean()),
        std_diff=float(np.std(d, ddof=1)),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        n_boot=n_boot,
        higher_is_better=_direction(metric, stored),
        unpaired_seeds=tuple(int(s) for s in unpaired),
    )


def _direction(metric: str, stored: Stored | None = None) -> bool | None:
    parts = metric.split("/")
    return higher_is_better(parts[-1], parts[1] if len(parts) == 3 else None, stored=stored)


def per_seed(trials: pd.DataFrame, metric: str) -> pd.Series:
    """``metric`` per seed (trials of one seed averaged, which only happens if a configuration was rerun)."""
    if metric not in trials.columns:
        raise KeyError(f"column '{metric}' is not in the trials table")
    return trials.groupby("seed")[metric].mean().astype(float)


def compare(
    study: Study,
    a: str,
    b: str,
    *,
    dataset: str | None = None,
    metric: str = "test_delta_p",
    n_boot: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap of methods ``a`` and ``b`` on ``dataset`` (optional when the study has one), each in
    the configuration the leaderboard reports (:func:`analysis.load.select`), paired by seed."""
    datasets = study.datasets
    if dataset is None:
        if len(datasets) != 1:
            raise ValueError(f"the study has datasets {datasets}: choose one")
        dataset = datasets[0]
    chosen = {}
    for method in (a, b):
        sel = select(study.trials, dataset, method)
        if sel is None:
            known = study.methods(dataset)
            raise ValueError(
                f"method '{method}' has no eligible trial on '{dataset}'; methods there: {known}"
            )
        chosen[method] = sel
    return paired_bootstrap(
        per_seed(chosen[a].trials, metric),
        per_seed(chosen[b].trials, metric),
        names=(a, b),
        metric=metric,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        stored=study.directions(dataset),
    )


def compare_all(
    study: Study,
    dataset: str,
    baseline: str = "ew",
    metric: str = "test_delta_p",
    *,
    focus: bool = False,
    **kwargs: float,
) -> list[PairedComparison | str]:
    """Every method of ``dataset`` against ``baseline`` (difference = method − baseline); with ``focus``,
    ``baseline`` against every other method instead (difference = baseline − method: "is DB-MTL better than
    each variant?"). A method that cannot be paired gives the reason."""
    out: list[PairedComparison | str] = []
    for method in study.methods(dataset):
        if method in (baseline, "stl"):
            continue
        a, b = (baseline, method) if focus else (method, baseline)
        try:
            out.append(compare(study, a, b, dataset=dataset, metric=metric, **kwargs))  # type: ignore[arg-type]
        except (ValueError, KeyError) as exc:
            out.append(f"{a} vs {b}: {exc}")
    return out
