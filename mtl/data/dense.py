"""Shared machinery of the dense scene-understanding benchmarks (NYUv2, Cityscapes) in the published
preprocessed ``.npy`` layout of the MTAN / LibMTL releases (DESIGN §5)::

    <root>/train/image/{i}.npy    H×W×3 float (RGB in [0, 1])
    <root>/train/label/{i}.npy    H×W   float or int, class ids, −1 = ignore
    <root>/train/depth/{i}.npy    H×W×1 float, 0 = invalid
    <root>/train/normal/{i}.npy   H×W×3 float in [−1, 1], all-zero = invalid   (NYUv2 only)
    <root>/val/...                the same for the published "val" folder

The published "val" folder is the official *test* set (NYUv2: 654 images, Cityscapes: 500), and the papers'
code selects its best epoch on it. We do not: our splits are

* ``train`` = the published ``train/`` folder minus a seeded validation carve-out,
* ``val``   = that carve-out (``val_fraction`` of ``train/``, chosen by a permutation seeded by
  ``split_seed``; fixed across trials and methods),
* ``test``  = the published ``val/`` folder.

``subset=N`` keeps a seeded random ``N`` samples of each split (quick CPU runs; the CLI's ``--subset``).
Shuffled (training) passes drop a trailing batch of a single sample, which BatchNorm cannot normalise in the
ASPP image-pooling branch (LibMTL drops every incomplete training batch).

Every sample's files are checked when the dataset is built (file present, ``.npy`` header with the expected
shape); a missing or malformed file raises :class:`~mtl.errors.DatasetError` naming the expected path.

Augmentation (training split only, ``augment=True``): the MTAN/LibMTL ``RandomScaleCrop`` — a scale
``s ∈ {1.0, 1.2, 1.5}``, a random ``H/s × W/s`` crop resized back to ``H × W`` (image and normals bilinear
with aligned corners, label and depth nearest), depth divided by ``s`` — then a horizontal flip with
probability 0.5 that negates the normal's x channel. Two deliberate refinements: the normals' validity
mask is resampled with *nearest* like the label and depth (bilinear mixing of valid and all-zero invalid
normals would otherwise create spurious low-norm "valid" normals), and valid resampled normals are
renormalised to unit length.
All randomness comes from a per-sample seed drawn from :func:`~mtl.data.base.epoch_generator`, so a
resumed run sees bit-identical batches.

Losses (LibMTL's): cross-entropy over labelled pixels (−1 ignored); L1 over valid depth pixels;
``1 − mean cosine`` over valid normal pixels with L2-normalised predictions.
Metrics: :mod:`mtl.metrics.dense`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from mtl.checks import check_architecture
from mtl.data.base import SPLITS, MetricAccumulator, MTLDataset, TaskSpec, epoch_generator
from mtl.errors import ConfigError, DatasetError
from mtl.metrics.dense import DenseMetricAccumulator, dense_metric_flags, depth_valid_mask, normal_valid_mask
from mtl.models.base import MultiTaskModel
from mtl.models.moe import MOE_ARGUMENTS, moe_arguments
from mtl.models.moe_vision import DENSE_MOE_ARCHITECTURES, build_dense_moe_model
from mtl.models.vision import DENSE_ARCHITECTURES, build_dense_model

MetricAccumulator.register(DenseMetricAccumulator)

SCALES = (1.0, 1.2, 1.5)
# published folder -> (modality folder, channels of the last axis or None for a plain H×W map)
MODALITIES: dict[str, int | None] = {"image": 3, "label": None, "depth": 1, "normal": 3}


# -- losses ---------------------------------------------------------------------------------------------
def segmentation_loss(logits: Tensor, target: Tensor, ignore_index: int = -1) -> Tensor:
    """Cross-entropy averaged over labelled pixels (``target != ignore_index``); 0 when none is labelled."""
    total = F.cross_entropy(logits, target.long(), ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp_min(1)
    return total / count


def depth_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L1 error averaged over valid depth pixels (``target != 0``)."""
    pred = pred.reshape(target.shape)
    mask = depth_valid_mask(target).to(pred.dtype)
    return ((pred - target).abs() * mask).sum() / mask.sum().clamp_min(1)


