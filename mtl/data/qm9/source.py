"""Reading the qm9pack CSVs and computing the targets (atomization energies in meV, the papers' units)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl.data.qm9.constants import (
    _FACTORS,
    ATOMREF_HARTREE,
    HARTREE_TO_MEV,
    SOURCE_COLUMNS,
    SOURCE_FILES,
    TASKS,
)
from mtl.errors import ConfigError


def source_dir() -> Path:
    """The ``data`` directory of the installed ``qm9pack`` package (found without importing it: its
    ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("QM9 needs the PyPI package 'qm9pack' (pip install qm9pack)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def parse_elements(text: str) -> list[str]:
    """``"['C','H','H','H','H']"`` → ``['C', 'H', 'H', 'H', 'H']``."""
    return [e.strip().strip("'\"") for e in text.strip().strip("[]").split(",") if e.strip()]


def parse_xyz(text: str) -> np.ndarray:
    """``"[[x,y,z],...]"`` (Å; numbers like ``0.`` or ``2.1997E-6``) → float64 ``[n, 3]``."""
    values = [float(v) for v in text.replace("[", " ").replace("]", " ").split(",") if v.strip()]
    if len(values) % 3:
        raise ValueError(f"XYZ_Ang has {len(values)} numbers, not a multiple of 3")
    return np.asarray(values, dtype=np.float64).reshape(-1, 3)


def atomization_energy_mev(total_hartree: float, elements: Sequence[str], kind: str) -> float:
    """Atomization energy (meV) = total energy − Σ per-atom reference energies (:data:`ATOMREF_HARTREE`),
    ``kind`` ∈ U0, U, H, G."""
    ref = ATOMREF_HARTREE[kind]
    return (total_hartree - sum(ref[e] for e in elements)) * HARTREE_TO_MEV


def targets_from_record(record: Mapping[str, str], elements: Sequence[str]) -> list[float]:
    """The 11 targets of one source row in the report units (:data:`UNITS`)."""
    out = []
    for task in TASKS:
        value = float(record[SOURCE_COLUMNS[task]])
        if task in ATOMREF_HARTREE:
            value = atomization_energy_mev(value, elements, task)
        else:
            value *= _FACTORS.get(task, 1.0)
        out.append(value)
    return out


@dataclass
class RawQM9:
    """Source rows (file order): QM9 ids, SMILES, elements, geometry text and targets [R, 11]."""

    ids: np.ndarray
    smiles: list[str]
    elements: list[list[str]]
    xyz: list[str]
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.smiles)


def read_source(directory: Path, limit: int | None = None) -> RawQM9:
    """Read the qm9pack CSVs (only the columns needed; no pandas), the first ``limit`` rows if given."""
    csv.field_size_limit(1 << 30)
    ids: list[int] = []
    smiles: list[str] = []
    elements: list[list[str]] = []
    xyz: list[str] = []
    ys: list[list[float]] = []
    for name in SOURCE_FILES:
        if limit is not None and len(smiles) >= limit:
            break
        path = directory / name
        if not path.is_file():
            raise ConfigError(f"QM9 source file {path} is missing")
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"Index", "SMILES", "Elements", "XYZ_Ang", *SOURCE_COLUMNS.values()} - set(
                reader.fieldnames or ()
            )
            if missing:
                raise ConfigError(f"QM9 source file {path} lacks columns {sorted(missing)}")
            for record in reader:
                if limit is not None and len(smiles) >= limit:
                    break
                els = parse_elements(record["Elements"])
                ids.append(int(record["Index"]))
                smiles.append(record["SMILES"])
                elements.append(els)
                xyz.append(record["XYZ_Ang"])
                ys.append(targets_from_record(record, els))
    y = np.asarray(ys, dtype=np.float64).reshape(-1, len(TASKS))
    return RawQM9(np.asarray(ids, dtype=np.int64), smiles, elements, xyz, y)


def source_fingerprint(directory: Path) -> list[str]:
    """Name, size and SHA-256 of the first and last MiB of each source file (cheap change detection)."""
    out = []
    for name in SOURCE_FILES:
        path = directory / name
        if not path.is_file():
            raise ConfigError(f"QM9 source file {path} is missing")
        size = path.stat().st_size
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            digest.update(f.read(1 << 20))
            if size > 1 << 20:
                f.seek(max(size - (1 << 20), 1 << 20))
                digest.update(f.read())
        out.append(f"{name}:{size}:{digest.hexdigest()[:32]}")
    return out
