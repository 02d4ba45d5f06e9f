"""The papers' tables from a study's results, and their renderers (terminal text, Markdown, LaTeX, HTML).

* :func:`leaderboard` — DB-MTL Tables 1-4 (and IGB's main tables): per dataset, one row per method with each
  test metric at every trial's best validation epoch, mean ± std over seeds, and Δp (DB-MTL Eq. 3-4) ± std;
  ranked by Δp; best value per column in bold, second best underlined.
* :func:`ablation_table` — DB-MTL Table 5: Δp of EW (neither), SI (log only), max-norm only and DB-MTL (both)
  on every dataset.
* :func:`delta_m_table` — the IGB paper's Δm (IGB Eq. 5, lower is better) with the relative training time
  T = (mean time per epoch of the method) / (that of EW on the same dataset).

Every number comes from the configuration :func:`analysis.load.select` picks (validation only; see
:mod:`analysis.load`). "±" is the **sample standard deviation over seeds (ddof=1)**; a single seed shows no
"±". Δp/Δm of a row are the mean over seeds of each trial's own ``test_delta_p``/``test_delta_m``, not Δp of
the mean metrics.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.identity import DB_MTL, EW, MAX_NORM, SI, methods_with, with_identity
from analysis.load import Selection, Study, selected_epochs, selections
from analysis.metrics import Directions, arrow, higher_is_better, metric_columns

RUNNING_FLAG = "†"
STOPPED_FLAG = "‡"
LEGEND = {
    RUNNING_FLAG: "includes trials still running",
    STOPPED_FLAG: "no trial finished: trials stopped early by the scheduler",
}


# -- data model ------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One table entry: mean ± sample std (ddof=1) over ``n`` values, or a text."""

    mean: float = math.nan
    std: float = math.nan
    n: int = 0
    text: str | None = None

    @classmethod
    def of(cls, values: Sequence[float] | pd.Series) -> Cell:
        """Mean ± sample std (ddof=1) of the finite ``values``."""
        arr = np.asarray(values, dtype=float)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            return cls()
        std = float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan
        return cls(float(np.mean(arr)), std, int(arr.size))


@dataclass
class Column:
    """A column: ``key`` identifies it, ``label``/``group`` name it (group = the task, for two-level
    headers); best/second marks apply when ``mark`` and the direction is known."""

    key: str
    label: str
    group: str = ""
    higher_is_better: bool | None = None
    mark: bool = True
    decimals: int | None = None
    numeric: bool = True

    @property
    def header(self) -> str:
        name = f"{self.group} {self.label}" if self.group else self.label
        return f"{name} {arrow(self.higher_is_better)}".rstrip() if self.numeric else name


@dataclass
class Row:
    label: str
    cells: dict[str, Cell]
    flags: str = ""
    ranked: bool = True
    rank: int | None = None


@dataclass
class Table:
    """A rendered-agnostic table; ``rows`` are already in display order."""

    title: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    row_header: str = "method"

    def cell(self, row: str, key: str) -> Cell:
        """The cell of the row labelled ``row`` in column ``key``."""
        for r in self.rows:
            if r.label == row:
                return r.cells.get(key, Cell())
        raise KeyError(f"no row '{row}' in table '{self.title}'; rows: {[r.label for r in self.rows]}")

    def to_frame(self) -> pd.DataFrame:
        """Numbers as a frame: one row per table row, ``<key>`` (mean), ``<key>_std`` and ``<key>_n``."""
        records = []
        for r in self.rows:
            rec: dict[str, object] = {self.row_header: r.label, "rank": r.rank}
            for c in self.columns:
                cell = r.cells.get(c.key, Cell())
                if c.numeric:
                    rec.update({c.key: cell.mean, f"{c.key}_std": cell.std, f"{c.key}_n": cell.n})
                else:
                    rec[c.key] = cell.text
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def decimals(self, column: Column) -> int:
        """Digits after the point: the column's own, else ~4 significant digits of its largest value (53.50,
        0.3926, 0.01282), at least 2 and at most 5."""
        if column.decimals is not None:
            return column.decimals
        values = [abs(r.cells[column.key].mean) for r in self.rows if column.key in r.cells]
        values = [v for v in values if math.isfinite(v) and v > 0]
        if not values:
            return 2
        digits = math.floor(math.log10(max(values))) + 1
        return int(min(5, max(2, 4 - digits)))

    def marks(self) -> dict[tuple[int, str], int]:
        """``{(row index, column key): 1 (best) or 2 (second best)}`` among ranked rows, comparing values as
        displayed (so equal printed values share a mark)."""
        out: dict[tuple[int, str], int] = {}
        for c in self.columns:
            if not (c.numeric and c.mark) or c.higher_is_better is None:
                continue
            d = self.decimals(c)
            shown = {
                i: round(r.cells[c.key].mean, d)
                for i, r in enumerate(self.rows)
                if r.ranked and c.key in r.cells and math.isfinite(r.cells[c.key].mean)
            }
            distinct = sorted(set(shown.values()), reverse=c.higher_is_better)
            for place, value in enumerate(distinct[:2], start=1):
                for i, v in shown.items():
                    if v == value:
                        out[(i, c.key)] = place
        return out


