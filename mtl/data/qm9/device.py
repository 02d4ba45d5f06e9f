"""QM9 batches gathered on the training device from device-resident tensors.

:meth:`mtl.data.qm9.QM9Dataset.loader` builds each batch on the host (:func:`mtl.data.qm9.make_batch`) and
the trainer then copies it to the device, once per step. Here the processed splits (node features,
positions, bonds and their types, z-scored targets: ~76 MB for all of QM9) are copied to the device once,
and every batch is gathered there by molecule index with CSR-style offsets (per-molecule atom / bond start
and count) and vectorised ``repeat_interleave`` / ``cumsum`` gathers, with no per-molecule Python loop:

* nodes: ``x``, ``pos`` of the batch's atoms, ``batch`` (graph of each node), ``ptr``;
* edges: the complete graph without self loops (all ordered pairs ``i ≠ j`` of a molecule, sorted by
  (source, target) as PyG's ``Complete`` transform leaves them) with the bond-type one-hot of bonded pairs,
  or the bonded pairs only (``graph="bond"``); the interatomic distance as the fifth edge feature;
* targets: the z-scored targets of the batch's molecules, one ``[B]`` tensor per task.

The batches are exactly those of :meth:`~mtl.data.qm9.QM9Dataset.loader` (same molecules, same order, same
tensors bit for bit on the same device; one builder makes both, :func:`mtl.data.qm9.batching.build_batch`):
the epoch order is the same seeded host permutation, copied to the device once per epoch. The per-batch
sizes (atoms, bonds, edges) that ``torch.arange`` and ``repeat_interleave`` need are computed on the host
from host copies of the per-molecule counts, once per epoch, so building a batch never waits for the
device (no ``.item()``) and never copies host data to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtl.data.base import epoch_order
from mtl.data.qm9.batching import BatchSizes, build_batch, check_graph
from mtl.errors import ConfigError


@dataclass
class ResidentSplit:
    """One split on the device (``atom_ptr`` … ``z``) plus the host-side per-molecule counts.

    ``x`` float [A, 11], ``pos`` float [A, 3], ``bonds`` int64 [B, 2] (molecule-local, i < j), ``bond_type``
    int64 [B], ``z`` float [M, T] z-scored targets; ``n_atoms`` / ``n_bonds`` int64 numpy [M] (host)."""

    atom_ptr: Tensor
    x: Tensor
    pos: Tensor
    bond_ptr: Tensor
    bonds: Tensor
    bond_type: Tensor
    z: Tensor
    n_atoms: np.ndarray
    n_bonds: np.ndarray

    def __len__(self) -> int:
        return int(self.n_atoms.shape[0])

    def num_edges(self, graph: str) -> np.ndarray:
        """Directed edges per molecule: ``n(n−1)`` (complete graph) or ``2·bonds``."""
        return self.n_atoms * (self.n_atoms - 1) if graph == "complete" else 2 * self.n_bonds


class QM9DeviceBatches:
    """The QM9 splits resident on ``device``; :meth:`loader` yields the batches of
    :meth:`mtl.data.qm9.QM9Dataset.loader` gathered there (see the module docstring).

    ``splits``: split name → :class:`mtl.data.qm9.SplitData` (``atom_ptr``, ``x``, ``pos``, ``bond_ptr``,
    ``bonds``, ``bond_type``); ``z``: split name → z-scored targets [M, T]; ``tasks``: the target names,
    in column order."""

    def __init__(
        self,
        splits: Mapping[str, Any],
        z: Mapping[str, Tensor],
        tasks: Sequence[str],
        graph: str,
        device: torch.device | str,
    ) -> None:
        check_graph(graph)
        self.device = torch.device(device)
        self.graph = graph
        self.tasks = list(tasks)
        self.splits: dict[str, ResidentSplit] = {}
        for name, data in splits.items():
            atom_ptr, bond_ptr = data.atom_ptr.cpu(), data.bond_ptr.cpu()
            self.splits[name] = ResidentSplit(
                atom_ptr=atom_ptr.to(self.device),
                x=data.x.to(self.device),
                pos=data.pos.to(self.device),
                bond_ptr=bond_ptr.to(self.device),
                bonds=data.bonds.to(self.device),
                bond_type=data.bond_type.to(self.device),
                z=z[name].to(self.device),
                n_atoms=(atom_ptr[1:] - atom_ptr[:-1]).numpy().astype(np.int64),
                n_bonds=(bond_ptr[1:] - bond_ptr[:-1]).numpy().astype(np.int64),
            )

    def nbytes(self) -> int:
        """Bytes held on the device."""
        total = 0
        for s in self.splits.values():
            for t in (s.atom_ptr, s.x, s.pos, s.bond_ptr, s.bonds, s.bond_type, s.z):
                total += t.numel() * t.element_size()
        return total

    def split_size(self, split: str) -> int:
        return len(self._split(split))

    def _split(self, split: str) -> ResidentSplit:
        if split not in self.splits:
            raise ConfigError(f"unknown split '{split}'; valid: {', '.join(self.splits)}")
        return self.splits[split]

    def epoch_order(self, split: str, shuffle: bool, seed: int, epoch: int) -> Tensor:
        """The host order of one epoch: the same seeded permutation as the host loader."""
        n = self.split_size(split)
        return epoch_order(n, shuffle, seed, epoch)

    def batch_sizes(self, split: str, order: Tensor, batch_size: int) -> list[BatchSizes]:
        """Atoms, bonds and edges of each batch of ``order`` (host arithmetic, once per epoch)."""
        data = self._split(split)
        o = order.numpy()
        starts = np.arange(0, o.shape[0], batch_size)
        if starts.size == 0:
            return []
        per = [
            np.add.reduceat(v[o], starts) for v in (data.n_atoms, data.n_bonds, data.num_edges(self.graph))
        ]
        largest = np.maximum.reduceat(data.n_atoms[o], starts)
        return [BatchSizes(int(a), int(b), int(e), int(m)) for a, b, e, m in zip(*per, largest, strict=True)]

    def loader(
        self, split: str, batch_size: int, shuffle: bool, seed: int, epoch: int
    ) -> Iterator[tuple[Any, dict[str, Tensor]]]:
        """``(Batch, {task: z-scored target [B]})`` on the device, the batches of the host loader."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        data = self._split(split)
        order = self.epoch_order(split, shuffle, seed, epoch)
        sizes = self.batch_sizes(split, order, batch_size)
        order_dev = order.to(self.device)  # the epoch's one host-to-device copy
        for k, size in enumerate(sizes):
            idx = order_dev[k * batch_size : (k + 1) * batch_size]
            targets = data.z[idx]
            yield (
                build_batch(data, idx, size, self.graph),
                {t: targets[:, i] for i, t in enumerate(self.tasks)},
            )
