"""Batching: a split's tensors (:class:`SplitData`) and a batch of molecules gathered from them
(:func:`build_batch`, the one batch builder: on the host by :func:`make_batch`, on the training device by
:mod:`mtl.data.qm9.device`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtl.data.qm9.constants import GRAPHS, NUM_EDGE_FEATURES
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


@dataclass(frozen=True)
class BatchSizes:
    """Totals of one batch (what ``arange`` / ``repeat_interleave`` need, given so that building a batch on
    a device never waits for it)."""

    atoms: int
    bonds: int
    edges: int
    max_atoms: int | None = None  # the largest molecule's atoms (complete graphs: degree + 1); None: unknown


def _ranges(ptr: Tensor, idx: Tensor, lengths: Tensor, total: int) -> Tensor:
    """Concatenated ranges ``ptr[i] : ptr[i] + lengths[k]`` for ``i = idx[k]`` (``total`` = Σ lengths)."""
    offsets = torch.cumsum(lengths, 0) - lengths
    shift = torch.repeat_interleave(ptr[idx] - offsets, lengths, output_size=total)
    return torch.arange(total, device=ptr.device) + shift


def _gather_ranges(ptr: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenated ranges ``ptr[i]:ptr[i+1]`` for ``i`` in ``idx``; returns (flat indices, lengths)."""
    lengths = ptr[idx + 1] - ptr[idx]
    return _ranges(ptr, idx, lengths, int(lengths.sum())), lengths


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


def check_graph(graph: str) -> None:
    if graph not in GRAPHS:
        raise ConfigError(f"unknown QM9 graph '{graph}'; valid: {', '.join(GRAPHS)}")


def make_batch(data: SplitData, idx: Tensor, graph: str = "complete") -> Any:
    """A PyG ``Batch`` of molecules ``idx`` of ``data`` built on the host (:func:`build_batch`)."""
    check_graph(graph)
    n = data.atom_ptr[idx + 1] - data.atom_ptr[idx]
    nb = data.bond_ptr[idx + 1] - data.bond_ptr[idx]
    edges = n * (n - 1) if graph == "complete" else 2 * nb
    sizes = BatchSizes(int(n.sum()), int(nb.sum()), int(edges.sum()), int(n.max()) if n.numel() else 0)
    return build_batch(data, idx, sizes, graph)


def build_batch(data: Any, idx: Tensor, sizes: BatchSizes, graph: str) -> Any:
    """A PyG ``Batch`` of molecules ``idx`` of ``data`` (a :class:`SplitData`, or a split resident on a
    device) on ``idx``'s device: ``x`` [N, 11], ``edge_index`` [2, E], ``edge_attr`` [E, 5] (bond one-hot,
    distance), ``batch``, ``ptr``; edges sorted by (source, target) as PyG's ``Complete`` transform leaves
    them. ``graph="complete"``: all ordered pairs i ≠ j of a molecule (non-bonded pairs get an all-zero bond
    one-hot); ``"bond"``: bonded pairs only. ``sizes``: the batch's atoms, bonds and edges."""
    from mtl.models.pyg import import_pyg

    import_pyg()  # without PyG's torch.jit.script deprecation warnings
    from torch_geometric.data import Batch

    device = idx.device
    n = data.atom_ptr[idx + 1] - data.atom_ptr[idx]
    nb = data.bond_ptr[idx + 1] - data.bond_ptr[idx]
    atoms = _ranges(data.atom_ptr, idx, n, sizes.atoms)
    bond_rows = _ranges(data.bond_ptr, idx, nb, sizes.bonds)
    graphs = torch.arange(idx.numel(), device=device)
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), torch.cumsum(n, 0)])
    x, pos = data.x[atoms], data.pos[atoms]
    batch = torch.repeat_interleave(graphs, n, output_size=sizes.atoms)
    bond_graph = torch.repeat_interleave(graphs, nb, output_size=sizes.bonds)
    a, b = data.bonds[bond_rows, 0], data.bonds[bond_rows, 1]
    btype = data.bond_type[bond_rows]
    attr = torch.zeros(sizes.edges, NUM_EDGE_FEATURES, device=device, dtype=pos.dtype)
    if graph == "complete":
        # edge k of molecule g is (i, j) with i = k // (n−1), j = k % (n−1), j shifted past i (no self loop)
        counts = n * (n - 1)
        eptr = torch.cumsum(counts, 0) - counts
        edge_graph = torch.repeat_interleave(graphs, counts, output_size=sizes.edges)
        local = torch.arange(sizes.edges, device=device) - eptr[edge_graph]
        degree = (n - 1)[edge_graph]
        i = torch.div(local, degree, rounding_mode="floor")
        j = local - i * degree
        j = j + (j >= i).long()
        row, col = ptr[edge_graph] + i, ptr[edge_graph] + j
        deg_b = (n - 1)[bond_graph]
        ab = eptr[bond_graph] + a * deg_b + b - (b > a).long()
        ba = eptr[bond_graph] + b * deg_b + a - (a > b).long()
        attr[ab, btype] = 1.0
        attr[ba, btype] = 1.0
        grouping = _complete_grouping(row, col, j - (j > i).long(), sizes) if sizes.max_atoms else None
    else:
        grouping = None
        off = ptr[bond_graph]
        row = torch.cat([off + a, off + b])
        col = torch.cat([off + b, off + a])
        types = torch.cat([btype, btype])
        order = torch.argsort(row * sizes.atoms + col)  # keys are unique: any sort gives the same order
        row, col, types = row[order], col[order], types[order]
        attr[torch.arange(sizes.edges, device=device), types] = 1.0
    attr[:, 4] = (pos[row] - pos[col]).norm(dim=-1)
    out = Batch(x=x, edge_index=torch.stack([row, col]), edge_attr=attr, batch=batch, ptr=ptr)
    if grouping is not None:  # the MPNN's edge grouping, built here once per batch without a host read
        out.group_order, out.group_slot_index, out.group_slot_dst = grouping
        out.group_max_degree = sizes.max_atoms - 1
    return out


def _complete_grouping(row: Tensor, col: Tensor, rank: Tensor, sizes: BatchSizes) -> tuple[Tensor, ...]:
    """:func:`mtl.models.mpnn.group_by_source` of a batch of complete graphs, from what the builder knows:
    the edges are sorted by source (``order`` is the identity), each source's out-edges are its molecule's
    other atoms in order (``rank``: the target's position among them) and the largest degree is
    ``max_atoms − 1`` (a host number), so no value is read back from the device."""
    max_degree = int(sizes.max_atoms or 0) - 1
    order = torch.arange(sizes.edges, device=row.device)
    slot_index = row * max_degree + rank
    slot_dst = torch.full((sizes.atoms * max_degree,), sizes.atoms, dtype=torch.long, device=row.device)
    slot_dst[slot_index] = col
    return order, slot_index, slot_dst
