"""Cityscapes in the published MTAN/LibMTL .npy layout (7 classes + depth, 128×256)."""

import math

import numpy as np
import pytest
import torch

from mtl.config import TrainConfig
from mtl.data import build_dataset
from mtl.data.references import CITYSCAPES_STL
from mtl.errors import DatasetError
from mtl.train import fit
from tests.mtl.data.vision_fixtures import single_thread, write_dense  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("label_dir", ["label", "label_7"])
def test_loader_shapes_values_and_tasks(tmp_path, label_dir):
    write_dense(
        tmp_path,
        n_train=3,
        n_test=2,
        resolution=(128, 256),
        num_classes=7,
        normals=False,
        label_dir=label_dir,
    )
    ds = build_dataset("cityscapes", root=str(tmp_path))
    assert ds.task_names == ["segmentation", "depth"]
    assert ds.reference == CITYSCAPES_STL
    assert ds.higher_is_better == {
        "segmentation": {"miou": True, "pix_acc": True},
        "depth": {"abs_err": False, "rel_err": False},
    }
    assert [ds.split_size(s) for s in ("train", "val", "test")] == [2, 1, 2]
    image, targets = next(iter(ds.loader("train", batch_size=2, shuffle=False, seed=0, epoch=0)))
    assert image.shape == (2, 3, 128, 256)
    assert set(targets) == {"segmentation", "depth"}
    assert targets["segmentation"].shape == (2, 128, 256) and targets["depth"].shape == (2, 1, 128, 256)
    # no augmentation by default (LibMTL's Cityscapes loader has none): train batches are the files
    folder, indices = ds.split_indices["train"]
    raw = np.load(tmp_path / folder / "depth" / f"{indices[0]}.npy")
    assert torch.equal(targets["depth"][0], torch.from_numpy(raw).permute(2, 0, 1))
    assert int(targets["segmentation"].max()) <= 6 and int(targets["segmentation"].min()) >= -1


def test_depth_without_channel_axis_and_augmentation(tmp_path):
    write_dense(tmp_path, n_train=3, n_test=1, resolution=(32, 64), num_classes=7, normals=False)
    for f in (tmp_path / "train" / "depth").iterdir():
        np.save(f, np.load(f)[..., 0])  # H×W depth is accepted too
    ds = build_dataset("cityscapes", root=str(tmp_path), resolution=[32, 64], augment=True)
    image, targets = next(iter(ds.loader("train", 2, shuffle=True, seed=0, epoch=0)))
    assert image.shape == (2, 3, 32, 64) and targets["depth"].shape == (2, 1, 32, 64)


def test_errors_name_the_expected_file(tmp_path):
    write_dense(tmp_path, n_train=3, n_test=2, resolution=(32, 64), num_classes=7, normals=False)
    (tmp_path / "val" / "label" / "1.npy").unlink()
    with pytest.raises(DatasetError, match=r"expected .*val/label/1\.npy"):
        build_dataset("cityscapes", root=str(tmp_path), resolution=[32, 64])
    with pytest.raises(DatasetError, match="MTL_DATA_CITYSCAPES"):
        build_dataset("cityscapes")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_epoch_segnet_mtan(tmp_path):
    """The trainer runs an architecture without a single shared representation (per-task exact gradients)."""
    write_dense(tmp_path, n_train=4, n_test=1, resolution=(32, 64), num_classes=7, normals=False)
    config = TrainConfig(
        dataset="cityscapes",
        method="db_mtl",
        seed=0,
        epochs=1,
        batch_size=2,
        max_steps_per_epoch=1,
        architecture="segnet_mtan",
        dataset_kwargs={"root": str(tmp_path), "resolution": [32, 64]},
    )
    (record,) = fit(config)
    assert math.isfinite(record["test/segmentation/miou"]) and math.isfinite(record["grad_norm/depth"])
    assert math.isnan(record["val_delta_p"])  # no reference for SegNet
