"""The papers' figures from a study's results, each saved as PNG and PDF (matplotlib, Agg backend).

=======================  ===========================================================================
function                 figure
=======================  ===========================================================================
:func:`plot_beta`        Δp versus β for each schedule σ (β_k = β / k^σ) of DB-MTL — DB-MTL Fig. 5
:func:`plot_alpha`       Δp per α_k strategy (max, min, mean, median, constant) — DB-MTL Fig. 6
:func:`plot_time`        time per epoch per method, mean ± std — DB-MTL Fig. 7
:func:`plot_grad_norms`  per-task gradient norms over epochs, one panel per method — DB-MTL Fig. 8
:func:`plot_train_loss`  per-task training losses over epochs, one panel per method — DB-MTL Fig. 9
:func:`plot_grad_cos`    mean pairwise gradient cosine similarity over epochs — DB-MTL Fig. 10
:func:`plot_learning_curves` validation and test Δp over epochs, reported configuration per method
:func:`plot_asha`        ASHA's view: validation Δp over epochs of every trial, early-stopped trials
                         marked ×, failed ones ▼ (dashed), running ones ○ (no paper shows this)
:func:`plot_pareto`      test Δp versus device-hours spent per (method, configuration), with the Pareto
                         front (a cost-aware view no paper shows)
=======================  ===========================================================================

Figs. 5-6 apply the selection rule of :mod:`analysis.load` *within* each value of the hyperparameter on the
x axis (the best configuration with that β and σ, or that strategy, chosen on validation Δp; from
ASHA-stopped trials only where no trial of that value completed, then marked) and plot that configuration's
test Δp, mean ± std (ddof=1) over seeds; every other configuration is drawn as a dot (× with the epochs it
reached when ASHA stopped it), so a study whose scheduler stopped most configurations still shows them all.
Epochs on every x axis are 1-based, as printed everywhere (stored 0-based).
Figs. 7-10 use the configuration the leaderboard
reports. Every function returns a :class:`Figure`; when the study lacks what a figure needs (no DB-MTL
trials, no ``grad_cos`` measured, ...) it returns one with no paths and a ``note`` saying why, never raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.identity import DB_MTL, has_parts
from analysis.load import (
    CONFIG,
    ELIGIBLE,
    FALLBACK,
    Study,
    best_config,
    device_kind,
    eligible_trials,
    selected_epochs,
    selections,
)
from analysis.metrics import tasks_of

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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _save(fig: plt.Figure, out_dir: Path, stem: str) -> list[Path]:
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


def _panels(n: int, width: float = 4.6, height: float = 3.4, ncols: int | None = None) -> tuple:
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _db_mtl_trials(study: Study) -> pd.DataFrame:
    """DB-MTL trials that reached a validation result: completed, running or stopped by ASHA."""
    t = study.trials
    if t.empty or "test_delta_p" not in t.columns:
        return t.iloc[0:0]
    return eligible_trials(t[has_parts(t, DB_MTL)], (*ELIGIBLE, *FALLBACK))


def _best_by(trials: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per value of ``by``: the configuration the selection rule picks (:mod:`analysis.load`: best mean
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


RULE_NOTE = (
    "line/bar: the configuration the selection rule picks per value (best mean validation Δp over completed "
    "trials; × where only ASHA-stopped trials exist); dots: every configuration, × = stopped by ASHA "
    "(epochs reached)"
)


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
        trials["hp/beta_sigma"] = 0.0
    trials["hp/beta_sigma"] = trials["hp/beta_sigma"].fillna(0.0)
    datasets = sorted(set(trials["dataset"]))
    fig, axes = _panels(len(datasets), width=5.2, height=3.8)
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
    fig_.paths = _save(fig, out_dir, fig_.name)
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
    order = ["max", "min", "mean", "median", "constant"]
    datasets = sorted(set(trials["dataset"]))
    fig, axes = _panels(len(datasets), width=5.2, height=3.8)
    for ax, dataset in zip(axes, datasets):
        mine = trials[trials["dataset"] == dataset]
        stats = _best_by(mine, [col])
        stats["order"] = [order.index(s) if s in order else len(order) for s in stats[col]]
        stats = stats.sort_values(["order", col]).reset_index(drop=True)
        x = np.arange(len(stats))
        colors = ["tab:red" if s == "max" else "tab:blue" for s in stats[col]]
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
    fig_.paths = _save(fig, out_dir, fig_.name)
    return fig_


def plot_learning_curves(study: Study, out_dir: Path) -> Figure:
    """Validation and test Δp over epochs of the configuration each method reports (mean over its seeds,
    band: min-max over seeds), one panel per dataset and split; against the study's reference
    (:meth:`analysis.load.Study.reference_label`)."""
    fig_ = Figure("learning_curves", "Δp over epochs (reported configuration, mean and range over seeds)")
    e = study.epochs
    if e.empty or "val_delta_p" not in e.columns or study.trials.empty:
        fig_.note = "skipped: no epoch rows with val_delta_p"
        return fig_
    colors = method_colors(study)
    datasets = study.datasets
    fig, axes = _panels(2 * len(datasets), width=5.2, height=3.8, ncols=2)
    for k, dataset in enumerate(datasets):
        chosen = {m: s for m, s in selections(study, dataset).items() if m != "stl"}
        for j, split in enumerate(("val", "test")):
            ax = axes[2 * k + j]
            for method, sel in chosen.items():
                rows = selected_epochs(study, sel)
                column = f"{split}_delta_p"
                if rows.empty or column not in rows.columns:
                    continue
                curve = rows.groupby("epoch")[column].agg(["mean", "min", "max"])
                curve = curve[np.isfinite(curve["mean"].astype(float))]
                x = curve.index + 1
                ax.plot(x, curve["mean"], color=colors[method], label=f"{method} ({len(sel.trials)} seeds)")
                ax.fill_between(x, curve["min"], curve["max"], color=colors[method], alpha=0.15)
            ax.set(title=f"{dataset} — {split}", xlabel="epoch", ylabel=f"{split} Δp (%) ↑")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(fig_.title)
    fig.text(0.5, -0.02, "; ".join(dict.fromkeys(study.reference_label(d) for d in datasets)), ha="center",
             va="top", fontsize=7, wrap=True)  # fmt: skip
    fig_.paths = _save(fig, out_dir, fig_.name)
    return fig_


def plot_time(study: Study, out_dir: Path) -> Figure:
    """DB-MTL Fig. 7: training time per epoch per method (mean ± std over the epochs of the reported
    configuration's trials)."""
    fig_ = Figure("fig7_time", "Time per epoch per method (DB-MTL Fig. 7)")
    if study.epochs.empty or "time_epoch" not in study.epochs.columns:
        fig_.note = "skipped: no epoch times (epochs/time_epoch)"
        return fig_
    colors = method_colors(study)
    data = {}
    for dataset in study.datasets:
        rows = []
        for method, sel in selections(study, dataset).items():
            t = selected_epochs(study, sel)["time_epoch"].astype(float)
            t = t[np.isfinite(t)]
            if len(t):
                rows.append((method, t.mean(), t.std(ddof=1) if len(t) > 1 else 0.0))
        if rows:
            data[dataset] = rows
    if not data:
        fig_.note = "skipped: no finished epochs with a time"
        return fig_
    fig, axes = _panels(len(data), width=max(4.6, 0.5 * max(len(r) for r in data.values()) + 2))
    for ax, (dataset, rows) in zip(axes, data.items()):
        x = np.arange(len(rows))
        ax.bar(
            x, [r[1] for r in rows], yerr=[r[2] for r in rows], capsize=3, color=[colors[r[0]] for r in rows]
        )
        ax.set_xticks(x, [r[0] for r in rows], rotation=45, ha="right")
        kind = (
            device_kind(study.trials[study.trials["dataset"] == dataset]["device"])
            if "device" in study.trials
            else "device"
        )
        ax.set(title=f"{dataset} ({kind})", ylabel="time per epoch (s)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(fig_.title)
    fig_.paths = _save(fig, out_dir, fig_.name)
    return fig_


def _per_task_curves(study: Study, out_dir: Path, prefix: str, fig_: Figure, ylabel: str) -> Figure:
    """One figure per dataset, one panel per method, one line per task: ``<prefix>/<task>`` over epochs
    (mean over the seeds of the reported configuration), log scale when all values are positive."""
    if study.epochs.empty or not tasks_of(study.epochs, prefix):
        fig_.note = f"skipped: no {prefix}/<task> columns"
        return fig_
    skipped = []
    for dataset in study.datasets:
        panels = []
        for method, sel in selections(study, dataset).items():
            e = selected_epochs(study, sel)
            tasks = tasks_of(e, prefix)
            if tasks:
                panels.append((method, e.groupby("epoch")[[f"{prefix}/{t}" for t in tasks]].mean(), tasks))
            else:
                skipped.append(f"{dataset}/{method}")
        if not panels:
            continue
        fig, axes = _panels(len(panels), width=4.0, height=3.0, ncols=min(4, len(panels)))
        for ax, (method, curves, tasks) in zip(axes, panels):
            for t in tasks:
                ax.plot(curves.index + 1, curves[f"{prefix}/{t}"], marker=".", label=t)  # epochs 1-based
            values = curves.to_numpy(dtype=float)
            if np.all(values[np.isfinite(values)] > 0):
                ax.set_yscale("log")
            ax.set(title=method, xlabel="epoch", ylabel=ylabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if len(tasks) <= 12:
                ax.legend(fontsize=7, ncol=2 if len(tasks) > 4 else 1)
        fig.suptitle(f"{fig_.title} — {dataset}")
        fig_.paths += _save(fig, out_dir, f"{fig_.name}_{_slug(dataset)}")
    if skipped and fig_.paths:
        fig_.note = f"not measured for: {', '.join(skipped)}"
    elif not fig_.paths:
        fig_.note = f"skipped: {prefix}/<task> never measured"
    return fig_


def plot_grad_norms(study: Study, out_dir: Path) -> Figure:
    """DB-MTL Fig. 8: per-task gradient norms ‖g_t‖ of the shared parameters over epochs, per method."""
    fig_ = Figure("fig8_grad_norm", "Task gradient norms over epochs (DB-MTL Fig. 8)")
    return _per_task_curves(study, out_dir, "grad_norm", fig_, "gradient norm")


def plot_train_loss(study: Study, out_dir: Path) -> Figure:
    """DB-MTL Fig. 9: per-task training losses over epochs, per method."""
    fig_ = Figure("fig9_train_loss", "Training losses over epochs (DB-MTL Fig. 9)")
    return _per_task_curves(study, out_dir, "train_loss", fig_, "training loss")


def plot_grad_cos(study: Study, out_dir: Path) -> Figure:
    """DB-MTL Fig. 10: mean pairwise cosine similarity of the task gradients over epochs, per method."""
    fig_ = Figure("fig10_grad_cos", "Gradient cosine similarity over epochs (DB-MTL Fig. 10)")
    e = study.epochs
    if e.empty or "grad_cos" not in e.columns or not np.isfinite(e["grad_cos"].astype(float)).any():
        fig_.note = "skipped: grad_cos never measured (methods without per-task gradients leave it NaN)"
        return fig_
    colors = method_colors(study)
    data = {}
    for dataset in study.datasets:
        lines = []
        for method, sel in selections(study, dataset).items():
            curve = selected_epochs(study, sel).groupby("epoch")["grad_cos"].mean()
            curve = curve[np.isfinite(curve.astype(float))]
            if len(curve):
                lines.append((method, curve))
        if lines:
            data[dataset] = lines
    if not data:
        fig_.note = "skipped: grad_cos not measured for the reported configurations"
        return fig_
    fig, axes = _panels(len(data))
    for ax, (dataset, lines) in zip(axes, data.items()):
        for method, curve in lines:
            ax.plot(curve.index + 1, curve.to_numpy(), marker=".", color=colors[method], label=method)
        ax.axhline(0, color="black", lw=0.6)
        ax.set(title=dataset, xlabel="epoch", ylabel="gradient cosine similarity")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(fig_.title)
    fig_.paths = _save(fig, out_dir, fig_.name)
    return fig_


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
    fig, axes = _panels(len(datasets), width=5.5, height=4.0)
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
    fig_.paths = _save(fig, out_dir, fig_.name)
    return fig_


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
    fig, axes = _panels(len(data), width=5.5, height=4.0)
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
    fig_.paths = _save(fig, out_dir, fig_.name)
    return fig_


PLOTS: tuple[Callable[[Study, Path], Figure], ...] = (
    plot_beta,
    plot_alpha,
    plot_time,
    plot_grad_norms,
    plot_train_loss,
    plot_grad_cos,
    plot_learning_curves,
    plot_asha,
    plot_pareto,
)


def all_plots(study: Study, out_dir: str | Path) -> list[Figure]:
    """Every figure of :data:`PLOTS` into ``out_dir``; a figure that fails is reported as skipped with the
    error (one broken figure never loses the others)."""
    out_dir = Path(out_dir)
    figures = []
    for plot in PLOTS:
        try:
            figures.append(plot(study, out_dir))
        except Exception as exc:
            plt.close("all")
            figures.append(
                Figure(
                    plot.__name__,
                    plot.__doc__.splitlines()[0] if plot.__doc__ else plot.__name__,
                    note=f"failed: {type(exc).__name__}: {exc}",
                )
            )
    return figures
