"""The published STL tables: every number pinned (typed in here from the papers' tables, independently of
the module), names, defaults per (dataset, architecture), config validation, the trainer's Δp/Δm, the CLI."""

from __future__ import annotations

import math

import pytest

from mtl.cli import main
from mtl.config import TrainConfig
from mtl.data import build_dataset
from mtl.data.base import TaskSpec
from mtl.data.references import DEFAULTS, TABLES, reference, resolve, table_names
from mtl.data.synthetic import SyntheticRegression
from mtl.errors import ConfigError
from mtl.evaluation import delta_m, delta_p
from mtl.train import fit

QM9_TASKS = ("mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U", "H", "G", "cv")
NYU_METRICS = (
    ("segmentation", "miou"),
    ("segmentation", "pix_acc"),
    ("depth", "abs_err"),
    ("depth", "rel_err"),
    ("normal", "mean"),
    ("normal", "median"),
    ("normal", "within_11_25"),
    ("normal", "within_22_5"),
    ("normal", "within_30"),
)

# The papers' numbers, in the order the papers print them.
EXPECTED_QM9 = {
    # DB-MTL Table 3, STL row
    "qm9": (0.062, 0.192, 58.82, 51.95, 0.529, 4.52, 63.69, 60.83, 68.33, 60.31, 0.069),
    # IGB Table 2, STL row
    "qm9_igb": (0.067, 0.181, 60.57, 53.91, 0.502, 4.53, 58.8, 64.2, 63.8, 66.2, 0.072),
}
EXPECTED_NYU = {
    # DB-MTL, DeepLabV3+ / ResNet-50
    "nyuv2": (53.50, 75.39, 0.3926, 0.1605, 21.99, 15.16, 39.04, 65.00, 75.16),
    # DB-MTL Table 6, SegNet
    "nyuv2_segnet": (38.30, 63.76, 0.6754, 0.2780, 25.01, 19.21, 30.14, 57.20, 69.15),
    # IGB Table 1, SegNet
    "nyuv2_segnet_igb": (41.16, 65.70, 0.6074, 0.2400, 24.49, 18.24, 31.92, 59.16, 70.56),
}
EXPECTED_OTHER = {
    "cityscapes": {
        "segmentation": {"miou": 69.06, "pix_acc": 91.54},
        "depth": {"abs_err": 0.01282, "rel_err": 43.53},
    },
    "office31": {"amazon": {"acc": 86.61}, "dslr": {"acc": 95.63}, "webcam": {"acc": 96.85}},
    "office_home": {
        "Art": {"acc": 65.59},
        "Clipart": {"acc": 79.60},
        "Product": {"acc": 90.47},
        "Real_World": {"acc": 80.00},
    },
}


def expected(name: str) -> dict[str, dict[str, float]]:
    if name in EXPECTED_QM9:
        return {t: {"mae": v} for t, v in zip(QM9_TASKS, EXPECTED_QM9[name])}
    if name in EXPECTED_NYU:
        out: dict[str, dict[str, float]] = {}
        for (task, metric), v in zip(NYU_METRICS, EXPECTED_NYU[name]):
            out.setdefault(task, {})[metric] = v
        return out
    return EXPECTED_OTHER[name]


ALL = sorted([*EXPECTED_QM9, *EXPECTED_NYU, *EXPECTED_OTHER])


def test_every_table_is_shipped_and_nothing_else():
    assert table_names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_every_number_is_the_papers(name):
    assert reference(name) == expected(name)  # exact: the numbers are typed in, not computed


@pytest.mark.parametrize("name", ALL)
def test_tables_name_their_paper_and_table(name):
    source = TABLES[name].source
    assert ("IGB" in source) != ("DB-MTL" in source)
    if name in ("qm9", "qm9_igb", "nyuv2_segnet", "nyuv2_segnet_igb"):
        assert {"qm9": "Table 3", "qm9_igb": "Table 2", "nyuv2_segnet": "Table 6"}.get(
            name, "Table 1"
        ) in source


def test_reference_returns_a_copy_and_unknown_names_list_the_valid_ones():
    rows = reference("qm9")
    rows["mu"]["mae"] = 1.0
    assert reference("qm9")["mu"]["mae"] == 0.062
    with pytest.raises(ConfigError, match=r"did you mean 'qm9_igb'.*valid: cityscapes, nyuv2"):
        reference("qm9_ibg")


def test_task_and_metric_names_are_the_datasets():
    from mtl.data.qm9 import QM9Dataset
    from mtl.metrics.dense import dense_metric_flags

    qm9_flags = {t.name: set(t.metrics) for t in QM9Dataset.tasks}
    for name in ("qm9", "qm9_igb"):
        assert {t: set(m) for t, m in reference(name).items()} == qm9_flags
    nyu = dense_metric_flags((("segmentation", "segmentation"), ("depth", "depth"), ("normal", "normal")))
    city = dense_metric_flags((("segmentation", "segmentation"), ("depth", "depth")))
    for name in ("nyuv2", "nyuv2_segnet", "nyuv2_segnet_igb"):
        assert {t: set(m) for t, m in reference(name).items()} == {t: set(m) for t, m in nyu.items()}
    assert {t: set(m) for t, m in reference("cityscapes").items()} == {t: set(m) for t, m in city.items()}
    from mtl.data.office import Office31, OfficeHome

    assert list(reference("office31")) == list(Office31.domains)
    assert list(reference("office_home")) == list(OfficeHome.domains)


