"""Analysis of finished or running studies from their Parquet results (DESIGN §1, §4, §6).

Reads only Parquet (through the Ray-free :mod:`results_store` package: its readers, and the one selection rule
and configuration labeler) with pandas, numpy and matplotlib; ``import analysis`` and its submodules load
neither Ray nor torch, and import nothing from :mod:`study`.

Modules, one job each:

* :mod:`analysis.metrics` — which metrics a study has (from the ``test/<task>/<metric>`` columns) and their
  direction (higher or lower is better, as the study stored it), torch-free.
* :mod:`analysis.identity` — what each method is (its stored balancer and aggregator), not its spelling.
* :mod:`analysis.load` — read a study folder or URI, scored against a reference and under a selection
  protocol (the rule that picks the best configuration per (dataset, method): :mod:`results_store.selection`).
* :mod:`analysis.tables` — leaderboards (DB-MTL Tables 1-4), the ablation (DB-MTL Table 5), Δm with the
  relative training time T (IGB), built on :mod:`analysis.table_model` (cells, columns, rows, marks) and
  drawn by :mod:`analysis.render` (terminal text, Markdown, LaTeX, HTML).
* :mod:`analysis.reference` — what Δp/Δm are measured against: the published rows or the study's STL runs.
* :mod:`analysis.stats` — paired bootstrap comparison of two methods across seeds.
* :mod:`analysis.bootstrap` — t-intervals, paired bootstrap probabilities, rank distributions, Kendall's τ.
* :mod:`analysis.fair` — the fair comparison: paper defaults beside tuned, with seed-level uncertainty;
  its figures in :mod:`analysis.plots.fair`.
* :mod:`analysis.plots` — the figures (DB-MTL Figs. 5-10, ASHA's view, the cost Pareto front).
* :mod:`analysis.report` — one self-contained HTML or Markdown report.
* :mod:`analysis.utilisation` — slot utilisation from the trials' start/end times and nodes.
* :mod:`analysis.cli` — the ``analysis`` command.
"""

from __future__ import annotations

__all__ = [
    "bootstrap",
    "cli",
    "fair",
    "identity",
    "load",
    "metrics",
    "plots",
    "reference",
    "render",
    "report",
    "stats",
    "table_model",
    "tables",
    "utilisation",
]
