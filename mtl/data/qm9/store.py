"""The featurized molecules (:class:`MoleculeStore`) and their validated on-disk cache, with its lock."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtl.data.qm9.constants import CACHE_VERSION, FAILURE_REASONS, NUM_NODE_FEATURES, TASKS
from mtl.data.qm9.features import MoleculeGraph


class MoleculeStore:
    """Featurized molecules in flat (CSR) tensors, keyed by source row.

    ``rows`` int64 [M] (source row of each molecule), ``atom_ptr`` [M+1], ``x`` uint8 [A, 11], ``pos``
    float32 [A, 3], ``bond_ptr`` [M+1], ``bonds`` uint8 [B, 2] (molecule-local indices), ``bond_type`` uint8
    [B], ``y`` float64 [M, 11], ``exact`` bool [M]; ``failed_rows`` int64 [F] with ``failed_reason`` uint8
    [F] (index into :data:`FAILURE_REASONS`).
    """

    KEYS = (
        "rows",
        "atom_ptr",
        "x",
        "pos",
        "bond_ptr",
        "bonds",
        "bond_type",
        "y",
        "exact",
        "failed_rows",
        "failed_reason",
    )

    def __init__(self, tensors: Mapping[str, Tensor] | None = None) -> None:
        if tensors is None:
            tensors = {
                "rows": torch.zeros(0, dtype=torch.int64),
                "atom_ptr": torch.zeros(1, dtype=torch.int64),
                "x": torch.zeros(0, NUM_NODE_FEATURES, dtype=torch.uint8),
                "pos": torch.zeros(0, 3, dtype=torch.float32),
                "bond_ptr": torch.zeros(1, dtype=torch.int64),
                "bonds": torch.zeros(0, 2, dtype=torch.uint8),
                "bond_type": torch.zeros(0, dtype=torch.uint8),
                "y": torch.zeros(0, len(TASKS), dtype=torch.float64),
                "exact": torch.zeros(0, dtype=torch.bool),
                "failed_rows": torch.zeros(0, dtype=torch.int64),
                "failed_reason": torch.zeros(0, dtype=torch.uint8),
            }
        self.t: dict[str, Tensor] = {k: tensors[k] for k in self.KEYS}
        self._reindex()

    def _reindex(self) -> None:
        self.index_of = {int(r): i for i, r in enumerate(self.t["rows"].tolist())}
        self.failed = {
            int(r): FAILURE_REASONS[int(c)]
            for r, c in zip(self.t["failed_rows"].tolist(), self.t["failed_reason"].tolist())
        }

    def __len__(self) -> int:
        return int(self.t["rows"].numel())

    def known(self, row: int) -> bool:
        return row in self.index_of or row in self.failed

    def validate(self) -> None:
        """Raise ValueError if the tensors are inconsistent."""
        t = self.t
        m, a, b = t["rows"].numel(), t["x"].shape[0], t["bonds"].shape[0]
        checks = [
            (t["atom_ptr"].shape == (m + 1,), "atom_ptr length"),
            (t["bond_ptr"].shape == (m + 1,), "bond_ptr length"),
            (int(t["atom_ptr"][0]) == 0 and int(t["atom_ptr"][-1]) == a, "atom_ptr bounds"),
            (int(t["bond_ptr"][0]) == 0 and int(t["bond_ptr"][-1]) == b, "bond_ptr bounds"),
            (bool((t["atom_ptr"][1:] > t["atom_ptr"][:-1]).all()), "atom_ptr not increasing"),
            (bool((t["bond_ptr"][1:] >= t["bond_ptr"][:-1]).all()), "bond_ptr decreasing"),
            (t["x"].shape == (a, NUM_NODE_FEATURES) and t["pos"].shape == (a, 3), "atom tensor shapes"),
            (t["bond_type"].shape == (b,) and t["bonds"].shape == (b, 2), "bond tensor shapes"),
            (t["y"].shape == (m, len(TASKS)) and t["exact"].shape == (m,), "target shapes"),
            (bool(torch.isfinite(t["y"]).all()) and bool(torch.isfinite(t["pos"]).all()), "non-finite"),
            (t["failed_rows"].shape == t["failed_reason"].shape, "failure shapes"),
            (len(self.index_of) == m, "duplicate rows"),
            (not (set(self.index_of) & set(self.failed)), "rows both kept and failed"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(what)

    def checksum(self) -> str:
        digest = hashlib.sha256()
        for key in self.KEYS:
            tensor = self.t[key].contiguous()
            digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        return digest.hexdigest()

    def add(
        self, rows: Sequence[int], results: Sequence[MoleculeGraph | str], y: np.ndarray | Tensor
    ) -> None:
        """Append featurized molecules (``results[i]`` of source row ``rows[i]``, targets ``y[i]``)."""
        ok = [i for i, r in enumerate(results) if isinstance(r, MoleculeGraph)]
        bad = [i for i, r in enumerate(results) if isinstance(r, str)]
        t = self.t
        if ok:
            graphs: list[MoleculeGraph] = [results[i] for i in ok]  # type: ignore[misc]
            n_atoms = torch.tensor([g.x.shape[0] for g in graphs], dtype=torch.int64)
            n_bonds = torch.tensor([g.bonds.shape[0] for g in graphs], dtype=torch.int64)
            y = torch.as_tensor(np.asarray(y, dtype=np.float64))
            t["rows"] = torch.cat([t["rows"], torch.tensor([rows[i] for i in ok], dtype=torch.int64)])
            t["atom_ptr"] = torch.cat([t["atom_ptr"], t["atom_ptr"][-1] + torch.cumsum(n_atoms, 0)])
            t["bond_ptr"] = torch.cat([t["bond_ptr"], t["bond_ptr"][-1] + torch.cumsum(n_bonds, 0)])
            t["x"] = torch.cat([t["x"], torch.from_numpy(np.concatenate([g.x for g in graphs]))])
            t["pos"] = torch.cat([t["pos"], torch.from_numpy(np.concatenate([g.pos for g in graphs]))])
            bonds = np.concatenate([g.bonds for g in graphs]).astype(np.uint8).reshape(-1, 2)
            types = np.concatenate([g.bond_type for g in graphs]).astype(np.uint8)
            t["bonds"] = torch.cat([t["bonds"], torch.from_numpy(bonds)])
            t["bond_type"] = torch.cat([t["bond_type"], torch.from_numpy(types)])
            t["y"] = torch.cat([t["y"], y[ok].reshape(-1, len(TASKS))])
            t["exact"] = torch.cat([t["exact"], torch.tensor([g.exact for g in graphs], dtype=torch.bool)])
        if bad:
            codes = [FAILURE_REASONS.index(results[i]) for i in bad]  # type: ignore[arg-type]
            t["failed_rows"] = torch.cat([t["failed_rows"], torch.tensor([rows[i] for i in bad])])
            t["failed_reason"] = torch.cat([t["failed_reason"], torch.tensor(codes, dtype=torch.uint8)])
        self._reindex()

    def stats(self) -> dict[str, Any]:
        reasons = {r: 0 for r in FAILURE_REASONS}
        for r in self.failed.values():
            reasons[r] += 1
        return {
            "featurized": len(self),
            "dropped": len(self.failed),
            "dropped_by_reason": reasons,
            "exact_alignment": int(self.t["exact"].sum()),
            "embedded_alignment": len(self) - int(self.t["exact"].sum()),
        }


def default_cache_dir() -> Path:
    """``$MTL_CACHE_DIR/qm9`` or ``~/.cache/mtl-study/qm9``."""
    root = os.environ.get("MTL_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "mtl-study") / "qm9"


class CacheError(ValueError):
    """The cache file is unusable (reason in the message)."""


def _rdkit_version() -> str:
    from rdkit import __version__

    return str(__version__)


def load_cache(
    path: Path, fingerprint: Sequence[str], features: str = "reference"
) -> tuple[MoleculeStore, dict[str, Any]]:
    """Load and validate a cache file (store and metadata) of feature set ``features``; raise
    :class:`CacheError` saying why it cannot be used."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a torch file
        raise CacheError(f"unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or "meta" not in blob or "tensors" not in blob:
        raise CacheError("not a QM9 cache file")
    meta = blob["meta"]
    if meta.get("version") != CACHE_VERSION:
        raise CacheError(f"version {meta.get('version')} != {CACHE_VERSION}")
    if meta.get("features") != features:
        raise CacheError(f"holds features {meta.get('features')!r}, not {features!r}")
    if list(meta.get("source", [])) != list(fingerprint):
        raise CacheError("built from different source files")
    if meta.get("rdkit") != _rdkit_version():
        raise CacheError(f"built with RDKit {meta.get('rdkit')}, this is {_rdkit_version()}")
    if not isinstance(meta.get("num_rows"), int) or meta["num_rows"] < 1:
        raise CacheError("no source row count")
    try:
        store = MoleculeStore(blob["tensors"])
        store.validate()
    except (KeyError, ValueError, TypeError) as exc:
        raise CacheError(f"inconsistent tensors ({exc})") from exc
    if store.checksum() != meta.get("checksum"):
        raise CacheError("checksum mismatch")
    known = list(store.index_of) + list(store.failed)
    if known and (min(known) < 0 or max(known) >= meta["num_rows"]):
        raise CacheError("source rows out of range")
    return store, meta


def save_cache(
    path: Path, store: MoleculeStore, fingerprint: Sequence[str], num_rows: int, features: str = "reference"
) -> None:
    """Write atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "version": CACHE_VERSION,
        "features": features,
        "source": list(fingerprint),
        "rdkit": _rdkit_version(),
        "num_rows": int(num_rows),
        "checksum": store.checksum(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save({"meta": meta, "tensors": store.t}, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (concurrent trials building the same cache wait for each other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
