"""MoE architectures (MMoE, CGC, PLE, DSelect-k) on synthetic, QM9, Office and dense inputs: shapes, the
shared/task split, gradients reaching every expert and gate, the three gradient modes, arguments, training."""

import math
import warnings

import pytest
import torch

from mtl.config import TrainConfig
from mtl.data.catalog import build_dataset
from mtl.data.dense import LOSSES
from mtl.data.qm9.constants import TASKS as QM9_TASKS
from mtl.data.references import resolve
from mtl.errors import ConfigError
from mtl.gradients import task_gradients
from mtl.models import RandomInitWarning
from mtl.models.moe import (
    MOE_ARCHITECTURES,
    DSelectGate,
    MixtureOfExperts,
    ProgressiveLayeredExtraction,
    moe_arguments,
    smooth_step,
)
from mtl.models.moe_experts import MPNNFamily, MPNNNodes, MPNNReadout, ResNetFamily
from mtl.models.moe_vision import build_dense_moe_model, build_office_moe_model
from mtl.train import Trainer, fit
from tests.mtl.data.vision_fixtures import single_thread, write_dense  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

SINGLE_INPUT_REP = ("mmoe", "cgc", "dselect_k")


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return fn(*args, **kwargs)


def _split(model):
    shared, task = list(model.shared_parameters()), list(model.task_parameters())
    ids_shared, ids_task = {id(p) for p in shared}, {id(p) for p in task}
    assert not ids_shared & ids_task
    assert ids_shared | ids_task == {id(p) for p in model.parameters()}
    assert len(ids_shared) == len(shared) and len(ids_task) == len(task)
    return shared, task


def _expert_and_gate_modules(model):
    """(name, module) of every expert (or PLE stage expert) and every gate."""
    if isinstance(model, ProgressiveLayeredExtraction):
        mods = [
            (f"shared{lv}.{i}", e) for lv, es in enumerate(model.shared_experts) for i, e in enumerate(es)
        ]
        mods += [
            (f"task{lv}.{t}.{i}", e)
            for lv, d in enumerate(model.task_experts)
            for t, es in d.items()
            for i, e in enumerate(es)
        ]
        mods += [(f"tgate{lv}.{t}", g) for lv, d in enumerate(model.task_gates) for t, g in d.items()]
        mods += [(f"sgate{lv}", g) for lv, g in enumerate(model.shared_gates)]
        return mods
    mods = [(f"shared.{i}", e) for i, e in enumerate(model.experts)]
    mods += [(f"task.{t}.{i}", e) for t, es in model.task_experts.items() for i, e in enumerate(es)]
    mods += [(f"gate.{t}", g) for t, g in model.gates.items()]
    return mods


def _check_everything_learns(model, losses):
    model.zero_grad(set_to_none=True)
    losses.sum().backward(retain_graph=True)
    for name, module in _expert_and_gate_modules(model):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.norm()) for g in grads) > 0, name
    model.zero_grad(set_to_none=True)


def _check_modes(model, inputs, loss_fn, vmap_full=True):
    """exact vs exact_vmap (both the all-vmap path and, with a shared representation, the z path) and rep."""
    shared, task = _split(model)

    def forward(fn, *args):  # the same dropout masks in every pass
        torch.manual_seed(1)
        return fn(*args)

    losses = loss_fn(forward(model, inputs))
    exact = task_gradients(losses, shared, task, mode="exact", per_task_others=True).matrix
    assert exact.shape == (losses.shape[0], sum(p.numel() for p in shared))
    assert (exact.norm(dim=1) > 0).all()
    if vmap_full:
        losses = loss_fn(forward(model, inputs))
        full = task_gradients(losses, shared, task, mode="exact_vmap", per_task_others=True).matrix
        assert float((full - exact).abs().max()) <= 1e-5 * max(1.0, float(exact.abs().max()))
    if model.has_shared_representation:
        z = model.encode(inputs)
        losses = loss_fn(forward(model.decode, z))
        via_z = task_gradients(losses, shared, task, mode="exact_vmap", rep=z, per_task_others=True).matrix
        assert float((via_z - exact).abs().max()) <= 1e-5 * max(1.0, float(exact.abs().max()))
        z = model.encode(inputs)
        losses = loss_fn(forward(model.decode, z))
        rep = task_gradients(losses, [z], task, mode="rep", per_task_others=True).matrix
        assert rep.shape == (losses.shape[0], z.numel())
        assert (rep.norm(dim=1) > 0).all()
    return exact