def format_cell(cell: Cell, decimals: int) -> str:
    """``1.000 ± 0.100`` (minus sign as ``-``); a single value has no ``±``; nothing known is ``—``."""
    if cell.text is not None:
        return cell.text
    if not math.isfinite(cell.mean):
        return "—"
    text = f"{cell.mean:.{decimals}f}"
    if math.isfinite(cell.std):
        text += f" ± {cell.std:.{decimals}f}"
    return text


# -- builders --------------------------------------------------------------------------------------------
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
    from analysis.load import select

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
    notes = [*_legend(rows), *notes, study.reference_label(dataset)]
    title = f"Leaderboard — {dataset} (test metrics at the best validation epoch, mean ± std over seeds)"
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
    notes += list(dict.fromkeys(study.reference_label(d) for d in datasets))
    return Table(
        "Ablation — log transform and max-norm balancing (DB-MTL Table 5)", columns, rows, notes, "variant"
    )


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
    title = f"Δm and relative training time T versus EW — {dataset} (IGB)"
    return Table(title, columns, rows, [*_legend(rows), *notes, study.reference_label(dataset)])


# -- renderers -------------------------------------------------------------------------------------------
def _strings(table: Table) -> tuple[list[list[str]], dict[tuple[int, str], int]]:
    marks = table.marks()
    body = []
    for r in table.rows:
        line = []
        for c in table.columns:
            line.append(format_cell(r.cells.get(c.key, Cell()), table.decimals(c)))
        body.append(line)
    return body, marks


def _row_label(r: Row) -> str:
    return f"{r.label}{r.flags}"


def _show_rank(table: Table) -> bool:
    """Whether the table has a rank column (``#``): only tables that rank their rows."""
    return any(r.rank is not None for r in table.rows)


def _rank_text(r: Row) -> str:
    return "" if r.rank is None else str(r.rank)


def render_text(table: Table) -> str:
    """A plain-text table for the terminal: best value per column suffixed ``**``, second best ``*``."""
    body, marks = _strings(table)
    ranks = _show_rank(table)
    header = ["#"] * ranks + [table.row_header] + [c.header for c in table.columns]
    lines = []
    for i, r in enumerate(table.rows):
        cells = []
        for j, c in enumerate(table.columns):
            mark = {1: " **", 2: " *"}.get(marks.get((i, c.key), 0), "")
            cells.append(body[i][j] + mark)
        lines.append([_rank_text(r)] * ranks + [_row_label(r), *cells])
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    numeric = [False] * (ranks + 1) + [c.numeric for c in table.columns]

    def fmt(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    out = [table.title, fmt(header), "  ".join("-" * w for w in widths)]
    out += [fmt(line) for line in lines]
    notes = ["** best, * second best per column", *table.notes] if marks else table.notes
    return "\n".join(out + [f"  {n}" for n in notes]) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: Table, heading: str = "###") -> str:
    """A Markdown (GitHub) table: best **bold**, second best <u>underlined</u>."""
    body, marks = _strings(table)
    ranks = _show_rank(table)
    header = ["#"] * ranks + [table.row_header] + [c.header for c in table.columns]
    align = ["---:"] * ranks + [":---"] + ["---:" if c.numeric else ":---" for c in table.columns]
    lines = [f"{heading} {table.title}", "", "| " + " | ".join(_md_escape(h) for h in header) + " |"]
    lines.append("| " + " | ".join(align) + " |")
    for i, r in enumerate(table.rows):
        cells = []
        for j, c in enumerate(table.columns):
            text = _md_escape(body[i][j])
            place = marks.get((i, c.key))
            cells.append(f"**{text}**" if place == 1 else f"<u>{text}</u>" if place == 2 else text)
        lines.append("| " + " | ".join([_rank_text(r)] * ranks + [_md_escape(_row_label(r)), *cells]) + " |")
    if table.notes or marks:
        lines.append("")
        legend = ["**bold** best, <u>underlined</u> second best"] if marks else []
        lines += [f"{_md_escape(n)}  " for n in [*legend, *table.notes]]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_"}
