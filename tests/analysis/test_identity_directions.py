"""Analysis reads what a method is and which way each metric points from the stored columns (schema 2), and
still reads studies written before those columns existed (schema 1)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.load import load_study
from analysis.stats import compare
from analysis.tables import ablation_table, delta_m_table, leaderboard
from analysis.utilisation import busy_intervals, by_node, peak_concurrency, utilisation
from results_store.columns import COMPACTED, DIRECTION_PREFIX
from results_store.compaction import compact_trial
from results_store.identity import TrialInfo
from results_store.writer import ResultsWriter
from tests.analysis.fixture_study import NODES, T0, schedule, specs, wall_time, write_study

V2_ONLY = ("balancer", "aggregator", "ended_at", COMPACTED)


def downgrade_to_v1(study_dir: str) -> None:
    """Rewrite every file of a study as the schema-1 writer wrote it: no identity/direction/end columns."""
    for path in Path(study_dir).rglob("*.parquet"):
        table = pq.read_table(path, partitioning=None)
        drop = [c for c in table.column_names if c in V2_ONLY or c.startswith(DIRECTION_PREFIX)]
        table = table.drop_columns(drop)
        index = table.schema.get_field_index("schema_version")
        table = table.set_column(index, "schema_version", pa.array([1] * table.num_rows, pa.int64()))
        pq.write_table(table, path)


@pytest.fixture(scope="module")
def v1_study(tmp_path_factory):
    path = write_study(str(tmp_path_factory.mktemp("v1")))
    downgrade_to_v1(path)
    return load_study(path)


def test_stored_columns_are_written(study):
    assert (study.trials["schema_version"] == 2).all()
    db = study.trials[study.trials["method"] == "db_mtl"]
    assert set(db["balancer"]) == {"si"} and set(db["aggregator"]) == {"max_norm"}
    assert study.directions("synthetic") == {("t0", "mae"): False, ("t1", "mae"): False}
    assert study.directions("toy_cls") == {("a", "acc"): True, ("b", "acc"): True}
    assert study.epochs["higher_is_better/t0/mae"].dropna().eq(False).all()


def test_old_format_study_reads_and_gives_the_same_tables(study, v1_study):
    assert (v1_study.trials["schema_version"] == 1).all()
    assert "higher_is_better/t0/mae" not in v1_study.trials.columns
    assert v1_study.directions("synthetic") == {}
    for dataset in ("synthetic", "toy_cls"):
        new, old = leaderboard(study, dataset), leaderboard(v1_study, dataset)
        pd.testing.assert_frame_equal(new.to_frame(), old.to_frame())
        assert [c.higher_is_better for c in new.columns] == [c.higher_is_better for c in old.columns]
        pd.testing.assert_frame_equal(
            delta_m_table(study, dataset).to_frame(), delta_m_table(v1_study, dataset).to_frame()
        )
    pd.testing.assert_frame_equal(ablation_table(study).to_frame(), ablation_table(v1_study).to_frame())
    # the v1 fallback found the four ablation variants by name
    assert [r.label for r in ablation_table(v1_study).rows] == ["ew", "si", "max_norm", "db_mtl"]


def _two_method_study(root: Path, metric: str, higher: bool, values: dict[str, float]) -> str:
    """One dataset, task ``t``, one ``metric`` whose direction is stored as ``higher``; per method one
    trial per seed with test value ``values[method]``."""
    w = ResultsWriter(str(root), "dirs")
    parts = {"ew": ("ew", None), "custom": ("si", "max_norm")}
    for method, value in values.items():
        for seed in (0, 1):
            info = TrialInfo(
                "dirs",
                "toy",
                method,
                f"{method}_{seed}",
                seed,
                balancer=parts[method][0],
                aggregator=parts[method][1],
                directions={f"t/{metric}": higher},
            )
            rec = {
                "epoch": 0,
                "time_epoch": 1.0,
                "val_delta_p": 1.0,
                "test_delta_p": value + seed,
                f"test/t/{metric}": value + seed,
            }
            w.write_epoch(info, rec)
            w.write_trial(info, status="completed", records=[rec], max_epochs=1)
    return w.root


def test_stored_direction_wins_over_the_name(tmp_path):
    # "mean" is an angle error (lower is better) by name; this dataset declares it higher-is-better
    path = _two_method_study(tmp_path, "mean", True, {"ew": 1.0, "custom": 5.0})
    study = load_study(path)
    table = leaderboard(study, "toy")
    column = next(c for c in table.columns if c.key == "test/t/mean")
    assert column.higher_is_better is True
    best = [
        table.rows[i].label for (i, key), place in table.marks().items() if key == column.key and place == 1
    ]
    assert best == ["custom"]  # the highest value is marked best
    comparison = compare(study, "custom", "ew", metric="test/t/mean", n_boot=200)
    assert comparison.higher_is_better is True and comparison.verdict == "custom is better"
    # the same study without stored directions falls back to the name, and gets it the other way round
    downgrade_to_v1(path)
    old = leaderboard(load_study(path), "toy")
    assert next(c for c in old.columns if c.key == "test/t/mean").higher_is_better is False


def test_metric_unknown_by_name_gets_its_stored_direction(tmp_path):
    study = load_study(_two_method_study(tmp_path, "score", False, {"ew": 1.0, "custom": 5.0}))
    table = leaderboard(study, "toy")
    assert next(c for c in table.columns if c.key == "test/t/score").higher_is_better is False
    assert not any("direction unknown" in n for n in table.notes)


def test_ablation_finds_methods_by_their_parts_not_their_names(tmp_path):
    study = load_study(_two_method_study(tmp_path, "acc", True, {"ew": 1.0, "custom": 5.0}))
    rows = {r.label: r for r in ablation_table(study).rows}
    assert set(rows) == {"ew", "db_mtl"}  # "custom" is stored as si + max_norm: DB-MTL
    assert rows["db_mtl"].cells["delta_p/toy"].mean == pytest.approx(5.5)


def test_compacted_study_gives_the_same_tables(tmp_path, study):
    path = write_study(str(tmp_path))
    w = ResultsWriter(str(tmp_path), Path(path).name)
    for spec in specs():
        compact_trial(w, spec.dataset, spec.method, spec.trial_id)
    compacted = load_study(path)
    assert len(list(Path(path, "epochs").rglob("*.parquet"))) == len([s for s in specs() if s.epochs])
    cols = [c for c in study.epochs.columns if c != "written_at"]  # another write of the same study
    pd.testing.assert_frame_equal(compacted.epochs[cols], study.epochs[cols])
    for dataset in ("synthetic", "toy_cls"):
        pd.testing.assert_frame_equal(
            delta_m_table(compacted, dataset).to_frame(), delta_m_table(study, dataset).to_frame()
        )


# -- utilisation -----------------------------------------------------------------------------------------
def test_trial_rows_record_start_end_and_node(study):
    trials = study.trials
    running = trials["status"] == "running"
    assert trials.loc[running, "ended_at"].isna().all()
    assert trials.loc[~running, "ended_at"].notna().all()
    assert set(trials["node_id"]) == set(NODES)
    assert (trials.loc[~running, "ended_at"] > trials.loc[~running, "started_at"]).all()


def test_utilisation_from_trial_rows(study):
    all_specs = specs()
    ends = [schedule(i, s)[1] for i, s in enumerate(all_specs)]
    end = max(e for e in ends if e is not None)
    busy = 0.0
    for i, spec in enumerate(all_specs):
        start, stop, _ = schedule(i, spec)
        busy += ((stop or end) - start).total_seconds()  # the running trial counts to the window's end
    u = utilisation(study.trials, slots=2, start=T0, end=end)
    assert u.busy_s == pytest.approx(busy)
    assert u.wall_s == pytest.approx((end - T0).total_seconds())
    assert u.value == pytest.approx(busy / (2 * (end - T0).total_seconds()))
    assert u.trials == len(all_specs)
    # a window halves the wall time and clips the trials to it
    half = T0 + (end - T0) / 2
    assert utilisation(study.trials, slots=2, start=T0, end=half).wall_s == pytest.approx(
        (half - T0).total_seconds()
    )
    ended = study.trials[study.trials["status"] != "running"]
    assert peak_concurrency(ended) == 2 and peak_concurrency(ended[ended["node_id"] == "node-a"]) == 1
    nodes = by_node(study.trials[study.trials["status"] != "running"]).set_index("node")
    expected_a = sum(wall_time(s) for i, s in enumerate(all_specs) if i % 2 == 0 and s.status != "running")
    assert nodes.loc["node-a", "busy_s"] == pytest.approx(expected_a)
    with pytest.raises(ValueError, match="slots"):
        utilisation(study.trials, slots=0)


def test_utilisation_counts_overlap_exactly():
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    frame = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c"],
            "node_id": ["n", "n", "m"],
            "host": ["h", "h", "h"],
            "started_at": [t, t + dt.timedelta(seconds=5), t + dt.timedelta(seconds=10)],
            "ended_at": [
                t + dt.timedelta(seconds=10),
                t + dt.timedelta(seconds=10),
                t + dt.timedelta(seconds=20),
            ],
            "updated_at": [t + dt.timedelta(seconds=30)] * 3,
        }
    )
    u = utilisation(frame, slots=2)
    assert (u.busy_s, u.wall_s) == (25.0, 20.0) and u.value == pytest.approx(25 / 40)
    assert peak_concurrency(frame) == 2  # c starts as a and b end
    assert len(busy_intervals(frame)) == 3
