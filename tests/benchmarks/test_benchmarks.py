"""The benchmark code itself: side-by-side step timing (tiny workloads) and the study-overhead figures."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import side_by_side
from benchmarks.side_by_side import cpu_peak_bytes, expand_methods
from benchmarks.workloads import all_methods, build_workload


def test_cpu_peak_memory_counts_the_step_only():
    kept = []

    def step():
        a = torch.empty(1000, 1000)  # 4 MB
        b = torch.empty(2000, 1000)  # 8 MB, while a is alive
        del a, b
        kept.append(torch.empty(500, 1000))  # 2 MB that outlive the step

    first = cpu_peak_bytes(step)
    assert first == pytest.approx(12e6, rel=0.01)
    assert cpu_peak_bytes(step) == first  # what earlier steps left behind does not count


def test_method_list():
    names = expand_methods(["all"])
    assert names[0] == "ew" and len(names) == len(set(names)) >= 20
    assert {"db_mtl", "igbv2", "nash_mtl", "igbv2+nash_mtl"} <= set(names)
    assert expand_methods(["db_mtl,mgda", "ew"]) == ["ew", "db_mtl", "mgda"]
    # "all" comes from the registries: every balancer and aggregator (a new one is benchmarked without
    # anyone editing a list), by canonical name
    from mtl.aggregators import AGGREGATORS
    from mtl.balancers import BALANCERS

    assert names == all_methods()
    assert (set(BALANCERS.names()) | set(AGGREGATORS.names())) - {"stl", "sum"} <= set(names)
    assert "log+max_norm" not in names and "db-mtl" not in names  # one name per method


def test_side_by_side_on_a_tiny_mpnn(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_CACHE_DIR", str(tmp_path / "cache"))  # featurize a few molecules, privately
    out_path = tmp_path / "bench.json"
    lines: list[str] = []
    out = side_by_side.main(
        [
            "--model", "mpnn", "--batch-size", "4", "--modes", "exact,exact_vmap,rep",
            "--methods", "db_mtl", "igbv2", "--steps", "1", "--warmup", "0", "--out", str(out_path),
        ],
        log=lines.append,
    )  # fmt: skip
    rows = {(r["method"], r["mode"]): r for r in out["results"]}
    modes = ("exact", "exact_vmap", "rep")
    assert set(rows) == {(m, mode) for m in ("ew", "db_mtl", "igbv2") for mode in modes}
    for r in rows.values():
        assert r["step_s"] > 0 and r["ratio_to_ew"] > 0 and r["cpu_ratio_to_ew"] > 0 and r["peak_mib"] > 0
    assert rows[("ew", "exact")]["ratio_to_ew"] == 1.0
    assert rows[("igbv2", "rep")]["sac_burst_s"] > 0
    # exact per-task gradients hold G [11, P] besides what EW holds
    assert rows[("db_mtl", "exact")]["peak_mib"] > rows[("ew", "exact")]["peak_mib"]
    bound = out["bound"]
    assert bound["lower_bound_ratio"] > bound["tight_lower_bound_ratio"] > 1
    assert bound["db_mtl_ratio"] > 0 and len(bound["db_mtl_rounds"]) == 1  # no timing claims: shared CPU
    saved = json.loads(out_path.read_text())
    assert saved["complete"] and saved["meta"]["tasks"] == 11 and saved["meta"]["nodes"] > 4
    table = out_path.with_suffix(".md").read_text()
    assert "| db_mtl | exact |" in table and "DB-MTL (exact) / EW" in table and table == lines[-1] + "\n"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown gradient mode"):
        side_by_side.run("mpnn", ["fast"], ["ew"])
    with pytest.raises(ValueError, match="unknown model"):
        build_workload("resnet50")


@pytest.mark.slow
def test_study_overhead_figures(tmp_path, monkeypatch):
    """A small version of the 100-trial study (benchmarks/study_overhead.py) on a local Ray."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    from benchmarks.study_overhead import markdown, measure

    out = measure(trials=6, epochs=2, storage=str(tmp_path / "results"), printer=lambda _: None)
    assert out["trials"] == 6 and sum(out["statuses"].values()) == 6
    assert set(out["statuses"]) <= {"completed", "stopped"}
    assert out["trials_per_hour"] == pytest.approx(3600 * 6 / out["wall_s"])  # the figure is what it says
    assert out["trials_per_hour_excluding_ray_start"] >= out["trials_per_hour"]  # start-up only adds time
    assert out["overhead_per_trial_s"] > 0 and out["in_trial_overhead_per_trial_s"] >= 0
    assert 6 <= out["epochs_run"] <= 12  # 6 trials of at most 2 epochs, each at least one
    text = markdown(out)
    assert f"| trials per hour | {out['trials_per_hour']:.0f} |" in text
