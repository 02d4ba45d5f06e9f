"""Euclidean projection onto the probability simplex (the task-weight iterates of SDMGrad and MoDo)."""

from __future__ import annotations

from torch import Tensor


def project_onto_simplex(y: Tensor) -> Tensor:
    """``argmin_{w ≥ 0, Σ w = 1} ‖w − y‖`` for a vector ``y`` [m], in ``y``'s dtype and device.

    The sort-and-threshold rule (Held et al. 1974; Duchi et al. 2008, Fig. 1): with ``u`` sorted descending,
    the threshold is ``τ = (Σ_{j≤i} u_j − 1) / i`` for the first ``i < m`` with ``τ > u_{i+1}``, else
    ``(Σ_j y_j − 1) / m``; the projection is ``max(y − τ, 0)``. The threshold is computed with the same
    sequence of floating-point operations as the projection of MoDo's authors' code
    (heshandevaka/Trade-Off-MOL ``MoDo._projection2simplex``) and torchjd 0.18
    ``aggregation._utils.simplex.project_onto_simplex`` (a running sum in sorted order, the fallback from
    ``y``'s own sum), so SDMGrad and MoDo reproduce torchjd bit for bit. LibMTL's SDMGrad projects with the
    cumulative-sum form in float64 NumPy instead; the two agree up to rounding.
    """
    if y.dim() != 1 or y.numel() == 0:
        raise ValueError(f"project_onto_simplex expects a non-empty vector, got shape {tuple(y.shape)}")
    m = y.numel()
    ordered = y.sort(descending=True).values
    threshold = (y.sum() - 1.0) / m
    running = y.new_zeros(())
    for i in range(m - 1):
        running = running + ordered[i]
        candidate = (running - 1.0) / (i + 1.0)
        if candidate > ordered[i + 1]:
            threshold = candidate
            break
    return (y - threshold).clamp(min=0.0)
