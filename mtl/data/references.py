"""Every published single-task (STL) row the project compares against, one named table each (DESIGN §6).

A table is the test-split STL row of one paper's results table, in the units of :mod:`mtl.metrics` and of
the datasets (task and metric names exactly as the datasets use them): mIoU, pixel accuracy, the "within t°"
normal metrics and classification accuracy in percent; depth errors raw (metres and a ratio, as the papers
print them); normal angles in degrees; QM9 MAEs in the units of :data:`mtl.data.qm9.UNITS` (D, a₀³, meV,
a₀², cal/mol K).

Papers:

* DB-MTL: Lin et al., "Dual-Balancing for Multi-Task Learning", arXiv:2308.12029 (Neural Networks);
  reports Δp (DESIGN §4). Its QM9 STL row (Table 3) is the one of the Nash-MTL paper (Navon et al. 2022).
* IGB: Dai et al., "Improvable Gap Balancing for Multi-Task Learning", UAI 2023; reports Δm against STL rows
  it measured itself.

Names: :func:`reference` (one table's rows), :func:`table_names`, :data:`TABLES` (rows + provenance).

Defaults (:data:`DEFAULTS`): for each (dataset, architecture) the table Δp is measured against and the table
Δm is measured against. Each metric defaults to the STL row of the paper that reports that metric for that
setting, so the two can differ: QM9 Δp uses DB-MTL Table 3 (``qm9``) and Δm IGB Table 2 (``qm9_igb``); the
SegNet setting on NYUv2 Δp uses DB-MTL Table 6 (``nyuv2_segnet``) and Δm IGB Table 1 (``nyuv2_segnet_igb``).
The STL row depends on the single-task network only, so every multi-task architecture on the same backbone
shares it (NYUv2/Cityscapes ``hps``, ``cross_stitch``, ``mtan`` on DeepLabV3+/ResNet-50; ``segnet`` and
``segnet_mtan`` on SegNet). A (dataset, architecture) with no published row (Cityscapes with SegNet) has no
default: Δp and Δm are NaN unless a table or measured STL results are given. ``TrainConfig.reference_table``
names one table for both Δp and Δm (``"none"``: no reference); ``TrainConfig.reference`` (e.g. the study's
own STL results) overrides both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from mtl.errors import ConfigError, UnknownNameError
from mtl.registry import did_you_mean

Nested = dict[str, dict[str, float]]
NO_REFERENCE = "none"
"""The ``TrainConfig.reference_table`` value for "no reference" (Δp and Δm are NaN)."""


@dataclass(frozen=True)
class ReferenceTable:
    """One published STL row: ``rows`` task -> metric -> value, the dataset and backbone it was measured
    with, and where it was published (``source``: paper and table)."""

    name: str
    dataset: str
    backbone: str
    source: str
    rows: Nested


def _qm9(values: tuple[float, ...]) -> Nested:
    tasks = ("mu", "alpha", "homo", "lumo", "r2", "zpve", "U0", "U", "H", "G", "cv")
    assert len(values) == len(tasks)
    return {t: {"mae": v} for t, v in zip(tasks, values)}


def _nyuv2(values: tuple[float, ...]) -> Nested:
    seg, depth, normal = values[:2], values[2:4], values[4:]
    return {
        "segmentation": dict(zip(("miou", "pix_acc"), seg)),
        "depth": dict(zip(("abs_err", "rel_err"), depth)),
        "normal": dict(zip(("mean", "median", "within_11_25", "within_22_5", "within_30"), normal)),
    }


_TABLE_LIST = (
    ReferenceTable(
        "qm9",
        "qm9",
        "Gilmer MPNN",
        "DB-MTL, Table 3 (QM9, STL row; the Nash-MTL paper's STL row)",
        _qm9((0.062, 0.192, 58.82, 51.95, 0.529, 4.52, 63.69, 60.83, 68.33, 60.31, 0.069)),
    ),
    ReferenceTable(
        "qm9_igb",
        "qm9",
        "Gilmer MPNN",
        "IGB, Table 2 (QM9, STL row measured by the IGB authors)",
        _qm9((0.067, 0.181, 60.57, 53.91, 0.502, 4.53, 58.8, 64.2, 63.8, 66.2, 0.072)),
    ),
    ReferenceTable(
        "nyuv2",
        "nyuv2",
        "DeepLabV3+ / dilated ResNet-50",
        "DB-MTL, NYUv2 results table (DeepLabV3+ with ResNet-50, LibMTL's setting), STL row",
        _nyuv2((53.50, 75.39, 0.3926, 0.1605, 21.99, 15.16, 39.04, 65.00, 75.16)),
    ),
    ReferenceTable(
        "nyuv2_segnet",
        "nyuv2",
        "SegNet",
        "DB-MTL, Table 6 (NYUv2 with SegNet), STL row",
        _nyuv2((38.30, 63.76, 0.6754, 0.2780, 25.01, 19.21, 30.14, 57.20, 69.15)),
    ),
    ReferenceTable(
        "nyuv2_segnet_igb",
        "nyuv2",
        "SegNet",
        "IGB, Table 1 (NYUv2 with SegNet, STL row measured by the IGB authors)",
        _nyuv2((41.16, 65.70, 0.6074, 0.2400, 24.49, 18.24, 31.92, 59.16, 70.56)),
    ),
    ReferenceTable(
        "cityscapes",
        "cityscapes",
        "DeepLabV3+ / dilated ResNet-50",
        "DB-MTL, Cityscapes results table (DeepLabV3+ with ResNet-50, 7 classes + depth), STL row. The "
        "relative error of the preprocessed Cityscapes depth (inverse depth with many near-zero values) is "
        "large; 43.53 is the raw ratio",
        {
            "segmentation": {"miou": 69.06, "pix_acc": 91.54},
            "depth": {"abs_err": 0.01282, "rel_err": 43.53},
        },
    ),
    ReferenceTable(
        "office31",
        "office31",
        "ResNet-18",
        "DB-MTL, Office-31 results table (ResNet-18 + linear heads, per-domain accuracy), STL row",
        {"amazon": {"acc": 86.61}, "dslr": {"acc": 95.63}, "webcam": {"acc": 96.85}},
    ),
    ReferenceTable(
        "office_home",
        "office_home",
        "ResNet-18",
        "DB-MTL, Office-Home results table (ResNet-18 + linear heads, per-domain accuracy), STL row",
        {
            "Art": {"acc": 65.59},
            "Clipart": {"acc": 79.60},
            "Product": {"acc": 90.47},
            "Real_World": {"acc": 80.00},
        },
    ),
)

TABLES: dict[str, ReferenceTable] = {t.name: t for t in _TABLE_LIST}
"""Every shipped table by name."""


@dataclass(frozen=True)
class DefaultTables:
    """The default table names of one (dataset, architecture): for Δp and for Δm (None: no default)."""

    delta_p: str | None
    delta_m: str | None


_DEEPLAB = ("hps", "cross_stitch", "mtan")
_SEGNET = ("segnet", "segnet_mtan")
DEFAULTS: dict[tuple[str, str], DefaultTables] = {
    ("qm9", "hps"): DefaultTables("qm9", "qm9_igb"),
    **{("nyuv2", a): DefaultTables("nyuv2", "nyuv2") for a in _DEEPLAB},
    **{("nyuv2", a): DefaultTables("nyuv2_segnet", "nyuv2_segnet_igb") for a in _SEGNET},
    **{("cityscapes", a): DefaultTables("cityscapes", "cityscapes") for a in _DEEPLAB},
    **{("cityscapes", a): DefaultTables(None, None) for a in _SEGNET},
    **{("office31", a): DefaultTables("office31", "office31") for a in ("hps", "mtan")},
    **{("office_home", a): DefaultTables("office_home", "office_home") for a in ("hps", "mtan")},
}
_MOE = ("mmoe", "cgc", "ple", "dselect_k")  # mtl.models.moe.MOE_ARCHITECTURES (not imported: keep this light)
DEFAULTS.update(  # the MoE architectures have no published STL rows of their own: the dataset's hps row
    {(d, a): tables for (d, arch), tables in list(DEFAULTS.items()) if arch == "hps" for a in _MOE}
)
"""(dataset, architecture) -> the default Δp and Δm tables (see the module docstring)."""


def table_names() -> list[str]:
    """The valid table names (sorted)."""
    return sorted(TABLES)


def check_table_name(name: str, *, allow_none: bool = False) -> str:
    """``name`` if it names a table (or is ``"none"`` with ``allow_none``); else :class:`UnknownNameError`
    listing the valid names, with a did-you-mean."""
    valid = table_names() + ([NO_REFERENCE] if allow_none else [])
    if not isinstance(name, str) or name not in valid:
        hint = did_you_mean(name, valid) if isinstance(name, str) else ""
        raise UnknownNameError(f"unknown reference table {name!r}{hint}; valid: {', '.join(valid)}")
    return name


def reference(name: str) -> Nested:
    """A deep copy of table ``name``'s rows, task -> metric -> value (callers may mutate it freely)."""
    return copy.deepcopy(TABLES[check_table_name(name)].rows)


