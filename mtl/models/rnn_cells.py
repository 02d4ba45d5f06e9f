"""Single-layer GRU and LSTM written as their cell equations, so ``torch.func.vmap`` can batch them.

``torch.nn.GRU``/``torch.nn.LSTM`` run as one fused RNN kernel; on CUDA that is cuDNN's, whose backward
(``aten::_cudnn_rnn_backward``) has no vmap batching rule, so the batched per-task gradients (``exact_vmap``)
of the QM9 MPNN failed on a GPU (H200, torch 2.11: "Batching rule not implemented for
aten::_cudnn_rnn_backward"). These modules compute the same functions from linear layers and element-wise
ops, which every backend batches, with the same parameters and state-dict keys (``weight_ih_l0``,
``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``) and the same call signature for a one-layer,
unidirectional, sequence-first RNN, so checkpoints and initial weights are interchangeable with torch's.

Equations (PyTorch's documentation of ``nn.GRU``/``nn.LSTM``, after Cho et al. 2014 and Hochreiter &
Schmidhuber 1997)::

    GRU:  r = σ(W_ir x + b_ir + W_hr h + b_hr)     LSTM: i = σ(W_ii x + b_ii + W_hi h + b_hi)
          z = σ(W_iz x + b_iz + W_hz h + b_hz)           f = σ(W_if x + b_if + W_hf h + b_hf)
          n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))  g = tanh(W_ig x + b_ig + W_hg h + b_hg)
          h' = (1 − z) ⊙ n + z ⊙ h                       o = σ(W_io x + b_io + W_ho h + b_ho)
                                                         c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c')
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class _CellRNN(nn.Module):
    """Parameters of a one-layer RNN with ``gates`` gate blocks, named and initialised as torch's."""

    gates = 1
    num_layers = 1  # read by PyG's Set2Set
    bidirectional = False
    batch_first = False

    def __init__(self, input_size: int, hidden_size: int, *, init: bool = True) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        g = self.gates * hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(g, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(g))
        self.bias_hh_l0 = nn.Parameter(torch.empty(g))
        if init:  # from_torch copies weights instead: no draw from the global RNG
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """As ``nn.RNNBase.reset_parameters``: every parameter uniform(±1/√hidden), in registration order."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    @classmethod
    def from_torch(cls, rnn: nn.RNNBase) -> _CellRNN:
        """A cell RNN holding a copy of ``rnn``'s parameters (one layer, unidirectional, sequence first)."""
        if rnn.num_layers != 1 or rnn.bidirectional or rnn.batch_first or not rnn.bias:
            raise ValueError("only one-layer, unidirectional, sequence-first RNNs with biases are supported")
        cell = cls(rnn.input_size, rnn.hidden_size, init=False)
        cell.load_state_dict(rnn.state_dict())
        cell.to(rnn.weight_ih_l0.device)
        return cell

    def _gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        return F.linear(x, self.weight_ih_l0, self.bias_ih_l0), F.linear(
            h, self.weight_hh_l0, self.bias_hh_l0
        )

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class GRU(_CellRNN):
    """``nn.GRU(input_size, hidden_size)``: ``forward(x [S, B, I], h0 [1, B, H]) -> (out [S, B, H], h [1, B,
    H])``, computed step by step from the cell equations (module docstring)."""

    gates = 3

    def step(self, x: Tensor, h: Tensor) -> Tensor:
        """One GRU step: ``x`` [B, I], ``h`` [B, H] -> ``h'`` [B, H]."""
        gi, gh = self._gates(x, h)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = x.new_zeros(x.shape[1], self.hidden_size) if h0 is None else h0[0]
        outputs = []
        for t in range(x.shape[0]):
            h = self.step(x[t], h)
            outputs.append(h)
        return torch.stack(outputs), h.unsqueeze(0)


class LSTM(_CellRNN):
    """``nn.LSTM(input_size, hidden_size)``: ``forward(x [S, B, I], (h0, c0) [1, B, H] each) -> (out [S, B,
    H], (h, c))``, computed step by step from the cell equations (module docstring)."""

    gates = 4

    def step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One LSTM step: ``x`` [B, I], ``h``, ``c`` [B, H] -> ``(h', c')``."""
        gi, gh = self._gates(x, h)
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if state is None:
            h = c = x.new_zeros(x.shape[1], self.hidden_size)
        else:
            h, c = state[0][0], state[1][0]
        outputs = []
        for t in range(x.shape[0]):
            h, c = self.step(x[t], h, c)
            outputs.append(h)
        return torch.stack(outputs), (h.unsqueeze(0), c.unsqueeze(0))
