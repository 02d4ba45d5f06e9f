"""QM9 from qm9pack: featurization and atom alignment, unit conversions, batching, splits, statistics, cache,
the factorized NNConv, and short training runs (all on the first few hundred source rows: no full build)."""

import csv
import itertools
import math

import numpy as np
import pytest
import torch
from torch_geometric.nn import NNConv

from mtl.cli import main
from mtl.config import TrainConfig
from mtl.data import build_dataset, qm9
from mtl.data.qm9 import (
    ATOMREF_HARTREE,
    COVALENT_RADII,
    HARTREE_TO_MEV,
    TASKS,
    atomization_energy_mev,
    featurize,
    make_batch,
    parse_elements,
    parse_xyz,
    read_source,
    source_dir,
    split_of_rank,
    targets_from_record,
)
from mtl.errors import ConfigError
from mtl.evaluation import delta_p
from mtl.models.mpnn import FactorizedNNConv, MPNNEncoder, group_by_source
from mtl.train import fit

LIMIT = 500


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a loaded 2-core machine, two OpenMP threads make these small graphs ~5x
    slower (threads wait on each other), so the module runs single-threaded and restores the setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def raw():
    return read_source(source_dir(), LIMIT)


@pytest.fixture(scope="module")
def small():
    return build_dataset("qm9", limit=400, progress=False)


def _graph(raw, row, features="rdkit"):
    """The sanitised features (hybridisation and aromaticity set) unless ``features`` says otherwise; the
    default "reference" features are tested in test_qm9_features.py."""
    g = featurize(raw.smiles[row], raw.elements[row], parse_xyz(raw.xyz[row]), features)
    assert not isinstance(g, str), g
    return g


def _x(symbol, z, aromatic, hyb, num_hs):
    """Expected node features: one-hot H C N O F, Z, aromatic, sp, sp2, sp3, number of bonded H."""
    onehot = [int(symbol == s) for s in "HCNOF"]
    return [*onehot, z, aromatic, int(hyb == "sp"), int(hyb == "sp2"), int(hyb == "sp3"), num_hs]


# --- featurization and alignment -------------------------------------------------------------------------


def test_source_columns_and_parsing(raw):
    assert raw.ids[:5].tolist() == [1, 2, 3, 4, 5]
    assert raw.smiles[:5] == ["C", "N", "O", "C#C", "C#N"]
    assert parse_elements("['C','H','H']") == ["C", "H", "H"]
    xyz = parse_xyz("[[0.5995394918,0.,1.],[-2.1997E-6,0.,1.]]")
    np.testing.assert_allclose(xyz, [[0.5995394918, 0.0, 1.0], [-2.1997e-6, 0.0, 1.0]])


def test_methane_water_hcn(raw):
    ch4 = _graph(raw, 0)
    assert ch4.x.shape == (5, 11) and ch4.bonds.shape == (4, 2)
    assert ch4.x.tolist() == [_x("C", 6, 0, "sp3", 4)] + [_x("H", 1, 0, None, 0)] * 4
    assert ch4.bonds.tolist() == [[0, 1], [0, 2], [0, 3], [0, 4]] and ch4.bond_type.tolist() == [0] * 4
    np.testing.assert_allclose(ch4.pos, parse_xyz(raw.xyz[0]).astype(np.float32))
    assert ch4.exact

    water = _graph(raw, 2)
    assert water.x.tolist() == [_x("O", 8, 0, "sp3", 2), _x("H", 1, 0, None, 0), _x("H", 1, 0, None, 0)]
    assert water.bonds.tolist() == [[0, 1], [0, 2]]

    hcn = _graph(raw, 4)  # XYZ order C, N, H
    assert hcn.x.tolist() == [_x("C", 6, 0, "sp", 1), _x("N", 7, 0, "sp", 0), _x("H", 1, 0, None, 0)]
    assert hcn.bonds.tolist() == [[0, 1], [0, 2]] and hcn.bond_type.tolist() == [2, 0]  # triple, single


