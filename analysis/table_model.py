"""What a table is, independent of how it is built or drawn: :class:`Cell` (a mean ± std over seeds, or a
text), :class:`Column` (a metric with its direction), :class:`Row` (a method), :class:`Table` (with its
notes and the best / second-best marks per column), and the flags a row can carry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.metrics import arrow

RUNNING_FLAG = "†"
STOPPED_FLAG = "‡"
LEGEND = {
    RUNNING_FLAG: "includes trials still running",
    STOPPED_FLAG: "no trial finished: trials stopped early by the scheduler",
}


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
