"""Mixture-of-experts MTL architectures: MMoE, CGC, PLE and DSelect-k over copies of a dataset's encoder.

* ``mmoe`` — Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
  Mixture-of-Experts", KDD 2018, eq. (5): ``f^t(x) = Σ_e g^t(x)_e f_e(x)``, ``g^t(x) = softmax(W_t x)``,
  ``E`` shared experts (full copies of the encoder), one softmax gate per task.
* ``cgc`` — Tang et al., "Progressive Layered Extraction (PLE)", RecSys 2020, §4.2 (Customized Gate Control,
  eq. (2)-(4)): ``E`` shared experts plus ``E_t`` experts of each task; task t's gate mixes the shared experts
  and task t's own.
* ``ple`` — the same paper §4.3, eq. (5)-(6): CGC stacked over ``num_levels`` levels, each expert being one
  consecutive stage of the encoder (:mod:`mtl.models.moe_experts` splits it). Task t's stream reads task t's
  gated output of the level below; a *shared* stream (the shared experts' input) is the output of a shared
  gate over all experts of the level below, for all levels but the last. Gates read a summary of their
  stream's input (LibMTL's gates read the flattened stream input).
* ``dselect_k`` — Hazimeh et al., "DSelect-k: Differentiable Selection in the Mixture of Experts with
  Applications to Multi-Task Learning", NeurIPS 2021, eq. (3) (smooth step), (5) (single expert selector) and
  (7) (the per-example DSelect-k gate ``q = Σ_i softmax(α)_i r(z^(i))``), ``k = num_nonzeros`` selectors.

Checked against LibMTL (median-research-group/LibMTL, commit 4336804, ``LibMTL/architecture/{MMoE,CGC,PLE,
DSelect_k}.py`` and ``LibMTL/config.py``). Differences, each deliberate:

* Gate input: LibMTL's gates read the flattened raw input (``Linear(prod(img_size), E)``). Vectors
  (synthetic) are read as is; images are average-pooled to 8×8 per channel and graphs are summarised by the
  per-molecule mean of the node features (a cheap per-sample summary; see the expert families).
* PLE: LibMTL has no shared gate and applies the shared experts of each level to every task's stream
  separately, and always uses 5 levels (the ResNet stem and 4 stages); here the paper's shared stream and
  shared gates are used and ``num_levels`` is an argument (default 2).
* DSelect-k: LibMTL back-propagates an entropy regulariser (weight 1e-6) from inside ``forward``, for the last
  task's gate only, and for a number of experts that is not a power of 2 a regulariser pushing the selector
  sum to 1. Neither is a per-task loss the trainer could weigh, so they are not applied and ``num_experts``
  must be a power of 2 (then every binary code names an expert and each selector sums to 1 exactly).

Parameter split (the :class:`~mtl.models.base.MultiTaskModel` contract; gradient methods act on the shared
part): the shared experts (and PLE's shared gates, which feed every task's next level) are shared; each task's
gates, its own experts (CGC/PLE) and its head are task-specific, as LibMTL's ``get_share_params`` (shared
experts only) has it.

Representation: for ``mmoe``/``cgc``/``dselect_k`` on one input, ``encode`` returns the stacked shared
expert outputs ``[B, E, ...]`` (the ``rep`` mode's ``z``) and keeps the input on the module; ``decode``
computes the gates (and CGC's task experts) from that kept input, so ``decode`` must follow the ``encode`` of
the same batch (as ``forward`` and the trainer do). The shared parameters act on the losses through ``z``
only, so ``rep`` and the fast ``exact_vmap`` path are exact. PLE (streams mix at every level) and
multi-input models (Office: each task has its own batch) have no single shared representation
(``has_shared_representation = False``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtl.errors import ConfigError
from mtl.models.base import MultiTaskModel
from mtl.models.moe_experts import ExpertFamily

MOE_ARCHITECTURES = ("mmoe", "cgc", "ple", "dselect_k")
MOE_ARGUMENTS = ("num_experts", "num_task_experts", "num_levels", "num_nonzeros", "gamma")
"""The model keyword arguments of the MoE architectures (on top of each dataset's own)."""

MOE_DEFAULTS: dict[str, dict[str, Any]] = {
    "mmoe": {"num_experts": 4},
    "cgc": {"num_experts": 1, "num_task_experts": 1},
    "ple": {"num_experts": 1, "num_task_experts": 1, "num_levels": 2},
    "dselect_k": {"num_experts": 4, "num_nonzeros": 2, "gamma": 1.0},
}
"""Defaults per architecture. LibMTL has no default expert counts (``--num_experts`` is required); its
DSelect-k defaults are ``num_nonzeros=2``, ``kgamma=1.0`` (``LibMTL/config.py``)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def moe_arguments(dataset: str, architecture: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The MoE keyword arguments among ``kwargs`` (defaults filled in), validated for ``architecture``.

    Raises :class:`~mtl.errors.ConfigError` for a MoE argument given to an architecture that does not take it
    (or to a non-MoE architecture) and for a value out of range."""
    architecture = str(architecture).strip().lower().replace("-", "_")
    given = {k: v for k, v in kwargs.items() if k in MOE_ARGUMENTS}
    if architecture not in MOE_ARCHITECTURES:
        if given:
            raise ConfigError(
                f"{dataset} model argument(s) {sorted(given)} only apply to the MoE architectures "
                f"({', '.join(MOE_ARCHITECTURES)}), not to '{architecture}'"
            )
        return {}
    defaults = MOE_DEFAULTS[architecture]
    wrong = sorted(set(given) - set(defaults))
    if wrong:
        raise ConfigError(
            f"{dataset} architecture '{architecture}' takes MoE argument(s) {', '.join(sorted(defaults))}; "
            f"got {wrong}"
        )
    args = {**defaults, **given}
    where = f"{dataset} '{architecture}' model argument"
    for key, low in (("num_experts", 1), ("num_task_experts", 0), ("num_levels", 1), ("num_nonzeros", 1)):
        if key in args and (not _is_int(args[key]) or args[key] < low):
            raise ConfigError(f"{where} {key} must be an integer >= {low}, got {args[key]!r}")
    if architecture == "dselect_k":
        e = args["num_experts"]
        if e < 2 or e & (e - 1):
            raise ConfigError(
                f"{where} num_experts must be a power of 2 >= 2 for DSelect-k (the regulariser LibMTL adds "
                f"otherwise is not a per-task loss), got {e}"
            )
        if args["num_nonzeros"] > e:
            raise ConfigError(
                f"{where} num_nonzeros must be <= num_experts ({e}), got {args['num_nonzeros']}"
            )
        gamma = args["gamma"]
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
            raise ConfigError(f"{where} gamma must be a number > 0, got {gamma!r}")
        args["gamma"] = float(gamma)
    return args


# -- gates ---------------------------------------------------------------------------------------------------
class SoftmaxGate(nn.Module):
    """MMoE's gate (Ma et al. eq. (5)), CGC/PLE's (Tang et al. eq. (3)): ``softmax(W f + b)`` → ``[B, E]``."""

    def __init__(self, in_features: int, num_experts: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_experts)

    def forward(self, features: Tensor) -> Tensor:
        return torch.softmax(self.linear(features), dim=-1)


def smooth_step(t: Tensor, gamma: float = 1.0) -> Tensor:
    """Hazimeh et al. eq. (3): 0 for ``t <= -γ/2``, 1 for ``t >= γ/2``, ``-2/γ³ t³ + 3/(2γ) t + 1/2`` between
    (branch-free: ``torch.where``, so it batches under vmap)."""
    cubic = (-2.0 / gamma**3) * t**3 + (1.5 / gamma) * t + 0.5
    return torch.where(
        t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), cubic)
    )