def test_aromatic_pyrrole(raw):
    row = 49
    assert raw.smiles[row] == "N1C=CC=C1"
    g = _graph(raw, row)
    assert g.x.shape == (10, 11) and g.bonds.shape == (10, 2)
    heavy = g.x[:5]
    assert heavy[:, 6].tolist() == [1] * 5  # all ring atoms aromatic
    assert heavy[:, 8].tolist() == [1] * 5  # sp2
    assert heavy[:, 10].tolist() == [1, 1, 1, 1, 1]  # N-H and four C-H
    types = sorted(g.bond_type.tolist())
    assert types == [0] * 5 + [3] * 5  # 5 X-H single, 5 aromatic ring bonds


def _check_alignment(raw, row, g):
    """Elements follow the XYZ order, coordinates are the XYZ ones, every bond has a bonding length and
    every hydrogen has exactly one bond."""
    elements = raw.elements[row]
    pos = parse_xyz(raw.xyz[row])
    symbols = ["HCNOF"[int(np.argmax(v[:5]))] for v in g.x]
    assert symbols == elements
    np.testing.assert_allclose(g.pos, pos.astype(np.float32))
    degree = np.zeros(len(elements), dtype=int)
    for (a, b), t in zip(g.bonds.tolist(), g.bond_type.tolist()):
        d = np.linalg.norm(pos[a] - pos[b])
        assert 0.85 < d < 1.3 * (COVALENT_RADII[elements[a]] + COVALENT_RADII[elements[b]])
        if "H" in (elements[a], elements[b]):
            assert t == 0 and d < 1.2
        degree[a] += 1
        degree[b] += 1
    assert all(degree[i] == 1 for i, e in enumerate(elements) if e == "H")
    assert g.x[:, 10].tolist() == [
        sum(1 for a, b in g.bonds.tolist() if i in (a, b) and elements[b if a == i else a] == "H")
        for i in range(len(elements))
    ]


@pytest.mark.parametrize(
    "row, smiles",
    [
        (23, "C#CC#N"),  # XYZ order C, C, C, H, N: the hydrogen precedes a heavy atom
        (263, "[NH3+]CCC([O-])=O"),  # zwitterion, hydrogens interleaved with heavy atoms
        (476, "N#CC#CC#N"),  # SMILES heavy-atom order differs from the XYZ order
        (101, "C1C2CC1C2"),  # bicyclo[1.1.1]pentane: a short non-bonded C...C contact
    ],
)
def test_alignment_of_reordered_atoms(raw, row, smiles):
    assert raw.smiles[row] == smiles
    g = _graph(raw, row)
    _check_alignment(raw, row, g)
    if row == 101:
        assert not g.exact
    if row == 476:  # the nitrile carbons (bonded to N) are XYZ atoms 0 and 3 (N 4 and 5)
        triple = sorted(tuple(b) for b, t in zip(g.bonds.tolist(), g.bond_type.tolist()) if t == 2)
        assert len(triple) == 3 and all(g.x[a, 1] or g.x[b, 1] for a, b in triple)


def test_alignment_of_all_first_rows(raw):
    for row in range(len(raw)):
        g = _graph(raw, row)
        _check_alignment(raw, row, g)


def test_alignment_is_equivariant_to_permuting_the_xyz_atoms(raw):
    rng = np.random.default_rng(0)
    for row in (23, 49, 263, 476, 400):
        g = _graph(raw, row)
        els, pos = raw.elements[row], parse_xyz(raw.xyz[row])
        perm = rng.permutation(len(els))  # new atom k is old atom perm[k]
        gp = featurize(raw.smiles[row], [els[k] for k in perm], pos[perm], "rdkit")
        assert not isinstance(gp, str)
        np.testing.assert_array_equal(gp.x, g.x[perm])
        np.testing.assert_array_equal(gp.pos, g.pos[perm])
        old = {(int(a), int(b)): int(t) for (a, b), t in zip(g.bonds, g.bond_type)}
        new = {
            tuple(sorted((int(perm[a]), int(perm[b])))): int(t) for (a, b), t in zip(gp.bonds, gp.bond_type)
        }
        assert new.keys() == old.keys()
        if row == 263:
            # carboxylate: the SMILES' Kekulé double bond may land on either (equivalent) oxygen
            assert sorted(new.values()) == sorted(old.values())
        else:
            assert new == old


def test_failures_are_reported_not_raised(raw):
    pos = parse_xyz(raw.xyz[0])
    assert featurize("not a smiles ((", raw.elements[0], pos) == "smiles"
    assert featurize("N", raw.elements[0], pos) == "atoms"  # NH3 vs CH4 geometry
    far = pos.copy()
    far[1] += 5.0  # one hydrogen pulled away from the carbon
    assert featurize("C", raw.elements[0], far) == "geometry"


