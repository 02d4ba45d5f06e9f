"""QM9 (Ramakrishnan et al., Sci. Data 1:140022, 2014), the embedded default benchmark (DESIGN §5).

Source: the CSVs shipped in the PyPI package ``qm9pack`` (130,831 molecules: SMILES, element list, B3LYP
geometry ``XYZ_Ang``, properties in atomic units); nothing is downloaded. Each molecule becomes a graph as
PyG's ``QM9`` dataset and the Nash-MTL / IGB reference code build it:

* nodes: 11 features: one-hot H, C, N, O, F; atomic number; aromatic; sp, sp2, sp3 hybridisation; number
  of bonded hydrogens (PyG's layout);
* edges: the complete graph without self loops (the reference code's ``Complete`` transform), 5 features:
  bond-type one-hot (single, double, triple, aromatic; all zero for non-bonded pairs) and the interatomic
  distance in Å (``Distance(norm=False)``). ``graph="bond"`` keeps the bonded pairs only;
* ``features`` (:data:`FEATURE_SETS`): ``"reference"`` (default) gives the inputs the papers' models saw.
  PyG's ``QM9`` (which the Nash-MTL, IGB and LibMTL code train on) reads ``gdb9.sdf`` with RDKit
  ``sanitize=False``: hybridisation stays unset, so the sp/sp2/sp3 columns are all zero, and the SDF's
  kekulé bonds carry no aromatic flag, so the aromatic node column and the aromatic bond column are all zero
  (constant columns are kept, as in PyG). Our input is qm9pack's SMILES, not the SDF, so the molecule is
  built from the SMILES, kekulized with ``clearAromaticFlags=True`` (bond types single/double/triple only)
  and its aromatic and hybridisation features set to zero. The kekulé structure RDKit picks can place the
  double bonds of a ring differently from the SDF's (the same molecule, another resonance form). ``"rdkit"``:
  the chemically
  sanitised SMILES's flags (aromatic atoms and bonds, hybridisation always set: ~5% of atoms aromatic), more
  informative than what the papers' models had (pyg-team/pytorch_geometric#2163);
* atom order and coordinates: those of the published geometry. RDKit's atom order from the SMILES can
  differ from the XYZ order, so atoms are aligned by graph matching: the SMILES graph (with explicit
  hydrogens) must embed into the geometry's contact graph (pairs closer than 1.3 × the sum of covalent
  radii), elements matching. The match is an isomorphism for ~95% of the molecules; strained cages have
  extra short non-bonded contacts (kept: the SMILES bonds are still all found). Molecules that cannot be
  aligned are dropped and counted (``stats``).

Targets (the 11 of Nash-MTL / IGB / DB-MTL, in the units their tables report MAE in): μ (D), α (a₀³),
ε_HOMO, ε_LUMO (meV), ⟨R²⟩ (a₀²), ZPVE (meV), the atomization energies U0, U, H, G (meV: total energy minus
the QM9 per-atom reference energies :data:`ATOMREF_HARTREE`) and c_v (cal/mol K). Training uses MSE on
targets z-scored with statistics of the training split only (the reference code's statistics include the
validation and test molecules; ours do not). Metrics are per-target MAE in the original units.

Split: a fixed seeded permutation ``π`` of the source rows (``split_seed``); walking ``π``, the k-th
usable molecule goes to test if ``k % 13 == 0``, to val if ``k % 13 == 1``, else to train, for the first
``min(130,000, usable)`` molecules, i.e. 10k / 10k / 110k. ``subset=S`` keeps the first ``S`` usable
molecules of ``π`` dealt the same way (≈ S/13 / S/13 / 11S/13): proportions are kept and each subset split
is contained in the corresponding full split. Only the molecules a subset needs are featurized.

Cache: ``$MTL_CACHE_DIR/qm9/`` or ``~/.cache/mtl-study/qm9/``, one versioned file per feature set
(``qm9-v<version>-<features>.pt``; its metadata names the feature set, checked on load) holding every
featurized molecule (built lazily: a subset featurizes only its own molecules; the first full build shows
a progress bar). It is validated on load (version, feature set, source fingerprint, RDKit version, shapes,
checksum); an invalid cache is rebuilt with a warning.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtl.data.base import MetricAccumulator, MTLDataset, Nested, TaskSpec, TrainDefaults, epoch_generator
from mtl.data.registry import DATASETS
from mtl.errors import ConfigError
from mtl.models.hps import HPS
from mtl.models.mpnn import CONV_IMPLEMENTATIONS, MPNNEncoder

# ---------------------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------------------

TASKS: tuple[str, ...] = ("mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U", "H", "G", "cv")
"""The 11 targets of Nash-MTL / IGB / DB-MTL (PyG indices 0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11)."""

UNITS: dict[str, str] = {
    "mu": "D",
    "alpha": "a0^3",
    "homo": "meV",
    "lumo": "meV",
    "r2": "a0^2",
    "zpve": "meV",
    "U0": "meV",
    "U": "meV",
    "H": "meV",
    "G": "meV",
    "cv": "cal/(mol K)",
}

HARTREE_TO_EV = 27.211386246
"""CODATA 2014 Hartree energy in eV (the value PyG uses)."""
HARTREE_TO_MEV = HARTREE_TO_EV * 1000.0

ATOMREF_HARTREE: dict[str, dict[str, float]] = {
    "U0": {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730},
    "U": {"H": -0.498857, "C": -37.845355, "N": -54.582445, "O": -75.063163, "F": -99.717314},
    "H": {"H": -0.497912, "C": -37.844411, "N": -54.581501, "O": -75.062219, "F": -99.716370},
    "G": {"H": -0.510927, "C": -37.861317, "N": -54.598897, "O": -75.079532, "F": -99.733544},
}
"""Per-atom reference energies (Hartree) of QM9, B3LYP/6-31G(2df,p): U0 at 0 K, U, H, G at 298.15 K.
Ramakrishnan et al. 2014, the dataset's ``atomref.txt`` (figshare 10.6084/m9.figshare.978904); the same
table, in eV, as PyG's ``torch_geometric.datasets.qm9.atomrefs``."""

