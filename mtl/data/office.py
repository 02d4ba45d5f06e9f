"""Office-31 (Saenko et al. 2010) and Office-Home (Venkateswara et al. 2017) as multi-input multi-task
benchmarks (DESIGN §5): each domain is a task — classification of its own images with its own head, metric
accuracy (%). Office-31: ``amazon``, ``dslr``, ``webcam``, 31 classes; Office-Home: ``Art``, ``Clipart``,
``Product``, ``Real_World``, 65 classes.

Files (LibMTL's ``examples/office`` format)::

    <root>/<image paths as listed>               e.g. dslr/images/back_pack/frame_0008.jpg,
                                                      Real_World/Calendar/00020.jpg
    <lists_dir>/<domain>_train.txt, _val.txt, _test.txt
                                                 one "relative/path.jpg label" per line; the fixed
                                                 60/20/20 split LibMTL ships in examples/office/data_txt/
                                                 (``lists_dir`` defaults to ``root``)

Images are resized to ``image_size``² (224, bilinear), converted to [0, 1] and normalised with the ImageNet
mean/std, exactly LibMTL's transform (no augmentation). Every listed image is checked for existence when the
dataset is built; a missing list file or image, or a malformed line, raises :class:`~mtl.errors.DatasetError`
naming the expected file. ``subset=N`` keeps a seeded random ``N`` images per domain and split.

Batches: the input is ``{domain: images}``, targets ``{domain: labels}``. Training (``shuffle=True``) follows
LibMTL's multi-input loop: an epoch has ``ceil(max_d n_d / batch_size)`` steps (``split_size`` is the largest
domain's size); every step holds ``min(batch_size, n_d)`` images of every domain, drawn from that domain's
seeded permutations of (seed, epoch), restarting a new permutation when one is used up (LibMTL restarts the
shorter domains' loaders the same way, but drops each loader's last partial batch: it takes
``floor(max_d n_d / batch_size)`` steps and never mixes two passes in one batch). Evaluation
(``shuffle=False``) visits every image of every domain exactly once: each domain's list is cut into the same
number of nearly equal consecutive chunks, so every batch holds every domain.

Defaults (DB-MTL / LibMTL): ResNet-18 + linear heads (``architecture="hps"``), Adam lr 1e-4, weight decay
1e-5, batch 64 per domain, 100 epochs. Data folder: ``root=...`` or ``$MTL_DATA_OFFICE31`` /
``$MTL_DATA_OFFICE_HOME``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from mtl.checks import check_architecture
from mtl.config import TrainDefaults
from mtl.data.base import (
    SPLITS,
    MetricAccumulator,
    MTLDataset,
    TaskSpec,
    epoch_generator,
)
from mtl.data.dense import random_subset, resolve_root
from mtl.data.registry import DATASETS
from mtl.errors import ConfigError, DatasetError
from mtl.metrics.classification import AccuracyAccumulator
from mtl.models.base import MultiTaskModel
from mtl.models.moe import MOE_ARGUMENTS, moe_arguments
from mtl.models.moe_vision import OFFICE_MOE_ARCHITECTURES, build_office_moe_model
from mtl.models.vision import OFFICE_ARCHITECTURES, build_office_model

MetricAccumulator.register(AccuracyAccumulator)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_split_list(path: Path, root: Path, num_classes: int) -> list[tuple[Path, int]]:
    """Parse a LibMTL split list (``relative/path.jpg label`` per line) and check every image exists."""
    if not path.is_file():
        raise DatasetError(
            f"expected {path} (split list: one 'relative/path.jpg label' line per image, as in "
            f"LibMTL's examples/office/data_txt/)"
        )
    items: list[tuple[Path, int]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise DatasetError(f"{path} line {lineno}: expected 'relative/path.jpg label', got {line!r}")
            rel, label_text = parts
            try:
                label = int(label_text)
            except ValueError:
                raise DatasetError(f"{path} line {lineno}: label {label_text!r} is not an integer") from None
            if not 0 <= label < num_classes:
                raise DatasetError(f"{path} line {lineno}: label {label} outside 0..{num_classes - 1}")
            image = root / rel
            if not image.is_file():
                raise DatasetError(f"expected {image} (listed in {path} line {lineno})")
            items.append((image, label))
    if not items:
        raise DatasetError(f"{path} lists no images")
    return items


class ImageList(Dataset):
    """``(path, label)`` items -> ``(image tensor [3, S, S], label)``."""

    def __init__(self, items: list[tuple[Path, int]], image_size: int) -> None:
        from torchvision import transforms

        self.items = items
        self.transform = transforms.Compose(
            [
                transforms.Resize((image_size, image_size)),
                transforms.ToTensor(),
                transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.items[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except FileNotFoundError:
            raise DatasetError(f"expected {path}") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"{path} is not a readable image: {exc}") from exc
        return self.transform(image), label


def _collate(batch: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch], dtype=torch.int64)


class OfficeDataset(MTLDataset):
    """Base of :class:`Office31` and :class:`OfficeHome`."""

    env_var = ""
    domains: tuple[str, ...] = ()
    num_classes = 0
    architectures = (*OFFICE_ARCHITECTURES, *OFFICE_MOE_ARCHITECTURES)
    model_arguments = ("pretrained_path", "hidden_dim", "dropout", *MOE_ARGUMENTS)
    defaults = TrainDefaults(lr=1e-4, batch_size=64, weight_decay=1e-5)  # Adam, no LR schedule, 100 epochs

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        lists_dir: str | os.PathLike[str] | None = None,
        image_size: int = 224,
        subset: int | None = None,
        num_workers: int = 0,
    ) -> None:
        self.check_arguments({"image_size": image_size, "subset": subset, "num_workers": num_workers})
        layout = "<root>/<listed image paths> + <root>/<domain>_{train,val,test}.txt"
        self.root = resolve_root(root, self.env_var, self.name, layout)
        self.lists_dir = Path(lists_dir).expanduser() if lists_dir is not None else self.root
        self.image_size = int(image_size)
        self.num_workers = int(num_workers)
        self.tasks = tuple(TaskSpec(d, {"acc": True}) for d in self.domains)
        self.items: dict[str, dict[str, list[tuple[Path, int]]]] = {}
        for split in SPLITS:
            self.items[split] = {}
            for d in self.domains:
                items = read_split_list(self.lists_dir / f"{d}_{split}.txt", self.root, self.num_classes)
                self.items[split][d] = random_subset(items, int(subset), 0) if subset is not None else items

    @classmethod
    def check_arguments(cls, args: Mapping[str, Any]) -> None:
        super().check_arguments(args)
        if int(args.get("image_size", 224)) < 32:
            raise ConfigError(f"{cls.name} image_size must be >= 32, got {args['image_size']}")
        if args.get("subset") is not None and int(args["subset"]) < 1:
            raise ConfigError(f"{cls.name} subset must be >= 1, got {args['subset']}")
        if int(args.get("num_workers", 0)) < 0:
            raise ConfigError(f"{cls.name} num_workers must be >= 0, got {args['num_workers']}")

    @classmethod
    def check_model_arguments(cls, architecture: str, kwargs: Mapping[str, Any]) -> None:
        super().check_model_arguments(architecture, kwargs)
        moe_arguments(cls.name, architecture, kwargs)
        hidden_dim, dropout = kwargs.get("hidden_dim", 512), kwargs.get("dropout", 0.5)
        if not isinstance(hidden_dim, int) or isinstance(hidden_dim, bool) or hidden_dim < 1:
            raise ConfigError(
                f"{cls.name} model argument hidden_dim must be an integer >= 1, got {hidden_dim!r}"
            )
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"{cls.name} model argument dropout must be in [0, 1), got {dropout!r}")

    def domain_sizes(self, split: str) -> dict[str, int]:
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        return {d: len(v) for d, v in self.items[split].items()}

    def split_size(self, split: str) -> int:
        """The largest domain's size: an epoch is one pass over the largest domain (LibMTL's multi-input
        loop)."""
        return max(self.domain_sizes(split).values())

    def batch_plan(
        self, split: str, batch_size: int, shuffle: bool, seed: int, epoch: int
    ) -> dict[str, list[list[int]]]:
        """Per domain, the list of index batches of one pass (a pure function of the arguments)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        sizes = self.domain_sizes(split)
        plan: dict[str, list[list[int]]] = {}
        if shuffle:
            steps = math.ceil(max(sizes.values()) / batch_size)
            gen = epoch_generator(seed, epoch)
            for d in self.domains:
                n = sizes[d]
                per_batch = min(batch_size, n)
                stream: list[int] = []
                while len(stream) < steps * per_batch:
                    stream.extend(torch.randperm(n, generator=gen).tolist())
                plan[d] = [stream[s * per_batch : (s + 1) * per_batch] for s in range(steps)]
        else:
            steps = max(1, min(max(math.ceil(n / batch_size) for n in sizes.values()), min(sizes.values())))
            for d in self.domains:
                plan[d] = [chunk.tolist() for chunk in np.array_split(np.arange(sizes[d]), steps)]
        return plan

    def loader(self, split: str, batch_size: int, shuffle: bool, seed: int, epoch: int) -> Iterator[Any]:
        plan = self.batch_plan(split, batch_size, shuffle, seed, epoch)
        loaders = {
            d: DataLoader(
                ImageList(self.items[split][d], self.image_size),
                batch_sampler=plan[d],
                num_workers=self.num_workers,
                collate_fn=_collate,
            )
            for d in self.domains
        }
        for batches in zip(*loaders.values()):
            inputs = {d: b[0] for d, b in zip(self.domains, batches)}
            targets = {d: b[1] for d, b in zip(self.domains, batches)}
            yield inputs, targets

    def build_model(self, architecture: str = "hps", **kwargs: Any) -> MultiTaskModel:
        self.check_model_arguments(architecture, kwargs)
        arch = check_architecture(self.name, architecture, self.architectures)
        if arch in OFFICE_MOE_ARCHITECTURES:
            return build_office_moe_model(arch, self.domains, self.num_classes, dataset=self.name, **kwargs)
        return build_office_model(architecture, self.domains, self.num_classes, dataset=self.name, **kwargs)

    def losses(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([F.cross_entropy(preds[d], targets[d]) for d in self.domains])

    def metric_accumulator(self) -> AccuracyAccumulator:
        return AccuracyAccumulator(self.domains)


@DATASETS.register("office31", "office-31", "office_31")
class Office31(OfficeDataset):
    name = "office31"
    env_var = "MTL_DATA_OFFICE31"
    domains = ("amazon", "dslr", "webcam")
    num_classes = 31


@DATASETS.register("office_home", "office-home", "officehome")
class OfficeHome(OfficeDataset):
    name = "office_home"
    env_var = "MTL_DATA_OFFICE_HOME"
    domains = ("Art", "Clipart", "Product", "Real_World")
    num_classes = 65
