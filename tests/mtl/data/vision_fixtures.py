"""Tiny vision datasets written in exactly the published formats (for loader, model and training tests).

* dense (NYUv2 / Cityscapes, MTAN/LibMTL preprocessed release): ``<root>/{train,val}/{image,label,depth,
  normal}/{i}.npy`` — image H×W×3 float32 in [0, 1], label H×W float32 (class ids, −1 ignore), depth H×W×1
  float32 (0 invalid), normal H×W×3 float32 unit vectors (all-zero invalid);
* Office (LibMTL ``examples/office``): JPEGs at the listed relative paths and
  ``<domain>_{train,val,test}.txt`` lists of ``relative/path.jpg label`` lines.

The dense "position" samples make every modality a deterministic function of the pixel position, so an
augmented sample can be checked for consistency: image channel 0 = r/(H−1), channel 1 = c/(W−1); depth =
1 + r·W + c (unique per pixel); label = (r + 2c) mod C, −1 in a band of columns; normal = normalise(x, y, 1)
with x, y linear in c, r, all-zero (invalid) in a band of rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

LABEL_IGNORE_COLS = (0.40, 0.50)  # fractions of the width where label = −1
NORMAL_INVALID_ROWS = (0.30, 0.40)  # fractions of the height where normal = 0


def band(n: int, frac: tuple[float, float]) -> tuple[int, int]:
    return int(frac[0] * n), max(int(frac[1] * n), int(frac[0] * n) + 1)


def position_sample(height: int, width: int, num_classes: int, normals: bool = True) -> dict[str, np.ndarray]:
    r, c = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([r / (height - 1), c / (width - 1), np.full(r.shape, 0.5)], axis=-1).astype(np.float32)
    label = ((r + 2 * c) % num_classes).astype(np.float32)
    c0, c1 = band(width, LABEL_IGNORE_COLS)
    label[:, c0:c1] = -1
    depth = (1.0 + r * width + c).astype(np.float32)[..., None]
    out = {"image": image, "label": label, "depth": depth}
    if normals:
        field = np.stack([(c - width / 2) / width, (r - height / 2) / height, np.ones(r.shape)], axis=-1)
        normal = (field / np.linalg.norm(field, axis=-1, keepdims=True)).astype(np.float32)
        r0, r1 = band(height, NORMAL_INVALID_ROWS)
        normal[r0:r1] = 0
        out["normal"] = normal
    return out


def random_sample(
    rng: np.random.Generator, height: int, width: int, num_classes: int, normals: bool = True
) -> dict[str, np.ndarray]:
    image = rng.random((height, width, 3), dtype=np.float32)
    label = rng.integers(-1, num_classes, size=(height, width)).astype(np.float32)
    depth = (rng.random((height, width, 1), dtype=np.float32) * 10).astype(np.float32)
    depth[rng.random((height, width, 1)) < 0.1] = 0
    out = {"image": image, "label": label, "depth": depth}
    if normals:
        normal = rng.normal(size=(height, width, 3)).astype(np.float32)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        normal[rng.random((height, width)) < 0.1] = 0
        out["normal"] = normal
    return out


def write_dense(
    root: Path,
    n_train: int,
    n_test: int,
    resolution: tuple[int, int],
    num_classes: int,
    normals: bool = True,
    seed: int = 0,
    label_dir: str = "label",
    kind: str = "random",
) -> Path:
    """Write a dense dataset; ``kind`` "random" or "position" (see module docstring)."""
    rng = np.random.default_rng(seed)
    h, w = resolution
    for folder, n in (("train", n_train), ("val", n_test)):
        for i in range(n):
            if kind == "position":
                sample = position_sample(h, w, num_classes, normals)
            else:
                sample = random_sample(rng, h, w, num_classes, normals)
            for key, arr in sample.items():
                sub = label_dir if key == "label" else key
                d = root / folder / sub
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / f"{i}.npy", arr)
    return root


OFFICE31_DOMAINS = ("amazon", "dslr", "webcam")


def write_office(
    root: Path,
    domains=OFFICE31_DOMAINS,
    sizes=None,
    num_classes: int = 3,
    image_px: int = 12,
    seed: int = 0,
    office31_layout: bool = True,
) -> Path:
    """JPEGs at ``<domain>/images/<class>/frame_XXXX.jpg`` (Office-31) or ``<domain>/<Class>/XXXXX.jpg``
    (Office-Home) and LibMTL split lists ``<root>/<domain>_<split>.txt``. ``sizes[split]`` is the number of
    images per domain of that split, or a mapping domain -> number (default train 5, val 3, test 4); the image
    colour encodes the label."""
    from PIL import Image

    sizes = sizes or {"train": 5, "val": 3, "test": 4}
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for di, domain in enumerate(domains):
        counter = 0
        for split, n in sizes.items():
            n = n[domain] if isinstance(n, dict) else n
            lines = []
            for _ in range(n):
                label = int(rng.integers(0, num_classes))
                cls = f"class_{label}"
                rel = (
                    f"{domain}/images/{cls}/frame_{counter:04d}.jpg"
                    if office31_layout
                    else f"{domain}/{cls.capitalize()}/{counter:05d}.jpg"
                )
                counter += 1
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                colour = (20 + 70 * (label % 3), 40 * di, 200 - 50 * (label % 4))
                Image.new("RGB", (image_px, image_px + 2), colour).save(path, format="JPEG")
                lines.append(f"{rel} {label}")
            (root / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def single_thread():
    """Run a test on one intra-op thread: on the shared 2-core CI machine, two OpenMP threads competing with
    other jobs spin and run several times slower than one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