# source column of each target and its factor to the report unit (energies: atomization, see above)
SOURCE_COLUMNS: dict[str, str] = {
    "mu": "Dipole_debye",
    "alpha": "Polarizability_bohr3",
    "homo": "HOMO_au",
    "lumo": "LUMO_au",
    "r2": "R2_bohr2",
    "zpve": "ZPVE_au",
    "U0": "InternalEnergy_0K_au",
    "U": "InternalEnergy_298K_au",
    "H": "Enthalphy_298K_au",  # sic: the qm9pack header's spelling
    "G": "GibbsFreeEnergy_298K_au",
    "cv": "Heatcapacity_Cv_cal_mol_K",
}
_FACTORS = {"homo": HARTREE_TO_MEV, "lumo": HARTREE_TO_MEV, "zpve": HARTREE_TO_MEV}

SOURCE_FILES: tuple[str, ...] = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
ATOM_TYPES: tuple[str, ...] = ("H", "C", "N", "O", "F")
ATOMIC_NUMBERS: dict[str, int] = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
COVALENT_RADII: dict[str, float] = {"H": 0.31, "C": 0.76, "N": 0.71, "O": 0.66, "F": 0.57}
"""Å, Cordero et al., Dalton Trans. 2008 (C: sp3)."""
CONTACT_FACTOR = 1.3
"""Atoms closer than this × the sum of their covalent radii are in contact (RDKit's DetermineConnectivity
uses the same factor)."""
NUM_NODE_FEATURES = 11
NUM_EDGE_FEATURES = 5
SPLIT_PERIOD = 13  # k % 13: 0 -> test, 1 -> val, else train  (10k / 10k / 110k)
MAX_MOLECULES = 130_000
CACHE_VERSION = 2
FEATURE_SETS: tuple[str, ...] = ("reference", "rdkit")
"""Node/bond features (module docstring): ``reference`` = PyG's (RDKit ``sanitize=False``), ``rdkit`` =
sanitised."""
FAILURE_REASONS: tuple[str, ...] = ("smiles", "atoms", "bond_type", "geometry")
"""Why a molecule is dropped: RDKit cannot parse the SMILES; its atoms (with hydrogens) differ from the
geometry's; a bond type outside single/double/triple/aromatic; the SMILES graph does not embed into the
geometry's contact graph."""


