"""Vision metrics and losses against hand-computed values on small arrays."""

import math

import pytest
import torch

from mtl.data.dense import depth_loss, normal_loss, segmentation_loss
from mtl.metrics import (
    AccuracyAccumulator,
    DenseMetricAccumulator,
    DepthErrors,
    NormalErrors,
    SegmentationConfusion,
)


def one_hot_logits(labels, num_classes):
    """Logits whose argmax is ``labels`` ([B, H, W] -> [B, C, H, W])."""
    return torch.nn.functional.one_hot(labels.clamp_min(0), num_classes).permute(0, 3, 1, 2).float()


# -- segmentation ----------------------------------------------------------------------------------
# targets 0 0 1 1 2 -1 2 0, predictions 0 1 1 1 2 0 0 0 -> confusion [[2,1,0],[0,2,0],[1,0,1]]
TARGET = torch.tensor([0, 0, 1, 1, 2, -1, 2, 0])
PRED = torch.tensor([0, 1, 1, 1, 2, 0, 0, 0])
MIOU = 100 * (2 / 4 + 2 / 3 + 1 / 2) / 3
PIXACC = 100 * 5 / 7


def test_confusion_matrix_miou_and_pixel_accuracy_over_the_split():
    seg = SegmentationConfusion(3)
    seg.update(PRED[:3].reshape(1, 1, 3), TARGET[:3].reshape(1, 1, 3))  # two batches of different sizes
    seg.update(PRED[3:].reshape(1, 1, 5), TARGET[3:].reshape(1, 1, 5))
    assert seg.matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    out = seg.compute()
    assert out["miou"] == pytest.approx(MIOU) and out["pix_acc"] == pytest.approx(PIXACC)


def test_absent_classes_are_left_out_and_out_of_range_labels_ignored():
    seg = SegmentationConfusion(5)  # classes 3 and 4 never occur
    seg.update(PRED, TARGET)
    seg.update(torch.tensor([1, 2]), torch.tensor([-1, 7]))  # ignored: −1 and a label ≥ C
    out = seg.compute()
    assert out["miou"] == pytest.approx(MIOU) and out["pix_acc"] == pytest.approx(PIXACC)
    # a class that is only predicted (false positives) counts with IoU 0
    seg = SegmentationConfusion(4)
    seg.update(torch.tensor([3, 0]), torch.tensor([0, 0]))
    assert seg.compute() == pytest.approx({"miou": 100 * (0.5 + 0.0) / 2, "pix_acc": 50.0})
    empty = SegmentationConfusion(2).compute()
    assert math.isnan(empty["miou"]) and math.isnan(empty["pix_acc"])


# -- depth -----------------------------------------------------------------------------------------
GT_DEPTH = torch.tensor([[1.0, 2.0, 0.0], [4.0, 0.0, 0.5]])
PRED_DEPTH = torch.tensor([[1.5, 1.0, 3.0], [5.0, 7.0, 0.25]])
# valid: 1, 2, 4, 0.5; |err| 0.5, 1, 1, 0.25; rel 0.5, 0.5, 0.25, 0.5


def test_depth_errors_over_all_valid_pixels_of_the_split():
    d = DepthErrors()
    d.update(PRED_DEPTH[:1, :1].reshape(1, 1, 1, 1), GT_DEPTH[:1, :1].reshape(1, 1, 1, 1))  # 1 valid pixel
    d.update(PRED_DEPTH.reshape(1, 1, 2, 3)[..., 1:], GT_DEPTH.reshape(1, 1, 2, 3)[..., 1:])  # 2 valid
    d.update(PRED_DEPTH[1:, :1].reshape(1, 1, 1, 1), GT_DEPTH[1:, :1].reshape(1, 1, 1, 1))  # 1 valid
    out = d.compute()
    assert out["abs_err"] == pytest.approx(2.75 / 4)
    assert out["rel_err"] == pytest.approx(1.75 / 4)
    # not the mean of per-batch means (which would be (0.5 + 0.625 + 1) / 3)
    assert out["abs_err"] != pytest.approx((0.5 + 0.625 + 1.0) / 3)
    nothing = DepthErrors()
    nothing.update(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    assert math.isnan(nothing.compute()["abs_err"])


def test_depth_loss_is_l1_on_valid_pixels():
    pred = PRED_DEPTH.reshape(1, 1, 2, 3).requires_grad_()
    loss = depth_loss(pred, GT_DEPTH.reshape(1, 1, 2, 3))
    assert loss.item() == pytest.approx(2.75 / 4)
    loss.backward()
    assert pred.grad.reshape(2, 3)[0, 2] == 0 and pred.grad.reshape(2, 3)[1, 1] == 0  # invalid pixels
    assert float(depth_loss(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))) == 0.0