# -- gates and arguments -------------------------------------------------------------------------------------
def test_smooth_step_matches_hazimeh_eq3():
    gamma = 2.0
    t = torch.tensor([-5.0, -1.0, -0.5, 0.0, 0.5, 1.0, 5.0])
    cubic = [-2 / 8 * v**3 + 0.75 * v + 0.5 for v in (-0.5, 0.0, 0.5)]  # -2/γ³ t³ + 3/(2γ) t + 1/2, γ = 2
    expected = [0.0, 0.0, *cubic, 1.0, 1.0]
    assert torch.allclose(smooth_step(t, gamma), torch.tensor(expected), atol=1e-7)
    # C¹ at the knots: within eps of a knot the step is O(eps²) from its constant piece
    eps = 1e-3
    for knot, value in ((-gamma / 2, 0.0), (gamma / 2, 1.0)):
        k = torch.tensor([knot - eps, knot + eps], dtype=torch.float64)
        assert torch.allclose(smooth_step(k, gamma), torch.full((2,), value, dtype=torch.float64), atol=2e-6)


def test_dselect_gate_against_a_loop_over_codes():
    torch.manual_seed(0)
    gate = DSelectGate(5, num_experts=8, num_nonzeros=3, gamma=1.0)
    with torch.no_grad():  # spread the logits so the smooth step is not saturated nor flat
        gate.z_logits.weight.normal_(0, 0.3)
    f = torch.randn(4, 5)
    with torch.no_grad():
        weights = gate(f)
        z = gate.z_logits(f).reshape(4, 3, 3)
        alpha = torch.softmax(gate.w_logits(f), dim=-1)
    loop = torch.zeros(4, 8)
    for b in range(4):
        for i in range(3):
            s = smooth_step(z[b, i], 1.0)
            for e in range(8):
                bits = [(e >> (2 - j)) & 1 for j in range(3)]
                r = math.prod(float(s[j]) if bits[j] else 1 - float(s[j]) for j in range(3))
                loop[b, e] += float(alpha[b, i]) * r
    assert torch.allclose(weights, loop, atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(4), atol=1e-6)
    assert torch.allclose(gate.selectors(f).sum(-1), torch.ones(4, 3), atol=1e-6)
    # LibMTL / official initialisation ranges
    assert float(gate.w_logits.weight.detach().abs().max()) <= 0.05


def test_moe_arguments_defaults_and_errors():
    assert moe_arguments("synthetic", "mmoe", {}) == {"num_experts": 4}
    assert moe_arguments("synthetic", "dselect_k", {}) == {"num_experts": 4, "num_nonzeros": 2, "gamma": 1.0}
    assert moe_arguments("synthetic", "PLE", {"num_levels": 1})["num_levels"] == 1
    assert moe_arguments("synthetic", "hps", {"hidden": 3}) == {}
    cases = [
        ("hps", {"num_experts": 2}, "only apply to the MoE"),
        ("mmoe", {"num_levels": 2}, "takes MoE argument"),
        ("mmoe", {"num_experts": 0}, "num_experts must be an integer >= 1"),
        ("cgc", {"num_task_experts": -1}, "num_task_experts"),
        ("dselect_k", {"num_experts": 3}, "power of 2"),
        ("dselect_k", {"num_experts": 2, "num_nonzeros": 3}, "num_nonzeros must be <="),
        ("dselect_k", {"gamma": 0.0}, "gamma"),
        ("ple", {"num_levels": True}, "num_levels"),
    ]
    for arch, kwargs, match in cases:
        with pytest.raises(ConfigError, match=match):
            moe_arguments("synthetic", arch, kwargs)
    ds = build_dataset("synthetic", n_train=8, n_val=4, n_test=4)
    with pytest.raises(ConfigError, match="num_levels must be <= 2"):
        ds.build_model("ple", num_levels=3)
    with pytest.raises(ConfigError, match="supports architectures"):
        ds.build_model("moe")