# ---------------------------------------------------------------------------------------------------------
# Reading the source and computing the targets
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Featurization
# ---------------------------------------------------------------------------------------------------------


@dataclass
class MoleculeGraph:
    """One featurized molecule, atoms in the geometry's (XYZ) order.

    ``x`` uint8 [n, 11]; ``pos`` float32 [n, 3] (Å); ``bonds`` int64 [b, 2] (i < j); ``bond_type`` int64 [b]
    (0 single, 1 double, 2 triple, 3 aromatic); ``exact``: the SMILES graph is isomorphic to the geometry's
    contact graph (else it embeds with extra non-bonded contacts)."""

    x: np.ndarray
    pos: np.ndarray
    bonds: np.ndarray
    bond_type: np.ndarray
    exact: bool


def featurize(
    smiles: str, elements: Sequence[str], positions: np.ndarray, features: str = "reference"
) -> MoleculeGraph | str:
    """Featurize one molecule (see the module docstring; ``features`` one of :data:`FEATURE_SETS`); returns
    the failure reason (one of :data:`FAILURE_REASONS`) if it cannot be aligned with its geometry."""
    if features not in FEATURE_SETS:
        raise ConfigError(f"qm9 features must be one of {', '.join(FEATURE_SETS)}; got {features!r}")
    from rdkit import Chem, RDLogger
    from rdkit.Chem.rdchem import BondType, HybridizationType

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return "smiles"
    mol = Chem.AddHs(mol)
    sanitised = features == "rdkit"
    if not sanitised:  # PyG's sanitize=False inputs: kekulé bonds, no aromatic flags (hybridisation: below)
        try:
            Chem.Kekulize(mol, clearAromaticFlags=True)
        except Exception:  # RDKit raises KekulizeException (not exported on every version)
            return "bond_type"
    n = mol.GetNumAtoms()
    if (
        n != len(elements)
        or n != positions.shape[0]
        or any(e not in ATOMIC_NUMBERS for e in elements)
        or sorted(a.GetSymbol() for a in mol.GetAtoms()) != sorted(elements)
    ):
        return "atoms"
    bond_codes = {BondType.SINGLE: 0, BondType.DOUBLE: 1, BondType.TRIPLE: 2, BondType.AROMATIC: 3}
    if any(b.GetBondType() not in bond_codes for b in mol.GetBonds()):
        return "bond_type"

    # the geometry's contact graph, as an RDKit molecule with single bonds
    radii = np.asarray([COVALENT_RADII[e] for e in elements])
    dist = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    contact = np.triu(dist < CONTACT_FACTOR * (radii[:, None] + radii[None, :]), k=1)
    target = Chem.RWMol()
    for e in elements:
        target.AddAtom(Chem.Atom(ATOMIC_NUMBERS[e]))
    for i, j in zip(*np.nonzero(contact)):
        target.AddBond(int(i), int(j), BondType.SINGLE)
    target.UpdatePropertyCache(strict=False)
    # the SMILES graph stripped to elements and connectivity
    query = Chem.RWMol(mol)
    for atom in query.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(0)
    for bond in query.GetBonds():
        bond.SetBondType(BondType.SINGLE)
        bond.SetIsAromatic(False)
    query.UpdatePropertyCache(strict=False)
    match = target.GetSubstructMatch(query)  # match[smiles atom] = geometry atom
    if not match:
        return "geometry"

    hybrid = (HybridizationType.SP, HybridizationType.SP2, HybridizationType.SP3)
    x = np.zeros((n, NUM_NODE_FEATURES), dtype=np.uint8)
    for atom in mol.GetAtoms():
        j = match[atom.GetIdx()]
        x[j, ATOM_TYPES.index(atom.GetSymbol())] = 1
        x[j, 5] = atom.GetAtomicNum()
        if (
            sanitised
        ):  # else: 0, as PyG's unsanitised atoms (kekulized: no aromatic flag; hybridisation unset)
            x[j, 6] = int(atom.GetIsAromatic())
            h = atom.GetHybridization()
            for k, kind in enumerate(hybrid):
                x[j, 7 + k] = int(h == kind)
        x[j, 10] = sum(1 for nb in atom.GetNeighbors() if nb.GetAtomicNum() == 1)
    bonds = np.zeros((mol.GetNumBonds(), 2), dtype=np.int64)
    bond_type = np.zeros(mol.GetNumBonds(), dtype=np.int64)
    for k, bond in enumerate(mol.GetBonds()):
        a, b = match[bond.GetBeginAtomIdx()], match[bond.GetEndAtomIdx()]
        bonds[k] = (min(a, b), max(a, b))
        bond_type[k] = bond_codes[bond.GetBondType()]
    order = np.lexsort((bonds[:, 1], bonds[:, 0]))
    exact = int(contact.sum()) == mol.GetNumBonds()
    return MoleculeGraph(x, positions.astype(np.float32), bonds[order], bond_type[order], exact)


