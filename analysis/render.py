"""The renderers of a :class:`analysis.table_model.Table`: terminal text, Markdown, LaTeX and HTML, with the
best value of each column in bold and the second best underlined."""

from __future__ import annotations

import html

from analysis.metrics import arrow
from analysis.table_model import Cell, Row, Table, format_cell


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
