"""``grad_mode: auto``: the probe picks an exact mode, records it, and leaves training bit for bit as is."""

import math

import pytest

from mtl import grad_probe
from mtl.config import TrainConfig
from mtl.errors import ConfigError
from mtl.gradients import EXACT_MODES, TRAIN_GRAD_MODES, choose_grad_mode
from mtl.train import Trainer, fit

TIMING_KEYS = ("time_", "probe_time/")


def _config(method: str, grad_mode: str, epochs: int = 2) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "dataset": "synthetic",
            "method": method,
            "epochs": epochs,
            "batch_size": 32,
            "grad_mode": grad_mode,
            "device": "cpu",
        }
    )


def _same(a: dict, b: dict) -> list[str]:
    """Keys whose values differ (timings excluded; NaN equals NaN)."""
    out = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(TIMING_KEYS):
            continue
        x, y = a.get(key), b.get(key)
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            out.append(key)
    return out


# -- the choice ----------------------------------------------------------------------------------------
def test_choose_grad_mode_fastest_with_deterministic_tie_break():
    assert choose_grad_mode({"exact": 1.0, "exact_vmap": 0.5}) == "exact_vmap"
    assert choose_grad_mode({"exact": 0.5, "exact_vmap": 1.0}) == "exact"
    # a near-tie (within the tolerance) keeps the earlier mode, in either order of the mapping
    assert choose_grad_mode({"exact_vmap": 0.995, "exact": 1.0}) == "exact"
    assert choose_grad_mode({"exact": 1.0, "exact_vmap": 1.0}) == "exact"
    # a failed mode (NaN) is never chosen
    assert choose_grad_mode({"exact": 1.0, "exact_vmap": float("nan")}) == "exact"
    assert choose_grad_mode({"exact": float("nan"), "exact_vmap": 2.0}) == "exact_vmap"


def test_choose_grad_mode_rejects_non_exact_and_empty():
    with pytest.raises(ValueError, match="rep"):
        choose_grad_mode({"exact": 1.0, "rep": 0.1})
    with pytest.raises(ValueError, match="no exact gradient mode"):
        choose_grad_mode({"exact": float("nan")})


def test_config_accepts_auto_and_lists_modes_on_error():
    assert "auto" in TRAIN_GRAD_MODES
    assert _config("db_mtl", "auto").grad_mode == "auto"
    with pytest.raises(ConfigError, match="grad_mode 'fast' unknown; valid: exact, exact_vmap, rep, auto"):
        _config("db_mtl", "fast")


def test_study_settings_accept_auto():
    from study.schema import TrainSettings

    assert TrainSettings(epochs=1, grad_mode="auto").grad_mode == "auto"


# -- the probe leaves training unchanged ----------------------------------------------------------------
@pytest.mark.parametrize("forced", EXACT_MODES)
def test_auto_equals_the_chosen_mode_bit_for_bit(tiny_synthetic, monkeypatch, forced):
    """Whatever the probe picks (forced here, so both branches run), the auto run's records and final
    weights equal those of a run with that mode from the start. DB-MTL keeps an EMA of the gradients, so
    a probe that leaked method, model, optimiser or step state would change every later number."""
    monkeypatch.setattr(grad_probe, "choose_grad_mode", lambda times: forced)
    auto = Trainer(_config("db_mtl", "auto"), dataset=tiny_synthetic)
    plain = Trainer(_config("db_mtl", forced), dataset=tiny_synthetic)
    for _ in range(2):
        ra, rp = auto.run_epoch(), plain.run_epoch()
        assert ra["grad_mode_chosen"] == rp["grad_mode_chosen"] == forced
        assert _same(ra, rp) == []
    for (name, a), (_, b) in zip(auto.model.state_dict().items(), plain.model.state_dict().items()):
        assert a.equal(b), name
    assert auto.global_step == plain.global_step


def test_auto_records_choice_and_probe_timings(tiny_synthetic):
    """Real probe (no forcing): the choice is the fastest by the recorded timings, the probe runs once, its
    cost is kept out of time_train, and a run with the chosen mode gives the same records."""
    records = fit(_config("igbv2+mgda", "auto"), dataset=tiny_synthetic)
    first, second = records
    times = {m: first[f"probe_time/{m}"] for m in EXACT_MODES}
    assert all(math.isfinite(t) and t > 0 for t in times.values())
    assert first["grad_mode_chosen"] == choose_grad_mode(times)
    assert first["time_probe"] > 0 and second["time_probe"] == 0.0
    assert {second[f"probe_time/{m}"] for m in EXACT_MODES} == set(times.values())
    plain = fit(_config("igbv2+mgda", first["grad_mode_chosen"]), dataset=tiny_synthetic)
    for a, b in zip(records, plain, strict=True):
        assert _same(a, b) == []


def test_fixed_mode_and_methods_without_task_gradients_are_not_probed(tiny_synthetic):
    fixed = fit(_config("db_mtl", "exact_vmap", epochs=1), dataset=tiny_synthetic)[0]
    assert fixed["grad_mode_chosen"] == "exact_vmap" and fixed["time_probe"] == 0.0
    assert all(math.isnan(fixed[f"probe_time/{m}"]) for m in EXACT_MODES)
    ew = fit(_config("ew", "auto", epochs=1), dataset=tiny_synthetic)[0]
    assert ew["grad_mode_chosen"] == "exact"
    assert all(math.isnan(ew[f"probe_time/{m}"]) for m in EXACT_MODES)


def test_resumed_auto_trial_keeps_its_choice(tiny_synthetic, monkeypatch):
    monkeypatch.setattr(grad_probe, "choose_grad_mode", lambda times: "exact_vmap")
    first = Trainer(_config("db_mtl", "auto"), dataset=tiny_synthetic)
    r0 = first.run_epoch()
    state = first.state_dict()
    monkeypatch.setattr(grad_probe, "choose_grad_mode", lambda times: "exact")  # a new probe would differ
    resumed = Trainer(_config("db_mtl", "auto"), dataset=tiny_synthetic)
    resumed.load_state_dict(state)
    r1 = resumed.run_epoch()
    assert r1["grad_mode_chosen"] == "exact_vmap" and r1["time_probe"] == 0.0
    assert r1["probe_time/exact"] == r0["probe_time/exact"]
    uninterrupted = Trainer(_config("db_mtl", "exact_vmap"), dataset=tiny_synthetic)
    uninterrupted.run_epoch()
    assert _same(uninterrupted.run_epoch(), r1) == []


def test_probe_rejects_bad_candidates(tiny_synthetic):
    trainer = Trainer(_config("db_mtl", "auto"), dataset=tiny_synthetic)
    with pytest.raises(ValueError, match="exact modes"):
        grad_probe.probe_grad_modes(trainer, ["rep"])