# --- targets and units -----------------------------------------------------------------------------------


def test_unit_conversions_against_hand_values(raw):
    # CH4 (QM9 id 1): HOMO -0.3877 Ha, U0 -40.47893 Ha; atomref U0: C -37.846772, H -0.500273 Ha
    assert HARTREE_TO_MEV == pytest.approx(27211.386246)
    y = dict(zip(TASKS, raw.y[0].tolist()))
    assert y["mu"] == 0.0 and y["alpha"] == 13.21 and y["r2"] == 35.3641 and y["cv"] == 6.469
    assert y["homo"] == pytest.approx(-0.3877 * 27211.386246)  # -10549.85 meV
    assert y["lumo"] == pytest.approx(0.1171 * 27211.386246)
    assert y["zpve"] == pytest.approx(0.044749 * 27211.386246)  # 1217.68 meV
    assert y["U0"] == pytest.approx(-17172.1807, abs=1e-3)  # (-40.47893 + 39.847864) Ha
    assert y["U"] == pytest.approx((-40.476062 + 37.845355 + 4 * 0.498857) * 27211.386246)
    assert y["H"] == pytest.approx((-40.475117 + 37.844411 + 4 * 0.497912) * 27211.386246)
    assert y["G"] == pytest.approx((-40.498597 + 37.861317 + 4 * 0.510927) * 27211.386246)
    # water (id 3): U0 -76.404702 Ha -> atomization -0.339156 Ha = -9229.0... meV
    assert atomization_energy_mev(-76.404702, ["O", "H", "H"], "U0") == pytest.approx(
        (-76.404702 + 75.064579 + 2 * 0.500273) * 27211.386246
    )
    record = {c: "1.0" for c in qm9.SOURCE_COLUMNS.values()}
    out = dict(zip(TASKS, targets_from_record(record, ["H"])))
    assert out["homo"] == pytest.approx(27211.386246) and out["mu"] == 1.0
    assert out["U0"] == pytest.approx((1.0 + 0.500273) * 27211.386246)


def test_atomrefs_match_pygs_ev_table():
    # torch_geometric.datasets.qm9.atomrefs (eV; targets 7-10 = U0, U, H, G; elements H, C, N, O, F)
    pyg = {
        "U0": [-13.61312172, -1029.86312267, -1485.30251237, -2042.61123593, -2713.48485589],
        "G": [-13.90303183, -1030.25891228, -1485.71166277, -2043.01812778, -2713.88796536],
    }
    for kind, values in pyg.items():
        for element, ev in zip("HCNOF", values):
            assert ATOMREF_HARTREE[kind][element] == pytest.approx(ev / 27.211386246, abs=2e-6)


def test_reference_table_and_delta_p(small):
    from mtl.data.references import reference

    assert small.reference == reference("qm9")  # DB-MTL Table 3 (numbers pinned in test_references.py)
    assert [t.name for t in small.tasks] == list(TASKS)
    assert small.reference["homo"]["mae"] == 58.82 and small.reference["cv"]["mae"] == 0.069
    same = delta_p(reference("qm9"), small.reference, small.higher_is_better)
    assert same == 0.0
    worse = {t: {"mae": 2 * m["mae"]} for t, m in reference("qm9").items()}
    assert delta_p(worse, small.reference, small.higher_is_better) == pytest.approx(-100.0)


# --- batching ----------------------------------------------------------------------------------------------


def _reference_complete(data, i):
    """Per molecule, by loops: the complete graph (no self loops) with bond one-hot and distance."""
    a0, a1 = int(data.atom_ptr[i]), int(data.atom_ptr[i + 1])
    b0, b1 = int(data.bond_ptr[i]), int(data.bond_ptr[i + 1])
    n = a1 - a0
    bond = {}
    for (a, b), t in zip(data.bonds[b0:b1].tolist(), data.bond_type[b0:b1].tolist()):
        bond[(a, b)] = bond[(b, a)] = t
    edges, attrs = [], []
    for u, v in itertools.product(range(n), range(n)):
        if u != v:
            onehot = [0.0] * 4
            if (u, v) in bond:
                onehot[bond[(u, v)]] = 1.0
            d = float((data.pos[a0 + u] - data.pos[a0 + v]).norm())
            edges.append((u, v))
            attrs.append([*onehot, d])
    return n, edges, attrs


