"""Shipped STL references of the vision benchmarks: the single-task (STL) rows of the DB-MTL paper's tables
(Lin et al., "Dual-Balancing for Multi-Task Learning", arXiv:2308.12029 / Neural Networks), test split.

Units match :mod:`mtl.metrics`: mIoU, pixel accuracy, the "within t°" normal metrics and classification
accuracy in percent; depth errors raw (metres and a ratio, as the paper prints them); normal angles in
degrees.

* NYUv2: DeepLabV3+ with a dilated ResNet-50 encoder (LibMTL's setting). The SegNet / SegNet-MTAN setting
  of the IGB paper has a different STL row, which is *not* shipped: pass ``TrainConfig.reference`` (e.g.
  from the study's own STL runs) for those architectures.
* Cityscapes: the same DeepLabV3+ / ResNet-50 setting (7 classes + depth). The relative error of the
  preprocessed Cityscapes depth (inverse depth with many near-zero values) is large; 43.53 is the raw ratio.
* Office-31 / Office-Home: ResNet-18 + linear heads, per-domain accuracy.
"""

from __future__ import annotations

import copy

Nested = dict[str, dict[str, float]]

NYUV2_STL: Nested = {
    "segmentation": {"miou": 53.50, "pix_acc": 75.39},
    "depth": {"abs_err": 0.3926, "rel_err": 0.1605},
    "normal": {
        "mean": 21.99,
        "median": 15.16,
        "within_11_25": 39.04,
        "within_22_5": 65.00,
        "within_30": 75.16,
    },
}

CITYSCAPES_STL: Nested = {
    "segmentation": {"miou": 69.06, "pix_acc": 91.54},
    "depth": {"abs_err": 0.01282, "rel_err": 43.53},
}

OFFICE31_STL: Nested = {
    "amazon": {"acc": 86.61},
    "dslr": {"acc": 95.63},
    "webcam": {"acc": 96.85},
}

OFFICE_HOME_STL: Nested = {
    "Art": {"acc": 65.59},
    "Clipart": {"acc": 79.60},
    "Product": {"acc": 90.47},
    "Real_World": {"acc": 80.00},
}

REFERENCES: dict[str, Nested] = {
    "nyuv2": NYUV2_STL,
    "cityscapes": CITYSCAPES_STL,
    "office31": OFFICE31_STL,
    "office_home": OFFICE_HOME_STL,
}


def reference(dataset: str) -> Nested:
    """A deep copy of the shipped STL reference of ``dataset`` (callers may mutate it freely)."""
    if dataset not in REFERENCES:
        raise KeyError(f"no shipped reference for '{dataset}'; known: {', '.join(sorted(REFERENCES))}")
    return copy.deepcopy(REFERENCES[dataset])
