"""Auto-Lambda (Liu et al. 2022, "Auto-Lambda: Disentangling Dynamic Task Relationships", TMLR)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.balancers.base import Balancer
from mtl.balancers.inner_adam import InnerAdam
from mtl.balancers.registry import BALANCERS
from mtl.checks import check_choice, check_range
from mtl.context import StepContext
from mtl.errors import ConfigError
from mtl.step_hooks import StepProbe


def _primary_mask(primary_tasks: Sequence[str] | None, task_names: Sequence[str]) -> Tensor:
    if primary_tasks is None:
        return torch.ones(len(task_names))
    if isinstance(primary_tasks, str) or not isinstance(primary_tasks, Sequence) or not primary_tasks:
        raise ConfigError(
            f"auto_lambda primary_tasks must be a non-empty list of task names, got {primary_tasks!r}"
        )
    unknown = [t for t in primary_tasks if t not in task_names]
    if unknown:
        raise ConfigError(
            f"auto_lambda primary_tasks {unknown} are not tasks of this dataset; "
            f"valid: {', '.join(task_names)}"
        )
    return torch.tensor([1.0 if t in primary_tasks else 0.0 for t in task_names])


@BALANCERS.register("auto_lambda", "autolambda")
class AutoLambda(Balancer):
    """Auto-Lambda: learnable task weights ``λ`` (``ℓ_t = λ_t L_t``) updated before every step by a
    first-order bilevel step (paper Eq. 3-5), as in the authors' ``auto_lambda.py`` and ``trainer_dense.py``
    (lorenmt/auto-lambda @0fc8431):

    1. virtual step ``θ' = θ − α (m + ∇_θ Σ_t λ_t L_t(train) + wd·θ)`` with the optimiser's lr ``α``, weight
       decay ``wd`` and SGD momentum term ``m = momentum · buffer`` (0 for Adam, as in the reference);
    2. ``g = ∇_θ' Σ_{t ∈ primary} L_t(val)`` at ``θ'`` on the next batch of the ``meta_split`` stream;
    3. finite-difference Hessian-vector product at ``θ``, ``ε = fd_eps / ‖g‖``:
       ``∂/∂λ ≈ −α (L(train; θ + εg) − L(train; θ − εg)) / (2ε)`` (``∂ Σ λ_t L_t / ∂λ_t = L_t``);
    4. one Adam step on ``λ`` (lr ``meta_lr``, the reference's ``meta_optimizer``; its state is in the
       state dict).

    All in :meth:`before_step`; the model's parameters and buffers are then restored exactly (copies, not the
    reference's ``θ + ε g − 2ε g + ε g``) and the extra forwards run on a forked RNG, so the main step differs
    from a plain step only through ``λ``. The reference lets BatchNorm running statistics absorb its three
    extra training-mode forwards; here they are restored. The reference does not clamp ``λ`` and neither do
    we. Defaults: ``weight_init`` 0.1 (the reference's ``--autol_init``), ``meta_lr`` 1e-4 (``--autol_lr`` of
    the dense-prediction trainer; the CIFAR-100 trainer uses 3e-4); ``meta_split="train"``: as the
    reference, the meta batches come from a second, differently shuffled stream of the training split
    (``"val"``: from the validation split).
    """

    needs_validation_batch = True

    def __init__(
        self,
        num_tasks: int,
        task_names: list[str],
        weight_init: float = 0.1,
        meta_lr: float = 1e-4,
        primary_tasks: list[str] | None = None,
        meta_split: str = "train",
        fd_eps: float = 0.01,
    ) -> None:
        super().__init__(num_tasks, log=False)
        self.weight_init = check_range("auto_lambda", "weight_init", weight_init, 0.0, float("inf"))
        self.meta_lr = check_range("auto_lambda", "meta_lr", meta_lr, 0.0, float("inf"))
        self.fd_eps = check_range("auto_lambda", "fd_eps", fd_eps, 0.0, float("inf"))
        if not self.fd_eps > 0:
            raise ConfigError(f"auto_lambda fd_eps must be > 0, got {fd_eps}")
        self.meta_split = check_choice("auto_lambda", "meta_split", meta_split, ("train", "val"))
        self.register_buffer("meta_weights", torch.full((num_tasks,), self.weight_init))
        self.register_buffer("primary", _primary_mask(primary_tasks, task_names))
        self.meta_adam = InnerAdam(num_tasks, lr=self.meta_lr)

    def compute_weights(self, losses: Tensor, ctx: StepContext) -> Tensor:
        return self.meta_weights.to(losses).clone()

    def before_step(self, probe: StepProbe) -> None:
        """Steps 1-4 of the class docstring."""
        if probe.validation_batch is None:
            raise RuntimeError("auto_lambda needs the trainer's validation stream (needs_validation_batch)")
        model = probe.model
        device = next(model.parameters()).device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            grad = self.meta_gradient(probe)
        self.meta_adam.step(self.meta_weights, grad)

    def meta_gradient(self, probe: StepProbe) -> Tensor:
        """``−α ∂L_val(θ'(λ))/∂λ`` by the reference's first-order unroll (steps 1-3); the model is
        restored."""
        model = probe.model
        params = probe.trainable_parameters()
        saved_params = [p.detach().clone() for p in params]
        saved_buffers = [b.detach().clone() for b in model.buffers()]
        alpha = probe.lr
        weights = self.meta_weights.detach()
        optimizer = probe.optimizer
        groups = {id(p): group for group in optimizer.param_groups for p in group["params"]}
        try:
            train = probe.compute_losses(probe.inputs, probe.targets)
            grads = _grads((weights.to(train) * train).sum(), params)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    group = groups.get(id(p), optimizer.param_groups[0])
                    decay = float(group.get("weight_decay", 0.0))
                    p.sub_(alpha * (_momentum(optimizer, group, p) + g + decay * p))
            val_inputs, val_targets = probe.validation_batch(self.meta_split)
            val = probe.compute_losses(val_inputs, val_targets)
            d_model = _grads((self.primary.to(val) * val).sum(), params)
            norm = torch.cat([d.reshape(-1) for d in d_model]).norm()
            if not bool(norm > 0):
                return torch.zeros_like(self.meta_weights)
            eps = self.fd_eps / norm
            with torch.no_grad():
                _set(params, saved_params, d_model, eps)
                plus = probe.compute_losses(probe.inputs, probe.targets)
                _set(params, saved_params, d_model, -eps)
                minus = probe.compute_losses(probe.inputs, probe.targets)
            hessian = (plus - minus) / (2.0 * eps)
            return (-alpha * hessian).detach().to(self.meta_weights)
        finally:
            with torch.no_grad():
                for p, s in zip(params, saved_params, strict=True):
                    p.copy_(s)
                for b, s in zip(model.buffers(), saved_buffers, strict=True):
                    b.copy_(s)


def _momentum(optimizer: torch.optim.Optimizer, group: dict, param: Tensor) -> Tensor | float:
    """The reference's ``m``: SGD's momentum buffer times the momentum (0 without one, e.g. for Adam)."""
    if "momentum" not in group:
        return 0.0
    buffer = optimizer.state.get(param, {}).get("momentum_buffer")
    return 0.0 if buffer is None else buffer * group["momentum"]


def _grads(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _set(params: list[Tensor], base: list[Tensor], direction: list[Tensor], eps: Tensor) -> None:
    for p, b, d in zip(params, base, direction, strict=True):
        p.copy_(b + eps * d)