def test_references_of_moe_architectures_are_the_hps_rows():
    for dataset in ("qm9", "nyuv2", "cityscapes", "office31", "office_home"):
        for arch in MOE_ARCHITECTURES:
            assert resolve(dataset, arch, None) == resolve(dataset, "hps", None)
            assert resolve(dataset, arch, None)[0] is not None


# -- synthetic -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic():
    return build_dataset("synthetic", n_train=64, n_val=16, n_test=16)


@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_synthetic(arch, synthetic):
    torch.manual_seed(0)
    model = synthetic.build_model(arch, hidden=16)
    assert model.has_shared_representation == (arch in SINGLE_INPUT_REP)
    x, y = next(synthetic.loader("train", 8, False, 0, 0))
    preds = model(x)
    assert {t: tuple(v.shape) for t, v in preds.items()} == {t: (8, 1) for t in synthetic.task_names}
    _check_everything_learns(model, synthetic.losses(preds, y))
    exact = _check_modes(model, x, lambda p: synthetic.losses(p, y))
    if arch in ("mmoe", "dselect_k"):  # 4 full MLP experts 16-16-16
        assert exact.shape[1] == 4 * (16 * 16 + 16 + 16 * 16 + 16)
    if arch == "ple":  # shared: 1 expert's two layers + the level-0 shared gate over 1 + 3·1 experts
        assert exact.shape[1] == (16 * 16 + 16) * 2 + (16 * 4 + 4)


def test_synthetic_ple_levels_and_cgc_counts(synthetic):
    model = synthetic.build_model("ple", hidden=8, num_levels=1, num_experts=2, num_task_experts=0)
    assert len(model.shared_gates) == 0 and len(model.shared_experts[0]) == 2
    x, _ = next(synthetic.loader("train", 4, False, 0, 0))
    assert model(x)["t0"].shape == (4, 1)
    cgc = synthetic.build_model("cgc", hidden=8, num_experts=2, num_task_experts=3)
    assert len(cgc.experts) == 2 and all(len(e) == 3 for e in cgc.task_experts.values())
    assert cgc.gates["t1"](x).shape == (4, 5)


@pytest.mark.parametrize("arch,grad_mode", [(a, "rep") for a in SINGLE_INPUT_REP] + [("ple", "exact_vmap")])
def test_synthetic_training_with_db_mtl(arch, grad_mode):
    config = TrainConfig(
        dataset="synthetic",
        method="db_mtl",
        architecture=arch,
        grad_mode=grad_mode,
        seed=0,
        epochs=2,
        batch_size=32,
        dataset_kwargs={"n_train": 96, "n_val": 32, "n_test": 32, "hidden": 16},
        model_kwargs={"num_experts": 2} if arch != "dselect_k" else {},
    )
    records = fit(config)
    assert len(records) == 2 and all(math.isfinite(r["val_delta_p"]) for r in records)


def test_ple_refuses_rep_mode():
    config = TrainConfig(dataset="synthetic", method="ew", architecture="ple", grad_mode="rep")
    with pytest.raises(ConfigError, match="grad_mode 'rep'"):
        Trainer(config, dataset=build_dataset("synthetic", n_train=8, n_val=4, n_test=4))


# -- QM9 -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qm9():
    torch.set_num_threads(1)
    return build_dataset("qm9", limit=60, progress=False)