def test_defaults_per_dataset_and_architecture():
    assert (DEFAULTS[("qm9", "hps")].delta_p, DEFAULTS[("qm9", "hps")].delta_m) == ("qm9", "qm9_igb")
    for arch in ("segnet", "segnet_mtan"):
        d = DEFAULTS[("nyuv2", arch)]
        assert (d.delta_p, d.delta_m) == ("nyuv2_segnet", "nyuv2_segnet_igb")
        assert DEFAULTS[("cityscapes", arch)].delta_p is None
    for arch in ("hps", "cross_stitch", "mtan"):
        assert DEFAULTS[("nyuv2", arch)].delta_p == "nyuv2"
    for (dataset, _arch), d in DEFAULTS.items():  # every default is a table of its own dataset
        for name in (d.delta_p, d.delta_m):
            assert name is None or TABLES[name].dataset == dataset
    # the DeepLab row is never the SegNet default
    assert resolve("nyuv2", "segnet", None)[0] == expected("nyuv2_segnet")
    assert resolve("nyuv2", "segnet", "nyuv2") == (expected("nyuv2"), expected("nyuv2"))
    assert resolve("nyuv2", "hps", "none") == (None, None)
    with pytest.raises(ConfigError, match=r"is a qm9 table.*nyuv2_segnet_igb"):
        resolve("nyuv2", "hps", "qm9")
    fallback = {"t0": {"mae": 1.0}}
    assert resolve("synthetic", "hps", None, fallback) == (fallback, fallback)


def test_config_validates_the_table_name_where_it_is_made():
    assert TrainConfig(reference_table="qm9_igb").reference_table == "qm9_igb"
    with pytest.raises(ConfigError, match=r"did you mean 'nyuv2_segnet'.*valid:"):
        TrainConfig(reference_table="nyuv2_segnt")
    with pytest.raises(ConfigError, match="unknown reference table"):
        TrainConfig.from_dict({"reference_table": "DB-MTL"})
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(reference_table="qm9", reference={"mu": {"mae": 1.0}})


class QM9Shaped(SyntheticRegression):
    """Synthetic data under QM9's name and task names (the trainer resolves QM9's tables for it)."""

    name = "qm9"

    def __init__(self) -> None:
        super().__init__(num_tasks=11, scales=[1.0] * 11, n_train=64, n_val=40, n_test=40)
        self.tasks = tuple(TaskSpec(t, {"mae": False}) for t in QM9_TASKS)


def _metrics(record, split):
    return {t: {"mae": record[f"{split}/{t}/mae"]} for t in QM9_TASKS}


def test_trainer_measures_delta_p_and_delta_m_against_their_default_tables():
    flags = {t: {"mae": False} for t in QM9_TASKS}
    config = TrainConfig(dataset="qm9", method="ew", epochs=1, batch_size=32)
    (record,) = fit(config, dataset=QM9Shaped())
    for split in ("val", "test"):
        m = _metrics(record, split)
        assert record[f"{split}_delta_p"] == pytest.approx(delta_p(m, expected("qm9"), flags), rel=1e-12)
        assert record[f"{split}_delta_m"] == pytest.approx(delta_m(m, expected("qm9_igb"), flags), rel=1e-12)
    (named,) = fit(
        TrainConfig(dataset="qm9", method="ew", epochs=1, batch_size=32, reference_table="qm9_igb"),
        dataset=QM9Shaped(),
    )
    m = _metrics(named, "val")
    assert named["val_delta_p"] == pytest.approx(delta_p(m, expected("qm9_igb"), flags), rel=1e-12)
    (none,) = fit(
        TrainConfig(dataset="qm9", method="ew", epochs=1, batch_size=32, reference_table="none"),
        dataset=QM9Shaped(),
    )
    assert math.isnan(none["val_delta_p"]) and math.isnan(none["test_delta_m"])


def test_a_table_of_another_dataset_is_refused_before_training():
    with pytest.raises(ConfigError, match="is a nyuv2 table"):
        fit(
            TrainConfig(dataset="synthetic", epochs=1, reference_table="nyuv2"),
            dataset=build_dataset("synthetic"),
        )


def test_cli_prints_one_table_or_all(capsys):
    assert main(["references", "qm9_igb"]) == 0
    out = capsys.readouterr().out
    assert "IGB, Table 2" in out and "60.57" in out and "DB-MTL" not in out
    assert main(["references"]) == 0
    out = capsys.readouterr().out
    for name in ALL:
        assert f"{name}:" in out
    assert "qm9, qm9_igb" in out
    assert main(["references", "qm9_ibg"]) == 2
    assert "did you mean 'qm9_igb'" in capsys.readouterr().err
