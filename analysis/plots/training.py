"""How the reported configurations trained, per method: Δp over epochs (validation and test), time per epoch
(DB-MTL Fig. 7), per-task gradient norms (Fig. 8) and training losses (Fig. 9), and the gradients' cosine
similarity (Fig. 10). Each uses the configuration the leaderboard reports (:func:`analysis.load.selections`);
epochs on every x axis are 1-based, as printed everywhere (stored 0-based)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from analysis.load import Study, device_kind, selected_epochs, selections
from analysis.metrics import tasks_of
from analysis.plots.base import Figure, method_colors, panels, save, slug


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
    fig, axes = panels(2 * len(datasets), width=5.2, height=3.8, ncols=2)
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
    fig_.paths = save(fig, out_dir, fig_.name)
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
    fig, axes = panels(len(data), width=max(4.6, 0.5 * max(len(r) for r in data.values()) + 2))
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
    fig_.paths = save(fig, out_dir, fig_.name)
    return fig_


def _per_task_curves(study: Study, out_dir: Path, prefix: str, fig_: Figure, ylabel: str) -> Figure:
    """One figure per dataset, one panel per method, one line per task: ``<prefix>/<task>`` over epochs
    (mean over the seeds of the reported configuration), log scale when all values are positive."""
    if study.epochs.empty or not tasks_of(study.epochs, prefix):
        fig_.note = f"skipped: no {prefix}/<task> columns"
        return fig_
    skipped = []
    for dataset in study.datasets:
        curves_of = []
        for method, sel in selections(study, dataset).items():
            e = selected_epochs(study, sel)
            tasks = tasks_of(e, prefix)
            if tasks:
                curves_of.append((method, e.groupby("epoch")[[f"{prefix}/{t}" for t in tasks]].mean(), tasks))
            else:
                skipped.append(f"{dataset}/{method}")
        if not curves_of:
            continue
        fig, axes = panels(len(curves_of), width=4.0, height=3.0, ncols=min(4, len(curves_of)))
        for ax, (method, curves, tasks) in zip(axes, curves_of):
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
        fig_.paths += save(fig, out_dir, f"{fig_.name}_{slug(dataset)}")
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
    fig, axes = panels(len(data))
    for ax, (dataset, lines) in zip(axes, data.items()):
        for method, curve in lines:
            ax.plot(curve.index + 1, curve.to_numpy(), marker=".", color=colors[method], label=method)
        ax.axhline(0, color="black", lw=0.6)
        ax.set(title=dataset, xlabel="epoch", ylabel="gradient cosine similarity")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(fig_.title)
    fig_.paths = save(fig, out_dir, fig_.name)
    return fig_