# -- normals ---------------------------------------------------------------------------------------
def normals_at_angles(degrees, scales):
    """Ground truth (0, 0, 1); predictions at the given angles from it, with arbitrary lengths."""
    theta = torch.deg2rad(torch.tensor(degrees, dtype=torch.float32))
    pred = torch.stack([torch.sin(theta), torch.zeros_like(theta), torch.cos(theta)]) * torch.tensor(scales)
    gt = torch.zeros(3, len(degrees))
    gt[2] = 1.0
    return pred.reshape(1, 3, 1, -1), gt.reshape(1, 3, 1, -1)


def test_normal_angles_mean_median_and_within_over_the_split():
    n = NormalErrors()
    p, g = normals_at_angles([40.0, 7.0], [2.0, 1.0])
    g[..., 1] = 0.0  # second pixel invalid (all-zero ground truth)
    n.update(p, g)
    p, g = normals_at_angles([5.0, 15.0, 25.0], [0.5, 3.0, 1.0])
    n.update(p, g)
    out = n.compute()
    assert out["mean"] == pytest.approx((40 + 5 + 15 + 25) / 4, abs=1e-4)
    assert out["median"] == pytest.approx(20.0, abs=1e-4)
    assert out["within_11_25"] == pytest.approx(25.0)
    assert out["within_22_5"] == pytest.approx(50.0)
    assert out["within_30"] == pytest.approx(75.0)
    p, g = normals_at_angles([50.0], [1.0])
    n.update(p, g)
    assert n.compute()["median"] == pytest.approx(25.0, abs=1e-4)  # odd count: the middle value


def test_normal_mask_is_not_all_zero_and_angles_use_normalised_predictions():
    gt = torch.tensor([1.0, -1.0, 0.0]) / math.sqrt(2)  # components sum to 0, but valid
    pred = torch.tensor([3.0, -3.0, 0.0])
    n = NormalErrors()
    n.update(pred.reshape(1, 3, 1, 1), gt.reshape(1, 3, 1, 1))
    assert n.count == 1 and n.compute()["mean"] == pytest.approx(0.0, abs=0.05)


def test_normal_loss_is_one_minus_mean_cosine_on_valid_pixels():
    p, g = normals_at_angles([0.0, 60.0, 90.0], [2.0, 5.0, 1.0])
    g[..., 2] = 0.0  # the 90° pixel is invalid
    p.requires_grad_()
    loss = normal_loss(p, g)
    assert loss.item() == pytest.approx(1 - (1.0 + 0.5) / 2, abs=1e-6)
    loss.backward()
    assert torch.all(p.grad[..., 2] == 0)


# -- segmentation loss, accumulators ---------------------------------------------------------------
def test_segmentation_loss_ignores_minus_one():
    logits = torch.tensor([[0.0, 0.0], [5.0, -3.0]]).T.reshape(
        1, 2, 1, 2
    )  # pixel 0: uniform, pixel 1: ignored
    target = torch.tensor([[[1, -1]]])
    assert float(segmentation_loss(logits, target)) == pytest.approx(math.log(2))
    assert float(segmentation_loss(logits, torch.full((1, 1, 2), -1))) == 0.0


def test_dense_accumulator_routes_each_task():
    acc = DenseMetricAccumulator({"seg": "segmentation", "d": "depth", "n": "normal"}, num_classes=3)
    p_n, g_n = normals_at_angles([5.0, 15.0, 25.0, 40.0], [1.0, 1.0, 1.0, 1.0])
    preds = {"seg": one_hot_logits(PRED.reshape(1, 2, 4), 3), "d": PRED_DEPTH.reshape(1, 1, 2, 3), "n": p_n}
    targets = {"seg": TARGET.reshape(1, 2, 4), "d": GT_DEPTH.reshape(1, 1, 2, 3), "n": g_n}
    acc.update(preds, targets)
    out = acc.compute()
    assert out["seg"] == pytest.approx({"miou": MIOU, "pix_acc": PIXACC})
    assert out["d"] == pytest.approx({"abs_err": 2.75 / 4, "rel_err": 1.75 / 4})
    assert out["n"]["median"] == pytest.approx(20.0, abs=1e-4)


def test_accuracy_accumulator_percent_per_task():
    acc = AccuracyAccumulator(["a", "b"])
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]])
    acc.update({"a": logits, "b": logits[:2]}, {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([1, 1])})
    acc.update({"a": logits[:1]}, {"a": torch.tensor([0])})  # task b absent from this batch
    assert acc.compute() == {"a": {"acc": pytest.approx(75.0)}, "b": {"acc": pytest.approx(50.0)}}
