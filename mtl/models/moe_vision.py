"""The MoE architectures (:mod:`mtl.models.moe`) on the vision benchmarks, with the backbones of
:mod:`mtl.models.vision` as experts.

* Dense scenes (NYUv2, Cityscapes): each expert is a dilated ResNet-50 (output stride 8, the DeepLabV3+
  setting of ``hps``), one ASPP head per task on the gated ``[B, 2048, H/8, W/8]`` features, upsampled to the
  input size. PLE splits the ResNet into up to 5 levels (stem, layer1..layer4), as LibMTL's PLE does.
* Office (multi-input): each expert is ResNet-18 + LibMTL's Office hidden layer (:class:`OfficeNeck`), applied
  to each domain's batch; one linear classifier per domain. PLE is not offered (it needs one input shared by
  all tasks; LibMTL refuses it for multi-input problems too).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from mtl.errors import ConfigError
from mtl.models.aspp import ASPPHead
from mtl.models.base import MultiTaskModel
from mtl.models.moe import MOE_ARCHITECTURES, build_moe_model
from mtl.models.moe_experts import ResNetFamily
from mtl.models.resnet import warn_random_init

DENSE_MOE_ARCHITECTURES = MOE_ARCHITECTURES
OFFICE_MOE_ARCHITECTURES = tuple(a for a in MOE_ARCHITECTURES if a != "ple")
PathLike = str | os.PathLike[str]


def build_dense_moe_model(
    architecture: str,
    head_channels: Mapping[str, int],
    output_size: Sequence[int],
    *,
    pretrained_path: PathLike | None = None,
    dataset: str = "dense",
    family: ResNetFamily | None = None,
    **moe_kwargs: Any,
) -> MultiTaskModel:
    """A dense MoE model; ``family`` overrides the experts (tests use small ones)."""
    if family is None:
        if pretrained_path is None:
            warn_random_init(f"{dataset} '{architecture}': the dilated resnet50 experts")
        family = ResNetFamily("resnet50", dilated=True, pretrained_path=pretrained_path)
    size = (int(output_size[0]), int(output_size[1]))
    heads = {t: ASPPHead(family.out_channels, c, size) for t, c in head_channels.items()}
    return build_moe_model(architecture, family, heads, dataset=dataset, **moe_kwargs)


def build_office_moe_model(
    architecture: str,
    task_names: Sequence[str],
    num_classes: int,
    *,
    pretrained_path: PathLike | None = None,
    hidden_dim: int = 512,
    dropout: float = 0.5,
    dataset: str = "office",
    **moe_kwargs: Any,
) -> MultiTaskModel:
    """The multi-input Office MoE model: experts ResNet-18 + hidden layer, a linear classifier per domain."""
    if architecture not in OFFICE_MOE_ARCHITECTURES:
        raise ConfigError(
            f"{dataset}: MoE architectures on multi-input data: {', '.join(OFFICE_MOE_ARCHITECTURES)}; got "
            f"'{architecture}' (PLE needs one input shared by all tasks)"
        )
    if pretrained_path is None:
        warn_random_init(f"{dataset} '{architecture}': the resnet18 experts")
    neck = {"in_channels": 512, "hidden_dim": int(hidden_dim), "dropout": float(dropout)}
    family = ResNetFamily("resnet18", dilated=False, pretrained_path=pretrained_path, neck=neck)
    heads: dict[str, nn.Module] = {t: nn.Linear(int(hidden_dim), num_classes) for t in task_names}
    return build_moe_model(architecture, family, heads, multi_input=True, dataset=dataset, **moe_kwargs)
