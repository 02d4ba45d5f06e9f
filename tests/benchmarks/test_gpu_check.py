"""benchmarks/gpu_check.py with ``--device cpu --small``: the JSON's structure, and numbers that agree with
each other (every ratio the quotient of its times, every time positive and finite, every method present).
No timing claims: the CPU here is shared."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import (
    EXACT_MODES,
    NYUV2_METHODS,
    QM9_METHODS,
    check_consistency,
    write_nyuv2_fixture,
)


def _positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def _check_step_section(section: dict, methods, modes, pairs) -> None:
    skipped = section.get("skipped", {})
    assert section["methods"] == [m for m in methods if m not in skipped] and section["modes"] == list(modes)
    methods = section["methods"]
    assert set(section["step_s"]) == set(methods)
    for m in methods:
        assert set(section["step_s"][m]) == set(modes)
        for mode in modes:
            entry = section["step_s"][m][mode]
            assert _positive(entry["step_s"])
            assert len(entry["steps_s"]) == section["steps"]
            assert all(_positive(t) for t in entry["steps_s"])
    fastest = {m: min(section["step_s"][m][mode]["step_s"] for mode in modes) for m in methods}
    assert set(section["ratios"]) == {*modes, "fastest"}
    for a, b in pairs:
        for mode in modes:
            expected = section["step_s"][a][mode]["step_s"] / section["step_s"][b][mode]["step_s"]
            assert section["ratios"][mode][f"{a}/{b}"] == pytest.approx(expected, rel=1e-12)
        assert section["ratios"]["fastest"][f"{a}/{b}"] == pytest.approx(fastest[a] / fastest[b], rel=1e-12)


@pytest.fixture(scope="module")
def qm9_run(tmp_path_factory):
    out_path = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    lines: list[str] = []
    out = gpu_check.main(
        ["--device", "cpu", "--small", "--sections", "qm9_batches,qm9_step", "--out", str(out_path)],
        log=lines.append,
    )
    return out, out_path, lines


def test_qm9_sections_structure_and_consistent_numbers(qm9_run):
    out, out_path, lines = qm9_run
    assert json.loads(out_path.read_text()) == json.loads(json.dumps(out))  # the file holds the result
    assert out["meta"]["small"] and out["meta"]["device_type"] == "cpu"
    assert out["meta"]["sections"] == ["qm9_batches", "qm9_step"]
    assert "nyuv2_step" not in out and "packed" not in out and "goals" not in out

    b = out["qm9_batches"]
    assert _positive(b["host_loader_s_per_batch"]) and _positive(b["device_gather_s_per_batch"])
    assert b["host_over_device"] == pytest.approx(
        b["host_loader_s_per_batch"] / b["device_gather_s_per_batch"], rel=1e-12
    )
    assert b["resident_mib"] > 0

    s = out["qm9_step"]
    assert s["batch_size"] == gpu_check.SMALL.qm9_batch and s["nodes"] > s["batch_size"]
    _check_step_section(s, QM9_METHODS, EXACT_MODES, [("db_mtl", "ew"), ("igbv2", "ew")])
    for m, mode in s["fastest_mode"].items():
        assert s["step_s"][m][mode]["step_s"] == min(s["step_s"][m][x]["step_s"] for x in EXACT_MODES)
    # IGBv2 is timed in its actor phase with its SAC burst amortised
    assert all(_positive(s["step_s"]["igbv2"][mode]["sac_burst_s"]) for mode in EXACT_MODES)
    assert any("db_mtl/ew" in line for line in lines)
    # the T-VJP floor and its terms, DB-MTL against it, and the operators of every method's step
    f = s["tvjp_floor"]
    assert f["tasks"] == 11 and _positive(f["forward_s"]) and _positive(f["backward_s"])
    assert f["floor"] == pytest.approx(
        (f["forward_s"] + 11 * f["backward_s"]) / (f["forward_s"] + f["backward_s"])
    )
    assert f["db_mtl_over_floor"] == pytest.approx(s["ratios"]["fastest"]["db_mtl/ew"] / f["floor"])
    assert set(s["ops_per_step"]) == set(s["methods"])
    assert s["ops_per_step"]["db_mtl"]["ops"] > s["ops_per_step"]["ew"]["ops"] > 0
    assert "famo" in s["methods"] and "upgrad" in s["methods"]  # the 2024-26 methods are timed too


def test_consistency_check_catches_inconsistent_numbers(qm9_run):
    out = qm9_run[0]
    check_consistency(out)
    bad = copy.deepcopy(out)
    bad["qm9_step"]["ratios"]["exact"]["db_mtl/ew"] *= 1.01
    with pytest.raises(ValueError, match="db_mtl/ew"):
        check_consistency(bad)
    bad = copy.deepcopy(out)
    del bad["qm9_step"]["step_s"]["nash_mtl"]
    with pytest.raises(ValueError, match="methods"):
        check_consistency(bad)
    bad = copy.deepcopy(out)
    bad["qm9_step"]["step_s"]["mgda"]["exact_vmap"]["step_s"] = float("nan")
    with pytest.raises(ValueError, match="positive finite"):
        check_consistency(bad)


def test_nyuv2_fixture_is_read_by_the_dataset(tmp_path):
    from mtl.data.nyuv2 import NYUv2

    root = write_nyuv2_fixture(tmp_path / "nyuv2", n_train=4, n_test=1, resolution=(16, 24), seed=0)
    assert np.load(root / "train" / "image" / "0.npy").shape == (16, 24, 3)
    data = NYUv2(root=root, augment=False, resolution=(16, 24))
    images, targets = next(iter(data.loader("train", 2, shuffle=False, seed=0, epoch=0)))
    assert tuple(images.shape) == (2, 3, 16, 24)
    assert set(targets) == set(data.task_names)


def test_a_method_that_cannot_be_built_is_skipped_with_its_reason(monkeypatch):
    import mtl.methods
    from mtl.errors import ConfigError

    original = mtl.methods.build_method

    def no_nash(name, tasks, **kw):
        if name == "nash_mtl":
            raise ConfigError("nash_mtl needs the optional cvxpy")
        return original(name, tasks, **kw)

    monkeypatch.setattr(mtl.methods, "build_method", no_nash)
    ok, skipped = gpu_check.buildable(["ew", "nash_mtl", "db_mtl"], [f"t{i}" for i in range(3)])
    assert ok == ["ew", "db_mtl"] and skipped == {
        "nash_mtl": "ConfigError: nash_mtl needs the optional cvxpy"
    }


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(SystemExit, match="unknown section"):
        gpu_check.main(["--device", "cpu", "--sections", "qm9,gpu", "--out", str(tmp_path / "x.json")])
    with pytest.raises(Exception, match="no_such_method"):
        gpu_check.main(
            ["--device", "cpu", "--packed-method", "no_such_method", "--out", str(tmp_path / "y.json")]
        )
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()


@pytest.mark.slow
def test_full_small_run(tmp_path):
    """Every section, the packed trials as real processes (about a minute on a loaded 2-core machine)."""
    out_path = tmp_path / "gpu_check.json"
    out = gpu_check.main(["--device", "cpu", "--small", "--out", str(out_path)], log=lambda _: None)
    assert json.loads(out_path.read_text()) == json.loads(json.dumps(out))
    check_consistency(out)
    n = out["nyuv2_step"]
    assert n["resolution"] == list(gpu_check.SMALL.nyuv2_resolution) and n["batch_size"] == 2
    _check_step_section(n, NYUV2_METHODS, gpu_check.SMALL.nyuv2_modes, [("db_mtl", "ew")])
    for m in NYUV2_METHODS:
        best = min(n["step_s"][m][mode]["step_s"] for mode in n["modes"])
        assert n["images_per_s"][m] == pytest.approx(n["batch_size"] / best, rel=1e-12)
    p = out["packed"]
    assert p["alone"]["trials"] == 1 and p["packed"]["trials"] == 4 and p["packed"]["gpu_fraction"] == 0.25
    for key in ("alone", "packed"):
        r = p[key]
        assert len(r["workers"]) == r["trials"] and all(w["steps"] > 0 for w in r["workers"])
        assert r["molecules"] == sum(w["molecules"] for w in r["workers"])
        assert r["molecules_per_s"] == pytest.approx(r["molecules"] / r["wall_s"], rel=1e-12)
        assert r["utilization_percent"] is None  # no nvidia-smi reading for a CPU run
    assert p["packed_over_alone"] == pytest.approx(
        p["packed"]["molecules_per_s"] / p["alone"]["molecules_per_s"], rel=1e-12
    )
    g = out["goals"]
    assert g["qm9_db_mtl_over_ew"]["measured"] == out["qm9_step"]["ratios"]["fastest"]["db_mtl/ew"]
    assert g["nyuv2_db_mtl_over_floor"]["measured"] == n["tvjp_floor"]["db_mtl_over_floor"]
    assert g["packed_molecules_per_s"]["measured"] == p["packed"]["molecules_per_s"]
    assert g["qm9_ew_step_ms"]["target_at_most"] == 10.0
    assert all(v["met"] is None for v in g.values())  # no verdict from a CPU run
