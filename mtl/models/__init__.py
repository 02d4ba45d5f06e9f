"""Architectures and backbones."""

from mtl.models.base import MultiTaskModel
from mtl.models.cross_stitch import CrossStitchNetwork
from mtl.models.hps import HPS, mlp
from mtl.models.mtan import MTANResNet
from mtl.models.multi_input import MultiInputHPS
from mtl.models.resnet import RandomInitWarning, ResNetTrunk
from mtl.models.segnet import SegNetHPS, SegNetMTAN

__all__ = [
    "HPS",
    "CrossStitchNetwork",
    "MTANResNet",
    "MultiInputHPS",
    "MultiTaskModel",
    "RandomInitWarning",
    "ResNetTrunk",
    "SegNetHPS",
    "SegNetMTAN",
    "mlp",
]
