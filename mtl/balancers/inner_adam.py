"""Adam on a method's own tensor (FAMO's task logits, Auto-Lambda's task weights), with its state as buffers.

The methods' reference code steps these tensors with their own ``torch.optim.Adam``; a separate optimiser
object would keep its state outside the method's ``state_dict()``. :class:`InnerAdam` is that optimiser's
update (Kingma & Ba 2015, Alg. 1, L2 weight decay added to the gradient as ``torch.optim.Adam`` does),
written op for op as torch's single-tensor Adam (checked against torch 2.x ``torch/optim/adam.py``,
``_single_tensor_adam``, non-capturable, no AMSGrad), so its steps are bit-identical to ``torch.optim.Adam``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class InnerAdam(nn.Module):
    """Adam state (first/second moments as buffers, the step count as extra state) for one tensor."""

    def __init__(
        self,
        shape: int | tuple[int, ...],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.lr, self.betas, self.eps, self.weight_decay = float(lr), betas, float(eps), float(weight_decay)
        self.register_buffer("exp_avg", torch.zeros(shape))
        self.register_buffer("exp_avg_sq", torch.zeros(shape))
        self.steps = 0

    @torch.no_grad()
    def step(self, param: Tensor, grad: Tensor) -> None:
        """One Adam step on ``param`` (in place) with gradient ``grad``."""
        beta1, beta2 = self.betas
        self.steps += 1
        grad = grad.to(param.dtype)
        if self.weight_decay != 0:
            grad = grad.add(param, alpha=self.weight_decay)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = float(torch.tensor(float(self.steps)).item())  # torch keeps the count as a float32 tensor
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr / bias_correction1
        denom = (self.exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
        param.addcdiv_(self.exp_avg, denom, value=-step_size)

    def get_extra_state(self) -> dict:
        return {"steps": self.steps}

    def set_extra_state(self, state: dict) -> None:
        self.steps = int(state["steps"])
