"""Vision architectures at tiny resolution: shapes, parameter split, per-task exact gradients, pretraining."""

import warnings

import pytest
import torch

from mtl.config import TrainConfig
from mtl.data.dense import LOSSES
from mtl.errors import ConfigError
from mtl.gradients import task_gradients
from mtl.models import RandomInitWarning, ResNetTrunk
from mtl.models.cross_stitch import CrossStitchUnit
from mtl.models.vision import DENSE_ARCHITECTURES, build_dense_model, build_office_model
from mtl.train import Trainer
from tests.mtl.data.vision_fixtures import single_thread, write_dense, write_office  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

NYU_HEADS = {"segmentation": 13, "depth": 1, "normal": 3}
KINDS = {"segmentation": "segmentation", "depth": "depth", "normal": "normal"}
SIZE = (32, 32)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        return fn(*args, **kwargs)


def _dense_targets(batch=2):
    g = torch.Generator().manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(batch, 3, *SIZE, generator=g), dim=1)
    return {
        "segmentation": torch.randint(-1, 13, (batch, *SIZE), generator=g),
        "depth": torch.rand(batch, 1, *SIZE, generator=g) * 5,
        "normal": normal,
    }


def _check_split(model):
    shared, task = list(model.shared_parameters()), list(model.task_parameters())
    ids_shared, ids_task = {id(p) for p in shared}, {id(p) for p in task}
    assert not ids_shared & ids_task
    assert ids_shared | ids_task == {id(p) for p in model.parameters()}
    return shared, task


@pytest.mark.parametrize("arch", DENSE_ARCHITECTURES)
def test_dense_architecture_forward_backward_and_exact_task_gradients(arch):
    torch.manual_seed(0)
    model = _quiet(build_dense_model, arch, NYU_HEADS, SIZE)
    x = torch.randn(2, 3, *SIZE)
    preds = model(x)
    assert {k: tuple(v.shape) for k, v in preds.items()} == {
        "segmentation": (2, 13, *SIZE),
        "depth": (2, 1, *SIZE),
        "normal": (2, 3, *SIZE),
    }
    assert model.has_shared_representation == (arch in ("hps", "segnet"))
    shared, task = _check_split(model)
    targets = _dense_targets()
    losses = torch.stack([LOSSES[KINDS[t]](preds[t], targets[t]) for t in NYU_HEADS])
    grads = task_gradients(losses, shared, task, per_task_others=True, retain_graph=arch in ("hps", "segnet"))
    assert grads.matrix.shape == (3, sum(p.numel() for p in shared))
    assert torch.isfinite(grads.matrix).all() and (grads.matrix.norm(dim=1) > 0).all()
    if arch in (
        "hps",
        "segnet",
    ):  # rows add up to the gradient of the summed loss (nothing missed or doubled)
        total = torch.autograd.grad(losses.sum(), shared, allow_unused=True, materialize_grads=True)
        total = torch.cat([g.reshape(-1) for g in total])
        assert float((grads.matrix.sum(0) - total).norm() / total.norm()) < 1e-4
    # task t's loss never reaches another task's head
    heads = dict(model.heads.named_parameters())
    names = list(heads)
    positions = {n: i for i, n in enumerate(names)}
    task_index = {id(p): i for i, p in enumerate(task)}
    for t, name in enumerate(NYU_HEADS):
        for pname, p in heads.items():
            g = grads.others[t][task_index[id(p)]]
            if pname.startswith(name + "."):
                continue
            assert torch.count_nonzero(g) == 0, (name, pname, positions[pname])
    if model.has_shared_representation:
        z = model.encode(x)
        assert isinstance(z, torch.Tensor)
        model.eval()
        assert all(
            torch.allclose(a, b) for a, b in zip(model(x).values(), model.decode(model.encode(x)).values())
        )


