"""The devices a trial may name (``TrainConfig.device``): ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, and
their resolution to a torch device."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mtl.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "cuda:N (N a GPU index)")
"""The device names, as listed in messages and help texts."""
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def is_device_name(value: Any) -> bool:
    """Whether ``value`` is one of :data:`DEVICES`."""
    return isinstance(value, str) and DEVICE_PATTERN.match(value) is not None


def resolve_device(name: str) -> torch.device:
    """The torch device of ``name``: ``auto`` is CUDA when available, else the CPU; a CUDA device on a
    machine without CUDA raises :class:`ConfigError`."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available on this machine")
    return torch.device(name)