def normal_loss(pred: Tensor, target: Tensor) -> Tensor:
    """``1 − mean cos(p̂, g)`` over valid normal pixels (``g`` not all-zero), ``p̂ = p / ‖p‖``."""
    mask = normal_valid_mask(target).to(pred.dtype)
    unit = F.normalize(pred, p=2, dim=1)
    return 1.0 - ((unit * target).sum(dim=1, keepdim=True) * mask).sum() / mask.sum().clamp_min(1)


LOSSES = {"segmentation": segmentation_loss, "depth": depth_loss, "normal": normal_loss}


# -- augmentation ---------------------------------------------------------------------------------------
def random_scale_crop(
    sample: dict[str, Tensor], generator: torch.Generator, scales: Sequence[float] = SCALES
) -> dict[str, Tensor]:
    """MTAN/LibMTL ``RandomScaleCrop`` of a sample of CHW tensors (``label``: HW int64); see module doc."""
    image = sample["image"]
    height, width = image.shape[-2:]
    sc = float(scales[int(torch.randint(len(scales), (1,), generator=generator))])
    h, w = int(height / sc), int(width / sc)
    i = int(torch.randint(0, height - h + 1, (1,), generator=generator))
    j = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    size = (height, width)

    def crop(x: Tensor) -> Tensor:
        return x[..., i : i + h, j : j + w]

    def bilinear(x: Tensor) -> Tensor:
        return F.interpolate(crop(x)[None], size=size, mode="bilinear", align_corners=True)[0]

    def nearest(x: Tensor) -> Tensor:
        return F.interpolate(crop(x)[None], size=size, mode="nearest")[0]

    out = {"image": bilinear(image)}
    if "label" in sample:
        out["label"] = nearest(sample["label"][None].float())[0].long()
    if "depth" in sample:
        out["depth"] = nearest(sample["depth"]) / sc
    if "normal" in sample:
        normal = bilinear(sample["normal"])
        valid = nearest(normal_valid_mask(sample["normal"][None])[0].float()) > 0.5
        normal = F.normalize(normal, p=2, dim=0) * valid
        out["normal"] = normal
    return out


def horizontal_flip(sample: dict[str, Tensor]) -> dict[str, Tensor]:
    """Mirror every map left-right; the normal's x component changes sign."""
    out = {k: torch.flip(v, dims=[-1]) for k, v in sample.items()}
    if "normal" in out:
        out["normal"] = out["normal"].clone()
        out["normal"][0] = -out["normal"][0]
    return out


