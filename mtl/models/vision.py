"""Model factories of the vision benchmarks (DESIGN §5), selected by ``architecture=`` in ``build_model``.

Dense scenes (NYUv2, Cityscapes):

* ``hps``: DeepLabV3+ setting — dilated ResNet-50 (output stride 8) shared, one ASPP head per task
  (:class:`mtl.models.aspp.ASPPHead`), outputs upsampled to the input size;
* ``cross_stitch``: one dilated ResNet-50 per task joined by cross-stitch units, ASPP heads;
* ``mtan``: shared dilated ResNet-50 with per-task attention (:class:`mtl.models.mtan.MTANResNet`), ASPP
  heads;
* ``segnet`` / ``segnet_mtan``: the MTAN repo's SegNet and SegNet-MTAN (IGB / Nash-MTL setting; no
  pretraining).

Office (multi-input): ``hps`` — ResNet-18 + LibMTL's shared hidden layer (Linear 512→512, BN, ReLU, dropout
0.5) applied per domain, one linear classifier per domain; ``mtan`` — the same with MTAN attention on the
ResNet-18 stages. Cross-stitch needs one input shared by all tasks and is not offered for Office (as LibMTL).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtl.checks import check_architecture
from mtl.errors import ConfigError
from mtl.models.aspp import ASPPHead
from mtl.models.base import MultiTaskModel
from mtl.models.cross_stitch import CrossStitchNetwork
from mtl.models.hps import HPS
from mtl.models.mtan import MTANResNet
from mtl.models.multi_input import MultiInputHPS
from mtl.models.resnet import ResNetTrunk, warn_random_init
from mtl.models.segnet import SegNetHPS, SegNetMTAN

DENSE_ARCHITECTURES = ("hps", "cross_stitch", "mtan", "segnet", "segnet_mtan")
OFFICE_ARCHITECTURES = ("hps", "mtan")
PathLike = str | os.PathLike[str]


def build_dense_model(
    architecture: str,
    head_channels: Mapping[str, int],
    output_size: Sequence[int],
    *,
    pretrained_path: PathLike | None = None,
    cross_stitch_same: float = 0.9,
    dataset: str = "dense",
) -> MultiTaskModel:
    """A dense multi-task model; ``head_channels`` maps task -> output channels (e.g. 13, 1, 3)."""
    arch = check_architecture(dataset, architecture, DENSE_ARCHITECTURES)
    size = (int(output_size[0]), int(output_size[1]))
    if arch in ("segnet", "segnet_mtan"):
        if pretrained_path is not None:
            raise ConfigError(
                f"architecture '{arch}' is trained from scratch (as in the MTAN repo); "
                f"pretrained_path is not used by it"
            )
        if size[0] % 32 or size[1] % 32:
            raise ConfigError(f"architecture '{arch}' needs a resolution divisible by 32, got {size}")
        return SegNetHPS(head_channels) if arch == "segnet" else SegNetMTAN(head_channels)

    if pretrained_path is None:
        warn_random_init(f"{dataset} '{arch}': the dilated resnet50 backbone")

    def trunk() -> ResNetTrunk:
        return ResNetTrunk("resnet50", dilated=True, pretrained_path=pretrained_path, warn=False)

    def heads(in_channels: int) -> dict[str, nn.Module]:
        return {t: ASPPHead(in_channels, c, size) for t, c in head_channels.items()}

    if arch == "hps":
        encoder = trunk()
        return HPS(encoder, heads(encoder.channels[-1]))
    if arch == "cross_stitch":
        columns = {t: trunk() for t in head_channels}
        return CrossStitchNetwork(columns, heads(2048), same=cross_stitch_same)
    encoder = trunk()
    return MTANResNet(encoder, heads(encoder.channels[-1]))


class OfficeNeck(nn.Module):
    """Global average pooling and LibMTL's Office hidden layer: Linear(512, hidden) (weights N(0, 0.005²),
    bias 0.1), BatchNorm1d, ReLU, Dropout."""

    def __init__(self, in_channels: int = 512, hidden_dim: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        linear = nn.Linear(in_channels, hidden_dim)
        with torch.no_grad():
            linear.weight.normal_(0.0, 0.005)
            linear.bias.fill_(0.1)
        self.hidden = nn.Sequential(
            linear, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.hidden(torch.flatten(self.pool(x), 1))


def build_office_model(
    architecture: str,
    task_names: Sequence[str],
    num_classes: int,
    *,
    pretrained_path: PathLike | None = None,
    hidden_dim: int = 512,
    dropout: float = 0.5,
    dataset: str = "office",
) -> MultiTaskModel:
    """The multi-input Office model: one linear classifier (``num_classes`` outputs) per domain."""
    arch = check_architecture(dataset, architecture, OFFICE_ARCHITECTURES)
    if hidden_dim < 1 or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"hidden_dim must be >= 1 and dropout in [0, 1), got {hidden_dim}, {dropout}")
    trunk = ResNetTrunk("resnet18", dilated=False, pretrained_path=pretrained_path, warn=False)
    if pretrained_path is None:
        warn_random_init(f"{dataset} '{arch}': the resnet18 backbone")
    neck = OfficeNeck(trunk.channels[-1], hidden_dim, dropout)
    heads = {t: nn.Linear(hidden_dim, num_classes) for t in task_names}
    if arch == "hps":
        return MultiInputHPS(nn.Sequential(trunk, neck), heads)
    return MTANResNet(trunk, heads, neck=neck, multi_input=True)
