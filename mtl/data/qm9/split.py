"""The fixed, seeded split: a permutation of the molecules and the split of each rank (1:1:11)."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.data.qm9.constants import SPLIT_PERIOD


def split_permutation(num_rows: int, split_seed: int) -> Tensor:
    """The fixed seeded permutation π of the source rows."""
    return torch.randperm(num_rows, generator=torch.Generator().manual_seed(int(split_seed)))


def split_of_rank(k: int) -> str:
    """The split of the k-th (0-based) usable molecule along π."""
    r = k % SPLIT_PERIOD
    return "test" if r == 0 else "val" if r == 1 else "train"