def test_dilated_resnet50_has_output_stride_8_and_resnet18_32():
    trunk = _quiet(ResNetTrunk, "resnet50", dilated=True)
    assert trunk(torch.randn(1, 3, 32, 64)).shape == (1, 2048, 4, 8) and trunk.output_stride == 8
    assert trunk.layers[3][0].conv2.dilation == (2, 2) and trunk.layers[3][1].conv2.dilation == (4, 4)
    small = _quiet(ResNetTrunk, "resnet18")
    assert small(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    with pytest.raises(ConfigError, match="cannot dilate"):
        ResNetTrunk("resnet18", dilated=True)


@pytest.mark.parametrize("arch", ["hps", "mtan"])
def test_office_multi_input_models(arch):
    torch.manual_seed(0)
    domains = ["amazon", "dslr", "webcam"]
    model = _quiet(build_office_model, arch, domains, 31)
    assert not model.has_shared_representation
    x = {d: torch.randn(2 + i, 3, 32, 32) for i, d in enumerate(domains)}
    preds = model(x)
    assert {d: tuple(p.shape) for d, p in preds.items()} == {
        "amazon": (2, 31),
        "dslr": (3, 31),
        "webcam": (4, 31),
    }
    assert set(model({"dslr": x["dslr"]})) == {"dslr"}
    shared, task = _check_split(model)
    y = {d: torch.randint(0, 31, (p.shape[0],)) for d, p in preds.items()}
    losses = torch.stack([torch.nn.functional.cross_entropy(preds[d], y[d]) for d in domains])
    grads = task_gradients(losses, shared, task, per_task_others=True)
    assert (grads.matrix.norm(dim=1) > 0).all()
    # each domain's loss reaches only its own task-specific parameters (head, and MTAN attention)
    name_of = {id(p): n for n, p in model.named_parameters()}
    names = [name_of[id(p)] for p in task]
    for t, d in enumerate(domains):
        for name, g in zip(names, grads.others[t]):
            if any(f".{other}." in f".{name}" for other in domains if other != d):
                assert torch.count_nonzero(g) == 0, (d, name)


def test_pretrained_weights_load_from_a_local_file_and_random_init_warns(tmp_path):
    import torchvision

    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomInitWarning)
        model = build_office_model("hps", ["a", "b"], 31, pretrained_path=str(path))
    trunk = model.encoder[0]
    assert torch.equal(trunk.stem[0].weight, reference.conv1.weight)
    assert torch.equal(trunk.layers[3][1].bn2.running_var, reference.layer4[1].bn2.running_var)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, wrapped)
    trunk = ResNetTrunk("resnet18", pretrained_path=wrapped)
    assert torch.equal(trunk.layers[0][0].conv1.weight, reference.layer1[0].conv1.weight)

    with pytest.warns(RandomInitWarning, match="RANDOM weights"):
        build_office_model("hps", ["a"], 31)
    with pytest.raises(ConfigError, match="does not exist"):
        ResNetTrunk("resnet18", pretrained_path=tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match="does not fit a torchvision resnet34"):
        ResNetTrunk("resnet34", pretrained_path=path)


def test_cross_stitch_unit_initialisation_and_mixing():
    unit = CrossStitchUnit(3)
    assert torch.allclose(unit.alpha, torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]]))
    feats = [torch.full((1, 2, 2, 2), float(v)) for v in (1, 2, 3)]
    out = unit(feats)
    assert torch.allclose(out[0], torch.full((1, 2, 2, 2), 0.9 + 0.1 + 0.15))
    with torch.no_grad():
        unit.alpha.copy_(torch.eye(3))
    assert all(torch.equal(a, b) for a, b in zip(unit(feats), feats))


def test_architecture_and_argument_errors(tmp_path):
    with pytest.raises(ConfigError, match="supports architectures"):
        build_dense_model("pspnet", NYU_HEADS, SIZE)
    with pytest.raises(ConfigError, match="divisible by 32"):
        build_dense_model("segnet", NYU_HEADS, (40, 64))
    with pytest.raises(ConfigError, match="trained from scratch"):
        build_dense_model("segnet", NYU_HEADS, SIZE, pretrained_path="x.pth")
    with pytest.raises(ConfigError, match="supports architectures: hps, mtan"):
        build_office_model("cross_stitch", ["a"], 31)


@pytest.mark.filterwarnings("ignore::mtl.models.RandomInitWarning")
def test_dataset_build_model_checks_and_trainer_refuses_rep_mode(tmp_path):
    from mtl.data import build_dataset

    write_dense(tmp_path / "nyu", n_train=2, n_test=1, resolution=SIZE, num_classes=13)
    nyu = build_dataset("nyuv2", root=str(tmp_path / "nyu"), resolution=list(SIZE))
    with pytest.raises(ConfigError, match="unknown model argument"):
        nyu.build_model("hps", width=3)
    nyu.build_model("segnet")  # its STL row is picked by the trainer (mtl.data.references.DEFAULTS)
    office = write_office(tmp_path / "office")
    config = TrainConfig(
        dataset="office31",
        method="db_mtl",
        architecture="mtan",
        grad_mode="rep",
        dataset_kwargs={"root": str(office), "image_size": 32},
    )
    with pytest.raises(ConfigError, match="grad_mode 'rep'"):
        Trainer(config)
