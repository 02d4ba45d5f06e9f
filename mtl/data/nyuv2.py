"""NYUv2 (Silberman et al. 2012) as preprocessed by MTAN / LibMTL: 288×384 RGB, 13-class segmentation,
depth (metres) and surface normals (DESIGN §5). Layout, splits, augmentation and losses:
:mod:`mtl.data.dense`; metrics: :mod:`mtl.metrics.dense`.

Splits: ``train`` = published ``train/`` (795 images) minus a seeded ``val_fraction`` carve-out (``val``);
``test`` = the published ``val/`` folder, which is the official 654-image test set (the papers' code selects
its best epoch on it; we select on ``val``).

Defaults follow the DB-MTL / LibMTL setting: DeepLabV3+ with a dilated ResNet-50 (``architecture="hps"``),
Adam lr 1e-4, weight decay 1e-5, batch 8, 200 epochs, learning rate halved after 100 epochs, with the
random scale-crop + flip augmentation. The IGB paper's setting is ``architecture="segnet_mtan"`` with batch 2.
STL references per architecture (DeepLabV3+ or SegNet rows): :mod:`mtl.data.references`.

Data folder: ``dataset_kwargs root=...`` or ``$MTL_DATA_NYUV2``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import ClassVar

from mtl.config import TrainDefaults
from mtl.data.dense import DenseSceneDataset
from mtl.data.registry import DATASETS


@DATASETS.register("nyuv2", "nyu_v2")
class NYUv2(DenseSceneDataset):
    name = "nyuv2"
    env_var = "MTL_DATA_NYUV2"
    num_classes = 13
    default_resolution = (288, 384)
    task_kinds = (("segmentation", "segmentation"), ("depth", "depth"), ("normal", "normal"))
    head_channels: ClassVar[dict[str, int]] = {"segmentation": 13, "depth": 1, "normal": 3}
    defaults = TrainDefaults(
        lr=1e-4,
        batch_size=8,
        weight_decay=1e-5,
        scheduler="step",
        scheduler_kwargs={"step_size": 100, "gamma": 0.5},
        epochs=200,
    )

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        augment: bool = True,
        resolution: Sequence[int] | None = None,
        subset: int | None = None,
        num_workers: int = 0,
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
            median_resolution=median_resolution,
        )