def test_complete_graph_batch_matches_a_loop_reference(small):
    data = small.splits["train"]
    idx = torch.tensor([5, 0, 17, 3])
    batch = make_batch(data, idx)
    assert batch.num_graphs == 4 and batch.x.shape[1] == 11 and batch.edge_attr.shape[1] == 5
    offset, edges, attrs = 0, [], []
    for i in idx.tolist():
        n, e, a = _reference_complete(data, i)
        edges += [[u + offset, v + offset] for u, v in e]
        attrs += a
        offset += n
    assert batch.edge_index.t().tolist() == edges
    torch.testing.assert_close(batch.edge_attr, torch.tensor(attrs), atol=1e-5, rtol=0)
    sizes = [int(data.atom_ptr[i + 1] - data.atom_ptr[i]) for i in idx.tolist()]
    assert batch.batch.tolist() == [g for g, n in enumerate(sizes) for _ in range(n)]
    bond_batch = make_batch(data, idx, graph="bond")
    bonded = [(e, a) for e, a in zip(edges, attrs) if sum(a[:4]) == 1]
    assert bond_batch.edge_index.t().tolist() == [e for e, _ in bonded]
    torch.testing.assert_close(bond_batch.edge_attr, torch.tensor([a for _, a in bonded]), atol=1e-5, rtol=0)


def test_methane_in_a_batch(small):
    split = next(s for s in ("train", "val", "test") if 0 in small.splits[s].rows.tolist())
    data = small.splits[split]
    i = data.rows.tolist().index(0)
    b = make_batch(data, torch.tensor([i]))
    assert b.x.shape == (5, 11) and b.edge_index.shape == (2, 20)
    bonded = b.edge_attr[:, :4].sum(1) == 1
    assert int(bonded.sum()) == 8 and bool((b.edge_attr[bonded, 0] == 1).all())
    d = b.edge_attr[bonded, 4]
    assert bool(((d > 1.08) & (d < 1.10)).all())  # C-H 1.09 Å


# --- splits and statistics -----------------------------------------------------------------------------


def test_split_determinism_proportions_and_subset_nesting():
    a = build_dataset("qm9", limit=260, progress=False)
    b = build_dataset("qm9", limit=260, progress=False)
    for s in ("train", "val", "test"):
        assert torch.equal(a.splits[s].rows, b.splits[s].rows)
        torch.testing.assert_close(a._z[s], b._z[s])
    assert (a.split_size("test"), a.split_size("val"), a.split_size("train")) == (20, 20, 220)
    rows = [set(a.splits[s].rows.tolist()) for s in ("train", "val", "test")]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert set().union(*rows) == set(range(260))
    sub = build_dataset("qm9", limit=260, subset=39, progress=False)
    assert (sub.split_size("test"), sub.split_size("val"), sub.split_size("train")) == (3, 3, 33)
    for s in ("train", "val", "test"):
        assert set(sub.splits[s].rows.tolist()) <= set(a.splits[s].rows.tolist())
    other = build_dataset("qm9", limit=260, split_seed=1, progress=False)
    assert not torch.equal(other.splits["test"].rows, a.splits["test"].rows)
    assert [split_of_rank(k) for k in range(14)] == ["test", "val"] + ["train"] * 11 + ["test"]


def test_loader_order_is_a_function_of_seed_and_epoch(small):
    def first_ids(seed, epoch):
        inputs, targets = next(iter(small.loader("train", 16, True, seed, epoch)))
        return inputs.x.sum().item(), targets["mu"].tolist()

    assert first_ids(0, 3) == first_ids(0, 3)
    assert first_ids(0, 3) != first_ids(0, 4)
    n = sum(t["mu"].numel() for _, t in small.loader("val", 7, False, 0, 0))
    assert n == small.split_size("val")


