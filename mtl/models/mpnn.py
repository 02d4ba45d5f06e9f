"""The Gilmer et al. MPNN backbone used by the MTL papers on QM9 (DESIGN §5).

Gilmer, Schoenholz, Riley, Vinyals, Dahl, "Neural Message Passing for Quantum Chemistry", ICML 2017, in the
configuration of PyG's ``examples/qm9_nn_conv.py`` that Nash-MTL, IGB and DB-MTL train:
``Linear(11, 64)`` → 3 × [edge-conditioned convolution ``NNConv(64, 64, nn=Linear(5, 128)-ReLU-Linear(128,
64·64), aggr="mean")`` → ReLU → ``GRU``] → ``Set2Set(64, processing_steps=3)`` → ``Linear(128, 64)`` → ReLU.
The encoder returns the pooled ``[B, 64]`` representation, the tensor the ``rep`` gradient mode needs.

:class:`FactorizedNNConv` computes exactly what :class:`torch_geometric.nn.NNConv` computes, with the same
parameters (and parameter names), but in a different order: NNConv materialises one ``64×64`` weight matrix
per edge (``[E, 4096]``, ~46 GFLOP per call for a batch of 128 molecules on complete graphs), while with the
edge network's last layer ``W(e) = A·h(e) + c`` the message is ``x_jᵀ W(e) = h(e)ᵀ (A x_j) + x_jᵀ c``; so the
per-*node* tensor ``A x_j`` (``[N, 64, 128]``) is formed once and contracted with the edges' hidden features
``h(e)`` grouped by source node. Same numbers up to float rounding, ~10× fewer FLOPs and memory on complete
graphs (see ``tests/mtl/data/test_qm9.py`` for the equivalence test).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.models.rnn_cells import GRU, LSTM

# torch_geometric is imported lazily: importing it loads pandas (PyG 2.8's ``llm`` package), and ``import
# mtl`` must not (DESIGN §1). Building the MPNN or a QM9 batch does import it.

CONV_IMPLEMENTATIONS = ("factorized", "pyg")
RNN_IMPLEMENTATIONS = ("cell", "fused")
"""``cell``: the GRU and Set2Set's LSTM as cell equations (:mod:`mtl.models.rnn_cells`), which vmap batches on
every backend; ``fused``: torch's ``nn.GRU``/``nn.LSTM`` (cuDNN on CUDA, whose backward vmap cannot batch).
Same parameters, names and initial values either way."""


def group_by_source(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor, int]:
    """The padded "by source node" layout of a graph's edges, shared by all message-passing steps.

    Returns ``(order, slot_index, slot_dst, max_degree)``: edge ``order[k]`` goes to row ``slot_index[k]`` of
    the flattened ``[num_nodes · max_degree]`` padded layout (``source · max_degree + rank among the
    source's out-edges``); ``slot_dst`` [num_nodes · max_degree] is each slot's target node, ``num_nodes``
    (a dummy row) for empty slots. PyG's complete graphs and bond graphs come sorted by source, in which
    case ``order`` is the identity and no sort is done.
    """
    src, dst = edge_index[0], edge_index[1]
    num_edges = src.numel()
    if num_edges == 0 or bool((src[1:] >= src[:-1]).all()):
        order = torch.arange(num_edges, device=src.device)
    else:
        order = torch.argsort(src, stable=True)
    sorted_src = src[order]
    degree = torch.bincount(src, minlength=num_nodes)
    max_degree = int(degree.max()) if num_edges else 0
    start = torch.cumsum(degree, 0) - degree
    rank = torch.arange(num_edges, device=src.device) - start[sorted_src]
    slot_index = sorted_src * max_degree + rank
    slot_dst = torch.full((num_nodes * max_degree,), num_nodes, dtype=torch.long, device=src.device)
    slot_dst[slot_index] = dst[order]
    return order, slot_index, slot_dst, max_degree


def batch_grouping(data: Any) -> tuple[Tensor, Tensor, Tensor, int] | None:
    """The :func:`group_by_source` layout a QM9 batch carries when its builder made it
    (:func:`mtl.data.qm9.batching.build_batch`, complete graphs), else None."""
    max_degree = getattr(data, "group_max_degree", None)
    if max_degree is None:
        return None
    return data.group_order, data.group_slot_index, data.group_slot_dst, int(max_degree)


class FactorizedNNConv(nn.Module):
    """:class:`torch_geometric.nn.NNConv` (mean or sum aggregation, root weight, bias) whose edge network
    ends in a :class:`torch.nn.Linear` layer, evaluated without forming per-edge weight matrices.

    For an edge ``e = (j → i)`` with hidden edge features ``h_e = nn[:-1](edge_attr_e)`` (``[K]``) and last
    layer ``W_e = reshape(A h_e + c, [in, out])``, the message is ``m_e = Σ_k h_e[k] P_j[:, k] + x_jᵀ C`` with
    ``P_j = Σ_i x_j[i] A[i, :, :]`` (``[out, K]``) and ``C = reshape(c, [in, out])``. Parameters, their names
    (``nn.*``, ``lin.weight``, ``bias``) and their initialisation are NNConv's, so state dicts are
    interchangeable with ``NNConv(in, out, nn, aggr)``.
    """

    def __init__(self, in_channels: int, out_channels: int, nn: nn.Sequential, aggr: str = "mean") -> None:
        super().__init__()
        if aggr not in ("mean", "add", "sum"):
            raise ValueError(f"FactorizedNNConv supports aggr 'mean' or 'add', got '{aggr}'")
        if not isinstance(nn, torch.nn.Sequential) or not isinstance(nn[-1], torch.nn.Linear):
            raise ValueError("FactorizedNNConv needs an nn.Sequential edge network ending in nn.Linear")
        if nn[-1].out_features != in_channels * out_channels:
            raise ValueError(
                f"the edge network must output in*out = {in_channels * out_channels} features, "
                f"got {nn[-1].out_features}"
            )
        self.in_channels_l = self.in_channels = in_channels
        self.out_channels = out_channels
        self.nn = nn
        self.mean = aggr == "mean"
        self.root_weight = True
        self.lin = torch.nn.Linear(in_channels, out_channels, bias=False)
        self.bias = torch.nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As NNConv: the edge network's own initialisation, ``lin`` uniform(±1/√in), bias 0."""
        for module in self.nn.modules():
            if module is not self.nn and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        bound = 1.0 / math.sqrt(self.in_channels)
        torch.nn.init.uniform_(self.lin.weight, -bound, bound)
        torch.nn.init.zeros_(self.bias)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        grouping: tuple[Tensor, Tensor, Tensor, int] | None = None,
        edge_hidden: Tensor | None = None,
    ) -> Tensor:
        """``grouping`` (from :func:`group_by_source`) and ``edge_hidden`` (``nn[:-1](edge_attr)``) may be
        passed in to share them between message-passing steps over the same graph."""
        num_nodes, in_ch, out_ch = x.shape[0], self.in_channels_l, self.out_channels
        last: torch.nn.Linear = self.nn[-1]
        if edge_hidden is None:
            edge_hidden = self.nn[:-1](edge_attr)
        if grouping is None:
            grouping = group_by_source(edge_index, num_nodes)
        order, slot_index, slot_dst, max_degree = grouping
        num_edges = edge_hidden.shape[0]

        # The last layer's bias c is folded in as one more hidden unit that is 1 on every real edge.
        weight = last.weight.reshape(in_ch, out_ch, last.in_features)
        ones = edge_hidden.new_ones(num_edges, 1)
        if last.bias is not None:
            weight = torch.cat([weight, last.bias.reshape(in_ch, out_ch, 1)], dim=2)
            edge_hidden = torch.cat([edge_hidden, ones], dim=1)
        k = weight.shape[2]
        # P_j[o, k] = Σ_i x_j[i] A[(i, o), k]
        p = (x @ weight.reshape(in_ch, out_ch * k)).reshape(num_nodes, out_ch, k)
        padded = edge_hidden.new_zeros(num_nodes * max_degree, k).index_copy(
            0, slot_index, edge_hidden[order] if num_edges else edge_hidden
        )
        msg = torch.bmm(p, padded.reshape(num_nodes, max_degree, k).transpose(1, 2))  # [N, out, D]
        msg = msg.transpose(1, 2).reshape(num_nodes * max_degree, out_ch)
        out = x.new_zeros(num_nodes + 1, out_ch).index_add(0, slot_dst, msg)[:num_nodes]
        if self.mean:
            count = torch.bincount(edge_index[1], minlength=num_nodes).clamp_(min=1).to(out.dtype)
            out = out / count.unsqueeze(1)
        if self.root_weight:
            out = out + self.lin(x)
        if self.bias is not None:
            out = out + self.bias
        return out