def defaults_for(dataset: str, architecture: str) -> DefaultTables | None:
    """The default tables of (dataset, architecture); None when the dataset ships no published tables."""
    if not any(t.dataset == dataset for t in TABLES.values()):
        return None
    return DEFAULTS.get((dataset, architecture), DefaultTables(None, None))


def resolve(
    dataset: str, architecture: str, table: str | None, fallback: Nested | None = None
) -> tuple[Nested | None, Nested | None]:
    """The references (Δp's, Δm's) of a run on (``dataset``, ``architecture``): table ``table`` for both
    when named (``"none"``: no reference; a table of another dataset is refused), else the
    :data:`DEFAULTS`; ``fallback`` (the dataset's own reference) for a dataset with no published tables."""
    if table is not None:
        check_table_name(table, allow_none=True)
        if table == NO_REFERENCE:
            return None, None
        if TABLES[table].dataset != dataset:
            own = ", ".join(tables_for(dataset)) or "none"
            raise ConfigError(
                f"reference_table '{table}' is a {TABLES[table].dataset} table, the run is on {dataset}; "
                f"tables of {dataset}: {own}"
            )
        return reference(table), reference(table)
    defaults = defaults_for(dataset, architecture)
    if defaults is None:
        return fallback, copy.deepcopy(fallback)
    return (
        reference(defaults.delta_p) if defaults.delta_p is not None else None,
        reference(defaults.delta_m) if defaults.delta_m is not None else None,
    )


def tables_for(dataset: str) -> list[str]:
    """The names of the tables measured on ``dataset``."""
    return [name for name in table_names() if TABLES[name].dataset == dataset]


# The rows under the names the datasets and their tests import.
NYUV2_STL: Nested = TABLES["nyuv2"].rows
CITYSCAPES_STL: Nested = TABLES["cityscapes"].rows
OFFICE31_STL: Nested = TABLES["office31"].rows
OFFICE_HOME_STL: Nested = TABLES["office_home"].rows