def _write_fixture(directory, n, edit=None):
    """The first ``n`` rows of qm9pack's part 1 in the package's CSV format (parts 2 and 3: header only);
    ``edit(row_position, record)`` may change a record."""
    directory.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(1 << 30)
    with open(source_dir() / "qm9_part1.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        records = [r for _, r in zip(range(n), reader)]
    for k, record in enumerate(records):
        if edit is not None:
            edit(k, record)
    for name in qm9.SOURCE_FILES:
        with open(directory / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header, quoting=csv.QUOTE_NONNUMERIC)
            writer.writeheader()
            if name == "qm9_part1.csv":
                writer.writerows(records)
    return directory


def test_statistics_come_from_the_training_split_only(tmp_path):
    base = build_dataset("qm9", limit=130, progress=False)
    train_y = base.splits["train"].y
    torch.testing.assert_close(base.target_mean, train_y.mean(0))
    torch.testing.assert_close(base.target_std, train_y.std(0))
    all_y = torch.cat([base.splits[s].y for s in ("train", "val", "test")])
    assert not torch.allclose(base.target_mean, all_y.mean(0))
    # wildly change every target of the val and test molecules: the statistics must not move
    held_out = set(base.splits["val"].rows.tolist()) | set(base.splits["test"].rows.tolist())

    def edit(k, record):
        if k in held_out:
            for column in qm9.SOURCE_COLUMNS.values():
                record[column] = str(float(record[column]) * 1000 + 1e6)

    src = _write_fixture(tmp_path / "src", 130, edit)
    leaked = build_dataset("qm9", limit=130, source=str(src), progress=False)
    torch.testing.assert_close(leaked.target_mean, base.target_mean)
    torch.testing.assert_close(leaked.target_std, base.target_std)
    assert not torch.allclose(leaked.splits["test"].y, base.splits["test"].y)
    torch.testing.assert_close(leaked._z["train"], base._z["train"])


# --- cache -----------------------------------------------------------------------------------------------


def test_cache_is_lazy_reused_validated_and_rebuilt(tmp_path, monkeypatch):
    src = _write_fixture(tmp_path / "src", 120)
    cache = tmp_path / "cache"
    kw = {"source": str(src), "cache_dir": str(cache), "progress": False}
    sub = build_dataset("qm9", subset=26, **kw)
    path = cache / f"qm9-v{qm9.CACHE_VERSION}-reference.pt"
    assert path.is_file() and sub.stats["featurized"] == 26  # only the subset's molecules

    real = qm9.featurize

    def forbidden(*args):
        raise AssertionError("featurized although cached")

    monkeypatch.setattr(qm9.dataset, "featurize", forbidden)
    again = build_dataset("qm9", subset=26, **kw)
    for s in ("train", "val", "test"):
        assert torch.equal(again.splits[s].rows, sub.splits[s].rows)
        torch.testing.assert_close(again.splits[s].x, sub.splits[s].x)
    monkeypatch.setattr(qm9.dataset, "featurize", real)

    full = build_dataset("qm9", **kw)  # featurizes the remaining 94 rows
    assert full.stats["featurized"] == 120 and full.stats["used"] == 120
    direct = build_dataset("qm9", limit=120, source=str(src), progress=False)
    for s in ("train", "val", "test"):
        assert set(sub.splits[s].rows.tolist()) <= set(full.splits[s].rows.tolist())
        assert torch.equal(full.splits[s].rows, direct.splits[s].rows)
        torch.testing.assert_close(full.splits[s].x, direct.splits[s].x)
        torch.testing.assert_close(full.splits[s].pos, direct.splits[s].pos)
        torch.testing.assert_close(full._z[s], direct._z[s])

    # tampered tensors: checksum mismatch -> warning and rebuild
    blob = torch.load(path, weights_only=True)
    blob["tensors"]["y"][0, 0] += 1.0
    torch.save(blob, path)
    with pytest.warns(UserWarning, match="checksum"):
        rebuilt = build_dataset("qm9", **kw)
    torch.testing.assert_close(rebuilt._z["test"], full._z["test"])
    # garbage and an old version
    path.write_bytes(b"not a cache")
    with pytest.warns(UserWarning, match="unreadable"):
        build_dataset("qm9", subset=13, **kw)
    blob = torch.load(path, weights_only=True)
    blob["meta"]["version"] = 0
    torch.save(blob, path)
    with pytest.warns(UserWarning, match="version"):
        build_dataset("qm9", subset=13, **kw)
    with pytest.raises(ConfigError, match="exceeds"):
        build_dataset("qm9", subset=121, **kw)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="subset"):
        build_dataset("qm9", subset=5, limit=50, progress=False)
    with pytest.raises(ConfigError, match="graph"):
        build_dataset("qm9", graph="dense", limit=50, progress=False)
    with pytest.raises(ConfigError, match="unknown keyword"):
        build_dataset("qm9", limt=50)