class MPNNEncoder(nn.Module):
    """Gilmer MPNN encoder: a PyG ``Batch`` (``x``, ``edge_index``, ``edge_attr``, ``batch``) → ``[B, dim]``.

    ``conv="factorized"`` (default) uses :class:`FactorizedNNConv`; ``conv="pyg"`` uses PyG's
    ``NNConv`` itself (same parameters, same outputs up to rounding, much slower on complete graphs).
    """

    def __init__(
        self,
        num_node_features: int = 11,
        num_edge_features: int = 5,
        dim: int = 64,
        edge_hidden: int = 128,
        steps: int = 3,
        set2set_steps: int = 3,
        conv: str = "factorized",
        rnn: str = "cell",
    ) -> None:
        super().__init__()
        if conv not in CONV_IMPLEMENTATIONS:
            raise ValueError(f"unknown conv '{conv}'; valid: {', '.join(CONV_IMPLEMENTATIONS)}")
        if rnn not in RNN_IMPLEMENTATIONS:
            raise ValueError(f"unknown rnn '{rnn}'; valid: {', '.join(RNN_IMPLEMENTATIONS)}")
        if steps < 1 or set2set_steps < 1 or dim < 1:
            raise ValueError("dim, steps and set2set_steps must be >= 1")
        self.dim = dim
        self.steps = steps
        self.conv_impl = conv
        self.lin0 = nn.Linear(num_node_features, dim)
        edge_net = nn.Sequential(
            nn.Linear(num_edge_features, edge_hidden), nn.ReLU(), nn.Linear(edge_hidden, dim * dim)
        )
        from mtl.models.pyg import import_pyg

        import_pyg()  # without PyG's torch.jit.script deprecation warnings
        from torch_geometric.nn import NNConv, Set2Set

        conv_cls = FactorizedNNConv if conv == "factorized" else NNConv
        self.conv = conv_cls(dim, dim, edge_net, aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = Set2Set(dim, processing_steps=set2set_steps)
        if rnn == "cell":  # the same initial weights (copied), computed by cell equations that vmap batches
            self.gru = GRU.from_torch(self.gru)
            self.set2set.lstm = LSTM.from_torch(self.set2set.lstm)
        self.lin1 = nn.Linear(2 * dim, dim)

    def forward(self, data: Any) -> Tensor:
        x, edge_index, edge_attr, batch = data.x, data.edge_index, data.edge_attr, data.batch
        num_graphs = int(data.num_graphs)
        out = F.relu(self.lin0(x))
        h = out.unsqueeze(0)
        if self.conv_impl == "factorized":
            grouping = batch_grouping(data)  # built with the batch (no host read), else here
            if grouping is None:
                grouping = group_by_source(edge_index, x.shape[0])
            hidden = self.conv.nn[:-1](edge_attr)  # the same for every step: compute it once
            for _ in range(self.steps):
                m = F.relu(self.conv(out, edge_index, edge_attr, grouping=grouping, edge_hidden=hidden))
                out, h = self.gru(m.unsqueeze(0), h)
                out = out.squeeze(0)
        else:
            for _ in range(self.steps):
                m = F.relu(self.conv(out, edge_index, edge_attr))
                out, h = self.gru(m.unsqueeze(0), h)
                out = out.squeeze(0)
        pooled = self.set2set(out, batch, dim_size=num_graphs)
        return F.relu(self.lin1(pooled))