class DSelectGate(nn.Module):
    """The per-example DSelect-k gate (Hazimeh et al. eq. (7)) over ``num_experts = 2^m`` experts.

    ``k`` selectors each read ``m`` logits ``z^(i) = Z_i f``; selector i's weight of expert e (binary code
    ``l(e)``, most significant bit first) is ``r_e = Π_j (S(z_j) if l(e)_j else 1 − S(z_j))`` (eq. (5)), and
    the gate is ``Σ_i softmax(A f)_i r(z^(i))``. Initialisation as LibMTL / the official TF code:
    ``z`` layer uniform(±γ/100), ``α`` layer uniform(±0.05), weights and biases.
    """

    def __init__(self, in_features: int, num_experts: int, num_nonzeros: int = 2, gamma: float = 1.0) -> None:
        super().__init__()
        bits = round(math.log2(num_experts))
        if num_experts < 2 or 2**bits != num_experts:
            raise ConfigError(f"DSelect-k needs a power of 2 >= 2 experts, got {num_experts}")
        if not 1 <= num_nonzeros <= num_experts:
            raise ConfigError(f"DSelect-k num_nonzeros must be in [1, {num_experts}], got {num_nonzeros}")
        self.num_nonzeros, self.bits, self.gamma = int(num_nonzeros), bits, float(gamma)
        self.z_logits = nn.Linear(in_features, num_nonzeros * bits)
        self.w_logits = nn.Linear(in_features, num_nonzeros)
        with torch.no_grad():
            for p in self.z_logits.parameters():
                p.uniform_(-self.gamma / 100, self.gamma / 100)
            for p in self.w_logits.parameters():
                p.uniform_(-0.05, 0.05)
        codes = [[(e >> (bits - 1 - j)) & 1 for j in range(bits)] for e in range(num_experts)]
        self.register_buffer("codes", torch.tensor(codes, dtype=torch.bool), persistent=False)

    def selectors(self, features: Tensor) -> Tensor:
        """``[B, k, E]``: each selector's weights over the experts (each row sums to 1)."""
        z = self.z_logits(features).reshape(-1, self.num_nonzeros, 1, self.bits)
        s = smooth_step(z, self.gamma)
        return torch.where(self.codes, s, 1 - s).prod(dim=-1)

    def forward(self, features: Tensor) -> Tensor:
        alpha = torch.softmax(self.w_logits(features), dim=-1)
        return torch.einsum("bk,bke->be", alpha, self.selectors(features))


