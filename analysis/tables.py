"""The papers' tables built from a study's results (the table model is :mod:`analysis.table_model`, the
renderers :mod:`analysis.render`).

* :func:`leaderboard` — DB-MTL Tables 1-4 (and IGB's main tables): per dataset, one row per method with each
  test metric at every trial's best validation epoch, mean ± std over seeds, and Δp (DB-MTL Eq. 3-4) ± std;
  ranked by Δp; best value per column in bold, second best underlined.
* :func:`ablation_table` — DB-MTL Table 5: Δp of EW (neither), SI (log only), max-norm only and DB-MTL (both)
  on every dataset.
* :func:`delta_m_table` — the IGB paper's Δm (IGB Eq. 5, lower is better) with the relative training time
  T = (mean time per epoch of the method) / (that of EW on the same dataset).

Every number comes from the configuration :func:`analysis.load.select` picks (validation only; see
:mod:`analysis.load`), with each trial's values under the study's selection protocol
(:mod:`results_store.selection`: best validation epoch, or mean of the last k epochs), which every title
names. "±"
is the **sample standard deviation over seeds (ddof=1)**; a single seed shows no "±". Δp/Δm of a row are the
mean over seeds of each trial's own ``test_delta_p``/``test_delta_m``, not Δp of the mean metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from analysis.identity import DB_MTL, EW, MAX_NORM, SI, methods_with, with_identity
from analysis.load import Study, selected_epochs, selections
from analysis.metrics import Directions, higher_is_better, metric_columns
from analysis.table_model import LEGEND, RUNNING_FLAG, STOPPED_FLAG, Cell, Column, Row, Table
from results_store.selection import Selection


def _column_cell(trials: pd.DataFrame, column: str) -> Cell:
    """:meth:`Cell.of` a trials column; an empty cell when the study never stored it."""
    return Cell.of(trials[column]) if column in trials.columns else Cell()


def _as_study(source: Study | pd.DataFrame) -> Study:
    return source if isinstance(source, Study) else Study("", with_identity(source), pd.DataFrame())


def _flags(sel: Selection) -> str:
    return (RUNNING_FLAG if sel.running else "") + (STOPPED_FLAG if sel.fallback_stopped else "")


def _rank(rows: list[Row], key: str, higher: bool) -> list[Row]:
    """Sort ranked rows by ``key`` (NaN last), unranked rows first (e.g. STL), and number them."""

    def sort_key(r: Row) -> tuple[int, float]:
        v = r.cells.get(key, Cell()).mean
        return (0, -v if higher else v) if math.isfinite(v) else (1, 0.0)

    fixed = [r for r in rows if not r.ranked]
    ranked = sorted((r for r in rows if r.ranked), key=sort_key)
    for i, r in enumerate(ranked, start=1):
        r.rank = i if math.isfinite(r.cells.get(key, Cell()).mean) else None
    return fixed + ranked


def _legend(rows: Sequence[Row]) -> list[str]:
    used = {f for r in rows for f in r.flags}
    return [f"{flag} {text}" for flag, text in LEGEND.items() if flag in used]


def _stl_row(trials: pd.DataFrame, dataset: str, pairs: list[tuple[str, str]]) -> Row | None:
    """The STL row (DB-MTL Tables 1-4, first row): with an ``hp/task`` column, each task's metrics come from
    the best configuration of the STL trials of that task; Δp is left empty (it is 0 by definition when the
    reference is these STL runs). Not ranked, not marked."""
    from results_store.selection import select

    stl = trials[(trials["dataset"] == dataset) & (trials["method"] == "stl")]
    if stl.empty:
        return None
    cells: dict[str, Cell] = {}
    flags = ""
    if "hp/task" in stl.columns and stl["hp/task"].notna().any():
        for task in sorted(set(stl["hp/task"].dropna())):
            sel = select(stl[stl["hp/task"] == task], dataset, "stl")
            if sel is None:
                continue
            flags += _flags(sel)
            for t, m in pairs:
                if t == task:
                    cells[f"test/{t}/{m}"] = Cell.of(sel.trials[f"test/{t}/{m}"])
    else:
        sel = select(stl, dataset, "stl")
        if sel is None:
            return None
        flags = _flags(sel)
        for t, m in pairs:
            cells[f"test/{t}/{m}"] = Cell.of(sel.trials[f"test/{t}/{m}"])
    cells["seeds"] = Cell(text="")
    return Row("stl", cells, flags="".join(sorted(set(flags))), ranked=False)


def leaderboard(
    source: Study | pd.DataFrame,
    dataset: str,
    *,
    overrides: Directions | None = None,
    show_config: bool = True,
) -> Table:
    """DB-MTL Tables 1-4 for ``dataset``: per method (best configuration by mean validation Δp, see
    :mod:`analysis.load`) every test metric at each trial's best validation epoch, mean ± std (ddof=1) over
    seeds, and Δp ± std; ranked by Δp (higher is better); ``stl`` (if present) first and unranked.

    Metric directions are those the study stored (:func:`analysis.metrics.stored_directions`);
    ``overrides`` wins over them.
    """
    study = _as_study(source)
    trials = study.trials
    mine = trials[trials["dataset"] == dataset] if not trials.empty else trials
    pairs = metric_columns(mine, "test")
    stored = study.directions(dataset) if not trials.empty else {}
    columns = [Column("seeds", "seeds", numeric=False, mark=False)]
    for task, metric in pairs:
        columns.append(
            Column(
                f"test/{task}/{metric}",
                metric,
                group=task,
                higher_is_better=higher_is_better(metric, task, overrides, stored),
            )
        )
    columns.append(Column("test_delta_p", "Δp", higher_is_better=True, decimals=2))
    if show_config:
        columns.append(Column("config", "configuration", numeric=False, mark=False))
    rows: list[Row] = []
    notes: list[str] = []
    stl = _stl_row(trials, dataset, pairs) if not trials.empty else None
    if stl is not None:
        rows.append(stl)
    chosen = selections(study, dataset) if not trials.empty else {}
    for method, sel in chosen.items():
        if method == "stl":
            continue
        cells = {f"test/{t}/{m}": Cell.of(sel.trials[f"test/{t}/{m}"]) for t, m in pairs}
        cells["test_delta_p"] = _column_cell(sel.trials, "test_delta_p")
        cells["seeds"] = Cell(text=str(len(sel.trials)))
        cells["config"] = Cell(text=sel.config)
        rows.append(Row(method, cells, flags=_flags(sel)))
    missing = sorted(set(study.methods(dataset)) - set(chosen) - {"stl"})
    if missing:
        notes.append(f"no eligible trial (all failed or none finished an epoch): {', '.join(missing)}")
    unknown = [f"{t}/{m}" for t, m in pairs if higher_is_better(m, t, overrides, stored) is None]
    if unknown:
        notes.append(f"direction unknown (no arrow, no marks): {', '.join(unknown)}")
    rows = _rank(rows, "test_delta_p", higher=True)
    notes = [*_legend(rows), *notes, study.protocol.label(), study.reference_label(dataset)]
    title = f"Leaderboard — {dataset} ({study.protocol.where}, mean ± std over seeds; {study.protocol.short})"
    return Table(title, columns, rows, notes)


# DB-MTL Table 5: (row label, (balancer, aggregator), uses log, uses max-norm), found by what each method is
ABLATION_VARIANTS: tuple[tuple[str, tuple[str, str | None], bool, bool], ...] = (
    ("ew", EW, False, False),
    ("si", SI, True, False),
    ("max_norm", MAX_NORM, False, True),
    ("db_mtl", DB_MTL, True, True),
)


def ablation_table(source: Study | pd.DataFrame, datasets: Sequence[str] | None = None) -> Table:
    """DB-MTL Table 5: Δp ± std (ddof=1) of the log transform and of max-norm gradient balancing, alone and
    together, per dataset; rows ``ew`` (neither), ``si`` (log only), ``max_norm`` (max-norm only), ``db_mtl``
    (both) — whichever the study has, each found by its stored balancer and aggregator
    (:mod:`analysis.identity`), not by its name."""
    study = _as_study(source)
    datasets = list(datasets) if datasets is not None else study.datasets
    columns = [Column("log", "log", numeric=False), Column("max_norm", "max-norm", numeric=False)]
    columns += [Column(f"delta_p/{d}", "Δp", group=d, higher_is_better=True, decimals=2) for d in datasets]
    rows = []
    chosen = {d: selections(study, d) if not study.trials.empty else {} for d in datasets}
    for label, parts, log, max_norm in ABLATION_VARIANTS:
        cells = {"log": Cell(text="✓" if log else "✗"), "max_norm": Cell(text="✓" if max_norm else "✗")}
        flags = ""
        for d in datasets:
            names = methods_with(study.trials[study.trials["dataset"] == d], parts) if chosen[d] else []
            sel = next((chosen[d][n] for n in names if n in chosen[d]), None)
            if sel is not None:
                cells[f"delta_p/{d}"] = _column_cell(sel.trials, "test_delta_p")
                flags += _flags(sel)
        if len(cells) > 2:
            rows.append(Row(label, cells, flags="".join(sorted(set(flags)))))
    notes = _legend(rows)
    if not rows:
        notes.append("none of ew, si, max_norm, db_mtl is in the study")
    notes += [study.protocol.label(), *dict.fromkeys(study.reference_label(d) for d in datasets)]
    title = f"Ablation — log transform and max-norm balancing (DB-MTL Table 5; {study.protocol.short})"
    return Table(title, columns, rows, notes, "variant")


def time_per_epoch(study: Study, sel: Selection) -> Cell:
    """Mean ± std (ddof=1) of ``time_epoch`` over every epoch of a selection's trials (DB-MTL Fig. 7)."""
    epochs = selected_epochs(study, sel)
    if epochs.empty or "time_epoch" not in epochs.columns:
        return Cell()
    return Cell.of(epochs["time_epoch"])


