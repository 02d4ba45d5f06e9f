"""One line per method: what it does and the paper it comes from (``mtl methods``, the README's tables).

Every name of the balancer and aggregator registries has an entry (a test checks it), so a new method
cannot be registered without saying what it is and where it comes from.
"""

from __future__ import annotations

METHOD_PAPERS: dict[str, tuple[str, str]] = {
    # balancers: weights λ_t of the (transformed) losses
    "ew": ("equal weights, Σ L_t", "the multi-task baseline (linear scalarisation with λ = 1)"),
    "si": ("scale-invariant log losses, Σ log(L_t + 1e-8)", "Lin et al. 2023, DB-MTL (Table 5, log only)"),
    "static": ("fixed searchable weights weight.<task>, normalised to sum to T",
               "Xin et al. 2022 / Kurin et al. 2022 (tuned linear scalarisation)"),
    "gls": ("geometric mean of the losses", "Chennupati et al. 2019, MultiNet++ (GLS)"),
    "rlw": ("random weights T·softmax(u), u ~ N(0, I) each step", "Lin et al. 2022, RLW (TMLR)"),
    "uw": ("homoscedastic-uncertainty weights", "Kendall et al. 2018 (CVPR)"),
    "dwa": ("dynamic weight average of the loss ratios", "Liu et al. 2019, MTAN (CVPR)"),
    "imtl_l": ("learnable loss scales e^s L − s", "Liu et al. 2021, IMTL (ICLR)"),
    "igbv1": ("T·softmax(L/L_base) on log losses", "Dai et al. 2023, IGB (improvable gap balancing)"),
    "igbv2": ("SAC-chosen weights on log losses", "Dai et al. 2023, IGB (Alg. 2)"),
    "famo": ("task logits updated after each step from the loss decrease", "Liu et al. 2023, FAMO (NeurIPS)"),
    "stch": ("smooth Tchebycheff scalarisation after a warm-up", "Lin et al. 2024, STCH (ICML)"),
    "auto_lambda": ("task weights learnt on a meta batch (bilevel)", "Liu et al. 2022, Auto-Lambda (TMLR)"),
    "stl": ("one task only (-m task=NAME)", "the single-task reference"),
    # aggregators: the task-gradient matrix G -> one update
    "sum": ("Σ_t g_t (what EW's single backward gives)", "—"),
    "max_norm": ("EMA gradients rescaled to the max norm", "Lin et al. 2023, DB-MTL (Alg. 1)"),
    "mgda": ("min-norm point of the convex hull", "Sener & Koltun 2018 (NeurIPS)"),
    "pcgrad": ("project conflicting gradients", "Yu et al. 2020 (NeurIPS)"),
    "gradvac": ("gradient vaccine: adaptive cosine targets", "Wang et al. 2021 (ICLR)"),
    "graddrop": ("gradient sign dropout", "Chen et al. 2020 (NeurIPS)"),
    "cagrad": ("conflict-averse gradient", "Liu et al. 2021 (NeurIPS)"),
    "imtl_g": ("equal projections of the update on each task", "Liu et al. 2021, IMTL (ICLR)"),
    "nash_mtl": ("Nash bargaining solution", "Navon et al. 2022 (ICML)"),
    "aligned_mtl": ("principal-component alignment", "Senushkin et al. 2023 (CVPR)"),
    "gradnorm": ("gradient-norm balancing with learnt weights", "Chen et al. 2018 (ICML)"),
    "moco": ("tracked gradients + MGDA-like weights", "Fernando et al. 2023, MoCo (ICLR)"),
    "metabalance": ("per-tensor magnitude balancing to a main task", "He et al. 2022 (WWW)"),
    "mtadam": ("Adam-like per-task normalisation", "Malkiel & Wolf 2021, MTAdam"),
    "upgrad": ("mean of the projections onto the dual cone", "Quinton & Rey 2024, Jacobian Descent"),
    "dualproj": ("projection of the mean onto the dual cone", "Quinton & Rey 2024 (after Lopez-Paz & Ranzato "
                 "2017)"),
    "fairgrad": ("α-fair utility: G Gᵀ w = w^{-1/α}", "Ban & Ji 2024, FairGrad (ICML)"),
    "config": ("conflict-free inverse gradients", "Liu et al. 2024, ConFIG (ICLR 2025)"),
    "m_config": ("ConFIG with per-task momentum", "Liu et al. 2024, ConFIG (Sec. 3.3)"),
    "sdmgrad": ("direction-oriented MGDA with a preference", "Xiao et al. 2023, SDMGrad (NeurIPS)"),
    "modo": ("stochastic MGDA with double sampling", "Chen et al. 2023, MoDo (NeurIPS)"),
    "excess_mtl": ("weights from per-task excess risks", "He et al. 2024, ExcessMTL (ICML)"),
    "cr_mogm": ("EMA of another aggregator's weights", "Zhou et al. 2022, CR-MOGM (NeurIPS)"),
}  # fmt: skip


def describe(name: str) -> tuple[str, str]:
    """``(what it does, paper)`` of a registered balancer or aggregator name."""
    return METHOD_PAPERS.get(name, ("", ""))
