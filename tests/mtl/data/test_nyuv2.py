"""NYUv2 in the published MTAN/LibMTL .npy layout: loader shapes and values, splits, errors, augmentation."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mtl.config import TrainConfig
from mtl.data import build_dataset
from mtl.data.dense import SCALES, augment_sample, horizontal_flip, random_scale_crop
from mtl.data.references import NYUV2_STL
from mtl.errors import ConfigError, DatasetError
from mtl.train import fit
from tests.mtl.data.vision_fixtures import (  # noqa: F401  (single_thread is a fixture)
    LABEL_IGNORE_COLS,
    NORMAL_INVALID_ROWS,
    band,
    position_sample,
    single_thread,
    write_dense,
)

pytestmark = pytest.mark.usefixtures("single_thread")

SMALL = (16, 32)


def _nyu(root, **kw):
    return build_dataset("nyuv2", root=str(root), **kw)


def _to_chw(sample):
    out = {}
    for k, v in sample.items():
        t = torch.from_numpy(v)
        out[k] = t.long() if k == "label" else (t[None] if t.dim() == 2 else t.permute(2, 0, 1))
    return out


def test_full_resolution_loader_shapes_dtypes_and_values(tmp_path):
    write_dense(tmp_path, n_train=3, n_test=2, resolution=(288, 384), num_classes=13)
    ds = _nyu(tmp_path, augment=False)
    assert [ds.split_size(s) for s in ("train", "val", "test")] == [2, 1, 2]
    image, targets = next(iter(ds.loader("test", batch_size=2, shuffle=False, seed=0, epoch=0)))
    assert image.shape == (2, 3, 288, 384) and image.dtype == torch.float32
    assert targets["segmentation"].shape == (2, 288, 384) and targets["segmentation"].dtype == torch.int64
    assert targets["depth"].shape == (2, 1, 288, 384) and targets["depth"].dtype == torch.float32
    assert targets["normal"].shape == (2, 3, 288, 384) and targets["normal"].dtype == torch.float32
    # exactly the files (the published "val" folder is our test split), HWC -> CHW
    for i in range(2):
        raw = {k: np.load(tmp_path / "val" / k / f"{i}.npy") for k in ("image", "label", "depth", "normal")}
        assert torch.equal(image[i], torch.from_numpy(raw["image"]).permute(2, 0, 1))
        assert torch.equal(targets["segmentation"][i], torch.from_numpy(raw["label"]).long())
        assert torch.equal(targets["depth"][i], torch.from_numpy(raw["depth"]).permute(2, 0, 1))
        assert torch.equal(targets["normal"][i], torch.from_numpy(raw["normal"]).permute(2, 0, 1))
    assert (targets["segmentation"] == -1).any()  # the ignore label survives
    assert ds.task_names == ["segmentation", "depth", "normal"]
    assert ds.reference == NYUV2_STL and set(ds.reference) == set(ds.higher_is_better)
    for task, metrics in ds.reference.items():
        assert set(metrics) == set(ds.higher_is_better[task])


def test_validation_carve_out_is_seeded_disjoint_and_test_is_published_val(tmp_path):
    write_dense(tmp_path, n_train=10, n_test=3, resolution=SMALL, num_classes=13)
    a = _nyu(tmp_path, resolution=SMALL, val_fraction=0.2, split_seed=0)
    b = _nyu(tmp_path, resolution=SMALL, val_fraction=0.2, split_seed=0)
    c = _nyu(tmp_path, resolution=SMALL, val_fraction=0.2, split_seed=1)
    train, val, test = (a.split_indices[s] for s in ("train", "val", "test"))
    assert train[0] == val[0] == "train" and test == ("val", [0, 1, 2])
    assert len(val[1]) == 2 and len(train[1]) == 8
    assert sorted(train[1] + val[1]) == list(range(10))
    assert b.split_indices == a.split_indices
    assert c.split_indices["val"] != a.split_indices["val"]
    small = _nyu(tmp_path, resolution=SMALL, val_fraction=0.2, subset=3)
    assert [small.split_size(s) for s in ("train", "val", "test")] == [3, 2, 3]
    assert set(small.split_indices["train"][1]) < set(train[1])


def test_root_from_environment_and_clear_errors(tmp_path, monkeypatch):
    write_dense(tmp_path, n_train=2, n_test=1, resolution=SMALL, num_classes=13)
    monkeypatch.setenv("MTL_DATA_NYUV2", str(tmp_path))
    assert build_dataset("nyuv2", resolution=SMALL).split_size("test") == 1
    monkeypatch.delenv("MTL_DATA_NYUV2")
    with pytest.raises(DatasetError, match="MTL_DATA_NYUV2"):
        build_dataset("nyuv2")
    with pytest.raises(DatasetError, match="does not exist"):
        _nyu(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="val_fraction"):
        _nyu(tmp_path, resolution=SMALL, val_fraction=0.0)


def test_missing_file_names_the_expected_path(tmp_path):
    write_dense(tmp_path, n_train=3, n_test=1, resolution=SMALL, num_classes=13)
    (tmp_path / "train" / "depth" / "1.npy").unlink()
    with pytest.raises(DatasetError, match=r"expected .*train/depth/1\.npy"):
        _nyu(tmp_path, resolution=SMALL)


def test_missing_folder_and_empty_folder(tmp_path):
    write_dense(tmp_path, n_train=3, n_test=1, resolution=SMALL, num_classes=13)
    for f in (tmp_path / "val" / "normal").iterdir():
        f.unlink()
    (tmp_path / "val" / "normal").rmdir()
    with pytest.raises(DatasetError, match=r"expected folder .*val/normal"):
        _nyu(tmp_path, resolution=SMALL)
    with pytest.raises(DatasetError, match=r"expected folder .*train/image"):
        _nyu(tmp_path / "train", resolution=SMALL)


def test_malformed_files_are_reported(tmp_path):
    write_dense(tmp_path, n_train=3, n_test=1, resolution=SMALL, num_classes=13)
    # published resolution is 288×384: the small fixture is rejected with the file and both shapes
    with pytest.raises(DatasetError, match=r"image/0\.npy: shape \(16, 32, 3\), expected \(288, 384, 3\)"):
        _nyu(tmp_path)
    np.save(tmp_path / "train" / "normal" / "2.npy", np.zeros((16, 32), np.float32))
    with pytest.raises(DatasetError, match=r"train/normal/2\.npy: shape \(16, 32\), expected \(16, 32, 3\)"):
        _nyu(tmp_path, resolution=SMALL)
    np.save(tmp_path / "train" / "normal" / "2.npy", np.zeros((16, 32, 3), np.float32))
    (tmp_path / "train" / "label" / "0.npy").write_bytes(b"not an npy file")
    with pytest.raises(DatasetError, match=r"train/label/0\.npy is not a valid \.npy file"):
        _nyu(tmp_path, resolution=SMALL)


def test_out_of_range_labels_are_reported_when_loaded(tmp_path):
    write_dense(tmp_path, n_train=2, n_test=1, resolution=SMALL, num_classes=13)
    label = np.zeros(SMALL, np.float32)
    label[0, 0] = 13
    np.save(tmp_path / "val" / "label" / "0.npy", label)
    ds = _nyu(tmp_path, resolution=SMALL)
    with pytest.raises(DatasetError, match=r"val/label/0\.npy: labels in \[0, 13\]"):
        next(iter(ds.loader("test", 1, shuffle=False, seed=0, epoch=0)))


# -- augmentation -----------------------------------------------------------------------------------------
def check_position_consistency(aug, height, width, num_classes=13):
    """Every modality of an augmented "position" sample must come from the same source pixels."""
    image, label, depth, normal = aug["image"], aug["label"], aug["depth"][0], aug["normal"]
    assert image.shape == (3, height, width) and label.shape == (height, width)
    flipped = bool(image[1, 0, 0] > image[1, 0, -1])
    # depth = (1 + r·W + c) / scale: exactly one scale makes it integral again
    found = [s for s in SCALES if float((depth * s - 1 - (depth * s - 1).round()).abs().max()) < 0.05]
    assert len(found) == 1, found
    scale = found[0]
    src = (depth * scale - 1).round().long()
    r_src, c_src = src // width, src % width
    # label is the same function of the same source pixel, ignore band included
    expected = (r_src + 2 * c_src) % num_classes
    c0, c1 = band(width, LABEL_IGNORE_COLS)
    expected[(c_src >= c0) & (c_src < c1)] = -1
    assert torch.equal(label, expected)
    # normal validity mask follows the same source pixels exactly
    r0, r1 = band(height, NORMAL_INVALID_ROWS)
    invalid = (normal == 0).all(dim=0)
    assert torch.equal(invalid, (r_src >= r0) & (r_src < r1))
    # the image (bilinear, aligned corners) points at the same place within one pixel
    r_cont, c_cont = image[0] * (height - 1), image[1] * (width - 1)
    assert float((r_cont - r_src).abs().max()) <= 1.0 + 1e-4
    assert float((c_cont - c_src).abs().max()) <= 1.0 + 1e-4
    # crop size matches the scale
    h = int(height / scale)
    assert math.isclose(float(r_cont.max() - r_cont.min()), h - 1, abs_tol=1e-3)
    # valid normals are unit vectors pointing like the field at the source, x negated under the flip
    field = torch.stack(
        [(c_cont - width / 2) / width, (r_cont - height / 2) / height, torch.ones_like(r_cont)]
    )
    field = F.normalize(field, dim=0)
    if flipped:
        field[0] = -field[0]
    valid = ~invalid
    assert torch.allclose(normal.norm(dim=0)[valid], torch.ones(int(valid.sum())), atol=1e-5)
    assert torch.allclose(normal[:, valid], field[:, valid], atol=2e-2)
    return scale, flipped


def test_augmentation_keeps_image_label_depth_normal_consistent():
    h, w = 48, 64
    sample = _to_chw(position_sample(h, w, 13))
    seen = set()
    for seed in range(24):
        seen.add(check_position_consistency(augment_sample(sample, seed), h, w))
    assert {s for s, _ in seen} == set(SCALES) and {f for _, f in seen} == {True, False}


def test_flip_negates_normal_x_and_scale_divides_depth():
    h, w = 16, 24
    sample = _to_chw(position_sample(h, w, 13))
    flipped = horizontal_flip(sample)
    assert torch.equal(flipped["normal"][0], -torch.flip(sample["normal"][0], dims=[-1]))
    assert torch.equal(flipped["normal"][1:], torch.flip(sample["normal"][1:], dims=[-1]))
    assert torch.equal(flipped["depth"], torch.flip(sample["depth"], dims=[-1]))
    assert torch.equal(sample["normal"][0, 5, 3], -flipped["normal"][0, 5, w - 4])
    cropped = random_scale_crop(sample, torch.Generator().manual_seed(0), scales=(1.5,))
    src = cropped["depth"][0] * 1.5 - 1
    assert float((src - src.round()).abs().max()) < 1e-3  # metric depth shrinks by the zoom factor
    identity = random_scale_crop(sample, torch.Generator().manual_seed(0), scales=(1.0,))
    assert torch.equal(identity["depth"], sample["depth"]) and torch.equal(identity["label"], sample["label"])
    assert torch.allclose(identity["image"], sample["image"])


def test_loader_augments_train_only_deterministically_at_full_resolution(tmp_path):
    write_dense(tmp_path, n_train=3, n_test=1, resolution=(288, 384), num_classes=13, kind="position")
    ds = _nyu(tmp_path, augment=True, val_fraction=0.34)
    assert ds.split_size("train") == 2

    def batches(epoch):
        return list(ds.loader("train", batch_size=2, shuffle=True, seed=3, epoch=epoch))

    first, again, other = batches(0), batches(0), batches(1)
    for (xa, ta), (xb, tb) in zip(first, again):
        assert torch.equal(xa, xb) and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not torch.equal(first[0][0], other[0][0])
    image, targets = first[0]
    for i in range(image.shape[0]):
        aug = {
            "image": image[i],
            "label": targets["segmentation"][i],
            "depth": targets["depth"][i],
            "normal": targets["normal"][i],
        }
        check_position_consistency(aug, 288, 384)
    # evaluation splits are never augmented
    x, _ = next(iter(ds.loader("test", 1, shuffle=False, seed=3, epoch=0)))
    assert torch.equal(x[0], torch.from_numpy(np.load(tmp_path / "val" / "image" / "0.npy")).permute(2, 0, 1))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_epoch_db_mtl_on_a_tiny_fixture(tmp_path):
    write_dense(tmp_path, n_train=6, n_test=2, resolution=(32, 32), num_classes=13)
    config = TrainConfig(
        dataset="nyuv2",
        method="db_mtl",
        seed=0,
        epochs=1,
        batch_size=2,
        dataset_kwargs={"root": str(tmp_path), "resolution": [32, 32], "val_fraction": 0.2},
    )
    (record,) = fit(config)
    assert record["steps"] == 2  # 5 training samples: the trailing 1-sample batch is dropped
    for key in (
        "train_loss/segmentation",
        "train_loss/depth",
        "train_loss/normal",
        "val/segmentation/miou",
        "test/normal/median",
        "test/depth/rel_err",
        "val_delta_p",
        "test_delta_p",
        "grad_norm/normal",
    ):
        assert math.isfinite(record[key]), key
