"""The cell-equation GRU/LSTM equal torch's fused ones, keep their state-dict keys, and vmap batches them."""

import pytest
import torch
from torch import nn

from mtl.models.rnn_cells import GRU, LSTM


@pytest.mark.parametrize(("ours", "theirs"), [(GRU, nn.GRU), (LSTM, nn.LSTM)])
@pytest.mark.parametrize("steps", [1, 3])
def test_equal_to_torch_within_1e_6_with_the_same_state_dict(ours, theirs, steps):
    torch.manual_seed(0)
    ref = theirs(7, 5)
    torch.manual_seed(0)
    cell = ours(7, 5)
    # initialised as torch's (same draws, same order) and the same keys
    assert list(cell.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(cell.state_dict()[key], value), key
    x = torch.randn(steps, 4, 7)
    h0 = torch.randn(1, 4, 5)
    state = h0 if ours is GRU else (h0, torch.randn(1, 4, 5))
    out_ref, hn_ref = ref(x, state)
    out, hn = cell(x, state)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-6)
    for a, b in zip(hn if ours is LSTM else [hn], hn_ref if ours is LSTM else [hn_ref]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the gradients of the parameters
    out.square().sum().backward()
    out_ref.square().sum().backward()
    for (name, p), q in zip(cell.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_from_torch_copies_without_drawing_from_the_rng(cls):
    ref = (nn.GRU if cls is GRU else nn.LSTM)(3, 2)
    before = torch.get_rng_state()
    cell = cls.from_torch(ref)
    assert torch.equal(torch.get_rng_state(), before)
    for key, value in ref.state_dict().items():
        assert torch.equal(cell.state_dict()[key], value)
    cell.load_state_dict(ref.state_dict())  # checkpoints of either load into the other
    ref.load_state_dict(cell.state_dict())


@pytest.mark.parametrize("cls", [GRU, LSTM])
def test_vmap_batches_the_backward(cls):
    """The per-task gradients exact_vmap computes: vmap over the cotangents of a VJP through the cell."""
    torch.manual_seed(1)
    cell = cls(4, 3)
    x = torch.randn(2, 6, 4)
    out, _ = cell(x)
    params = list(cell.parameters())
    cotangents = torch.randn(5, *out.shape)

    def vjp(v):
        return torch.autograd.grad(out, params, v, retain_graph=True)

    batched = torch.func.vmap(vjp)(cotangents)
    for k in range(5):
        loop = vjp(cotangents[k])
        for a, b in zip(batched, loop):
            torch.testing.assert_close(a[k], b)


def test_the_mpnn_is_the_same_function_with_cells_or_fused_rnns():
    from benchmarks.workloads import random_molecule_graphs
    from mtl.models.mpnn import MPNNEncoder

    torch.manual_seed(0)
    fused = MPNNEncoder(dim=16, edge_hidden=8, rnn="fused")
    torch.manual_seed(0)
    cell = MPNNEncoder(dim=16, edge_hidden=8, rnn="cell")
    assert isinstance(cell.gru, GRU) and isinstance(cell.set2set.lstm, LSTM)
    assert cell.state_dict().keys() == fused.state_dict().keys()
    for key, value in fused.state_dict().items():  # same initial weights: the copy draws nothing
        assert torch.equal(cell.state_dict()[key], value), key
    batch, _ = random_molecule_graphs(batch_size=4, atoms=6, seed=0)
    torch.testing.assert_close(cell(batch), fused(batch), rtol=0, atol=1e-6)
