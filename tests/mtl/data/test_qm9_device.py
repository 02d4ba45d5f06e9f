"""Device-resident QM9 batches: the host loader's batches bit for bit, built without host reads, and the
trainer's QM9 path when ``device_batches`` is on (forced here: the default turns it on for CUDA only)."""

import pytest
import torch

from mtl.config import TrainConfig
from mtl.data import build_dataset
from mtl.data.qm9 import TASKS
from mtl.data.qm9.device import QM9DeviceBatches
from mtl.errors import ConfigError
from mtl.train import Trainer, fit

BATCH_FIELDS = ("x", "edge_index", "edge_attr", "batch", "ptr")


@pytest.fixture(scope="module")
def qm9():
    return build_dataset("qm9", limit=200, progress=False)  # 168 / 16 / 16 molecules


@pytest.fixture(params=["complete", "bond"])
def graph_qm9(qm9, request):
    before = qm9.graph
    qm9.graph = request.param
    yield qm9
    qm9.graph = before


def _assert_same_batches(host, device):
    host, device = list(host), list(device)
    assert len(host) == len(device) > 0
    for (hg, ht), (dg, dt) in zip(host, device, strict=True):
        for name in BATCH_FIELDS:
            a, b = getattr(hg, name), getattr(dg, name)
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert torch.equal(a, b), name
        assert int(hg.num_graphs) == int(dg.num_graphs)
        assert list(ht) == list(dt) == list(TASKS)
        for task in TASKS:
            assert torch.equal(ht[task], dt[task]), task


@pytest.mark.parametrize(
    ("split", "shuffle", "seed", "epoch"), [("train", True, 0, 0), ("train", True, 7, 3)]
)
def test_shuffled_training_batches_bitwise_equal(graph_qm9, split, shuffle, seed, epoch):
    """Same molecules in the same seeded order, same tensors; 168 molecules in batches of 32 end with a
    partial batch of 8."""
    dev = graph_qm9.device_loader("cpu")
    host = graph_qm9.loader(split, 32, shuffle, seed, epoch)
    _assert_same_batches(host, dev.loader(split, 32, shuffle, seed, epoch))
    sizes = [int(b.num_graphs) for b, _ in dev.loader(split, 32, shuffle, seed, epoch)]
    assert sizes[-1] == 168 % 32 and sum(sizes) == 168


def test_orders_differ_by_epoch_and_match_the_host(qm9):
    dev = qm9.device_loader("cpu")
    first = [b.x.sum() for b, _ in dev.loader("train", 64, True, 0, 0)]
    second = [b.x.sum() for b, _ in dev.loader("train", 64, True, 0, 1)]
    assert first != second  # shuffled per epoch
    _assert_same_batches(qm9.loader("train", 64, True, 0, 1), dev.loader("train", 64, True, 0, 1))


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluation_batches_bitwise_equal(graph_qm9, split):
    dev = graph_qm9.device_loader("cpu")
    _assert_same_batches(graph_qm9.loader(split, 5, False, 0, 0), dev.loader(split, 5, False, 0, 0))


def test_gather_reads_nothing_back_from_the_device(graph_qm9):
    """On the ``meta`` device (shapes only, no values) any host read of device data would raise: the batch
    is gathered from host-side sizes only, with the shapes of the host loader's batch."""
    dev = graph_qm9.device_loader("meta")
    host = list(graph_qm9.loader("train", 16, True, 1, 2))
    meta = list(dev.loader("train", 16, True, 1, 2))
    assert len(host) == len(meta)
    for (hg, ht), (mg, mt) in zip(host, meta, strict=True):
        for name in BATCH_FIELDS:
            assert getattr(mg, name).device.type == "meta"
            assert getattr(mg, name).shape == getattr(hg, name).shape, name
        assert all(mt[t].shape == ht[t].shape for t in TASKS)


def test_resident_tensors_and_bad_arguments(qm9):
    dev = qm9.device_loader("cpu")
    assert isinstance(dev, QM9DeviceBatches)
    assert {s: dev.split_size(s) for s in ("train", "val", "test")} == {
        s: qm9.split_size(s) for s in ("train", "val", "test")
    }
    assert dev.nbytes() > 0
    with pytest.raises(ConfigError, match="unknown split 'dev'; valid: train, val, test"):
        list(dev.loader("dev", 8, False, 0, 0))
    with pytest.raises(ConfigError, match="batch_size"):
        list(dev.loader("train", 0, False, 0, 0))


# -- the trainer -----------------------------------------------------------------------------------------
def _qm9_config(**overrides):
    values = {
        "dataset": "qm9",
        "method": "ew",
        "epochs": 1,
        "batch_size": 32,
        "max_steps_per_epoch": 2,
        "device": "cpu",
        "model_kwargs": {"dim": 16},
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


def test_trainer_device_batches_same_records(qm9):
    """Forced on (CPU): the trainer trains and evaluates from the device-resident loader, and its records
    equal those of the host loader's run bit for bit (timings aside)."""
    trainer = Trainer(_qm9_config(device_batches=True), dataset=qm9)
    assert trainer.loader.__self__.__class__ is QM9DeviceBatches
    on = fit(_qm9_config(device_batches=True), dataset=qm9)
    off = fit(_qm9_config(device_batches=False), dataset=qm9)
    assert on[0].keys() == off[0].keys()
    for key, value in on[0].items():
        if not key.startswith("time_"):
            assert value == off[0][key] or (value != value and off[0][key] != off[0][key]), key  # NaN == NaN


def test_device_batches_default_and_errors(qm9, tiny_synthetic):
    assert Trainer(_qm9_config(), dataset=qm9).loader == qm9.loader  # default: on for CUDA only
    with pytest.raises(ConfigError, match="device_batches=true: dataset 'synthetic'"):
        Trainer(TrainConfig(dataset="synthetic", device="cpu", device_batches=True), dataset=tiny_synthetic)
    with pytest.raises(ConfigError, match="device_batches must be true, false or null"):
        TrainConfig.from_dict({"device_batches": "yes"})


def test_batches_carry_the_mpnns_edge_grouping_built_without_a_host_read():
    """Complete-graph batches of both loaders carry :func:`group_by_source`'s layout, equal to it, built
    from host-side sizes (the MPNN no longer reads the degree and the sortedness back from the device)."""
    import torch

    from mtl.data import build_dataset
    from mtl.models.mpnn import batch_grouping, group_by_source

    data = build_dataset("qm9", limit=400, progress=False)
    for loader in (data.loader, data.device_loader(torch.device("cpu")).loader):
        for k, (batch, _) in enumerate(loader("train", 32, shuffle=True, seed=3, epoch=1)):
            got, ref = batch_grouping(batch), group_by_source(batch.edge_index, batch.num_nodes)
            assert got is not None and got[3] == ref[3]
            assert all(torch.equal(a, b) for a, b in zip(got[:3], ref[:3]))
            if k == 2:
                break
    bond = build_dataset("qm9", limit=400, graph="bond", progress=False)
    batch, _ = next(iter(bond.loader("train", 32, shuffle=False, seed=0, epoch=0)))
    assert batch_grouping(batch) is None  # bond graphs: grouped by the model, as before
