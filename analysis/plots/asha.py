"""ASHA's view of a study (no paper shows this): validation Δp over epochs of every trial, the trials the
scheduler stopped early marked ×, failed ones ▼ (dashed), running ones ○."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.load import Study
from analysis.plots.base import Figure, method_colors, panels, save


def _status_of_trials(study: Study) -> dict[tuple[str, str, str], str]:
    t = study.trials
    if t.empty:
        return {}
    return {(d, m, i): s for d, m, i, s in zip(t["dataset"], t["method"], t["trial_id"], t["status"])}


def plot_asha(study: Study, out_dir: Path) -> Figure:
    """ASHA's view: validation Δp over epochs of every trial (colour = method); the last epoch of trials the
    scheduler stopped early is marked ×, of failed trials ▼ (dashed line), of running trials ○."""
    fig_ = Figure("asha", "ASHA's view: validation Δp of every trial")
    e = study.epochs
    if e.empty or "val_delta_p" not in e.columns:
        fig_.note = "skipped: no epoch rows with val_delta_p"
        return fig_
    status = _status_of_trials(study)
    colors = method_colors(study)
    datasets = sorted(set(e["dataset"]))
    fig, axes = panels(len(datasets), width=5.5, height=4.0)
    styles = {
        "stopped": lambda c: {"marker": "x", "s": 60, "color": c},
        "failed": lambda c: {"marker": "v", "s": 45, "facecolors": c, "edgecolors": "red"},
        "running": lambda c: {"marker": "o", "s": 45, "facecolors": "none", "edgecolors": c},
    }
    for ax, dataset in zip(axes, datasets):
        part = e[e["dataset"] == dataset]
        for (method, trial_id), rows in part.groupby(["method", "trial_id"], sort=True):
            rows = rows.sort_values("epoch")
            y = rows["val_delta_p"].astype(float)
            ok = np.isfinite(y)
            st = status.get((dataset, method, trial_id), "running")
            ls = "--" if st == "failed" else "-"
            x = rows["epoch"][ok] + 1  # epochs as printed: 1-based (stored 0-based)
            ax.plot(x, y[ok], ls=ls, lw=1, alpha=0.75, color=colors[method])
            if st in styles and ok.any():
                ax.scatter(x.iloc[-1], y[ok].iloc[-1], zorder=3, **styles[st](colors[method]))
        ax.set(title=dataset, xlabel="epoch", ylabel="validation Δp (%) ↑")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        handles = [Line2D([], [], color=colors[m], label=m) for m in sorted(set(part["method"]))]
        handles += [
            Line2D([], [], color="gray", marker="x", ls="", label="stopped early"),
            Line2D([], [], color="red", marker="v", ls="--", label="failed"),
            Line2D([], [], color="gray", marker="o", mfc="none", ls="", label="running"),
        ]
        ax.legend(handles=handles, fontsize=7, ncol=2)
    fig.suptitle(fig_.title)
    fig_.paths = save(fig, out_dir, fig_.name)
    return fig_
