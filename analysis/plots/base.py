"""What every figure shares: the :class:`Figure` record, panels, colours, saving as PNG and PDF (matplotlib,
Agg backend), and drawing a list of figures so that one broken figure never loses the others."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from analysis.load import Study

DPI = 120


@dataclass
class Figure:
    """A produced figure (``paths``: its PNG and PDF) or a skipped one (``note`` says why)."""

    name: str
    title: str
    paths: list[Path] = field(default_factory=list)
    note: str | None = None

    @property
    def png(self) -> Path | None:
        return next((p for p in self.paths if p.suffix == ".png"), None)


def slug(text: str) -> str:
    """``text`` as a file-name part (runs of other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def save(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
    """``fig`` as ``<stem>.png`` and ``<stem>.pdf`` in ``out_dir`` (created), then closed; the two paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")  # keeps notes drawn below the axes
        paths.append(path)
    plt.close(fig)
    return paths


def method_colors(study: Study) -> dict[str, tuple]:
    """One stable colour per method of the study (tab10, then tab20)."""
    methods = sorted(
        set(study.methods()) | (set(study.epochs["method"]) if "method" in study.epochs else set())
    )
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def panels(n: int, width: float = 4.6, height: float = 3.4, ncols: int | None = None) -> tuple:
    """A figure of ``n`` panels of ``width`` × ``height`` inches, ``ncols`` a row (all in one row by
    default): the figure and its ``n`` axes (cells past ``n`` hidden)."""
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def draw_each(plots: Sequence[Callable[..., Figure]], *args: Any) -> list[Figure]:
    """Every figure of ``plots``, each called with ``args``; a figure that fails is reported as skipped with
    the error (titled by its docstring's first line), never raised."""
    figures = []
    for plot in plots:
        try:
            figures.append(plot(*args))
        except Exception as exc:
            plt.close("all")
            title = plot.__doc__.splitlines()[0] if plot.__doc__ else plot.__name__
            figures.append(Figure(plot.__name__, title, note=f"failed: {type(exc).__name__}: {exc}"))
    return figures