def test_mpnn_stages_compose_to_the_encoder(qm9):
    torch.manual_seed(0)
    family = MPNNFamily(num_node_features=11, num_edge_features=5, dim=8, steps=2, set2set_steps=2)
    enc = family.encoder()
    batch, _ = next(qm9.loader("train", 6, False, 0, 0))
    nodes, readout = MPNNNodes(enc), MPNNReadout(enc)
    assert torch.allclose(readout(nodes(batch, batch), batch), enc(batch), atol=1e-6)


@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_qm9(arch, qm9):
    torch.manual_seed(0)
    kwargs = {"dim": 4, "steps": 1, "set2set_steps": 1}
    kwargs.update({"num_experts": 2} if arch != "cgc" else {})
    model = qm9.build_model(arch, **kwargs)
    batch, y = next(qm9.loader("train", 6, False, 0, 0))
    preds = model(batch)
    assert {t: tuple(v.shape) for t, v in preds.items()} == {t: (6, 1) for t in QM9_TASKS}
    assert model.has_shared_representation == (arch in SINGLE_INPUT_REP)
    _check_everything_learns(model, qm9.losses(preds, y))
    _check_modes(model, batch, lambda p: qm9.losses(p, y))


def test_qm9_training_one_epoch(qm9):
    config = TrainConfig(
        dataset="qm9",
        method="db_mtl",
        architecture="mmoe",
        grad_mode="rep",
        epochs=1,
        batch_size=8,
        max_steps_per_epoch=2,
        dataset_kwargs={"limit": 60, "progress": False},
        model_kwargs={"dim": 8, "steps": 1, "set2set_steps": 1, "num_experts": 2},
        device="cpu",
    )
    records = fit(config, dataset=qm9)
    assert len(records) == 1 and math.isfinite(records[0]["val_delta_p"])


# -- vision --------------------------------------------------------------------------------------------------
class TinyTrunk(torch.nn.Module):
    """A ResNet-shaped trunk (stem + 4 stages, ``channels``) small enough for quick CPU tests."""

    def __init__(self):
        super().__init__()
        self.channels = [4, 8, 8, 8]

        def block(cin, cout, stride):
            conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
            return torch.nn.Sequential(conv, torch.nn.BatchNorm2d(cout), torch.nn.ReLU())

        self.stem = block(3, 4, 2)
        self.layers = torch.nn.ModuleList([block(4, 4, 1), block(4, 8, 2), block(8, 8, 1), block(8, 8, 1)])


class TinyFamily(ResNetFamily):
    def __init__(self):
        super().__init__("tiny", dilated=False, pool=2)
        self.unit_inputs, self.out_channels = [3, 4, 4, 8, 8], 8

    def _trunk(self):
        return TinyTrunk()

    def encoder(self):
        trunk = self._trunk()
        return torch.nn.Sequential(trunk.stem, *trunk.layers)


SMALL = ResNetFamily("resnet18", dilated=False, pool=2)
TINY = TinyFamily()
NYU_HEADS = {"segmentation": 13, "depth": 1, "normal": 3}
SIZE = (32, 32)


def _dense_loss(preds):
    g = torch.Generator().manual_seed(0)
    targets = {
        "segmentation": torch.randint(-1, 13, (2, *SIZE), generator=g),
        "depth": torch.rand(2, 1, *SIZE, generator=g) * 5,
        "normal": torch.nn.functional.normalize(torch.randn(2, 3, *SIZE, generator=g), dim=1),
    }
    kinds = {"segmentation": "segmentation", "depth": "depth", "normal": "normal"}
    return torch.stack([LOSSES[kinds[t]](preds[t], targets[t]) for t in NYU_HEADS])


