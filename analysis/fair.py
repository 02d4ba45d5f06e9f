"""The fair comparison (issue 22, DESIGN §9): paper defaults beside tuned, with seed-level uncertainty.

Per dataset and method (``stl`` excluded), under the study's selection protocol
(:mod:`results_store.selection`)
and reference (:mod:`analysis.reference`):

* **default** — the trials whose rows have ``paper_default = True`` (a study that stored no such column
  has none: "—"); eligible as in :mod:`analysis.load` (completed/running, else stopped ‡);
* **tuned** — the configuration :func:`analysis.load.select` picks on validation (best mean over seeds of
  the protocol's validation Δp), its test values;
* Δp and Δm of each: mean over seeds and 95 % **Student-t interval** over seeds
  (:func:`analysis.bootstrap.t_interval`);
* rank of each method among the defaults and among the tuned (competition ranks on the mean Δp), and
  **Kendall's τ-b** between the two rankings over the methods that have both;
* **P(beats tuned EW)**, **P(beats tuned static)**: paired bootstrap over the seeds the method's tuned
  configuration shares with the baseline's (:func:`analysis.bootstrap.beat_probability`), on test Δp;
* **P(#1)**: the fraction of paired resamples (seeds every tuned method ran) in which the method ranks
  first (:func:`analysis.bootstrap.rank_distribution`);
* **device-hours**: over *all* the method's trials on the dataset (every configuration and status):
  Σ ``wall_time`` (:mod:`results_store.budget`: the time each trial ran, not the waits between its attempts)
  × ``gpus``, or × ``cpus`` where ``gpus`` is 0 or missing (CPU-core-hours), 1 CPU assumed where ``cpus`` is
  missing (said); methods with fewer than 2 seeds are left out of the rank distribution (said);
* a verdict per method against each baseline, with the thresholds :data:`BEATS` / :data:`WORSE`.

The baselines are found by what a method is (:mod:`analysis.identity`: balancer ``ew`` or ``static``, no
aggregator), preferring the method named ``ew``/``static``; a study without one says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.bootstrap import (
    BeatProbability,
    Interval,
    RankDistribution,
    beat_probability,
    competition_ranks,
    kendall_tau,
    rank_distribution,
    t_interval,
)
from analysis.identity import EW, methods_with
from analysis.load import Study
from analysis.table_model import LEGEND, RUNNING_FLAG, STOPPED_FLAG, Cell, Column, Row, Table
from results_store.budget import trial_hours
from results_store.selection import Selection, select

PAPER_DEFAULT = "paper_default"
STATIC = ("static", None)
BEATS = 0.95
"""'beats' when P(method's mean Δp > the baseline's) ≥ this."""
WORSE = 0.95
"""'worse than' when P(method's mean Δp < the baseline's) ≥ this; otherwise 'within seed noise'."""
CONFIDENCE = 0.95
THRESHOLDS = (
    f"Verdicts: 'beats' when the method's mean test Δp exceeds the tuned baseline's in ≥ {BEATS:.0%} of "
    f"paired bootstrap resamples, 'worse than' when it is below in ≥ {WORSE:.0%}, else 'within seed noise'; "
    "a resample with equal means counts as neither."
)


def paper_default_rows(trials: pd.DataFrame) -> pd.Series:
    """Whether each row is a paper-default trial (missing column or null: False)."""
    if PAPER_DEFAULT not in trials.columns:
        return pd.Series(False, index=trials.index)
    return trials[PAPER_DEFAULT].astype("boolean").fillna(False).astype(bool)


def per_seed(trials: pd.DataFrame, column: str) -> dict[int, float]:
    """``column`` per seed (a rerun seed's trials averaged); non-finite values dropped."""
    if trials.empty or column not in trials.columns:
        return {}
    values = trials.groupby("seed")[column].mean().astype(float)
    return {int(s): float(v) for s, v in values.items() if math.isfinite(v)}


def select_default(trials: pd.DataFrame, dataset: str, method: str) -> Selection | None:
    """The paper-default configuration of ``method`` on ``dataset`` (its ``paper_default`` rows, eligible as
    in :mod:`analysis.load`), or None when it has none."""
    return select(trials, dataset, method, restrict=paper_default_rows)


@dataclass(frozen=True)
class DeviceHours:
    hours: dict[str, float]
    notes: tuple[str, ...]


def device_hours(trials: pd.DataFrame) -> DeviceHours:
    """Device-hours per method over all ``trials`` rows given (module docstring)."""
    if trials.empty:
        return DeviceHours({}, ())
    notes = []
    if "started_at" not in trials.columns:
        return DeviceHours({m: math.nan for m in trials["method"]}, ("no started_at: device-hours unknown",))
    per_trial, _ = trial_hours(trials)
    hours = per_trial.groupby(trials["method"]).sum(min_count=1)
    unknown = int(per_trial.isna().sum())
    gpus = trials["gpus"].astype(float) if "gpus" in trials.columns else pd.Series(np.nan, index=trials.index)
    cpus = trials["cpus"].astype(float) if "cpus" in trials.columns else pd.Series(np.nan, index=trials.index)
    on_gpu = gpus.fillna(0.0) > 0
    assumed = int((~on_gpu & cpus.isna()).sum())  # said in the notes: trial_hours counts them as 1 CPU
    if on_gpu.any() and (~on_gpu).any():
        notes.append("device-hours mix GPU-hours (trials with gpus > 0) and CPU-core-hours (the others)")
    kind = "GPU-hours" if on_gpu.all() else "CPU-core-hours" if not on_gpu.any() else "device-hours"
    notes.insert(
        0,
        f"device-hours ({kind}) = Σ over all the method's trials (every configuration and status) of "
        "its wall_time (the time it ran, not waits between attempts such as a pause at an ASHA rung) × gpus, "
        "or × cpus where gpus is 0 or "
        "missing",
    )
    if assumed:
        notes.append(f"{assumed} trial(s) store no cpus: 1 CPU assumed for them")
    if unknown:
        notes.append(f"{unknown} trial(s) without start/end times are not counted")
    return DeviceHours({str(m): float(h) for m, h in hours.items()}, tuple(notes))


@dataclass
class MethodResult:
    """One method's row of the fair comparison."""

    method: str
    tuned: Selection | None
    default: Selection | None
    tuned_dp: Interval
    tuned_dm: Interval
    default_dp: Interval
    default_dm: Interval
    tuned_rank: int | None = None
    default_rank: int | None = None
    vs: dict[str, BeatProbability | str] = field(default_factory=dict)
    """baseline kind ('EW', 'static') -> its probability, or why there is none."""
    p_first: float = math.nan
    hours: float = math.nan


@dataclass
class FairResult:
    """The fair comparison of one dataset."""

    dataset: str
    methods: list[MethodResult]
    baselines: dict[str, str | None]
    tau: float
    tau_methods: tuple[str, ...]
    ranks: RankDistribution | None
    notes: list[str]
    protocol: str
    protocol_label: str
    reference_label: str

    def method(self, name: str) -> MethodResult:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(f"no method {name!r} in the fair comparison of {self.dataset}")

    def verdicts(self) -> list[str]:
        return [verdict(m, self.baselines) for m in self.methods]


def _baseline(trials: pd.DataFrame, parts: tuple[str, str | None], name: str, chosen: Mapping) -> str | None:
    names = [m for m in methods_with(trials, parts) if m in chosen]
    if name in chosen and (name in names or not names):
        return name
    return names[0] if names else None


def _interval(sel: Selection | None, column: str) -> Interval:
    if sel is None:
        return Interval(math.nan, math.nan, math.nan, 0)
    return t_interval(list(per_seed(sel.trials, column).values()), CONFIDENCE)


def fair_comparison(study: Study, dataset: str, n_boot: int = 10_000, seed: int = 0) -> FairResult:
    """The fair comparison of ``dataset`` (module docstring)."""
    trials = study.trials
    mine = trials[trials["dataset"] == dataset] if not trials.empty else trials
    methods = [m for m in study.methods(dataset) if m != "stl"]
    results: dict[str, MethodResult] = {}
    for method in methods:
        tuned, default = select(trials, dataset, method), select_default(trials, dataset, method)
        results[method] = MethodResult(
            method,
            tuned,
            default,
            _interval(tuned, "test_delta_p"),
            _interval(tuned, "test_delta_m"),
            _interval(default, "test_delta_p"),
            _interval(default, "test_delta_m"),
        )
    notes: list[str] = []
    chosen = {m: r for m, r in results.items() if r.tuned is not None}
    tuned_ranks = competition_ranks({m: r.tuned_dp.mean for m, r in results.items()})
    default_ranks = competition_ranks({m: r.default_dp.mean for m, r in results.items()})
    for m, r in results.items():
        r.tuned_rank, r.default_rank = tuned_ranks.get(m), default_ranks.get(m)
    both = [m for m in methods if m in tuned_ranks and m in default_ranks]
    tau = kendall_tau([results[m].default_dp.mean for m in both], [results[m].tuned_dp.mean for m in both])
    if not any(r.default is not None for r in results.values()):
        notes.append("no trial is marked paper_default: the default columns are empty (—)")
    baselines = {
        "EW": _baseline(mine, EW, "ew", chosen),
        "static": _baseline(mine, STATIC, "static", chosen),
    }
    for kind, name in baselines.items():
        if name is None:
            notes.append(
                f"no tuned {kind} baseline ({'ew' if kind == 'EW' else 'static'}) in the study on {dataset}"
            )
    tuned_values = {m: per_seed(r.tuned.trials, "test_delta_p") for m, r in chosen.items()}
    for method, r in results.items():
        for kind, name in baselines.items():
            if name is None:
                r.vs[kind] = f"no tuned {kind} in the study"
            elif name == method:
                r.vs[kind] = "is the baseline"
            elif r.tuned is None:
                r.vs[kind] = "no eligible trial"
            else:
                try:
                    r.vs[kind] = beat_probability(tuned_values[method], tuned_values[name], n_boot, seed)
                except ValueError as exc:
                    r.vs[kind] = f"not comparable with tuned {kind}: {exc}"
    ranks = None
    few = sorted(m for m, v in tuned_values.items() if len(v) < 2)
    ranked = {m: v for m, v in tuned_values.items() if m not in few}
    if few and ranked:
        notes.append(f"left out of the rank distribution (fewer than 2 seeds): {', '.join(few)}")
    if len(ranked) >= 2:
        try:
            ranks = rank_distribution(ranked, n_boot, seed)
            for m in ranked:
                results[m].p_first = ranks.first(m)
        except ValueError as exc:
            notes.append(f"rank distribution not computed: {exc}")
    hours = device_hours(mine[mine["method"] != "stl"] if not mine.empty else mine)
    for m, r in results.items():
        r.hours = hours.hours.get(m, math.nan)
    notes += list(hours.notes)
    ordered = sorted(results.values(), key=lambda r: (r.tuned_rank is None, r.tuned_rank or 0, r.method))
    return FairResult(
        dataset,
        ordered,
        baselines,
        tau,
        tuple(both),
        ranks,
        notes,
        study.protocol.short,
        study.protocol.label(),
        study.reference_label(dataset),
    )


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %" if math.isfinite(value) else "—"


def _vs_text(p: BeatProbability | str) -> str:
    return _pct(p.p_beat) if isinstance(p, BeatProbability) else "—"


def verdict(result: MethodResult, baselines: Mapping[str, str | None]) -> str:
    """One plain-language line per method against each tuned baseline (thresholds :data:`BEATS`,
    :data:`WORSE`)."""
    parts = []
    for kind in baselines:
        p = result.vs.get(kind)
        if isinstance(p, BeatProbability):
            if p.p_beat >= BEATS:
                parts.append(f"beats tuned {kind} in {_pct(p.p_beat)} of resamples")
            elif p.p_worse >= WORSE:
                parts.append(f"worse than tuned {kind} in {_pct(p.p_worse)} of resamples")
            else:
                parts.append(f"within seed noise of tuned {kind} (beats it in {_pct(p.p_beat)} of resamples)")
        elif p is not None and p != "is the baseline":
            parts.append(p)
    if result.default_rank is not None and result.tuned_rank is not None:
        parts.append(f"rank {result.default_rank} with paper defaults, {result.tuned_rank} tuned")
    return f"{result.method}: " + ("; ".join(parts) if parts else "the tuned baseline itself")


def _flags(sel: Selection | None) -> str:
    if sel is None:
        return ""
    return (RUNNING_FLAG if sel.running else "") + (STOPPED_FLAG if sel.fallback_stopped else "")


def fair_table(result: FairResult) -> Table:
    """The fair comparison of one dataset as a :class:`Table` (rows in tuned rank order; verdicts, τ and
    every definition in its notes)."""

    def num(key: str, label: str, higher: bool | None, mark: bool = True) -> Column:
        return Column(key, label, higher_is_better=higher, mark=mark, decimals=2)

    def text(key: str, label: str) -> Column:
        return Column(key, label, numeric=False, mark=False)

    columns = [
        text("seeds", "seeds"),
        num("dp_default", "Δp default", True),
        text("dp_default_ci", "95% CI"),
        text("rank_default", "# default"),
        num("dp_tuned", "Δp tuned", True),
        text("dp_tuned_ci", "95% CI"),
        num("dm_default", "Δm default", False),
        text("dm_default_ci", "95% CI"),
        num("dm_tuned", "Δm tuned", False),
        text("dm_tuned_ci", "95% CI"),
        text("p_ew", "P(>EW)"),
        text("p_static", "P(>static)"),
        text("p_first", "P(#1)"),
        num("hours", "device-h", None, mark=False),
    ]
    columns[-1].decimals = 3
    rows = []
    for r in result.methods:
        cells = {
            "seeds": Cell(text=str(r.tuned_dp.n) if r.tuned is not None else "0"),
            "dp_default": Cell(r.default_dp.mean, math.nan, r.default_dp.n),
            "dp_default_ci": Cell(text=_ci(r.default_dp)),
            "rank_default": Cell(text=str(r.default_rank) if r.default_rank is not None else "—"),
            "dp_tuned": Cell(r.tuned_dp.mean, math.nan, r.tuned_dp.n),
            "dp_tuned_ci": Cell(text=_ci(r.tuned_dp)),
            "dm_default": Cell(r.default_dm.mean, math.nan, r.default_dm.n),
            "dm_default_ci": Cell(text=_ci(r.default_dm)),
            "dm_tuned": Cell(r.tuned_dm.mean, math.nan, r.tuned_dm.n),
            "dm_tuned_ci": Cell(text=_ci(r.tuned_dm)),
            "p_ew": Cell(text=_vs_text(r.vs.get("EW", "—"))),
            "p_static": Cell(text=_vs_text(r.vs.get("static", "—"))),
            "p_first": Cell(text=_pct(r.p_first)),
            "hours": Cell(r.hours, math.nan, 1 if math.isfinite(r.hours) else 0),
        }
        flags = "".join(sorted(set(_flags(r.tuned) + _flags(r.default))))
        row = Row(r.method, cells, flags=flags, rank=r.tuned_rank)
        rows.append(row)
    tau = (
        f"Kendall τ-b between the paper-default and the tuned ranking ({len(result.tau_methods)} methods "
        f"with both): {result.tau:.2f}"
        if math.isfinite(result.tau)
        else f"Kendall τ-b between the default and the tuned ranking: undefined ({len(result.tau_methods)} "
        "method(s) with both)"
    )
    how = result.ranks.how if result.ranks is not None else None
    probability = next((p for m in result.methods for p in m.vs.values() if hasattr(p, "how")), None)
    boot = (
        "P(>EW), P(>static): paired bootstrap over the seeds shared with the tuned baseline, fraction of "
        "resamples in which the method's mean test Δp is higher"
        + (f" ({probability.how})" if probability is not None else "")
        + "; P(#1): fraction of paired resamples of the seeds every tuned method ran"
        + (f" ({how})" if how else "")
        + " in which the method ranks first"
    )
    notes = [
        "default: the configuration marked paper_default; tuned: the configuration chosen on validation; "
        "# = rank by mean test Δp (ties share a rank)",
        "Δp/Δm: mean over seeds [95% Student-t interval over seeds]",
        *(f"{flag} {text}" for flag, text in LEGEND.items() if any(flag in row.flags for row in rows)),
        tau,
        boot,
        THRESHOLDS,
        *(f"verdict — {v}" for v in result.verdicts()),
        *result.notes,
        result.protocol_label,
        result.reference_label,
    ]
    title = f"Fair comparison — {result.dataset} (paper defaults vs tuned on validation; {result.protocol})"
    return Table(title, columns, rows, notes)


def _ci(interval: Interval) -> str:
    if not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return "—"
    return f"[{interval.low:.2f}, {interval.high:.2f}]"


def fair_all(
    study: Study, n_boot: int = 10_000, seed: int = 0, datasets: list[str] | None = None
) -> list[FairResult]:
    """:func:`fair_comparison` of every dataset (or of ``datasets``)."""
    if study.trials.empty:
        return []
    return [fair_comparison(study, d, n_boot, seed) for d in (datasets or study.datasets)]
