"""One self-contained report of a study (finished or still running): HTML, or Markdown.

Sections: the study's progress (trials per status), per dataset the leaderboard (DB-MTL Tables 1-4), Δm with
the relative time T (IGB), paired comparisons against EW across seeds (:mod:`analysis.stats`), the ablation
(DB-MTL Table 5), the fair comparison (paper defaults vs tuned, :mod:`analysis.fair`, with its two figures
from :mod:`analysis.plots.fair`) and every figure of :mod:`analysis.plots` (DB-MTL Figs. 5-10, ASHA's view,
the cost Pareto front), with a note for each figure the study cannot draw yet. Images are embedded as base64
PNG (``data:`` URIs), so the single file can be mailed or archived; nothing is linked.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
import tempfile
from pathlib import Path

import numpy as np

from analysis.fair import FairResult, fair_all, fair_table
from analysis.load import Study, check_reference, device_kind, load_study, with_reference, with_selection
from analysis.plots import all_plots
from analysis.plots.base import Figure
from analysis.plots.fair import fair_plots
from analysis.render import render
from analysis.stats import PairedComparison, compare_all
from analysis.table_model import Cell, Column, Row, Table
from analysis.tables import ablation_table, delta_m_table, leaderboard
from results_store.selection import Protocol

FORMATS = ("html", "md")
STATUSES = ("completed", "running", "stopped", "failed")
STD_NOTE = "± is the sample std over seeds (ddof=1)."
FAIR = "Fair comparison — paper defaults vs tuned"


def rule(study: Study) -> str:
    """The selection protocol of the report's numbers, in words (its header)."""
    return f"{study.protocol.label()} {STD_NOTE}"


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; padding: 0 1em; }
table.results { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
table.results th, table.results td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; }
table.results th { border-bottom: 2px solid #444; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.unranked td { color: #666; font-style: italic; }
p.notes { font-size: 0.85em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #8a6d3b; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; }
"""


def progress_table(study: Study) -> Table:
    """Trials per status for every (dataset, method), with device-hours spent (``time_total``)."""
    t = study.trials
    columns = [Column(s, s, numeric=False) for s in STATUSES]
    columns += [
        Column("total", "total", numeric=False),
        Column("hours", "device-hours", mark=False, decimals=3),
    ]
    rows = []
    if not t.empty:
        for (dataset, method), part in t.groupby(["dataset", "method"], sort=True):
            counts = part["status"].value_counts()
            cells = {s: Cell(text=str(int(counts.get(s, 0)))) for s in STATUSES}
            cells["total"] = Cell(text=str(len(part)))
            hours = (
                float(np.nansum(part["time_total"].astype(float))) / 3600 if "time_total" in part else np.nan
            )
            cells["hours"] = Cell(hours, np.nan, 1)
            rows.append(Row(f"{dataset} / {method}", cells, ranked=False))
    notes = []
    if not t.empty and "device" in t.columns:
        devices = sorted({str(d) for d in t["device"].dropna()})
        if devices:
            notes.append(f"devices: {', '.join(devices)} ({device_kind(t['device'])}-hours)")
    running = int((t["status"] == "running").sum()) if not t.empty else 0
    if running:
        notes.append(f"{running} trial(s) still running: their numbers will change (marked † in the tables)")
    return Table("Progress — trials per status", columns, rows, notes, row_header="dataset / method")


def _comparisons(
    study: Study, dataset: str, baseline: str, n_boot: int, focus: bool = False
) -> list[PairedComparison | str]:
    if baseline not in study.methods(dataset):
        return [f"no {baseline} trials on {dataset}: no paired comparison against it"]
    return compare_all(study, dataset, baseline=baseline, n_boot=n_boot, focus=focus)


def _link(path: Path, base: Path) -> str:
    """``path`` relative to the folder ``base`` (as a report links a kept figure)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _fair_items(fair: list[FairResult], figures: list[Figure]) -> list[object]:
    """The fair-comparison section: per dataset its table and verdicts, then its two figures."""
    items: list[object] = []
    for result in fair:
        items.append(fair_table(result))
    items += figures
    if not fair:
        items.append("no trials yet: no fair comparison")
    return items


def _sections(
    study: Study,
    baseline: str,
    n_boot: int,
    paper: Study | None = None,
    focus: bool = False,
    fair: tuple[list[FairResult], list[Figure]] | None = None,
) -> list[tuple[str, list[object]]]:
    """(heading, [Table | list of comparisons | str]) in report order. ``paper``: the same study scored
    against the published STL rows, shown after the main sections when ``study`` uses another reference."""
    references = [study.reference_label(d) for d in study.datasets]
    sections: list[tuple[str, list[object]]] = [
        ("Progress", [progress_table(study), *study.notes, *dict.fromkeys(references)])
    ]
    for dataset in study.datasets:
        items: list[object] = []
        if not study.trials.empty:
            items += [leaderboard(study, dataset), delta_m_table(study, dataset)]
            items.append(_comparisons(study, dataset, baseline, n_boot, focus))
        sections.append((f"Dataset {dataset}", items))
    if not study.trials.empty:
        sections.append(("Ablation", [ablation_table(study)]))
    if fair is None:
        fair = (fair_all(study, n_boot), [])
    sections.append((FAIR, _fair_items(*fair)))
    if paper is not None and not paper.trials.empty:
        items = [ablation_table(paper), *(leaderboard(paper, d) for d in paper.datasets)]
        sections.append(("Against the published STL rows (for reference)", items))
    return sections


def _comparison_heading(baseline: str, focus: bool) -> str:
    if focus:
        return f"Paired comparisons of {baseline} against each other method (bootstrap over seeds)"
    return f"Paired comparisons against {baseline} (bootstrap over seeds)"


def _comparison_text(items: list[PairedComparison | str]) -> list[str]:
    return [c.summary() if isinstance(c, PairedComparison) else c for c in items]


def _html_figure(fig: Figure, link_from: Path | None) -> list[str]:
    out = [f"<h3>{html.escape(fig.title)}</h3>"]
    for png in (p for p in fig.paths if p.suffix == ".png"):
        src = _link(png, link_from) if link_from is not None else _png_data_uri(png)
        out.append(f'<img alt="{html.escape(png.stem)}" src="{html.escape(src)}">')
    if fig.note:
        out.append(f'<p class="note">{html.escape(fig.note)}</p>')
    return out


def _md_figure(fig: Figure, link_from: Path | None) -> list[str]:
    out = [f"### {fig.title}", ""]
    for png in (p for p in fig.paths if p.suffix == ".png"):
        src = _link(png, link_from) if link_from is not None else _png_data_uri(png)
        out += [f"![{png.stem}]({src})", ""]
    if fig.note:
        out += [f"> {fig.note}", ""]
    return out


def render_html(
    study: Study,
    figures: list[Figure],
    baseline: str = "ew",
    n_boot: int = 10_000,
    paper: Study | None = None,
    link_from: Path | None = None,
    focus: bool = False,
    fair: tuple[list[FairResult], list[Figure]] | None = None,
) -> str:
    """The report as one HTML page (CSS inline, figures as base64 PNG). ``fair``: the fair comparison and
    its figures, already computed (else computed here, without figures)."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Study report — {html.escape(study.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Study report — {html.escape(study.name)}</h1>",
        f"<p>{html.escape(study.path)} · generated {now} · {html.escape(rule(study))}</p>",
    ]
    for heading, items in _sections(study, baseline, n_boot, paper, focus, fair):
        out.append(f"<h2>{html.escape(heading)}</h2>")
        for item in items:
            if isinstance(item, Figure):
                out += _html_figure(item, link_from)
            elif isinstance(item, Table):
                out.append(render(item, "html"))
            elif isinstance(item, list):
                out.append(f"<h3>{html.escape(_comparison_heading(baseline, focus))}</h3>")
                out.append(
                    "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in _comparison_text(item)) + "</ul>"
                )
            else:
                out.append(f'<p class="note">{html.escape(str(item))}</p>')
    out.append("<h2>Figures</h2>")
    for fig in figures:
        out += _html_figure(fig, link_from)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_markdown(
    study: Study,
    figures: list[Figure],
    baseline: str = "ew",
    n_boot: int = 10_000,
    paper: Study | None = None,
    link_from: Path | None = None,
    focus: bool = False,
    fair: tuple[list[FairResult], list[Figure]] | None = None,
) -> str:
    """The report as one Markdown file (figures as base64 ``data:`` PNG images, or as links relative to
    ``link_from``, the report's folder, when the figures are kept)."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"# Study report — {study.name}",
        "",
        f"`{study.path}` · generated {now} · {rule(study)}",
        "",
    ]
    for heading, items in _sections(study, baseline, n_boot, paper, focus, fair):
        out += [f"## {heading}", ""]
        for item in items:
            if isinstance(item, Figure):
                out += _md_figure(item, link_from)
            elif isinstance(item, Table):
                out += [render(item, "md"), ""]
            elif isinstance(item, list):
                out += [f"### {_comparison_heading(baseline, focus)}", ""]
                out += [f"- {s}" for s in _comparison_text(item)] + [""]
            else:
                out += [f"> {item}", ""]
    out += ["## Figures", ""]
    for fig in figures:
        out += _md_figure(fig, link_from)
    return "\n".join(out) + "\n"


def write_report(
    study: Study | str,
    out: str | Path | None = None,
    fmt: str | None = None,
    *,
    baseline: str = "ew",
    n_boot: int = 10_000,
    plots_dir: str | Path | None = None,
    figures: list[Figure] | None = None,
    reference: str = "paper",
    command: str | None = None,
    focus: str | None = None,
    selection: Protocol | None = None,
) -> Path:
    """Write the report of ``study`` (a :class:`Study` or its path) to ``out``.

    ``out`` defaults to ``<study name>_report.<fmt>`` in the working directory (the study folder is never
    written). ``fmt`` is ``html`` or ``md`` (default: from ``out``'s suffix, else ``html``). Figures are
    drawn into ``plots_dir`` (kept, and linked from the report rather than embedded) or a temporary folder
    (deleted, embedded), unless already drawn ones are passed as ``figures``. ``reference`` (for a path):
    ``paper`` or ``study`` (:mod:`analysis.reference`); with ``study`` the report also shows the ablation
    and leaderboards against the published rows. ``command``: how to regenerate it, printed at the top.
    ``focus``: compare that method against every other (its difference to each) instead of every method
    against ``baseline``. ``selection``: the protocol of every number (:mod:`results_store.selection`; default
    best_val), named in the header and every caption. The fair comparison (:mod:`analysis.fair`) uses
    ``n_boot`` resamples, seed 0.
    Returns the report's path."""
    paper = None
    if isinstance(study, str):
        path = study
        check_reference(reference)  # before anything is read
        study = load_study(path)  # as stored: against the published rows
        if reference != "paper":
            paper, study = study, with_reference(study, reference)  # one read serves both
    if selection is not None:
        study = with_selection(study, selection)
        paper = with_selection(paper, selection) if paper is not None else None
    if fmt is None:
        suffix = Path(out).suffix.lstrip(".").lower() if out is not None else ""
        fmt = "md" if suffix in ("md", "markdown") else "html"
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format '{fmt}'; valid: {', '.join(FORMATS)}")
    out = Path(out) if out is not None else Path(f"{study.name}_report.{fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    renderer = render_html if fmt == "html" else render_markdown
    kwargs = {"paper": paper, "focus": focus is not None}
    if focus is not None:
        baseline = focus
    fair = fair_all(study, n_boot)
    if figures is not None:
        with tempfile.TemporaryDirectory(prefix="analysis-plots-") as tmp:
            kwargs["fair"] = (fair, fair_plots(study, fair, Path(tmp)))
            text = renderer(study, figures, baseline, n_boot, **kwargs)
    elif plots_dir is not None:
        figs = all_plots(study, plots_dir)
        kwargs["fair"] = (fair, fair_plots(study, fair, Path(plots_dir)))
        text = renderer(study, figs, baseline, n_boot, link_from=out.parent, **kwargs)
    else:
        with tempfile.TemporaryDirectory(prefix="analysis-plots-") as tmp:
            kwargs["fair"] = (fair, fair_plots(study, fair, Path(tmp)))
            text = renderer(study, all_plots(study, tmp), baseline, n_boot, **kwargs)
    if command:
        first, _, rest = text.partition("\n")
        text = f"{first}\n\nRegenerate: `{command}`\n{rest}" if fmt == "md" else text
    out.write_text(text, encoding="utf-8")
    return out
