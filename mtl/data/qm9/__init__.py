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

The package, one job per module: :mod:`~mtl.data.qm9.constants`, :mod:`~mtl.data.qm9.source` (CSVs and
targets), :mod:`~mtl.data.qm9.features` (featurization and atom alignment), :mod:`~mtl.data.qm9.store`
(featurized molecules, cache and lock), :mod:`~mtl.data.qm9.split`, :mod:`~mtl.data.qm9.batching`,
:mod:`~mtl.data.qm9.metrics`, :mod:`~mtl.data.qm9.dataset` (the registered dataset) and
:mod:`~mtl.data.qm9.device` (batches gathered on the training device); the public names of all but the last
are re-exported here.
"""

from __future__ import annotations

from mtl.data.qm9.batching import SplitData, make_batch, select_split
from mtl.data.qm9.constants import (
    ATOM_TYPES,
    ATOMIC_NUMBERS,
    ATOMREF_HARTREE,
    CACHE_VERSION,
    CONTACT_FACTOR,
    COVALENT_RADII,
    FAILURE_REASONS,
    FEATURE_SETS,
    HARTREE_TO_EV,
    HARTREE_TO_MEV,
    MAX_MOLECULES,
    NUM_EDGE_FEATURES,
    NUM_NODE_FEATURES,
    SOURCE_COLUMNS,
    SOURCE_FILES,
    SPLIT_PERIOD,
    TASKS,
    UNITS,
)
from mtl.data.qm9.dataset import QM9Dataset
from mtl.data.qm9.features import MoleculeGraph, featurize
from mtl.data.qm9.metrics import QM9MAE
from mtl.data.qm9.source import (
    RawQM9,
    atomization_energy_mev,
    parse_elements,
    parse_xyz,
    read_source,
    source_dir,
    source_fingerprint,
    targets_from_record,
)
from mtl.data.qm9.split import split_of_rank, split_permutation
from mtl.data.qm9.store import CacheError, MoleculeStore, default_cache_dir, file_lock, load_cache, save_cache

__all__ = [
    "ATOMIC_NUMBERS",
    "ATOMREF_HARTREE",
    "ATOM_TYPES",
    "CACHE_VERSION",
    "CONTACT_FACTOR",
    "COVALENT_RADII",
    "FAILURE_REASONS",
    "FEATURE_SETS",
    "HARTREE_TO_EV",
    "HARTREE_TO_MEV",
    "MAX_MOLECULES",
    "NUM_EDGE_FEATURES",
    "NUM_NODE_FEATURES",
    "QM9MAE",
    "SOURCE_COLUMNS",
    "SOURCE_FILES",
    "SPLIT_PERIOD",
    "TASKS",
    "UNITS",
    "CacheError",
    "MoleculeGraph",
    "MoleculeStore",
    "QM9Dataset",
    "RawQM9",
    "SplitData",
    "atomization_energy_mev",
    "default_cache_dir",
    "featurize",
    "file_lock",
    "load_cache",
    "make_batch",
    "parse_elements",
    "parse_xyz",
    "read_source",
    "save_cache",
    "select_split",
    "source_dir",
    "source_fingerprint",
    "split_of_rank",
    "split_permutation",
    "targets_from_record",
]
