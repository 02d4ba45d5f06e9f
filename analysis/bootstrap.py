"""Seed-level uncertainty for the fair comparison (issue 22): t-intervals, paired bootstrap probabilities,
rank distributions over bootstrap resamples, and Kendall's τ-b between two rankings.

**Resamples.** A bootstrap resample draws n seeds with replacement from the n seeds the compared methods
share (paired: the same draw for every method, so seed-shared variance cancels). With few seeds the
bootstrap distribution is small enough to enumerate: when ``n ** n <= n_boot`` every one of the ``n ** n``
equally likely ordered draws is used once (exact; 3 seeds: 27 draws); otherwise ``n_boot`` draws come from
``numpy.random.default_rng(seed)`` (Monte Carlo). :class:`Resamples` says which.

**P(a beats b)** = the fraction of resamples in which the mean over the drawn seeds of ``a − b`` is > 0;
a resample with mean difference exactly 0 (e.g. identical values) counts as neither a win nor a loss
(``p_worse`` is the fraction < 0). Efron & Tibshirani (1993) ch. 16 (bootstrap of a paired difference);
no MTL paper reports it, the re-tuning papers (Xin et al. 2022) argue for it.

**Ranks** in a resample are competition ranks ("min": 1 + the number of methods with a strictly higher
mean), so tied methods share a rank and each method's rank fractions sum to 1.

**Kendall's τ-b** (Kendall 1945): (C − D) / sqrt((n0 − n1)(n0 − n2)), C/D the concordant/discordant
pairs, n0 = n(n−1)/2, n1/n2 the pairs tied in x/y; checked against ``scipy.stats.kendalltau`` (SciPy 1.17,
variant "b") in the tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _stats


@dataclass(frozen=True)
class Interval:
    """Mean and ``confidence`` t-interval over ``n`` seeds: mean ± t_{(1+c)/2, n−1} · s / √n (s: sample
    std, ddof=1); no interval (NaN bounds) for a single seed."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, decimals: int = 2) -> str:
        if not math.isfinite(self.mean):
            return "—"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{self.mean:.{decimals}f}"
        return f"{self.mean:.{decimals}f} [{self.low:.{decimals}f}, {self.high:.{decimals}f}]"


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """:class:`Interval` of the finite ``values`` (Student's t, n − 1 degrees of freedom)."""
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(arr.mean())
    if arr.size == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = (
        float(_stats.t.ppf((1 + confidence) / 2, arr.size - 1)) * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    )
    return Interval(mean, mean - half, mean + half, int(arr.size))


@dataclass(frozen=True)
class Resamples:
    """Index draws (rows: resamples, columns: positions of the drawn seeds) and how they were made."""

    index: np.ndarray
    exact: bool
    seed: int

    def describe(self, n_seeds: int) -> str:
        if self.exact:
            return f"all {len(self.index)} resamples of {n_seeds} seeds enumerated (exact bootstrap)"
        return f"{len(self.index)} random resamples of {n_seeds} seeds (numpy default_rng seed {self.seed})"


