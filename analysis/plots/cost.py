"""The cost-aware view (no paper shows this): test Δp versus device-hours spent per (method, configuration),
with the Pareto front."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.load import Study, device_kind
from analysis.plots.base import Figure, method_colors, panels, save
from results_store.labels import CONFIG


def pareto_front(points: pd.DataFrame, x: str = "hours", y: str = "delta_p") -> pd.DataFrame:
    """The points no other point dominates (less or equal ``x`` and higher ``y``), sorted by ``x``."""
    front, best = [], -math.inf
    for _, row in points.sort_values([x, y], ascending=[True, False]).iterrows():
        if row[y] > best:
            front.append(row)
            best = row[y]
    return pd.DataFrame(front)


def cost_points(study: Study, dataset: str) -> pd.DataFrame:
    """Per (method, configuration) on ``dataset``: device-hours spent (``time_total / 3600`` summed over
    all its trials, stopped and failed ones included) and test Δp (mean over its trials with a result)."""
    t = study.trials
    t = t[t["dataset"] == dataset]
    if t.empty:
        return pd.DataFrame(columns=["method", CONFIG, "hours", "delta_p", "n"])
    hours = t.groupby(["method", CONFIG])["time_total"].sum() / 3600.0
    finite = t[np.isfinite(t["test_delta_p"].astype(float)) & (t["status"] != "failed")]
    dp = finite.groupby(["method", CONFIG])["test_delta_p"].agg(["mean", "count"])
    out = pd.concat([hours.rename("hours"), dp["mean"].rename("delta_p"), dp["count"].rename("n")], axis=1)
    return out.dropna(subset=["delta_p"]).reset_index()


def plot_pareto(study: Study, out_dir: Path) -> Figure:
    """Test Δp versus GPU- (or CPU-) hours per (method, configuration), with the Pareto front: the cheapest
    configuration for each level of Δp. Hours are each configuration's summed ``time_total``. The front is
    descriptive (it is drawn on test Δp); choose configurations with the validation-based leaderboard."""
    fig_ = Figure("pareto_cost", "Δp versus compute: the cost-aware Pareto front")
    t = study.trials
    if t.empty or "time_total" not in t.columns or "test_delta_p" not in t.columns:
        fig_.note = "skipped: no trials with time_total and test_delta_p"
        return fig_
    data = {d: cost_points(study, d) for d in study.datasets}
    data = {d: p for d, p in data.items() if not p.empty}
    if not data:
        fig_.note = "skipped: no trial has a test Δp yet"
        return fig_
    colors = method_colors(study)
    fig, axes = panels(len(data), width=5.5, height=4.0)
    for ax, (dataset, points) in zip(axes, data.items()):
        for method, part in points.groupby("method"):
            ax.scatter(part["hours"], part["delta_p"], color=colors[method], label=method, s=30, alpha=0.8)
        ax.margins(0.1)
        front = pareto_front(points)
        ax.step(front["hours"], front["delta_p"], where="post", color="black", lw=1, label="Pareto front")
        for _, row in front.iterrows():
            ax.annotate(
                row["method"],
                (row["hours"], row["delta_p"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        kind = device_kind(t[t["dataset"] == dataset]["device"]) if "device" in t.columns else "device"
        ax.set(title=dataset, xlabel=f"{kind}-hours per configuration (all seeds)", ylabel="test Δp (%) ↑")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(fig_.title)
    fig_.paths = save(fig, out_dir, fig_.name)
    return fig_