def augment_sample(
    sample: dict[str, Tensor], seed: int, scales: Sequence[float] = SCALES
) -> dict[str, Tensor]:
    """Random scale-crop then a horizontal flip with probability 0.5, all drawn from ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    sample = random_scale_crop(sample, gen, scales)
    if float(torch.rand(1, generator=gen)) < 0.5:
        sample = horizontal_flip(sample)
    return sample


# -- files ----------------------------------------------------------------------------------------------
def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header only (and its size: a file truncated after the
    header, e.g. by an interrupted copy, fails here rather than in the middle of training)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    except FileNotFoundError:
        raise DatasetError(f"expected {path}") from None
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path} is not a valid .npy file: {exc}") from exc
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not dtype.hasobject and data_bytes < expected:
        raise DatasetError(
            f"{path} is truncated: {data_bytes} bytes of array data, expected {expected} "
            f"(shape {tuple(shape)}, {dtype})"
        )
    return tuple(int(s) for s in shape), dtype


def expected_shape(modality: str, resolution: tuple[int, int]) -> tuple[int, ...]:
    channels = MODALITIES[modality]
    return resolution if channels is None else (*resolution, channels)


def _shape_ok(modality: str, shape: tuple[int, ...], resolution: tuple[int, int]) -> bool:
    if shape == expected_shape(modality, resolution):
        return True
    return modality == "depth" and shape == resolution  # H×W depth without the channel axis


class DenseFiles(Dataset):
    """Index -> sample tensors of one published folder (``<root>/<folder>``). Items are ``(index, seed)``
    pairs; ``seed`` is None for no augmentation."""

    def __init__(
        self,
        folder: Path,
        indices: Sequence[int],
        modalities: Mapping[str, str],
        resolution: tuple[int, int],
        num_classes: int,
        augment: bool,
        dataset: str,
    ) -> None:
        self.folder = folder
        self.indices = list(indices)
        self.modalities = dict(modalities)  # sample key -> sub-folder name
        self.resolution = resolution
        self.num_classes = num_classes
        self.augment = augment
        self.dataset = dataset

    def path(self, key: str, index: int) -> Path:
        return self.folder / self.modalities[key] / f"{index}.npy"

    def _load(self, key: str, index: int) -> np.ndarray:
        path = self.path(key, index)
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DatasetError(f"expected {path}") from None
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{path} is not a valid .npy file: {exc}") from exc
        if not _shape_ok(key, tuple(arr.shape), self.resolution):
            raise DatasetError(
                f"{path}: shape {tuple(arr.shape)}, expected "
                f"{expected_shape(key, self.resolution)} ({self.dataset} {key})"
            )
        return arr

    def sample(self, index: int) -> dict[str, Tensor]:
        """The un-augmented sample: image/depth/normal CHW float32, label HW int64."""
        out: dict[str, Tensor] = {}
        for key in self.modalities:
            arr = self._load(key, index)
            if key == "label":
                if not np.all(np.isfinite(arr)):
                    raise DatasetError(f"{self.path(key, index)}: non-finite labels")
                label = torch.from_numpy(np.rint(arr).astype(np.int64))
                lo, hi = int(label.min()), int(label.max())
                if lo < -1 or hi >= self.num_classes:
                    raise DatasetError(
                        f"{self.path(key, index)}: labels in [{lo}, {hi}], expected −1 (ignore) "
                        f"or 0..{self.num_classes - 1}"
                    )
                out[key] = label
            else:
                t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
                out[key] = t[None] if t.dim() == 2 else t.permute(2, 0, 1).contiguous()
        return out

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: tuple[int, int | None]) -> dict[str, Tensor]:
        position, seed = item
        sample = self.sample(self.indices[position])
        if self.augment and seed is not None:
            sample = augment_sample(sample, seed)
        return sample


def random_subset(items: Sequence[Any], size: int, seed: int) -> list[Any]:
    """At most ``size`` of ``items``, chosen by a permutation seeded by ``seed``, in their original order."""
    if size >= len(items):
        return list(items)
    keep = sorted(torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:size].tolist())
    return [items[i] for i in keep]


def collate(samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def resolve_root(root: str | os.PathLike[str] | None, env_var: str, dataset: str, layout: str) -> Path:
    """``root`` if given, else ``$env_var``; a clear error if neither is set."""
    if root is None:
        root = os.environ.get(env_var)
        if not root:
            raise DatasetError(
                f"{dataset}: no data folder given; pass dataset_kwargs root=... or set {env_var} "
                f"(expected layout: {layout})"
            )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{dataset}: data folder {path} does not exist (expected layout: {layout})")
    return path


class DenseSceneDataset(MTLDataset):
    """Base of :class:`~mtl.data.nyuv2.NYUv2` and :class:`~mtl.data.cityscapes.Cityscapes`."""

    name = "dense"
    env_var = ""
    num_classes = 0
    default_resolution: tuple[int, int] = (0, 0)
    task_kinds: tuple[tuple[str, str], ...] = ()  # (task, kind)
    head_channels: ClassVar[dict[str, int]] = {}
    label_folders: tuple[str, ...] = ("label",)
    architectures = (*DENSE_ARCHITECTURES, *DENSE_MOE_ARCHITECTURES)
    model_arguments = ("pretrained_path", "cross_stitch_same", *MOE_ARGUMENTS)

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        augment: bool = False,
        resolution: Sequence[int] | None = None,
        subset: int | None = None,
        num_workers: int = 0,
        median_resolution: float = 1e-4,
    ) -> None:
        self.check_arguments(
            {
                "val_fraction": val_fraction,
                "subset": subset,
                "num_workers": num_workers,
                "resolution": resolution,
            }
        )
        res = tuple(int(r) for r in (resolution if resolution is not None else self.default_resolution))
        self.resolution: tuple[int, int] = (res[0], res[1])
        self.augment = bool(augment)
        self.num_workers = int(num_workers)
        self.median_resolution = float(median_resolution)
        self.tasks = tuple(TaskSpec(t, flags) for t, flags in dense_metric_flags(self.task_kinds).items())
        self.root = resolve_root(root, self.env_var, self.name, self.layout())

        train_idx = self._scan("train")
        test_idx = self._scan("val")
        if len(train_idx) < 2:
            raise DatasetError(
                f"{self.name}: {self.root / 'train'} has {len(train_idx)} sample(s); at least 2 are "
                f"needed to carve out a validation split"
            )
        n_val = min(len(train_idx) - 1, max(1, round(float(val_fraction) * len(train_idx))))
        perm = torch.randperm(
            len(train_idx), generator=torch.Generator().manual_seed(int(split_seed))
        ).tolist()
        val_pos = sorted(perm[:n_val])
        train_pos = sorted(perm[n_val:])
        splits = {
            "train": ("train", [train_idx[p] for p in train_pos]),
            "val": ("train", [train_idx[p] for p in val_pos]),
            "test": ("val", test_idx),
        }
        if subset is not None:
            splits = {
                k: (folder, random_subset(idx, int(subset), int(split_seed)))
                for k, (folder, idx) in splits.items()
            }
        self.split_indices: dict[str, tuple[str, list[int]]] = splits

    @classmethod
    def check_arguments(cls, args: Mapping[str, Any]) -> None:
        super().check_arguments(args)
        if "val_fraction" in args and not 0.0 < float(args["val_fraction"]) < 1.0:
            raise ConfigError(f"{cls.name} val_fraction must be in (0, 1), got {args['val_fraction']}")
        if args.get("subset") is not None and int(args["subset"]) < 1:
            raise ConfigError(f"{cls.name} subset must be >= 1, got {args['subset']}")
        if int(args.get("num_workers", 0)) < 0:
            raise ConfigError(f"{cls.name} num_workers must be >= 0, got {args['num_workers']}")
        resolution = args.get("resolution")
        if resolution is not None and (len(resolution) != 2 or min(int(r) for r in resolution) < 1):
            raise ConfigError(f"{cls.name} resolution must be (height, width), got {resolution}")

    # -- files ------------------------------------------------------------------------------------------
    @classmethod
    def layout(cls) -> str:
        mods = "{" + ",".join(cls._modalities_static()) + "}"
        h, w = cls.default_resolution
        return f"<root>/{{train,val}}/{mods}/{{i}}.npy at {h}×{w}"

    @classmethod
    def _modalities_static(cls) -> list[str]:
        return ["image", "label", *[t for t, kind in cls.task_kinds if kind in ("depth", "normal")]]

    def modalities(self, folder: str) -> dict[str, str]:
        """Sample key -> sub-folder (``label`` may be published as ``label_7``, the MTAN Cityscapes name)."""
        mods = {"image": "image"}
        base = self.root / folder
        label_dir = next((d for d in self.label_folders if (base / d).is_dir()), self.label_folders[0])
        mods["label"] = label_dir
        for _task, kind in self.task_kinds:
            if kind in ("depth", "normal"):
                mods[kind] = kind
        return mods

    def _scan(self, folder: str) -> list[int]:
        """Sample indices of a published folder, with every file present and of the right shape."""
        base = self.root / folder
        image_dir = base / "image"
        if not image_dir.is_dir():
            raise DatasetError(
                f"{self.name}: expected folder {image_dir} with 0.npy, 1.npy, ... "
                f"(published layout {self.layout()})"
            )
        indices = sorted(int(p.stem) for p in image_dir.glob("*.npy") if p.stem.isdigit())
        if not indices:
            raise DatasetError(
                f"{self.name}: expected {image_dir / '0.npy'} (no <i>.npy files in {image_dir})"
            )
        mods = self.modalities(folder)
        for key, sub in mods.items():
            if key != "image" and not (base / sub).is_dir():
                names = " or ".join(str(base / d) for d in (self.label_folders if key == "label" else (sub,)))
                raise DatasetError(f"{self.name}: expected folder {names} (published layout {self.layout()})")
        for i in indices:
            for key, sub in mods.items():
                path = base / sub / f"{i}.npy"
                shape, dtype = npy_header(path)
                if not _shape_ok(key, shape, self.resolution):
                    raise DatasetError(
                        f"{path}: shape {shape}, expected {expected_shape(key, self.resolution)} "
                        f"({self.name} {key}; resolution {self.resolution})"
                    )
                if dtype.kind not in "fiu":
                    raise DatasetError(f"{path}: dtype {dtype}, expected a numeric array ({self.name} {key})")
        return indices

    def files(self, split: str) -> DenseFiles:
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        folder, indices = self.split_indices[split]
        return DenseFiles(
            self.root / folder,
            indices,
            self.modalities(folder),
            self.resolution,
            self.num_classes,
            augment=self.augment and split == "train",
            dataset=self.name,
        )

    # -- MTLDataset -------------------------------------------------------------------------------------
    def split_size(self, split: str) -> int:
        if split not in SPLITS:
            raise ConfigError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        return len(self.split_indices[split][1])

    def loader(self, split: str, batch_size: int, shuffle: bool, seed: int, epoch: int) -> Iterator[Any]:
        files = self.files(split)
        n = len(files)
        gen = epoch_generator(seed, epoch)
        order = torch.randperm(n, generator=gen).tolist() if shuffle else list(range(n))
        seeds = torch.randint(0, 2**62, (n,), generator=gen).tolist() if files.augment else [None] * n
        batches = [[(p, seeds[p]) for p in order[s : s + batch_size]] for s in range(0, n, batch_size)]
        if shuffle and len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()  # a 1-sample training batch breaks BatchNorm (the ASPP image-pooling branch)
        loader = DataLoader(files, batch_sampler=batches, num_workers=self.num_workers, collate_fn=collate)
        for batch in loader:
            image = batch.pop("image")
            targets = {}
            for task, kind in self.task_kinds:
                targets[task] = batch["label"] if kind == "segmentation" else batch[kind]
            yield image, targets

    def losses(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([LOSSES[kind](preds[task], targets[task]) for task, kind in self.task_kinds])

    def metric_accumulator(self) -> DenseMetricAccumulator:
        return DenseMetricAccumulator(
            dict(self.task_kinds), num_classes=self.num_classes, median_resolution=self.median_resolution
        )

    @classmethod
    def check_model_arguments(cls, architecture: str, kwargs: Mapping[str, Any]) -> None:
        super().check_model_arguments(architecture, kwargs)
        moe_arguments(cls.name, architecture, kwargs)
        arch = check_architecture(cls.name, architecture, cls.architectures)
        if arch in DENSE_MOE_ARCHITECTURES and "cross_stitch_same" in kwargs:
            raise ConfigError(
                f"{cls.name} model argument cross_stitch_same is for 'cross_stitch', not '{arch}'"
            )

    def build_model(self, architecture: str = "hps", **kwargs: Any) -> MultiTaskModel:
        self.check_model_arguments(architecture, kwargs)
        arch = check_architecture(self.name, architecture, self.architectures)
        if arch in DENSE_MOE_ARCHITECTURES:
            return build_dense_moe_model(
                arch, self.head_channels, self.resolution, dataset=self.name, **kwargs
            )
        return build_dense_model(
            architecture, self.head_channels, self.resolution, dataset=self.name, **kwargs
        )