def resamples(n: int, n_boot: int = 10_000, seed: int = 0) -> Resamples:
    """The bootstrap draws of ``n`` seeds (module docstring): exact when ``n ** n <= n_boot``."""
    if n < 1:
        raise ValueError(f"bootstrap needs at least one seed, got {n}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if n**n <= n_boot:
        index = np.array(list(itertools.product(range(n), repeat=n)), dtype=int).reshape(-1, n)
        return Resamples(index, True, seed)
    return Resamples(np.random.default_rng(seed).integers(0, n, size=(n_boot, n)), False, seed)


@dataclass(frozen=True)
class BeatProbability:
    """P(``a`` beats ``b``) over paired resamples of their shared seeds (module docstring)."""

    p_beat: float
    p_worse: float
    seeds: tuple[int, ...]
    how: str

    @property
    def n_pairs(self) -> int:
        return len(self.seeds)


def _shared(a: Mapping[int, float], b: Mapping[int, float]) -> list[int]:
    ok = lambda m, s: s in m and math.isfinite(float(m[s]))  # noqa: E731
    return sorted(s for s in set(a) | set(b) if ok(a, s) and ok(b, s))


def beat_probability(
    a: Mapping[int, float], b: Mapping[int, float], n_boot: int = 10_000, seed: int = 0
) -> BeatProbability:
    """P(mean of ``a`` > mean of ``b``) over paired bootstrap resamples of the seeds both have (``a``/``b``:
    seed -> value, higher is better). Raises :class:`ValueError` below 2 shared seeds (one pair has no
    spread to resample)."""
    seeds = _shared(a, b)
    if len(seeds) < 2:
        raise ValueError(f"needs at least 2 shared seeds, has {len(seeds)} ({seeds})")
    d = np.array([float(a[s]) - float(b[s]) for s in seeds])
    draws = resamples(len(seeds), n_boot, seed)
    means = d[draws.index].mean(axis=1)
    return BeatProbability(
        float(np.mean(means > 0)), float(np.mean(means < 0)), tuple(seeds), draws.describe(len(seeds))
    )


@dataclass(frozen=True)
class RankDistribution:
    """``fractions[m][r - 1]``: the fraction of resamples in which method ``m`` ranks ``r``."""

    fractions: dict[str, list[float]]
    seeds: tuple[int, ...]
    how: str

    def first(self, method: str) -> float:
        return self.fractions[method][0] if method in self.fractions else math.nan


def rank_distribution(
    values: Mapping[str, Mapping[int, float]], n_boot: int = 10_000, seed: int = 0
) -> RankDistribution:
    """Ranks (higher is better, competition ranks) of every method in each paired resample of the seeds
    *all* methods have. Raises :class:`ValueError` when they share fewer than 2 seeds."""
    methods = list(values)
    if not methods:
        raise ValueError("no methods to rank")
    common = set.intersection(
        *(set(s for s, v in values[m].items() if math.isfinite(float(v))) for m in methods)
    )
    seeds = sorted(common)
    if len(seeds) < 2:
        raise ValueError(f"the methods share {len(seeds)} seed(s) ({seeds}); a rank distribution needs 2")
    matrix = np.array([[float(values[m][s]) for s in seeds] for m in methods])  # methods × seeds
    draws = resamples(len(seeds), n_boot, seed)
    means = matrix[:, draws.index].mean(axis=2).T  # resamples × methods
    ranks = 1 + (means[:, None, :] > means[:, :, None]).sum(axis=2)  # rank of column m: 1 + #strictly better
    fractions = {
        m: [float(np.mean(ranks[:, j] == r)) for r in range(1, len(methods) + 1)]
        for j, m in enumerate(methods)
    }
    return RankDistribution(fractions, tuple(seeds), draws.describe(len(seeds)))


def competition_ranks(values: Mapping[str, float]) -> dict[str, int]:
    """Rank 1 = highest; ties share the better rank ("min"); non-finite values get no rank."""
    finite = {k: float(v) for k, v in values.items() if math.isfinite(float(v))}
    return {k: 1 + sum(w > v for w in finite.values()) for k, v in finite.items()}


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b between two paired score (or rank) lists; NaN with fewer than 2 items or a constant
    list."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau: lengths differ ({len(x)} vs {len(y)})")
    n = len(x)
    concordant = discordant = tied_x = tied_y = 0
    for i, j in itertools.combinations(range(n), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        tied_x += dx == 0
        tied_y += dy == 0
        concordant += dx * dy > 0
        discordant += dx * dy < 0
    n0 = n * (n - 1) / 2
    denominator = math.sqrt((n0 - tied_x) * (n0 - tied_y))
    return (concordant - discordant) / denominator if denominator > 0 else math.nan
