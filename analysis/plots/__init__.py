"""The papers' figures from a study's results, each saved as PNG and PDF (matplotlib, Agg backend), one figure
family per module over a shared base (:mod:`analysis.plots.base`: the :class:`Figure` record, panels, colours,
saving, drawing a list of figures):

============================  ===========================================================================
module / function             figure
============================  ===========================================================================
:mod:`~analysis.plots.db_mtl`
  :func:`plot_beta`           Δp versus β for each schedule σ (β_k = β / k^σ) of DB-MTL — DB-MTL Fig. 5
  :func:`plot_alpha`          Δp per α_k strategy (max, min, mean, median, constant) — DB-MTL Fig. 6
:mod:`~analysis.plots.training`
  :func:`plot_time`           time per epoch per method, mean ± std — DB-MTL Fig. 7
  :func:`plot_grad_norms`     per-task gradient norms over epochs, one panel per method — DB-MTL Fig. 8
  :func:`plot_train_loss`     per-task training losses over epochs, one panel per method — DB-MTL Fig. 9
  :func:`plot_grad_cos`       mean pairwise gradient cosine similarity over epochs — DB-MTL Fig. 10
  :func:`plot_learning_curves`  validation and test Δp over epochs, reported configuration per method
:mod:`~analysis.plots.asha`
  :func:`plot_asha`           ASHA's view: validation Δp over epochs of every trial, early-stopped trials
                              marked ×, failed ones ▼ (dashed), running ones ○ (no paper shows this)
:mod:`~analysis.plots.cost`
  :func:`plot_pareto`         test Δp versus device-hours spent per (method, configuration), with the
                              Pareto front (a cost-aware view no paper shows)
:mod:`~analysis.plots.fair`   the fair comparison's two figures (:func:`~analysis.plots.fair.fair_plots`,
                              drawn from :mod:`analysis.fair`'s results, not by :func:`all_plots`)
============================  ===========================================================================

Figs. 5-6 apply the selection rule of :mod:`results_store.selection` within each value of the hyperparameter
on
the x axis; Figs. 7-10 and the learning curves use the configuration the leaderboard reports. Epochs on every
x axis are 1-based, as printed everywhere (stored 0-based). Every function returns a :class:`Figure`; when the
study lacks what a figure needs (no DB-MTL trials, no ``grad_cos`` measured, ...) it returns one with no paths
and a ``note`` saying why, never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from analysis.load import Study
from analysis.plots.asha import plot_asha
from analysis.plots.base import Figure, draw_each
from analysis.plots.cost import plot_pareto
from analysis.plots.db_mtl import plot_alpha, plot_beta
from analysis.plots.training import (
    plot_grad_cos,
    plot_grad_norms,
    plot_learning_curves,
    plot_time,
    plot_train_loss,
)

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
    error (one broken figure never loses the others, :func:`analysis.plots.base.draw_each`)."""
    return draw_each(PLOTS, study, Path(out_dir))