# --- the model ---------------------------------------------------------------------------------------------


def test_factorized_nnconv_equals_pyg_nnconv(small):
    torch.manual_seed(0)
    batch = make_batch(small.splits["train"], torch.arange(6))
    edge_net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8 * 4))
    ours = FactorizedNNConv(8, 4, edge_net, aggr="mean").double()
    ref = NNConv(8, 4, edge_net, aggr="mean").double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(batch.num_nodes, 8, dtype=torch.float64, requires_grad=True)
    attr = batch.edge_attr.double()
    # shuffled edges (not sorted by source) and an isolated node exercise the general path
    perm = torch.randperm(batch.edge_index.shape[1])
    for edge_index, edge_attr in ((batch.edge_index, attr), (batch.edge_index[:, perm], attr[perm])):
        keep = edge_index[1] != 0  # node 0 receives nothing
        edge_index, edge_attr = edge_index[:, keep], edge_attr[keep]
        out, expected = ours(x, edge_index, edge_attr), ref(x, edge_index, edge_attr)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
        g1 = torch.autograd.grad(out.square().sum(), [x, *ours.parameters()])
        g2 = torch.autograd.grad(expected.square().sum(), [x, *ref.parameters()])
        for a, b in zip(g1, g2):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    order, slot_index, slot_dst, degree = group_by_source(batch.edge_index, batch.num_nodes)
    assert torch.equal(order, torch.arange(batch.edge_index.shape[1]))  # complete graphs come sorted
    assert torch.equal(slot_dst[slot_index], batch.edge_index[1])
    assert degree == int((batch.ptr[1:] - batch.ptr[:-1]).max()) - 1


def test_mpnn_encoder_matches_the_reference_layout(small):
    torch.manual_seed(0)
    model = small.build_model()
    enc = model.encoder
    assert isinstance(enc, MPNNEncoder)
    assert enc.lin0.in_features == 11 and enc.lin0.out_features == 64
    assert [m.__class__.__name__ for m in enc.conv.nn] == ["Linear", "ReLU", "Linear"]
    assert enc.conv.nn[0].in_features == 5 and enc.conv.nn[2].out_features == 64 * 64
    assert enc.set2set.processing_steps == 3 and enc.lin1.in_features == 128
    assert set(model.heads) == set(TASKS)
    batch, _ = next(iter(small.loader("val", 8, False, 0, 0)))
    z = model.encode(batch)
    assert z.shape == (8, 64) and bool((z >= 0).all())
    pyg = small.build_model(conv="pyg")
    pyg.load_state_dict(model.state_dict())
    torch.testing.assert_close(pyg.encode(batch), z, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError):
        small.build_model(width=3)


# --- training --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return build_dataset("qm9", limit=260, progress=False)


@pytest.mark.parametrize("method", ["ew", "db_mtl"])
def test_two_epochs_on_a_small_subset_reduce_the_losses(tiny, method):
    config = TrainConfig(
        dataset="qm9",
        method=method,
        epochs=2,
        batch_size=32,
        dataset_kwargs={"limit": 260, "progress": False},
        device="cpu",
    )
    records = fit(config, dataset=tiny)
    assert len(records) == 2
    first, second = (sum(r[f"train_loss/{t}"] for t in TASKS) for r in records)
    assert second < first
    for r in records:
        assert math.isfinite(r["val_delta_p"]) and math.isfinite(r["test_delta_p"])
        assert all(r[f"val/{t}/mae"] > 0 for t in TASKS)


def test_cli_trains_on_a_cached_subset(tmp_path, capsys):
    src = _write_fixture(tmp_path / "src", 60)
    code = main(
        [
            "train",
            "--dataset",
            "qm9",
            "--method",
            "db_mtl",
            "--subset",
            "26",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "-d",
            f"source={src}",
            "-d",
            f"cache_dir={tmp_path / 'cache'}",
            "-d",
            "progress=false",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "epoch   1/1" in out and "val Δp" in out
