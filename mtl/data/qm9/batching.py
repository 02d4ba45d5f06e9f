"""Batching: a split's tensors (:class:`SplitData`) and a batch of molecules gathered from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtl.data.qm9.constants import NUM_EDGE_FEATURES
from mtl.data.qm9.store import MoleculeStore
from mtl.errors import ConfigError


@dataclass
class SplitData:
    """One split's molecules in flat tensors (float node features), ready for vectorized batching."""

    rows: Tensor
    atom_ptr: Tensor
    x: Tensor
    pos: Tensor
    bond_ptr: Tensor
    bonds: Tensor
    bond_type: Tensor
    y: Tensor  # raw targets, float64 [M, 11]

    def __len__(self) -> int:
        return int(self.rows.numel())


def _gather_ranges(ptr: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenated ranges ``ptr[i]:ptr[i+1]`` for ``i`` in ``idx``; returns (flat indices, lengths)."""
    lengths = ptr[idx + 1] - ptr[idx]
    offsets = torch.cumsum(lengths, 0) - lengths
    flat = torch.arange(int(lengths.sum())) + torch.repeat_interleave(ptr[idx] - offsets, lengths)
    return flat, lengths


def select_split(store: MoleculeStore, indices: Sequence[int]) -> SplitData:
    """The molecules ``store[indices]`` (in that order) as a :class:`SplitData`."""
    idx = torch.as_tensor(list(indices), dtype=torch.int64)
    t = store.t
    atoms, n_atoms = _gather_ranges(t["atom_ptr"], idx)
    bonds, n_bonds = _gather_ranges(t["bond_ptr"], idx)
    zero = torch.zeros(1, dtype=torch.int64)
    return SplitData(
        rows=t["rows"][idx],
        atom_ptr=torch.cat([zero, torch.cumsum(n_atoms, 0)]),
        x=t["x"][atoms].float(),
        pos=t["pos"][atoms],
        bond_ptr=torch.cat([zero, torch.cumsum(n_bonds, 0)]),
        bonds=t["bonds"][bonds].long(),
        bond_type=t["bond_type"][bonds].long(),
        y=t["y"][idx],
    )


def make_batch(data: SplitData, idx: Tensor, graph: str = "complete") -> Any:
    """A PyG ``Batch`` of molecules ``idx`` of ``data``: ``x`` [N, 11], ``edge_index`` [2, E], ``edge_attr``
    [E, 5] (bond one-hot, distance), ``batch``, ``ptr``; edges sorted by (source, target) as PyG's
    ``Complete`` transform leaves them. ``graph="complete"``: all ordered pairs i ≠ j of a molecule
    (non-bonded pairs get an all-zero bond one-hot); ``"bond"``: bonded pairs only."""
    from mtl.models.pyg import import_pyg

    import_pyg()  # without PyG's torch.jit.script deprecation warnings
    from torch_geometric.data import Batch

    atoms, n = _gather_ranges(data.atom_ptr, idx)
    bond_rows, nb = _gather_ranges(data.bond_ptr, idx)
    num_graphs = idx.numel()
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(n, 0)])
    x, pos = data.x[atoms], data.pos[atoms]
    batch = torch.repeat_interleave(torch.arange(num_graphs), n)
    bond_graph = torch.repeat_interleave(torch.arange(num_graphs), nb)
    a, b = data.bonds[bond_rows, 0], data.bonds[bond_rows, 1]
    btype = data.bond_type[bond_rows]
    if graph == "complete":
        counts = n * (n - 1)
        eptr = torch.cumsum(counts, 0) - counts
        edge_graph = torch.repeat_interleave(torch.arange(num_graphs), counts)
        local = torch.arange(int(counts.sum())) - eptr[edge_graph]
        degree = (n - 1)[edge_graph]
        i = torch.div(local, degree, rounding_mode="floor")
        j = local - i * degree
        j = j + (j >= i).long()
        row, col = ptr[edge_graph] + i, ptr[edge_graph] + j
        attr = torch.zeros(row.numel(), NUM_EDGE_FEATURES)
        deg_b = (n - 1)[bond_graph]
        ab = eptr[bond_graph] + a * deg_b + b - (b > a).long()
        ba = eptr[bond_graph] + b * deg_b + a - (a > b).long()
        attr[ab, btype] = 1.0
        attr[ba, btype] = 1.0
    elif graph == "bond":
        off = ptr[bond_graph]
        row = torch.cat([off + a, off + b])
        col = torch.cat([off + b, off + a])
        types = torch.cat([btype, btype])
        order = torch.argsort(row * ptr[-1] + col)
        row, col, types = row[order], col[order], types[order]
        attr = torch.zeros(row.numel(), NUM_EDGE_FEATURES)
        attr[torch.arange(row.numel()), types] = 1.0
    else:
        raise ConfigError(f"unknown QM9 graph '{graph}'; valid: complete, bond")
    attr[:, 4] = (pos[row] - pos[col]).norm(dim=-1)
    return Batch(x=x, edge_index=torch.stack([row, col]), edge_attr=attr, batch=batch, ptr=ptr)