@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_dense_tiny_experts(arch):
    torch.manual_seed(0)
    kwargs = (
        {"num_experts": 2} if arch in ("mmoe", "dselect_k") else {"num_levels": 3} if arch == "ple" else {}
    )
    model = build_dense_moe_model(arch, NYU_HEADS, SIZE, family=TINY, **kwargs)
    x = torch.randn(2, 3, *SIZE)
    preds = model(x)
    assert {t: tuple(v.shape) for t, v in preds.items()} == {
        "segmentation": (2, 13, *SIZE),
        "depth": (2, 1, *SIZE),
        "normal": (2, 3, *SIZE),
    }
    _check_everything_learns(model, _dense_loss(preds))
    _check_modes(model, x, _dense_loss, vmap_full=True)


@pytest.mark.slow
@pytest.mark.parametrize("arch", MOE_ARCHITECTURES)
def test_dense_resnet18_experts(arch):
    torch.manual_seed(0)
    kwargs = {"num_experts": 1} if arch in ("cgc", "ple") else {"num_experts": 2}
    model = build_dense_moe_model(arch, NYU_HEADS, SIZE, family=SMALL, **kwargs)
    x = torch.randn(2, 3, *SIZE)
    _check_everything_learns(model, _dense_loss(model(x)))
    _check_modes(model, x, _dense_loss, vmap_full=False)


@pytest.mark.slow
def test_nyuv2_builds_moe_models_with_dilated_resnet50(tmp_path):
    root = write_dense(tmp_path / "nyu", 3, 2, SIZE, 13)
    ds = build_dataset("nyuv2", root=str(root), resolution=SIZE)
    x, targets = next(ds.loader("train", 2, False, 0, 0))
    for arch in MOE_ARCHITECTURES:
        kwargs = {"num_experts": 2} if arch == "dselect_k" else {"num_experts": 1}
        model = _quiet(ds.build_model, arch, **kwargs)
        preds = model(x)
        assert preds["segmentation"].shape == (2, 13, *SIZE)
        assert torch.isfinite(ds.losses(preds, targets)).all()
        assert isinstance(model.experts[0] if arch != "ple" else model.shared_experts[0][0], torch.nn.Module)
    with pytest.raises(ConfigError, match="cross_stitch_same"):
        ds.build_model("mmoe", cross_stitch_same=0.5)


@pytest.mark.parametrize("arch", [a for a in MOE_ARCHITECTURES if a != "ple"])
def test_office_multi_input(arch):
    torch.manual_seed(0)
    domains = ("amazon", "dslr")
    kwargs = {"num_experts": 1} if arch == "cgc" else {"num_experts": 2}  # a gate over one expert is constant
    model = _quiet(build_office_moe_model, arch, domains, 5, hidden_dim=16, **kwargs)
    assert isinstance(model, MixtureOfExperts) and not model.has_shared_representation
    x = {d: torch.randn(2, 3, 32, 32) for d in domains}
    y = {d: torch.tensor([0, 4]) for d in domains}
    preds = model(x)
    assert {d: tuple(v.shape) for d, v in preds.items()} == {d: (2, 5) for d in domains}

    def loss(p):
        return torch.stack([torch.nn.functional.cross_entropy(p[d], y[d]) for d in domains])

    _check_everything_learns(model, loss(preds))
    _check_modes(model, x, loss, vmap_full=False)


@pytest.mark.slow
def test_office_exact_vmap_through_resnet18_experts():
    torch.manual_seed(0)
    domains = ("amazon", "dslr")
    model = _quiet(build_office_moe_model, "mmoe", domains, 5, hidden_dim=16, num_experts=2)
    x = {d: torch.randn(2, 3, 32, 32) for d in domains}
    y = {d: torch.tensor([0, 4]) for d in domains}

    def loss(p):
        return torch.stack([torch.nn.functional.cross_entropy(p[d], y[d]) for d in domains])

    _check_modes(model, x, loss, vmap_full=True)


def test_office_refuses_ple():
    with pytest.raises(ConfigError, match="PLE needs one input"):
        build_office_moe_model("ple", ("a", "b"), 3)
