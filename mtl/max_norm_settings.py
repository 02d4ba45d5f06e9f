"""DB-MTL's max-norm settings, declared once and torch-free: :class:`mtl.aggregators.basic.MaxNorm` takes its
defaults and its α_k strategies from here, and :mod:`analysis` (which loads no torch, DESIGN §1) reads the
same values to label a study's figures (a trial that does not search σ ran with :data:`DEFAULT_BETA_SIGMA`).

The defaults are the reference code's (LibMTL's ``--DB_beta 0.9``, ``--DB_beta_sigma 0``): the paper
grid-searches β ∈ {0.1, 0.5, 0.9} × σ ∈ {0, 0.5} and does not say which values its tables use.
"""

from __future__ import annotations

ALPHA_STRATEGIES: tuple[str, ...] = ("max", "min", "mean", "median", "constant")
"""The step sizes α_k of DB-MTL Alg. 1 line 9 (paper Fig. 6), in the paper's order."""

DEFAULT_BETA = 0.9
"""β of the EMA ĝ_t ← β_k ĝ_t + (1 − β_k) g_t."""

DEFAULT_BETA_SIGMA = 0.0
"""σ of the schedule β_k = β / k^σ (0: a constant β; 0.5: the β/√k schedule)."""

DEFAULT_ALPHA_STRATEGY = "max"
"""α_k = max_t ‖ĝ_t‖, the paper's choice."""

DEFAULT_ALPHA_CONSTANT = 1.0
"""α_k for the ``constant`` strategy."""
