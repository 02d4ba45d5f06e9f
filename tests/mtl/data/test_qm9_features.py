"""QM9 input features: ``reference`` (default) = PyG's QM9 as read from gdb9.sdf with RDKit sanitize=False
(no aromatic atoms or bonds, hybridisation unset), ``rdkit`` = the sanitised SMILES's flags; a cache each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rdkit import Chem

from mtl.data import build_dataset, qm9
from mtl.data.qm9 import FEATURE_SETS, featurize, load_cache, parse_xyz, read_source, source_dir
from mtl.errors import ConfigError
from tests.mtl.data.test_qm9 import _write_fixture

AROMATIC, SP, SP2, SP3 = 6, 7, 8, 9
AROMATIC_BOND = 3


@pytest.fixture(scope="module")
def raw():
    return read_source(source_dir(), 300)


@pytest.fixture(scope="module")
def aromatic_rows(raw):
    """Rows of molecules RDKit's sanitisation calls aromatic (pyrrole, imidazole, furan, ... in the first
    300 rows)."""
    rows = []
    for row, smiles in enumerate(raw.smiles):
        mol = Chem.MolFromSmiles(smiles)
        if mol is not None and any(a.GetIsAromatic() for a in mol.GetAtoms()):
            rows.append(row)
    assert len(rows) >= 4
    return rows


def graph(raw, row, features):
    g = featurize(raw.smiles[row], raw.elements[row], parse_xyz(raw.xyz[row]), features)
    assert not isinstance(g, str), g
    return g


def test_reference_is_the_default_and_both_sets_are_listed():
    assert FEATURE_SETS == ("reference", "rdkit")
    import inspect

    assert inspect.signature(qm9.QM9Dataset).parameters["features"].default == "reference"
    assert inspect.signature(featurize).parameters["features"].default == "reference"


def test_aromatic_molecules_have_pygs_unsanitised_features(raw, aromatic_rows):
    assert raw.smiles[aromatic_rows[0]] == "N1C=CC=C1"  # pyrrole
    for row in aromatic_rows:
        ref, san = graph(raw, row, "reference"), graph(raw, row, "rdkit")
        # reference: no aromatic atom, hybridisation unset, kekulé bonds only
        assert not ref.x[:, AROMATIC].any() and not ref.x[:, SP : SP3 + 1].any()
        assert set(ref.bond_type.tolist()) <= {0, 1, 2} and AROMATIC_BOND not in ref.bond_type.tolist()
        assert (ref.bond_type == 1).sum() >= 1  # the ring's kekulé double bonds
        # rdkit: the sanitised flags are there
        assert san.x[:, AROMATIC].sum() >= 5 and san.x[:, SP2].sum() >= 5
        assert (san.bond_type == AROMATIC_BOND).sum() >= 5
        # everything else is the same: atom types, Z, bonded H counts, coordinates, the bonded pairs
        np.testing.assert_array_equal(ref.x[:, :6], san.x[:, :6])
        np.testing.assert_array_equal(ref.x[:, 10], san.x[:, 10])
        np.testing.assert_array_equal(ref.pos, san.pos)
        np.testing.assert_array_equal(ref.bonds, san.bonds)


def test_every_molecule_has_zero_aromatic_and_hybridisation_columns_under_reference(raw):
    nonzero_rdkit = 0
    for row in range(0, 300, 3):
        ref = featurize(raw.smiles[row], raw.elements[row], parse_xyz(raw.xyz[row]), "reference")
        if isinstance(ref, str):
            continue
        assert not ref.x[:, AROMATIC : SP3 + 1].any()
        assert AROMATIC_BOND not in ref.bond_type.tolist()
        san = featurize(raw.smiles[row], raw.elements[row], parse_xyz(raw.xyz[row]), "rdkit")
        nonzero_rdkit += int(san.x[:, SP : SP3 + 1].any())
    assert nonzero_rdkit >= 90  # under rdkit hybridisation is set on (nearly) every molecule


def test_unknown_feature_set_is_refused_listing_the_valid_ones(raw):
    with pytest.raises(ConfigError, match="features must be one of reference, rdkit; got 'pyg'"):
        build_dataset("qm9", features="pyg", limit=30, progress=False)
    with pytest.raises(ConfigError, match="reference, rdkit"):
        featurize(raw.smiles[0], raw.elements[0], parse_xyz(raw.xyz[0]), "sanitized")


def test_each_feature_set_has_its_own_cache(tmp_path, monkeypatch):
    src = _write_fixture(tmp_path / "src", 60)
    cache = tmp_path / "cache"
    kw = {"source": str(src), "cache_dir": str(cache), "subset": 52, "progress": False}
    ref = build_dataset("qm9", **kw)
    assert (cache / f"qm9-v{qm9.CACHE_VERSION}-reference.pt").is_file()
    assert not (cache / f"qm9-v{qm9.CACHE_VERSION}-rdkit.pt").exists()
    san = build_dataset("qm9", features="rdkit", **kw)  # must featurize, not reuse the reference cache
    assert (cache / f"qm9-v{qm9.CACHE_VERSION}-rdkit.pt").is_file()
    x_ref = torch.cat([ref.splits[s].x for s in ("train", "val", "test")])
    x_san = torch.cat([san.splits[s].x for s in ("train", "val", "test")])
    assert x_ref[:, AROMATIC : SP3 + 1].abs().sum() == 0 and x_san[:, SP : SP3 + 1].abs().sum() > 0
    # both now come from their own cache, without featurizing
    monkeypatch.setattr(
        qm9.dataset, "featurize", lambda *a: (_ for _ in ()).throw(AssertionError("featurized"))
    )
    for features, expected in (("reference", x_ref), ("rdkit", x_san)):
        again = build_dataset("qm9", features=features, **kw)
        torch.testing.assert_close(torch.cat([again.splits[s].x for s in ("train", "val", "test")]), expected)
    # a cache file holding the other set is refused on load
    fingerprint = qm9.source_fingerprint(src)
    with pytest.raises(qm9.CacheError, match="holds features 'reference', not 'rdkit'"):
        load_cache(cache / f"qm9-v{qm9.CACHE_VERSION}-reference.pt", fingerprint, "rdkit")