def mix(weights: Tensor, stacked: Tensor) -> Tensor:
    """``Σ_e weights[:, e] · stacked[:, e]`` for ``weights`` [B, E] and ``stacked`` [B, E, ...]."""
    shape = (*weights.shape, *([1] * (stacked.dim() - 2)))
    return (weights.reshape(shape) * stacked).sum(dim=1)


def _stack(outputs: Sequence[Tensor]) -> Tensor:
    return torch.stack(list(outputs), dim=1)


# -- MMoE / CGC / DSelect-k ----------------------------------------------------------------------------------
class MixtureOfExperts(MultiTaskModel):
    """One level of experts and one gate per task: MMoE, DSelect-k (no task experts) and CGC (with them).

    ``experts``: the shared experts (full encoder copies); ``task_experts[t]``: task t's own experts (CGC);
    ``gates[t]``: maps ``family.input_features(x)`` to task t's weights over ``[shared..., task t's...]``.
    ``multi_input``: the input is ``{task: batch}`` and task t's experts and gate read task t's batch only.
    """

    def __init__(
        self,
        family: ExpertFamily,
        experts: Sequence[nn.Module],
        gates: Mapping[str, nn.Module],
        heads: Mapping[str, nn.Module],
        task_experts: Mapping[str, Sequence[nn.Module]] | None = None,
        multi_input: bool = False,
    ) -> None:
        super().__init__()
        if not heads or list(gates) != list(heads):
            raise ValueError(f"gates {list(gates)} and heads {list(heads)} must name the same tasks in order")
        if not experts:
            raise ValueError("a mixture of experts needs at least one shared expert")
        self.family = family
        self.task_names = list(heads)
        self.experts = nn.ModuleList(experts)
        self.task_experts = nn.ModuleDict(
            {t: nn.ModuleList(task_experts.get(t, ())) for t in self.task_names} if task_experts else {}
        )
        self.gates = nn.ModuleDict(dict(gates))
        self.heads = nn.ModuleDict(dict(heads))
        self.multi_input = multi_input
        self.has_shared_representation = not multi_input
        self._input: Any = None

    def _shared(self, x: Any) -> Tensor:
        return _stack([e(x) for e in self.experts])

    def _task(self, task: str, shared: Tensor, x: Any) -> Tensor:
        stacked = shared
        if len(self.task_experts) and len(self.task_experts[task]):
            stacked = torch.cat([shared, _stack([e(x) for e in self.task_experts[task]])], dim=1)
        weights = self.gates[task](self.family.input_features(x))
        return self.heads[task](mix(weights, stacked))

    def encode(self, x: Any) -> Any:
        """``[B, E, ...]``, the stacked shared expert outputs (``{task: ...}`` per task's batch when
        multi-input); the input is kept for :meth:`decode`."""
        self._input = x
        if self.multi_input:
            if not isinstance(x, Mapping):
                raise TypeError(f"multi-input models take {{task: batch}}, got {type(x).__name__}")
            unknown = sorted(set(x) - set(self.task_names))
            if unknown:
                raise KeyError(f"inputs for unknown task(s) {unknown}; tasks: {self.task_names}")
            return {t: self._shared(x[t]) for t in self.task_names if t in x}
        return self._shared(x)

    def decode(self, z: Any) -> dict[str, Tensor]:
        x, self._input = self._input, None
        if x is None:
            raise RuntimeError("decode needs the input of the preceding encode (call encode first)")
        if self.multi_input:
            return {t: self._task(t, rep, x[t]) for t, rep in z.items()}
        return {t: self._task(t, z, x) for t in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return self.experts.parameters()

    def task_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.task_experts.parameters()
        yield from self.gates.parameters()
        yield from self.heads.parameters()


# -- PLE -----------------------------------------------------------------------------------------------------
class ProgressiveLayeredExtraction(MultiTaskModel):
    """PLE (Tang et al. §4.3) over ``num_levels`` stages of the encoder (single input only).

    Level l has ``E`` shared experts (stage l of a shared encoder copy) reading the shared stream, and
    ``E_t`` experts of task t reading task t's stream; task t's gate mixes [shared..., task t's...] into task
    t's next stream, and (below the last level) the shared gate mixes all the level's experts into the next
    shared stream (eq. (6)). ``encode`` returns ``{task: last level's output}``.
    """

    has_shared_representation = False

    def __init__(
        self,
        family: ExpertFamily,
        task_names: Sequence[str],
        heads: Mapping[str, nn.Module],
        num_levels: int,
        num_experts: int,
        num_task_experts: int,
    ) -> None:
        super().__init__()
        self.family = family
        self.task_names = list(task_names)
        if list(heads) != self.task_names:
            raise ValueError(f"heads {list(heads)} must name the tasks {self.task_names} in order")
        self.num_levels = num_levels
        shared = [family.stages(num_levels) for _ in range(num_experts)]
        own = {t: [family.stages(num_levels) for _ in range(num_task_experts)] for t in self.task_names}
        dims = family.level_dims(num_levels)
        per_task = num_experts + num_task_experts
        everyone = num_experts + len(self.task_names) * num_task_experts
        self.shared_experts = nn.ModuleList(nn.ModuleList(s[lv] for s in shared) for lv in range(num_levels))
        self.task_experts = nn.ModuleList(
            nn.ModuleDict({t: nn.ModuleList(s[lv] for s in own[t]) for t in self.task_names})
            for lv in range(num_levels)
        )
        self.task_gates = nn.ModuleList(
            nn.ModuleDict({t: SoftmaxGate(dims[lv], per_task) for t in self.task_names})
            for lv in range(num_levels)
        )
        self.shared_gates = nn.ModuleList(SoftmaxGate(dims[lv], everyone) for lv in range(num_levels - 1))
        self.heads = nn.ModuleDict(dict(heads))

    def _gate(self, gate: nn.Module, stream: Any, x: Any, level: int) -> Tensor:
        weights = gate(self.family.features(stream, x, level))
        return self.family.rows(weights, x, level, self.num_levels)

    def encode(self, x: Any) -> dict[str, Tensor]:  # type: ignore[override]
        streams: dict[str, Any] = dict.fromkeys(self.task_names, x)
        shared_stream: Any = x
        for lv in range(self.num_levels):
            shared_out = [e(shared_stream, x) for e in self.shared_experts[lv]]
            own_out = {t: [e(streams[t], x) for e in self.task_experts[lv][t]] for t in self.task_names}
            nxt = {}
            for t in self.task_names:
                weights = self._gate(self.task_gates[lv][t], streams[t], x, lv)
                nxt[t] = mix(weights, _stack(shared_out + own_out[t]))
            if lv < self.num_levels - 1:
                weights = self._gate(self.shared_gates[lv], shared_stream, x, lv)
                everything = shared_out + [o for t in self.task_names for o in own_out[t]]
                shared_stream = mix(weights, _stack(everything))
            streams = nxt
        return streams

    def decode(self, z: Mapping[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        return {t: self.heads[t](z[t]) for t in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.shared_experts.parameters()
        yield from self.shared_gates.parameters()

    def task_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.task_experts.parameters()
        yield from self.task_gates.parameters()
        yield from self.heads.parameters()


# -- building ------------------------------------------------------------------------------------------------
def build_moe_model(
    architecture: str,
    family: ExpertFamily,
    heads: Mapping[str, nn.Module],
    *,
    multi_input: bool = False,
    dataset: str = "",
    **kwargs: Any,
) -> MultiTaskModel:
    """A MoE model of ``architecture`` (one of :data:`MOE_ARCHITECTURES`) whose experts come from ``family``
    and whose task heads are ``heads``; ``kwargs``: the MoE arguments (:func:`moe_arguments`)."""
    if architecture not in MOE_ARCHITECTURES:
        raise ConfigError(f"not a MoE architecture: '{architecture}'; valid: {', '.join(MOE_ARCHITECTURES)}")
    unknown = sorted(set(kwargs) - set(MOE_ARGUMENTS))
    if unknown:
        raise ConfigError(f"unknown MoE argument(s) {unknown}; valid: {', '.join(MOE_ARGUMENTS)}")
    args = moe_arguments(dataset or "moe", architecture, kwargs)
    tasks = list(heads)
    num_experts = args["num_experts"]
    if architecture == "ple":
        if multi_input:
            raise ConfigError(f"{dataset}: 'ple' needs one input shared by all tasks (as in LibMTL)")
        if args["num_levels"] > family.max_levels:
            raise ConfigError(
                f"{dataset} 'ple' model argument num_levels must be <= {family.max_levels} (the stages its "
                f"encoder splits into), got {args['num_levels']}"
            )
        return ProgressiveLayeredExtraction(
            family, tasks, heads, args["num_levels"], num_experts, args["num_task_experts"]
        )
    experts = [family.encoder() for _ in range(num_experts)]
    dim = family.input_dim
    task_experts = None
    if architecture == "cgc":
        own = args["num_task_experts"]
        task_experts = {t: [family.encoder() for _ in range(own)] for t in tasks}
        gates: dict[str, nn.Module] = {t: SoftmaxGate(dim, num_experts + own) for t in tasks}
    elif architecture == "dselect_k":
        gates = {t: DSelectGate(dim, num_experts, args["num_nonzeros"], args["gamma"]) for t in tasks}
    else:
        gates = {t: SoftmaxGate(dim, num_experts) for t in tasks}
    return MixtureOfExperts(family, experts, gates, heads, task_experts, multi_input=multi_input)