def delta_m_table(study: Study, dataset: str, baseline: str = "ew") -> Table:
    """The IGB paper's Δm (IGB Eq. 5, lower is better) ± std with the relative training time
    ``T = mean time per epoch of the method / that of EW`` on ``dataset`` (times from ``epochs/time_epoch``
    of the reported configuration's trials); ranked by Δm. T is NaN, with a note, when EW is absent."""
    chosen = selections(study, dataset) if not study.trials.empty else {}
    columns = [
        Column("seeds", "seeds", numeric=False),
        Column("test_delta_p", "Δp", higher_is_better=True, decimals=2),
        Column("test_delta_m", "Δm", higher_is_better=False, decimals=2),
        Column("time_epoch", "time/epoch [s]", higher_is_better=False, mark=False, decimals=3),
        Column("T", "T", mark=False, decimals=2),
    ]
    times = {m: time_per_epoch(study, sel) for m, sel in chosen.items()}
    base = times.get(baseline, Cell()).mean
    notes = []
    if baseline not in chosen:
        notes.append(f"{baseline.upper()} is absent on {dataset}: the relative time T is undefined (NaN)")
    elif not (math.isfinite(base) and base > 0):
        notes.append(f"{baseline.upper()} has no epoch times on {dataset}: T is undefined (NaN)")
    rows = []
    for method, sel in chosen.items():
        t = times[method]
        ratio = t.mean / base if math.isfinite(base) and base > 0 else math.nan
        cells = {
            "seeds": Cell(text=str(len(sel.trials))),
            "test_delta_p": _column_cell(sel.trials, "test_delta_p"),
            "test_delta_m": _column_cell(sel.trials, "test_delta_m"),
            "time_epoch": t,
            "T": Cell(ratio, math.nan, 1 if math.isfinite(ratio) else 0),
        }
        rows.append(Row(method, cells, flags=_flags(sel), ranked=method != "stl"))
    rows = _rank(rows, "test_delta_m", higher=False)
    devices = set()
    for sel in chosen.values():
        devices |= {
            str(d).split(" (")[0].split(":")[0] for d in sel.trials.get("device", pd.Series()).dropna()
        }
    if len(devices) > 1:
        notes.append(
            f"methods ran on different device types ({', '.join(sorted(devices))}): T mixes hardware"
        )
    title = f"Δm and relative training time T versus EW — {dataset} (IGB; {study.protocol.short})"
    notes = [*_legend(rows), *notes, study.protocol.label(), study.reference_label(dataset)]
    return Table(title, columns, rows, notes)


def tables_for(study: Study, datasets: Sequence[str] | None = None) -> Mapping[str, list[Table]]:
    """Every table of a study: per dataset its leaderboard and Δm/T table, plus ``"*"`` -> the ablation."""
    datasets = list(datasets) if datasets is not None else study.datasets
    out: dict[str, list[Table]] = {d: [leaderboard(study, d), delta_m_table(study, d)] for d in datasets}
    out["*"] = [ablation_table(study, datasets)]
    return out
