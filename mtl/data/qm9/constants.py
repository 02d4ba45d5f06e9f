"""QM9 constants: the 11 targets and their units, the atom reference energies, the source columns, the
feature sizes, the split period and the cache version."""

from __future__ import annotations

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
"""Bond one-hot (single, double, triple, aromatic) + interatomic distance."""
GRAPHS: tuple[str, ...] = ("complete", "bond")
"""A batch's edges: all ordered atom pairs of a molecule (PyG's ``Complete``), or the bonded pairs only."""
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
