"""SDMGrad (Xiao, Ban & Ji 2023, "Direction-oriented Multi-objective Learning: Simple and Provable
Stochastic Algorithms", NeurIPS 2023): MGDA pulled towards a preference direction."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.aggregators._common import check_choice, check_range, gramian, weighted_sum
from mtl.aggregators.base import AggregationResult, Aggregator
from mtl.aggregators.registry import AGGREGATORS
from mtl.aggregators.simplex import project_onto_simplex
from mtl.context import StepContext
from mtl.errors import ConfigError

SCALES = ("mean", "sum")


def check_count(method: str, key: str, value: int) -> int:
    """``value`` as a positive integer (a float with an integral value is accepted), else ConfigError."""
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
        raise ConfigError(f"{method} {key} must be a positive integer, got {value!r}")
    return int(value)


def check_pref_vector(method: str, pref_vector: Sequence[float] | None, num_tasks: int) -> tuple | None:
    """``pref_vector`` as a tuple of ``num_tasks`` finite numbers (or None: the uniform ``1/T``)."""
    if pref_vector is None:
        return None
    if isinstance(pref_vector, (str, bytes)) or not isinstance(pref_vector, Sequence):
        raise ConfigError(f"{method} pref_vector must be a list of {num_tasks} numbers")
    values = tuple(float(p) for p in pref_vector)
    if len(values) != num_tasks or not all(math.isfinite(p) for p in values):
        raise ConfigError(f"{method} pref_vector must be {num_tasks} finite numbers, got {list(pref_vector)}")
    return values


def sdmgrad_inner_solve(
    matrix: Tensor, w: Tensor, pref: Tensor, lamda: float, lr: float, momentum: float, niter: int
) -> Tensor:
    """The weight iterate ``w`` after ``niter`` projected heavy-ball steps on SDMGrad's inner problem.

    SDMGrad's weight update (Xiao et al. 2023, Alg. 1) finds ``w ∈ Δ`` minimising
    ``½ ‖G(w + λ w̃)‖²``, whose gradient is ``A (w + λ w̃)`` with ``A = G Gᵀ`` (Alg. 1: ``A = G(ξ) G(ξ')ᵀ``
    from two batches). ``A`` is first divided by ``s² + 1e-8``, ``s`` the mean of ``sqrt(max(A_tt, 0))``
    (Sec. 6.1; the authors' code and LibMTL), then each of the ``niter`` steps is SGD with
    momentum (``v ← μ v + ∇``, ``v`` restarted at every call, as the authors' fresh ``torch.optim.SGD``) and a
    Euclidean projection onto the simplex. Computed in ``matrix``'s dtype with torchjd 0.18
    ``SDMGradWeighting.forward``'s sequence of operations.
    """
    diag = torch.diag(matrix).clamp(min=0.0)
    scale = diag.sqrt().mean()
    a = matrix / (scale.pow(2) + 1e-8)
    velocity: Tensor | None = None
    for _ in range(niter):
        grad = a @ (w + lamda * pref)
        velocity = grad if velocity is None else momentum * velocity + grad
        w = project_onto_simplex(w - lr * velocity)
    return w


@AGGREGATORS.register("sdmgrad", "sdm_grad")
class SDMGrad(Aggregator):
    """SDMGrad (Xiao et al. 2023, Alg. 1): the update is ``G (w + λ w̃) / (1 + λ)``, with ``w`` on the simplex
    solving the direction-oriented min-norm problem by :func:`sdmgrad_inner_solve`, warm-started from
    the previous step's ``w`` (``1/T`` at the first step) and ``w̃`` the preference (``pref_vector``; default
    ``1/T``, so the target direction is the average gradient). ``λ = 0`` is a projected-gradient MGDA;
    ``λ → ∞`` is the mean.

    Single-batch formulation (the default and the only one here): ``A = G Gᵀ`` of the step's one gradient
    matrix, as torchjd's ``SDMGradWeighting`` receives when given the Gramian and as the authors' own
    single-batch variant (OptMN-Lab/sdmgrad ``mtrl_files/sdmgrad.py``, ``GG = G Gᵀ``, whose scaling uses
    ``sqrt(A_tt + 1e-4)`` and no ``1e-8``). The paper's Alg. 1 and LibMTL's ``SDMGrad`` instead draw
    three independent batches per step: ``A = G(ξ) G(ξ')ᵀ`` (an unbiased estimate of the full-batch
    Gramian, not symmetric) from two of them and the update from the third, ``ζ``. That needs three
    gradient matrices per step, which the aggregator contract (one ``G`` per step, DESIGN §2) does not
    provide, so it is not implemented.
    With one batch ``A`` is a biased estimate of the full-batch Gramian, the bias the paper's stochastic
    analysis avoids by double sampling.

    Arguments (torchjd 0.18 defaults, the authors' values): ``lamda`` = λ (0.3, the authors' experiments and
    LibMTL's ``SDMGrad_lamda``; their class default is 0.6), ``niter`` (20), ``lr`` (10, the authors'; LibMTL
    hard-codes 5), ``momentum`` (0.5). ``scale``: ``mean`` (default; the weights sum to 1, torchjd's and
    LibMTL's scale) or ``sum`` (times ``T``, the scale of ``Σ_t g_t``). The reported task weights are the
    combination's; the heads get the gradient of ``Σ_t ℓ_t``.

    State: ``w`` (in the state dict). Equal to ``torchjd.aggregation.SDMGradWeighting`` of torchjd 0.18.0 fed
    ``G Gᵀ``, step after step (tests/mtl/aggregators/test_reference_sdmgrad_modo_excess.py).
    """

    def __init__(
        self,
        num_tasks: int,
        lamda: float = 0.3,
        niter: int = 20,
        lr: float = 10.0,
        momentum: float = 0.5,
        pref_vector: Sequence[float] | None = None,
        scale: str = "mean",
    ) -> None:
        super().__init__(num_tasks)
        self.lamda = check_range("sdmgrad", "lamda", lamda, 0.0, math.inf)
        self.niter = check_count("sdmgrad", "niter", niter)
        if not lr > 0:
            raise ConfigError(f"sdmgrad lr must be > 0, got {lr}")
        self.lr = float(lr)
        self.momentum = check_range("sdmgrad", "momentum", momentum, 0.0, 1.0, high_open=True)
        self.pref_vector = check_pref_vector("sdmgrad", pref_vector, num_tasks)
        self.scale = check_choice("sdmgrad", "scale", scale, SCALES)
        self.w: Tensor | None = None

    def preference(self, grads: Tensor) -> Tensor:
        """``w̃`` [T] in ``grads``' dtype (``1/T`` each unless ``pref_vector`` is given)."""
        num_tasks = grads.shape[0]
        if self.pref_vector is None:
            return grads.new_full((num_tasks,), 1.0 / num_tasks)
        if len(self.pref_vector) != num_tasks:
            raise ValueError(f"sdmgrad: pref_vector has {len(self.pref_vector)} entries, G has {num_tasks}")
        return torch.tensor(self.pref_vector, dtype=grads.dtype, device=grads.device)

    def forward(self, grads: Tensor, ctx: StepContext) -> AggregationResult:
        grads_ = grads.detach()
        num_tasks = grads_.shape[0]
        if self.w is None:
            w = grads_.new_full((num_tasks,), 1.0 / num_tasks)
        elif self.w.shape != (num_tasks,):
            raise ValueError(f"sdmgrad: {num_tasks} task gradients after {self.w.numel()}")
        else:
            w = self.w.to(grads_.device, grads_.dtype)
        pref = self.preference(grads_)
        self.w = sdmgrad_inner_solve(gramian(grads_), w, pref, self.lamda, self.lr, self.momentum, self.niter)
        weights = (self.w + self.lamda * pref) / (1.0 + self.lamda)
        if self.scale == "sum":
            weights = weights * num_tasks
        return weighted_sum(weights, grads)

    def get_extra_state(self) -> dict:
        return {"w": None if self.w is None else self.w.detach().cpu().clone()}

    def set_extra_state(self, state: dict) -> None:
        self.w = None if state["w"] is None else state["w"].clone()
