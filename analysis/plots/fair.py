"""The fair comparison's figures (issue 22), PNG + PDF like every figure (:mod:`analysis.plots.base`: a
:class:`~analysis.plots.base.Figure` with a note instead of an exception when there is nothing to draw):

* :func:`plot_default_vs_tuned` — per dataset, each method's test Δp with its paper-default configuration
  (open circle) and tuned on validation (filled, with its 95 % t-interval over seeds), an arrow from default
  to tuned; methods without default rows show the tuned point only;
* :func:`plot_rank_distribution` — per dataset, a heatmap method × rank of the fraction of paired bootstrap
  resamples in which the method takes that rank (:func:`analysis.bootstrap.rank_distribution`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from analysis.fair import FairResult
from analysis.load import Study
from analysis.plots.base import Figure, draw_each, method_colors, panels, save


def plot_default_vs_tuned(study: Study, results: list[FairResult], out_dir: Path) -> Figure:
    """Test Δp per method: paper default → tuned (arrows), tuned with its 95 % t-interval."""
    fig_ = Figure("fair_default_vs_tuned", "Paper defaults → tuned: test Δp per method")
    drawn = [r for r in results if any(math.isfinite(m.tuned_dp.mean) for m in r.methods)]
    if not drawn:
        fig_.note = "skipped: no method has a tuned test Δp yet"
        return fig_
    colors = method_colors(study)
    fig, axes = panels(len(drawn), width=5.5, height=0.5 + 0.45 * max(len(r.methods) for r in drawn))
    for ax, result in zip(axes, drawn):
        methods = [m for m in result.methods if math.isfinite(m.tuned_dp.mean)]
        for y, m in enumerate(methods):
            color = colors.get(m.method, "black")
            tuned, default = m.tuned_dp, m.default_dp
            if math.isfinite(tuned.low):
                ax.plot([tuned.low, tuned.high], [y, y], color=color, lw=2, alpha=0.4)
            ax.plot(tuned.mean, y, "o", color=color, ms=7)
            if math.isfinite(default.mean):
                ax.plot(default.mean, y, "o", mfc="white", mec=color, ms=7)
                if default.mean != tuned.mean:
                    ax.annotate(
                        "",
                        xy=(tuned.mean, y),
                        xytext=(default.mean, y),
                        arrowprops={
                            "arrowstyle": "->",
                            "color": color,
                            "lw": 1.2,
                            "shrinkA": 4,
                            "shrinkB": 4,
                        },
                    )
        ax.set_yticks(range(len(methods)), [m.method for m in methods])
        ax.invert_yaxis()
        ax.axvline(0.0, color="grey", lw=0.8, ls=":")
        ax.set(title=f"{result.dataset} ({result.protocol})", xlabel="test Δp (%) ↑")
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(fig_.title)
    fig.text(
        0.5,
        -0.02,
        "○ paper default, ● tuned on validation (bar: 95% t-interval over seeds); arrow: default → tuned",
        ha="center",
        va="top",
        fontsize=7,
    )
    fig_.paths = save(fig, out_dir, fig_.name)
    return fig_


def plot_rank_distribution(study: Study, results: list[FairResult], out_dir: Path) -> Figure:
    """Fraction of paired bootstrap resamples in which each method takes each rank (heatmap)."""
    fig_ = Figure("fair_rank_distribution", "Rank distribution over bootstrap resamples (tuned)")
    drawn = [r for r in results if r.ranks is not None]
    if not drawn:
        fig_.note = "skipped: fewer than 2 tuned methods sharing 2 seeds on every dataset"
        return fig_
    fig, axes = panels(len(drawn), width=5.0, height=0.8 + 0.45 * max(len(r.ranks.fractions) for r in drawn))
    for ax, result in zip(axes, drawn):
        order = [m.method for m in result.methods if m.method in result.ranks.fractions]
        grid = np.array([result.ranks.fractions[m] for m in order])
        ax.imshow(grid, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if grid[i, j] > 0:
                    color = "white" if grid[i, j] > 0.6 else "black"
                    ax.text(
                        j, i, f"{100 * grid[i, j]:.0f}", ha="center", va="center", fontsize=7, color=color
                    )
        ax.set_xticks(range(grid.shape[1]), [str(r) for r in range(1, grid.shape[1] + 1)])
        ax.set_yticks(range(len(order)), order)
        ax.set(title=f"{result.dataset} ({result.protocol})", xlabel="rank (1 = best mean test Δp)")
    fig.suptitle(fig_.title)
    how = "; ".join(dict.fromkeys(r.ranks.how for r in drawn))
    fig.text(0.5, -0.02, f"% of resamples; {how}", ha="center", va="top", fontsize=7)
    fig_.paths = save(fig, out_dir, fig_.name)
    return fig_


FAIR_PLOTS = (plot_default_vs_tuned, plot_rank_distribution)


def fair_plots(study: Study, results: list[FairResult], out_dir: str | Path) -> list[Figure]:
    """Every figure of :data:`FAIR_PLOTS` into ``out_dir``; a figure that fails is reported as skipped with
    the error (:func:`analysis.plots.base.draw_each`)."""
    return draw_each(FAIR_PLOTS, study, results, Path(out_dir))
