"""Office-31 / Office-Home from image folders + LibMTL split lists (multi-input: one batch per domain)."""

import math

import pytest
import torch

from mtl.config import TrainConfig
from mtl.data import build_dataset
from mtl.data.office import IMAGENET_MEAN, IMAGENET_STD
from mtl.data.references import OFFICE31_STL, OFFICE_HOME_STL
from mtl.errors import ConfigError, DatasetError
from mtl.train import fit
from tests.mtl.data.vision_fixtures import single_thread, write_office  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = {
    "train": {"amazon": 7, "dslr": 3, "webcam": 4},
    "val": 3,
    "test": {"amazon": 5, "dslr": 2, "webcam": 3},
}


@pytest.fixture
def office31(tmp_path):
    return write_office(tmp_path / "office31", sizes=SIZES)


def _labels(path):
    return [int(line.rsplit(maxsplit=1)[1]) for line in path.read_text().splitlines() if line.strip()]


def test_tasks_reference_and_224px_imagenet_normalised_images(office31):
    ds = build_dataset("office-31", root=str(office31))
    assert ds.name == "office31" and ds.task_names == ["amazon", "dslr", "webcam"]
    assert ds.reference == OFFICE31_STL and ds.higher_is_better == {d: {"acc": True} for d in ds.task_names}
    inputs, targets = next(iter(ds.loader("test", batch_size=2, shuffle=False, seed=0, epoch=0)))
    assert set(inputs) == set(targets) == {"amazon", "dslr", "webcam"}
    for d, x in inputs.items():
        assert x.shape[1:] == (3, 224, 224) and x.dtype == torch.float32
        assert targets[d].dtype == torch.int64 and targets[d].shape == (x.shape[0],)
    # a flat-colour JPEG: every pixel is (colour/255 − ImageNet mean) / std
    from PIL import Image

    first = (office31 / ds.items["test"]["amazon"][0][0]).relative_to(office31)
    with Image.open(office31 / first) as img:
        rgb = torch.tensor(img.convert("RGB").getpixel((5, 5)), dtype=torch.float32) / 255
    expected = (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(inputs["amazon"][0, :, 100, 100], expected, atol=0.05)


def test_training_epoch_follows_the_largest_domain_with_full_batches(office31):
    ds = build_dataset("office31", root=str(office31), image_size=32)
    assert ds.split_size("train") == 7 and ds.domain_sizes("train") == {"amazon": 7, "dslr": 3, "webcam": 4}
    plan = ds.batch_plan("train", batch_size=3, shuffle=True, seed=1, epoch=0)
    assert [len(b) for b in plan["amazon"]] == [3, 3, 3]  # ceil(7 / 3) steps, amazon restarts a permutation
    for d, n in ds.domain_sizes("train").items():
        assert all(len(b) == min(3, n) for b in plan[d])
        flat = [i for b in plan[d] for i in b]
        assert sorted(flat[:n]) == list(range(n))  # the first pass is a permutation
    assert plan == ds.batch_plan("train", batch_size=3, shuffle=True, seed=1, epoch=0)
    assert plan != ds.batch_plan("train", batch_size=3, shuffle=True, seed=1, epoch=1)
    batches = list(ds.loader("train", batch_size=3, shuffle=True, seed=1, epoch=0))
    assert len(batches) == 3
    assert all(set(inputs) == {"amazon", "dslr", "webcam"} for inputs, _ in batches)


def test_evaluation_visits_every_image_once_with_every_domain_in_every_batch(office31):
    ds = build_dataset("office31", root=str(office31), image_size=32)
    batches = list(ds.loader("test", batch_size=2, shuffle=False, seed=0, epoch=0))
    assert len(batches) == 2  # min(max ceil(n/2), min n) = min(3, 2)
    for d in ds.task_names:
        seen = torch.cat([t[d] for _, t in batches]).tolist()
        assert seen == _labels(office31 / f"{d}_test.txt")


def test_office_home_names_and_layout(tmp_path):
    domains = ("Art", "Clipart", "Product", "Real_World")
    root = write_office(tmp_path, domains=domains, office31_layout=False, num_classes=65)
    ds = build_dataset("office-home", root=str(root), image_size=32)
    assert ds.name == "office_home" and ds.task_names == list(domains) and ds.num_classes == 65
    assert ds.reference == OFFICE_HOME_STL
    assert str(ds.items["train"]["Real_World"][0][0]).startswith(str(root / "Real_World"))
    small = build_dataset("office_home", root=str(root), image_size=32, subset=2)
    assert small.domain_sizes("train") == dict.fromkeys(domains, 2)
    assert set(small.items["train"]["Art"]) < set(ds.items["train"]["Art"])


def test_lists_dir_and_errors_name_the_expected_file(tmp_path, monkeypatch):
    root = write_office(tmp_path / "data")
    lists = tmp_path / "lists"
    lists.mkdir()
    for f in root.glob("*.txt"):
        f.rename(lists / f.name)
    with pytest.raises(DatasetError, match=r"expected .*data/amazon_train\.txt"):
        build_dataset("office31", root=str(root))
    assert build_dataset("office31", root=str(root), lists_dir=str(lists)).split_size("val") == 3
    monkeypatch.setenv("MTL_DATA_OFFICE31", str(root))
    assert build_dataset("office31", lists_dir=str(lists)).split_size("val") == 3
    monkeypatch.delenv("MTL_DATA_OFFICE31")
    with pytest.raises(DatasetError, match="MTL_DATA_OFFICE31"):
        build_dataset("office31")

    listed = (lists / "dslr_val.txt").read_text().splitlines()
    missing = listed[1].rsplit(maxsplit=1)[0]
    (root / missing).unlink()
    with pytest.raises(DatasetError, match=rf"expected .*{missing} \(listed in .*dslr_val\.txt line 2\)"):
        build_dataset("office31", root=str(root), lists_dir=str(lists))
    (lists / "dslr_val.txt").write_text("no_label_here.jpg\n")
    with pytest.raises(DatasetError, match=r"dslr_val\.txt line 1: expected 'relative/path\.jpg label'"):
        build_dataset("office31", root=str(root), lists_dir=str(lists))
    (lists / "dslr_val.txt").write_text(f"{listed[0].rsplit(maxsplit=1)[0]} 31\n")
    with pytest.raises(DatasetError, match=r"line 1: label 31 outside 0\.\.30"):
        build_dataset("office31", root=str(root), lists_dir=str(lists))
    with pytest.raises(ConfigError, match="image_size"):
        build_dataset("office31", root=str(root), lists_dir=str(lists), image_size=8)


def test_unreadable_image_is_reported_when_loaded(office31):
    ds = build_dataset("office31", root=str(office31), image_size=32)
    path = ds.items["val"]["webcam"][0][0]
    path.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=rf"{path.name} is not a readable image"):
        list(ds.loader("val", batch_size=4, shuffle=False, seed=0, epoch=0))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_epoch_db_mtl_multi_input(office31):
    config = TrainConfig(
        dataset="office31",
        method="db_mtl",
        seed=0,
        epochs=1,
        batch_size=3,
        dataset_kwargs={"root": str(office31), "image_size": 32},
    )
    (record,) = fit(config)
    assert record["steps"] == 3
    for d in ("amazon", "dslr", "webcam"):
        assert math.isfinite(record[f"train_loss/{d}"]) and math.isfinite(record[f"grad_norm/{d}"])
        assert 0.0 <= record[f"test/{d}/acc"] <= 100.0
    assert math.isfinite(record["val_delta_p"]) and math.isfinite(record["test_delta_m"])
