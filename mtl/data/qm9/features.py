"""Featurization: one molecule's graph as PyG's QM9 builds it (``reference``) or from the sanitised
SMILES (``rdkit``), with the SMILES graph aligned to the published geometry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtl.checks import check_choice
from mtl.data.qm9.constants import (
    ATOM_TYPES,
    ATOMIC_NUMBERS,
    CONTACT_FACTOR,
    COVALENT_RADII,
    FEATURE_SETS,
    NUM_NODE_FEATURES,
)


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
    check_choice("qm9", "features", features, FEATURE_SETS)
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
