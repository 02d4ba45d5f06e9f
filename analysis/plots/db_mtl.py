"""DB-MTL's hyperparameter figures: Δp versus β per schedule σ (Fig. 5) and per α_k strategy (Fig. 6).

Both apply the selection rule of :mod:`results_store.selection` *within* each value of the hyperparameter on
the x
axis (the best configuration with that β and σ, or that strategy, chosen on validation Δp; from ASHA-stopped
trials only where no trial of that value completed, then marked) and plot that configuration's test Δp, mean ±
std (ddof=1) over seeds; every other configuration is drawn as a dot (× with the epochs it reached when ASHA
stopped it), so a study whose scheduler stopped most configurations still shows them all. Trials without an
``hp/beta_sigma`` value are drawn at MaxNorm's default σ (:data:`mtl.max_norm_settings.DEFAULT_BETA_SIGMA`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.identity import DB_MTL, has_parts
from analysis.load import Study
from analysis.plots.base import Figure, panels, save
from mtl.max_norm_settings import ALPHA_STRATEGIES, DEFAULT_ALPHA_STRATEGY, DEFAULT_BETA_SIGMA
from results_store.labels import CONFIG
from results_store.selection import ELIGIBLE, FALLBACK, best_config, eligible_trials

RULE_NOTE = (
    "line/bar: the configuration the selection rule picks per value (best mean validation Δp over completed "
    "trials; × where only ASHA-stopped trials exist); dots: every configuration, × = stopped by ASHA "
    "(epochs reached)"
)


def _db_mtl_trials(study: Study) -> pd.DataFrame:
    """DB-MTL trials that reached a validation result: completed, running or stopped by ASHA."""
    t = study.trials
    if t.empty or "test_delta_p" not in t.columns:
        return t.iloc[0:0]
    return eligible_trials(t[has_parts(t, DB_MTL)], (*ELIGIBLE, *FALLBACK))


def _best_by(trials: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per value of ``by``: the configuration the selection rule picks (:mod:`results_store.selection`: best
    mean
    validation Δp over the completed or running trials; only where none, over the stopped ones), its test Δp
    mean, std (ddof=1), n, and ``stopped`` (picked from stopped trials)."""
    out = []
    for statuses, stopped in ((ELIGIBLE, False), (FALLBACK, True)):
        pool = trials[trials["status"].isin(list(statuses))]
        if out:  # values already covered by completed/running trials keep them
            covered = pd.concat(out)[by].drop_duplicates()
            pool = pool.merge(covered, on=by, how="left", indicator=True)
            pool = pool[pool["_merge"] == "left_only"].drop(columns="_merge")
        if pool.empty:
            continue
        stats = (
            best_config(pool, by)
            .groupby(by, dropna=False)["test_delta_p"]
            .agg(mean="mean", std=lambda s: s.std(ddof=1), n="count")
            .reset_index()
        )
        out.append(stats.assign(stopped=stopped))
    if not out:
        return pd.DataFrame(columns=[*by, "mean", "std", "n", "stopped"])
    return pd.concat(out, ignore_index=True)


