"""ResNet trunks from torchvision's model definitions, optionally dilated, with local-file pretraining.

* ``resnet50`` with ``replace_stride_with_dilation=[False, True, True]`` (output stride 8, Yu et al.'s dilated
  residual networks) is the shared encoder of the DeepLabV3+ setting of NYUv2 and Cityscapes (LibMTL's
  ``resnet_dilated('resnet50')``);
* ``resnet18`` (output stride 32) is the Office-31 / Office-Home encoder.

Weights: ``pretrained_path`` is a local torchvision ImageNet state dict (e.g. ``resnet50-0676ba61.pth``, or a
checkpoint with a ``state_dict`` entry; a ``module.`` prefix is stripped, the ``fc.*`` classifier is ignored).
Nothing is ever downloaded. Without a path the weights are random and a :class:`RandomInitWarning` says so:
the papers start from ImageNet weights, so results from random weights are not comparable with theirs.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from mtl.errors import ConfigError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


class RandomInitWarning(UserWarning):
    """A backbone that the papers pretrain on ImageNet was built with random weights."""


def _constructor(arch: str) -> Any:
    import torchvision.models as tvm

    if arch not in RESNETS:
        raise ConfigError(f"unknown ResNet '{arch}'; valid: {', '.join(RESNETS)}")
    return getattr(tvm, arch)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load a torchvision-style state dict from a local file (``weights_only``), unwrapping wrappers."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(
            f"pretrained_path '{path}' does not exist (a local torchvision state dict is expected; "
            f"nothing is downloaded)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, ...
        raise ConfigError(f"pretrained_path '{path}' is not a readable PyTorch state dict: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"pretrained_path '{path}' holds a {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pretrained(net: nn.Module, path: str | os.PathLike[str], arch: str) -> None:
    """Copy a torchvision ``arch`` state dict into ``net`` (strict except for the ``fc.*`` classifier)."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ConfigError(
            f"pretrained_path '{os.fspath(path)}' does not fit a torchvision {arch}: {exc}"
        ) from exc
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ConfigError(
            f"pretrained_path '{os.fspath(path)}' does not fit a torchvision {arch}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )


def warn_random_init(what: str) -> None:
    warnings.warn(
        f"{what} has RANDOM weights: no pretrained_path was given. The papers start from ImageNet "
        f"weights; pass model_kwargs={{'pretrained_path': '/path/to/torchvision_state_dict.pth'}} (a local "
        f"file; nothing is downloaded) for comparable results.",
        RandomInitWarning,
        stacklevel=3,
    )


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and classifier: ``stem`` (conv1, bn1, relu, maxpool) and
    ``layers`` (layer1..layer4). ``forward`` returns the last feature map ``[B, channels[-1], H/s, W/s]``."""

    def __init__(
        self,
        arch: str = "resnet50",
        dilated: bool = False,
        pretrained_path: str | os.PathLike[str] | None = None,
        warn: bool = True,
    ) -> None:
        super().__init__()
        ctor = _constructor(arch)
        kwargs: dict[str, Any] = {}
        if dilated:
            if arch in ("resnet18", "resnet34"):
                raise ConfigError(
                    f"{arch} has basic blocks, which torchvision cannot dilate; use resnet50/101"
                )
            kwargs["replace_stride_with_dilation"] = [False, True, True]
        net = ctor(weights=None, **kwargs)
        if pretrained_path is not None:
            load_pretrained(net, pretrained_path, arch)
        elif warn:
            warn_random_init(f"the {arch} backbone")
        self.arch = arch
        self.dilated = dilated
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        expansion = 4 if arch in ("resnet50", "resnet101") else 1
        self.expansion = expansion
        self.channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
        self.output_stride = 8 if dilated else 32

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return x
