"""Architectures and backbones."""

from mtl.models.base import MultiTaskModel
from mtl.models.hps import HPS, mlp

__all__ = ["HPS", "MultiTaskModel", "mlp"]
