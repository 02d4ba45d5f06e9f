"""Cityscapes (Cordts et al. 2016) as preprocessed by MTAN / LibMTL: 128×256 RGB, 7-class segmentation and
depth (the preprocessed inverse-depth map, 0 = invalid); no normals (DESIGN §5). Layout, splits and losses:
:mod:`mtl.data.dense`; metrics: :mod:`mtl.metrics.dense`. The label folder may be named ``label`` (LibMTL's
release) or ``label_7`` (MTAN's release, which also ships ``label_19``).

Splits: ``train`` = published ``train/`` (2975 images) minus a seeded ``val_fraction`` carve-out (``val``);
``test`` = the published ``val/`` folder (the official 500-image validation set, used as test by the papers).

Defaults follow the DB-MTL / LibMTL setting: DeepLabV3+ with a dilated ResNet-50, Adam lr 1e-4, weight decay
1e-5, batch 64, 200 epochs, learning rate halved after 100 epochs, no augmentation (LibMTL's Cityscapes loader
has none; ``augment=True`` enables the same scale-crop + flip as NYUv2).

Data folder: ``dataset_kwargs root=...`` or ``$MTL_DATA_CITYSCAPES``.
"""

from __future__ import annotations

from typing import ClassVar

from mtl.config import TrainDefaults
from mtl.data.dense import DenseSceneDataset
from mtl.data.registry import DATASETS


@DATASETS.register("cityscapes")
class Cityscapes(DenseSceneDataset):
    name = "cityscapes"
    env_var = "MTL_DATA_CITYSCAPES"
    num_classes = 7
    default_resolution = (128, 256)
    task_kinds = (("segmentation", "segmentation"), ("depth", "depth"))
    head_channels: ClassVar[dict[str, int]] = {"segmentation": 7, "depth": 1}
    label_folders = ("label", "label_7")
    defaults = TrainDefaults(
        lr=1e-4,
        batch_size=64,
        weight_decay=1e-5,
        scheduler="step",
        scheduler_kwargs={"step_size": 100, "gamma": 0.5},
        epochs=200,
    )
