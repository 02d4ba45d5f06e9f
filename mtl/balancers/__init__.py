"""Loss balancers: weights λ_t from losses (DESIGN §2)."""

from mtl.balancers import auto_lambda, famo, igb, igbv2, simple, stateful, static, stch  # noqa: F401  (registration)
from mtl.balancers.base import Balancer, BalanceResult
from mtl.balancers.registry import BALANCERS

__all__ = ["BALANCERS", "BalanceResult", "Balancer"]