def every_config(trials: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Every configuration of ``trials`` (one point each, whatever ASHA did): its ``by`` values, test Δp
    mean over its seeds, ``stopped`` (all its trials stopped early) and ``epochs`` (the most any reached)."""
    if trials.empty:
        return pd.DataFrame(columns=[*by, CONFIG, "mean", "stopped", "epochs"])
    grouped = trials.groupby([*by, CONFIG], dropna=False)
    return grouped.agg(
        mean=("test_delta_p", "mean"),
        stopped=("status", lambda s: bool((s == "stopped").all())),
        epochs=("epochs_done", "max"),
    ).reset_index()


def _every_point(ax, x: float, row: pd.Series, color) -> None:
    if row["stopped"]:
        ax.scatter(x, row["mean"], marker="x", s=28, color=color, alpha=0.7, zorder=2)
        if np.isfinite(row["epochs"]):
            ax.annotate(f"{int(row['epochs'])}", (x, row["mean"]), fontsize=6, alpha=0.7,
                        xytext=(3, 2), textcoords="offset points")  # fmt: skip
    else:
        ax.scatter(x, row["mean"], marker="o", s=14, color=color, alpha=0.5, zorder=2)


def plot_beta(study: Study, out_dir: Path) -> Figure:
    """DB-MTL Fig. 5: test Δp versus β, one line per schedule σ (σ = 0: constant β; σ = 0.5: β/√k); every
    configuration is drawn too, ASHA-stopped ones marked with the epochs they reached."""
    fig_ = Figure("fig5_beta", "Δp versus β and its schedule (DB-MTL Fig. 5)")
    trials = _db_mtl_trials(study)
    if trials.empty or "hp/beta" not in trials.columns or trials["hp/beta"].isna().all():
        fig_.note = "skipped: no DB-MTL trials with a searched β (hp/beta)"
        return fig_
    trials = trials[trials["hp/beta"].notna()].copy()
    if "hp/beta_sigma" not in trials.columns:
        trials["hp/beta_sigma"] = DEFAULT_BETA_SIGMA
    trials["hp/beta_sigma"] = trials["hp/beta_sigma"].fillna(DEFAULT_BETA_SIGMA)
    datasets = sorted(set(trials["dataset"]))
    fig, axes = panels(len(datasets), width=5.2, height=3.8)
    by = ["hp/beta_sigma", "hp/beta"]
    for ax, dataset in zip(axes, datasets):
        mine = trials[trials["dataset"] == dataset]
        stats = _best_by(mine, by)
        points = every_config(mine, by)
        for i, (sigma, part) in enumerate(stats.groupby("hp/beta_sigma")):
            color = f"C{i}"
            part = part.sort_values("hp/beta")
            label = r"$\beta_k = \beta$" if sigma == 0 else rf"$\beta_k = \beta / k^{{{sigma:g}}}$"
            ax.errorbar(part["hp/beta"], part["mean"], yerr=part["std"].fillna(0), marker="o", capsize=3,
                        label=label, color=color, zorder=3)  # fmt: skip
            picked_stopped = part[part["stopped"]]
            ax.scatter(
                picked_stopped["hp/beta"], picked_stopped["mean"], marker="X", s=80, color=color, zorder=4
            )
            for _, row in points[points["hp/beta_sigma"] == sigma].iterrows():
                _every_point(ax, float(row["hp/beta"]), row, color)
        ax.set(title=f"{dataset} ({len(points)} configuration(s))", xlabel="β", ylabel="test Δp (%) ↑")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(fig_.title)
    fig.text(0.5, -0.02, RULE_NOTE, ha="center", va="top", fontsize=7, wrap=True)
    fig_.paths = save(fig, out_dir, fig_.name)
    return fig_


def plot_alpha(study: Study, out_dir: Path) -> Figure:
    """DB-MTL Fig. 6: test Δp per strategy for the step size α_k (max, min, mean, median, constant); every
    configuration is drawn too, ASHA-stopped ones marked with the epochs they reached."""
    fig_ = Figure("fig6_alpha", "Δp per α_k strategy (DB-MTL Fig. 6)")
    trials = _db_mtl_trials(study)
    col = "hp/alpha_strategy"
    if trials.empty or col not in trials.columns or trials[col].isna().all():
        fig_.note = "skipped: no DB-MTL trials with a searched α_k strategy (hp/alpha_strategy)"
        return fig_
    trials = trials[trials[col].notna()]
    order = list(ALPHA_STRATEGIES)
    datasets = sorted(set(trials["dataset"]))
    fig, axes = panels(len(datasets), width=5.2, height=3.8)
    for ax, dataset in zip(axes, datasets):
        mine = trials[trials["dataset"] == dataset]
        stats = _best_by(mine, [col])
        stats["order"] = [order.index(s) if s in order else len(order) for s in stats[col]]
        stats = stats.sort_values(["order", col]).reset_index(drop=True)
        x = np.arange(len(stats))
        colors = ["tab:red" if s == DEFAULT_ALPHA_STRATEGY else "tab:blue" for s in stats[col]]
        hatches = ["//" if stopped else "" for stopped in stats["stopped"]]
        bars = ax.bar(x, stats["mean"], yerr=stats["std"].fillna(0), capsize=3, color=colors, alpha=0.8)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        points = every_config(mine, [col])
        for i, strategy in enumerate(stats[col]):
            for j, (_, row) in enumerate(points[points[col] == strategy].iterrows()):
                _every_point(ax, i + 0.25 + 0.04 * (j % 5), row, "black")
        ax.set_xticks(x, [str(s) for s in stats[col]])
        ax.axhline(0, color="black", lw=0.6)
        ax.set(
            title=f"{dataset} ({len(points)} configurations)", xlabel="α_k strategy", ylabel="test Δp (%) ↑"
        )
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(fig_.title)
    fig.text(0.5, -0.02, RULE_NOTE + "; hatched bar: picked from stopped trials", ha="center", va="top",
             fontsize=7, wrap=True)  # fmt: skip
    fig_.paths = save(fig, out_dir, fig_.name)
    return fig_
