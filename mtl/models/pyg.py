"""The guarded first import of PyTorch Geometric.

PyG 2.x decorates helpers of ``torch_geometric.nn.pool`` with ``torch.jit.script`` at import time, and torch
2.14 deprecates ``torch.jit.script`` with a ``FutureWarning``: every QM9 run (every trial process) printed it
twice, about code that is neither ours nor used (we never script). :func:`import_pyg` imports PyG with that
one warning ignored, for that import only (no process-wide filter); later imports of ``torch_geometric``
submodules are cached and warn no more. Imported lazily by its callers: PyG loads pandas, which ``import
mtl`` must not (DESIGN §1).
"""

from __future__ import annotations

import functools
import warnings
from types import ModuleType

JIT_SCRIPT_DEPRECATION = r"`torch\.jit\.script` is deprecated"


@functools.cache
def import_pyg() -> ModuleType:
    """``torch_geometric``, imported without its ``torch.jit.script`` deprecation warnings (once per process:
    the batch builder calls it for every batch)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_SCRIPT_DEPRECATION, category=FutureWarning)
        import torch_geometric
    return torch_geometric