_LATEX_SPECIAL.update({"{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"})
_LATEX_SYMBOLS = {"Δ": r"$\Delta$", "±": r"$\pm$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "—": "--"}
_LATEX_SYMBOLS.update({"†": r"$^\dagger$", "‡": r"$^\ddagger$", "✓": r"\checkmark", "✗": r"$\times$"})


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map Δ, ±, arrows, daggers and check marks to math/text commands."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    for symbol, command in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, command)
    return out


def render_latex(table: Table, label: str | None = None) -> str:
    """A ``booktabs`` LaTeX table as in the papers: best ``\\textbf``, second best ``\\underline``, tasks as
    grouped column headers (``\\multicolumn`` + ``\\cmidrule``), arrows ``$\\uparrow$``/``$\\downarrow$``."""
    body, marks = _strings(table)
    cols = [c for c in table.columns if c.key != "config"]
    ranks = _show_rank(table)
    spec = "l" * (ranks + 1) + "".join("r" if c.numeric else "c" for c in cols)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}"]
    if label:
        out.append(rf"\label{{{label}}}")
    out += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    if any(c.group for c in cols):
        groups: list[tuple[str, int]] = []
        for c in cols:
            if groups and groups[-1][0] == c.group and c.group:
                groups[-1] = (c.group, groups[-1][1] + 1)
            else:
                groups.append((c.group, 1))
        parts, rules, start = [""] * (ranks + 1), [], ranks + 2
        for name, span in groups:
            parts.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(name)}}}" if name else "")
            if name:
                rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
            start += span
        out.append(" & ".join(parts) + r" \\")
        out.append(" ".join(rules))
        heads = [f"{c.label} {arrow(c.higher_is_better)}".rstrip() if c.numeric else c.label for c in cols]
    else:
        heads = [c.header for c in cols]
    out.append(
        " & ".join(["\\#"] * ranks + [latex_escape(table.row_header), *(latex_escape(h) for h in heads)])
        + r" \\"
    )
    out.append(r"\midrule")
    index = {c.key: j for j, c in enumerate(table.columns)}
    for i, r in enumerate(table.rows):
        cells = []
        for c in cols:
            text = latex_escape(body[i][index[c.key]])
            place = marks.get((i, c.key))
            cells.append(
                rf"\textbf{{{text}}}" if place == 1 else rf"\underline{{{text}}}" if place == 2 else text
            )
        out.append(" & ".join([_rank_text(r)] * ranks + [latex_escape(_row_label(r)), *cells]) + r" \\")
        if not r.ranked and i + 1 < len(table.rows) and table.rows[i + 1].ranked:
            out.append(r"\midrule")
    out += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        out.append(r"\par\vspace{2pt}{\footnotesize " + "; ".join(latex_escape(n) for n in table.notes) + "}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def render_html(table: Table) -> str:
    """An HTML ``<table>``: best ``<b>``, second best ``<u>``."""
    body, marks = _strings(table)
    out = [f"<h3>{html.escape(table.title)}</h3>", '<table class="results">', "<thead><tr>"]
    ranks = _show_rank(table)
    heads = ["#"] * ranks + [table.row_header] + [c.header for c in table.columns]
    out += [f"<th>{html.escape(h)}</th>" for h in heads]
    out.append("</tr></thead><tbody>")
    for i, r in enumerate(table.rows):
        cls = ' class="unranked"' if not r.ranked else ""
        cells = [f"<td>{_rank_text(r)}</td>"] * ranks + [f"<td>{html.escape(_row_label(r))}</td>"]
        for j, c in enumerate(table.columns):
            text = html.escape(body[i][j])
            place = marks.get((i, c.key))
            text = f"<b>{text}</b>" if place == 1 else f"<u>{text}</u>" if place == 2 else text
            cells.append(f'<td class="{"num" if c.numeric else "txt"}">{text}</td>')
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    notes = ["<b>bold</b> best, <u>underlined</u> second best"] if marks else []
    notes += [html.escape(n) for n in table.notes]
    if notes:
        out.append('<p class="notes">' + "<br>".join(notes) + "</p>")
    return "\n".join(out) + "\n"


RENDERERS = {"text": render_text, "md": render_markdown, "latex": render_latex, "html": render_html}


def render(table: Table, fmt: str = "text") -> str:
    """Render ``table`` as ``text``, ``md``, ``latex`` or ``html``."""
    if fmt not in RENDERERS:
        raise ValueError(f"unknown table format '{fmt}'; valid: {', '.join(RENDERERS)}")
    return RENDERERS[fmt](table)


def tables_for(study: Study, datasets: Sequence[str] | None = None) -> Mapping[str, list[Table]]:
    """Every table of a study: per dataset its leaderboard and Δm/T table, plus ``"*"`` -> the ablation."""
    datasets = list(datasets) if datasets is not None else study.datasets
    out: dict[str, list[Table]] = {d: [leaderboard(study, d), delta_m_table(study, d)] for d in datasets}
    out["*"] = [ablation_table(study, datasets)]
    return out