# ---------------------------------------------------------------------------------------------------------
# The featurized store and its cache
# ---------------------------------------------------------------------------------------------------------


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
def _file_lock(path: Path) -> Iterator[None]:
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


def split_permutation(num_rows: int, split_seed: int) -> Tensor:
    """The fixed seeded permutation π of the source rows."""
    return torch.randperm(num_rows, generator=torch.Generator().manual_seed(int(split_seed)))


def split_of_rank(k: int) -> str:
    """The split of the k-th (0-based) usable molecule along π."""
    r = k % SPLIT_PERIOD
    return "test" if r == 0 else "val" if r == 1 else "train"


# ---------------------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SplitData:
    """One split's molecules in flat tensors (float node features), ready for vectorized batching."""

    rows: Tensor
    atom_ptr: Tensor
    x: Tensor
    pos: Tensor
    bond_ptr: Tensor
    bonds: Tensor
    bond_type: Tensor
    y: Tensor  # raw targets, float64 [M, 11]

    def __len__(self) -> int:
        return int(self.rows.numel())


def _gather_ranges(ptr: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenated ranges ``ptr[i]:ptr[i+1]`` for ``i`` in ``idx``; returns (flat indices, lengths)."""
    lengths = ptr[idx + 1] - ptr[idx]
    offsets = torch.cumsum(lengths, 0) - lengths
    flat = torch.arange(int(lengths.sum())) + torch.repeat_interleave(ptr[idx] - offsets, lengths)
    return flat, lengths


def select_split(store: MoleculeStore, indices: Sequence[int]) -> SplitData:
    """The molecules ``store[indices]`` (in that order) as a :class:`SplitData`."""
    idx = torch.as_tensor(list(indices), dtype=torch.int64)
    t = store.t
    atoms, n_atoms = _gather_ranges(t["atom_ptr"], idx)
    bonds, n_bonds = _gather_ranges(t["bond_ptr"], idx)
    zero = torch.zeros(1, dtype=torch.int64)
    return SplitData(
        rows=t["rows"][idx],
        atom_ptr=torch.cat([zero, torch.cumsum(n_atoms, 0)]),
        x=t["x"][atoms].float(),
        pos=t["pos"][atoms],
        bond_ptr=torch.cat([zero, torch.cumsum(n_bonds, 0)]),
        bonds=t["bonds"][bonds].long(),
        bond_type=t["bond_type"][bonds].long(),
        y=t["y"][idx],
    )


def make_batch(data: SplitData, idx: Tensor, graph: str = "complete") -> Any:
    """A PyG ``Batch`` of molecules ``idx`` of ``data``: ``x`` [N, 11], ``edge_index`` [2, E], ``edge_attr``
    [E, 5] (bond one-hot, distance), ``batch``, ``ptr``; edges sorted by (source, target) as PyG's
    ``Complete`` transform leaves them. ``graph="complete"``: all ordered pairs i ≠ j of a molecule
    (non-bonded pairs get an all-zero bond one-hot); ``"bond"``: bonded pairs only."""
    from mtl.models.pyg import import_pyg

    import_pyg()  # without PyG's torch.jit.script deprecation warnings
    from torch_geometric.data import Batch

    atoms, n = _gather_ranges(data.atom_ptr, idx)
    bond_rows, nb = _gather_ranges(data.bond_ptr, idx)
    num_graphs = idx.numel()
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(n, 0)])
    x, pos = data.x[atoms], data.pos[atoms]
    batch = torch.repeat_interleave(torch.arange(num_graphs), n)
    bond_graph = torch.repeat_interleave(torch.arange(num_graphs), nb)
    a, b = data.bonds[bond_rows, 0], data.bonds[bond_rows, 1]
    btype = data.bond_type[bond_rows]
    if graph == "complete":
        counts = n * (n - 1)
        eptr = torch.cumsum(counts, 0) - counts
        edge_graph = torch.repeat_interleave(torch.arange(num_graphs), counts)
        local = torch.arange(int(counts.sum())) - eptr[edge_graph]
        degree = (n - 1)[edge_graph]
        i = torch.div(local, degree, rounding_mode="floor")
        j = local - i * degree
        j = j + (j >= i).long()
        row, col = ptr[edge_graph] + i, ptr[edge_graph] + j
        attr = torch.zeros(row.numel(), NUM_EDGE_FEATURES)
        deg_b = (n - 1)[bond_graph]
        ab = eptr[bond_graph] + a * deg_b + b - (b > a).long()
        ba = eptr[bond_graph] + b * deg_b + a - (a > b).long()
        attr[ab, btype] = 1.0
        attr[ba, btype] = 1.0
    elif graph == "bond":
        off = ptr[bond_graph]
        row = torch.cat([off + a, off + b])
        col = torch.cat([off + b, off + a])
        types = torch.cat([btype, btype])
        order = torch.argsort(row * ptr[-1] + col)
        row, col, types = row[order], col[order], types[order]
        attr = torch.zeros(row.numel(), NUM_EDGE_FEATURES)
        attr[torch.arange(row.numel()), types] = 1.0
    else:
        raise ConfigError(f"unknown QM9 graph '{graph}'; valid: complete, bond")
    attr[:, 4] = (pos[row] - pos[col]).norm(dim=-1)
    return Batch(x=x, edge_index=torch.stack([row, col]), edge_attr=attr, batch=batch, ptr=ptr)


# ---------------------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------------------


class QM9MAE(MetricAccumulator):
    """Per-target MAE in the original units: predictions and targets are z-scored, so the absolute error
    is scaled back by the training standard deviation."""

    def __init__(self, task_names: Sequence[str], std: Tensor) -> None:
        self.task_names = list(task_names)
        self.std = std.double()
        self.abs_err = torch.zeros(len(self.task_names), dtype=torch.float64)
        self.count = 0

    def update(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> None:
        for t, name in enumerate(self.task_names):
            diff = preds[name].detach().reshape(-1).double() - targets[name].detach().reshape(-1).double()
            self.abs_err[t] += diff.abs().sum().cpu()
        self.count += int(next(iter(targets.values())).shape[0])

    def compute(self) -> Nested:
        if self.count == 0:
            raise ValueError("no molecules were evaluated")
        mae = self.abs_err * self.std / self.count
        return {name: {"mae": float(mae[t])} for t, name in enumerate(self.task_names)}


@DATASETS.register("qm9")
class QM9Dataset(MTLDataset):
    """QM9 with the Gilmer MPNN (see the module docstring).

    ``subset``: use the first ``subset`` usable molecules of π (quick CPU runs; only those are
    featurized). ``limit``: read only the first ``limit`` source rows, no cache (tests). ``graph``:
    ``complete`` (the papers') or ``bond``. ``features``: ``reference`` (default: PyG's inputs, as the papers'
    models saw them) or ``rdkit`` (sanitised; see the module docstring). ``cache_dir``: default
    :func:`default_cache_dir`;
    ``source``: a directory with the qm9pack CSVs (default: the installed package's). ``rebuild``: ignore
    an existing cache. ``progress``: show the featurization progress bar and a summary on stderr.
    """

    name = "qm9"
    tasks = tuple(TaskSpec(t, {"mae": False}) for t in TASKS)
    defaults = TrainDefaults(
        lr=1e-3,
        batch_size=128,
        optimizer="adam",
        scheduler="plateau",
        scheduler_kwargs={"factor": 0.7, "patience": 5, "min_lr": 1e-5},
        epochs=300,
    )
    architectures = ("hps",)
    model_arguments = ("dim", "steps", "set2set_steps", "conv")

    def __init__(
        self,
        subset: int | None = None,
        limit: int | None = None,
        split_seed: int = 0,
        graph: str = "complete",
        features: str = "reference",
        cache_dir: str | os.PathLike[str] | None = None,
        source: str | os.PathLike[str] | None = None,
        rebuild: bool = False,
        progress: bool = True,
    ) -> None:
        self.check_arguments(
            {"subset": subset, "limit": limit, "split_seed": split_seed, "graph": graph, "features": features}
        )
        self.subset, self.limit, self.split_seed, self.graph = subset, limit, int(split_seed), graph
        self.features = features
        self.progress = progress
        self.source_dir = Path(source) if source is not None else source_dir()
        self.cache_path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / (
            f"qm9-v{CACHE_VERSION}-{features}.pt"
        )
        self._raw: RawQM9 | None = None
        self._fingerprint: list[str] = []
        self._ignore_disk = False
        t0 = time.perf_counter()
        store, num_rows = self._load_store(rebuild)
        store, chosen = self._choose(store, num_rows)
        self.build_seconds = time.perf_counter() - t0
        self.stats = store.stats()
        self.stats.update(source_rows=num_rows, used=len(chosen))

        by_split: dict[str, list[int]] = {"train": [], "val": [], "test": []}
        for k, row in enumerate(chosen):
            by_split[split_of_rank(k)].append(store.index_of[row])
        self.splits = {s: select_split(store, idx) for s, idx in by_split.items()}
        for s, data in self.splits.items():
            self.stats[f"num_{s}"] = len(data)
        if len(self.splits["train"]) < 2:
            raise ConfigError("qm9: fewer than 2 training molecules; raise subset/limit")
        y_train = self.splits["train"].y
        self.target_mean = y_train.mean(0)
        self.target_std = y_train.std(0).clamp_min(1e-12)
        self._z = {s: ((d.y - self.target_mean) / self.target_std).float() for s, d in self.splits.items()}

    @classmethod
    def check_arguments(cls, args: Mapping[str, Any]) -> None:
        subset, limit, graph = args.get("subset"), args.get("limit"), args.get("graph", "complete")
        if subset is not None and (not isinstance(subset, int) or subset < SPLIT_PERIOD):
            raise ConfigError(f"qm9 subset must be an integer >= {SPLIT_PERIOD}, got {subset!r}")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"qm9 limit must be a positive integer, got {limit!r}")
        if graph not in ("complete", "bond"):
            raise ConfigError(f"qm9 graph must be 'complete' or 'bond', got {graph!r}")
        features = args.get("features", "reference")
        if features not in FEATURE_SETS:
            raise ConfigError(f"qm9 features must be one of {', '.join(FEATURE_SETS)}; got {features!r}")
        super().check_arguments(args)

    @classmethod
    def check_model_arguments(cls, architecture: str, kwargs: Mapping[str, Any]) -> None:
        super().check_model_arguments(architecture, kwargs)
        for key in ("dim", "steps", "set2set_steps"):
            value = kwargs.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"qm9 model argument {key} must be an integer >= 1, got {value!r}")
        if kwargs.get("conv", "factorized") not in CONV_IMPLEMENTATIONS:
            valid = ", ".join(CONV_IMPLEMENTATIONS)
            raise ConfigError(f"qm9 model argument conv must be one of {valid}, got {kwargs['conv']!r}")

    # -- building ------------------------------------------------------------------------------------
    def _raw_source(self) -> RawQM9:
        if self._raw is None:
            self._raw = read_source(self.source_dir, self.limit)
        return self._raw

    def _featurize_rows(self, store: MoleculeStore, rows: Sequence[int], desc: str) -> None:
        from tqdm.auto import tqdm

        raw = self._raw_source()
        results: list[MoleculeGraph | str] = []
        for row in tqdm(rows, desc=desc, unit="mol", disable=not self.progress, file=sys.stderr):
            try:
                positions = parse_xyz(raw.xyz[row])
            except ValueError:
                results.append("atoms")
                continue
            results.append(featurize(raw.smiles[row], raw.elements[row], positions, self.features))
        store.add(rows, results, raw.y[list(rows)])

    def _load_store(self, rebuild: bool) -> tuple[MoleculeStore, int]:
        """The store (from the cache when possible) and the number of source rows."""
        if self.limit is not None:  # tests / debugging: straight from the CSVs, no cache
            return MoleculeStore(), len(self._raw_source())
        self._fingerprint = source_fingerprint(self.source_dir)
        if not rebuild and self.cache_path.is_file():
            try:
                store, meta = load_cache(self.cache_path, self._fingerprint, self.features)
                return store, int(meta["num_rows"])
            except CacheError as exc:
                warnings.warn(f"QM9 cache {self.cache_path} is invalid ({exc}); rebuilding it", stacklevel=3)
        self._ignore_disk = True  # rebuild: never merge with what is on disk
        return MoleculeStore(), len(self._raw_source())

    def _ensure(self, store: MoleculeStore, rows: Sequence[int], num_rows: int, desc: str) -> MoleculeStore:
        """Featurize the rows of ``rows`` the store lacks, and (unless ``limit``) update the cache under a
        file lock, first picking up what concurrent builders cached meanwhile."""
        if all(store.known(r) for r in rows):
            return store
        t0 = time.perf_counter()
        if self.limit is not None:
            missing = [r for r in rows if not store.known(r)]
            self._featurize_rows(store, missing, desc)
        else:
            with _file_lock(self.cache_path.with_name(self.cache_path.name + ".lock")):
                if not self._ignore_disk and self.cache_path.is_file():
                    with contextlib.suppress(CacheError):
                        disk, _ = load_cache(self.cache_path, self._fingerprint, self.features)
                        if all(disk.known(r) for r in store.index_of) and len(disk) >= len(store):
                            store = disk
                missing = [r for r in rows if not store.known(r)]
                self._featurize_rows(store, missing, desc)
                save_cache(self.cache_path, store, self._fingerprint, num_rows, self.features)
                self._ignore_disk = False
        self._report(store, time.perf_counter() - t0, len(missing))
        return store

    def _choose(self, store: MoleculeStore, num_rows: int) -> tuple[MoleculeStore, list[int]]:
        """The used source rows in π order (the first ``subset`` or 130,000 usable ones), featurizing and
        caching what is missing: everything for the full set, only the subset's molecules otherwise."""
        pi = split_permutation(num_rows, self.split_seed).tolist()
        if self.subset is None:
            store = self._ensure(
                store, range(num_rows), num_rows, "QM9: featurizing molecules (one-time cache build)"
            )
        target = min(self.subset or MAX_MOLECULES, num_rows)
        chosen: list[int] = []
        pos = 0
        while len(chosen) < target and pos < num_rows:
            block = pi[pos : pos + (target - len(chosen))]
            store = self._ensure(store, block, num_rows, "QM9: featurizing the subset's molecules")
            chosen.extend(r for r in block if r in store.index_of)
            pos += len(block)
        if self.subset is not None and len(chosen) < self.subset:
            raise ConfigError(f"qm9 subset={self.subset} exceeds the {len(chosen)} usable molecules")
        return store, chosen

    def _report(self, store: MoleculeStore, seconds: float, processed: int) -> None:
        if not self.progress:
            return
        s = store.stats()
        reasons = ", ".join(f"{k} {v}" for k, v in s["dropped_by_reason"].items() if v) or "none"
        print(
            f"QM9: featurized {processed} molecules in {seconds:.1f}s; cache holds {s['featurized']} "
            f"(aligned exactly {s['exact_alignment']}, with extra contacts {s['embedded_alignment']}), "
            f"dropped {s['dropped']} ({reasons})",
            file=sys.stderr,
            flush=True,
        )

    # -- the MTLDataset contract ------------------------------------------------------------------
    def split_size(self, split: str) -> int:
        return len(self.splits[split])

    def loader(self, split: str, batch_size: int, shuffle: bool, seed: int, epoch: int) -> Iterator[Any]:
        data, z = self.splits[split], self._z[split]
        n = len(data)
        order = torch.randperm(n, generator=epoch_generator(seed, epoch)) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield make_batch(data, idx, self.graph), {t: z[idx, i] for i, t in enumerate(TASKS)}

    def device_loader(self, device: torch.device | str) -> Any:
        """The batches of :meth:`loader`, gathered on ``device`` from tensors resident there
        (:class:`mtl.data.qm9_device.QM9DeviceBatches`; its ``loader`` has this ``loader``'s signature)."""
        from mtl.data.qm9_device import QM9DeviceBatches

        return QM9DeviceBatches(self.splits, self._z, TASKS, self.graph, device)

    def build_model(self, architecture: str = "hps", **kwargs: Any) -> HPS:
        """HPS over the Gilmer MPNN (:class:`mtl.models.mpnn.MPNNEncoder`) with 11 ``Linear(dim, 1)``
        heads. Model kwargs: ``dim`` (64), ``steps`` (3), ``set2set_steps`` (3), ``conv``
        (``factorized`` | ``pyg``)."""
        self.check_model_arguments(architecture, kwargs)
        dim = int(kwargs.get("dim", 64))
        try:
            encoder = MPNNEncoder(
                NUM_NODE_FEATURES,
                NUM_EDGE_FEATURES,
                dim=dim,
                steps=int(kwargs.get("steps", 3)),
                set2set_steps=int(kwargs.get("set2set_steps", 3)),
                conv=str(kwargs.get("conv", "factorized")),
            )
        except ValueError as exc:
            raise ConfigError(f"qm9 model: {exc}") from exc
        return HPS(encoder, {t: nn.Linear(dim, 1) for t in TASKS})

    def losses(self, preds: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        """MSE per target on z-scored targets, [11] in :data:`TASKS` order."""
        return torch.stack([F.mse_loss(preds[t].reshape(-1), targets[t].reshape(-1)) for t in TASKS])

    def metric_accumulator(self) -> QM9MAE:
        return QM9MAE(TASKS, self.target_std)

    def describe(self) -> str:
        """A one-line summary (sizes, drops)."""
        s = self.stats
        return (
            f"qm9: {s['num_train']}/{s['num_val']}/{s['num_test']} train/val/test of {s['source_rows']} "
            f"source rows; {s['dropped']} dropped so far ({s['dropped_by_reason']})"
        )
