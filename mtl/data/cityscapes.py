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

import os
from collections.abc import Sequence
from typing import ClassVar

from mtl.data.base import Nested, TrainDefaults
from mtl.data.dense import DenseSceneDataset
from mtl.data.references import CITYSCAPES_STL
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
        optimizer="adam",
        weight_decay=1e-5,
        scheduler="step",
        scheduler_kwargs={"step_size": 100, "gamma": 0.5},
        epochs=200,
    )
    reference_tables: ClassVar[dict[str, Nested | None]] = {"deeplab_resnet50": CITYSCAPES_STL, "none": None}

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        augment: bool = False,
        resolution: Sequence[int] | None = None,
        subset: int | None = None,
        num_workers: int = 0,
        reference_table: str = "deeplab_resnet50",
        median_resolution: float = 1e-4,
    ) -> None:
        super().__init__(
            root=root,
            val_fraction=val_fraction,
            split_seed=split_seed,
            augment=augment,
            resolution=resolution,
            subset=subset,
            num_workers=num_workers,
            reference_table=reference_table,
            median_resolution=median_resolution,
        )
