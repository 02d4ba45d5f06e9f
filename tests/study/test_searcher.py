"""study.searcher: the dispatching Tune searcher over per-group searches -- repeats over seeds, the
study-wide and per-group caps, what the algorithm is told, save/restore (a version-1 state included)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import optuna
import pytest
from ray.tune.search import Searcher

from study.schema import parse_study, validate_study
from study.searcher import GROUP_KEY, GroupSearch, StudySearcher
from study.tuner import make_searcher

from .conftest import study_dict


def seeds_only(name: str, seeds: list[int]) -> GroupSearch:
    return GroupSearch(name, {}, seeds, "optuna", 4, 0, study_name=name)


def drain(searcher: StudySearcher, prefix: str = "t") -> list[tuple[str, dict]]:
    """Suggest until the searcher has nothing to give right now."""
    out = []
    while True:
        trial_id = f"{prefix}{len(out)}"
        config = searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            return out
        out.append((trial_id, config))


def test_global_cap_binds_when_nothing_is_searched():
    """Issue 13 item 3: with max_concurrent 1 only one seed-only trial is out at a time, across groups."""
    searcher = StudySearcher(
        {"a": seeds_only("a", [0, 1, 2, 3]), "b": seeds_only("b", [0, 1])}, "m", "max", max_concurrent=1
    )
    assert searcher.total == 6
    seen = []
    for _ in range(6):
        (trial_id, config), *rest = drain(searcher, prefix=f"x{len(seen)}_")
        assert rest == []  # the cap: nothing more until the running trial ends
        seen.append((config[GROUP_KEY], config["seed"]))
        searcher.on_trial_complete(trial_id, {"m": 1.0})
    assert searcher.suggest("last") == Searcher.FINISHED
    assert sorted(seen) == [("a", 0), ("a", 1), ("a", 2), ("a", 3), ("b", 0), ("b", 1)]
    assert seen[:2] in ([("a", 0), ("b", 0)], [("b", 0), ("a", 0)])  # groups take turns


def test_dispatch_is_least_loaded_and_per_group_cap_binds():
    groups = {name: seeds_only(name, [0, 1, 2]) for name in ("a", "b", "c")}
    searcher = StudySearcher(groups, "m", "max", max_concurrent=5, max_per_group=2)
    out = drain(searcher)
    counts = {name: sum(1 for _, c in out if c[GROUP_KEY] == name) for name in groups}
    assert len(out) == 5 and max(counts.values()) == 2 and min(counts.values()) == 1
    full = [name for name, n in counts.items() if n == 2]
    searcher.on_trial_complete(next(t for t, c in out if c[GROUP_KEY] == full[0]), {"m": 0.0})
    (_, config), *rest = drain(searcher, prefix="u")
    assert rest == [] and config[GROUP_KEY] != full[1]  # the group still at its cap gets none


def test_optuna_repeats_each_config_per_seed_and_tells_the_mean():
    from study.search import Param

    space = {"lr": Param.model_validate({"loguniform": [1e-3, 1e-1]})}
    group = GroupSearch("g", space, [0, 1, 2], "optuna", 2, 0, study_name="g")
    searcher = StudySearcher({"g": group}, "m", "max")
    out = drain(searcher)
    assert len(out) == 6 and searcher.suggest("more") == Searcher.FINISHED
    lrs = [c["lr"] for _, c in out]
    assert lrs[0] == lrs[1] == lrs[2] != lrs[3] == lrs[4] == lrs[5]
    assert [c["seed"] for _, c in out] == [0, 1, 2, 0, 1, 2]
    scores = [1.0, math.nan, 3.0, None, None, None]  # config 2: every repeat failed
    for (trial_id, _), score in zip(out, scores, strict=True):
        searcher.on_trial_complete(trial_id, None if score is None else {"m": score}, error=score is None)
    first, second = group.strategy.study.get_trials(deepcopy=False)
    assert first.state == optuna.trial.TrialState.COMPLETE and first.value == pytest.approx(2.0)
    assert second.state == optuna.trial.TrialState.FAIL


def test_optuna_never_runs_a_configuration_twice_and_stops_at_the_space_size():
    """TPE may propose a categorical configuration the group already has (the QM9 quickstart once ran one
    DB-MTL configuration twice); the group answers such proposals itself and runs each configuration once,
    and a space of 2 x 2 configurations caps a group asked for 10 at 4."""
    from study.search import Param, space_size

    space = {
        "beta": Param.model_validate({"choice": [0.1, 0.5]}),
        "alpha_strategy": Param.model_validate({"choice": ["max", "mean"]}),
    }
    assert space_size(space) == 4 and space_size({"lr": Param.model_validate({"uniform": [0, 1]})}) is None
    assert space_size({"k": Param.model_validate({"int": [2, 5]}), **space}) == 16
    for seed in range(5):
        group = GroupSearch("g", space, [0], "optuna", 10, seed, study_name="g")
        searcher = StudySearcher({"g": group}, "m", "max")
        assert group.total == 4
        seen = []
        for step in range(4):
            trial_id = f"s{step}"
            config = searcher.suggest(trial_id)  # one at a time: earlier scores are known to Optuna
            seen.append((config["beta"], config["alpha_strategy"]))
            searcher.on_trial_complete(trial_id, {"m": float(step)})
        assert sorted(seen) == sorted((b, a) for b in (0.1, 0.5) for a in ("max", "mean")), seed
        assert searcher.suggest("more") == Searcher.FINISHED
        # every proposal Optuna made is answered: the four runs, and duplicates told their known score
        trials = group.strategy.study.get_trials(deepcopy=False)
        assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
        scores = {(c.params["beta"], c.params["alpha_strategy"]): c.value for c in group.configs}
        for t in trials:
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert t.value == scores[(t.params["beta"], t.params["alpha_strategy"])]


def test_a_duplicate_proposal_of_a_running_configuration_is_told_failed():
    from study.search import Param

    space = {"beta": Param.model_validate({"choice": [0.1, 0.5]})}
    group = GroupSearch("g", space, [0], "optuna", 2, 0, study_name="g")
    first, second = group.suggest("a"), group.suggest("b")  # both running, nothing told yet
    assert {first["beta"], second["beta"]} == {0.1, 0.5}
    states = [t.state for t in group.strategy.study.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.RUNNING) == 2
    assert set(states) <= {optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL}


def test_random_and_grid_searches_pair_seeds(tmp_path):
    data = study_dict(
        tmp_path,
        "grid",
        methods=[{"name": "db_mtl", "space": {"beta": {"choice": [0.1, 0.5, 0.9]}}}],
        seeds=[0, 1],
        search={"algorithm": "grid", "seed": 0, "num_samples": None},
        resources={"max_concurrent_trials": None},
    )
    searcher = make_searcher(validate_study(data))
    out = drain(searcher)
    assert searcher.total == 6 and len(out) == 6
    assert sorted((c["beta"], c["seed"]) for _, c in out) == [(b, s) for b in (0.1, 0.5, 0.9) for s in (0, 1)]
    data["search"] = {"algorithm": "random", "seed": 3, "num_samples": 3}
    data["space"] = {"lr": {"loguniform": [1e-3, 1e-2]}}
    again = [drain(make_searcher(validate_study(data))) for _ in range(2)]
    assert [c for _, c in again[0]] == [c for _, c in again[1]]  # seeded
    lrs = [c["lr"] for _, c in again[0]]
    assert all(1e-3 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == 3 and lrs[0] == lrs[1]


def test_save_and_restore_continue_every_group(tmp_path):
    from study.search import Param

    def make() -> StudySearcher:
        space = {"beta": Param.model_validate({"uniform": [0.1, 0.9]})}
        groups = {
            "opt": GroupSearch("opt", space, [0, 1], "optuna", 3, 0, study_name="opt"),
            "plain": seeds_only("plain", [0, 1]),
        }
        return StudySearcher(groups, "m", "max", max_concurrent=3)

    original = make()
    first = drain(original)
    original.on_trial_complete(first[0][0], {"m": 1.0})
    original.save(str(tmp_path / "searcher.pkl"))
    restored = make()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.running() == original.running() == 2
    # the same next suggestions, and nothing handed out twice
    for step in range(6):
        a, b = original.suggest(f"n{step}"), restored.suggest(f"n{step}")
        assert a == b
        if a not in (None, Searcher.FINISHED):
            original.on_trial_complete(f"n{step}", {"m": 0.5})
            restored.on_trial_complete(f"n{step}", {"m": 0.5})
    for searcher in (original, restored):
        for trial_id, _ in first[1:]:
            searcher.on_trial_complete(trial_id, {"m": 0.0})
        drain(searcher, prefix="z")
        assert searcher.suggest("end") == Searcher.FINISHED
    assert sorted(restored.groups["plain"].trial_config) == sorted(original.groups["plain"].trial_config)


V1_STATES = Path(__file__).parent / "search" / "data"
"""Searcher states pickled by the code before issue 25 (version 1), five trials into each study below."""
V1_STUDIES = {
    "random": "datasets: [synthetic]\nmethods: [ew, {name: stl, space: {task: {grid: [t0, t1]}}}]\n"
    "seeds: [0, 1]\nspace: {batch_size: {int: [8, 64], log: true}, lr: {loguniform: [1.0e-4, 1.0e-2]}, "
    "weight_decay: {uniform: [0.0, 0.1]}}\ntrain: {epochs: 2}\n"
    "search: {algorithm: random, seed: 7, num_samples: 5}\n",
    "optuna": "datasets: [synthetic]\nmethods: [ew]\nseeds: [0, 1]\n"
    "space: {batch_size: {int: [8, 64]}, lr: {loguniform: [1.0e-4, 1.0e-2]}, "
    "optimizer: {choice: [adam, sgd]}}\n"
    "train: {epochs: 2}\nsearch: {algorithm: optuna, seed: 3, num_samples: 6}\n",
}


def _replay(searcher: StudySearcher, steps: range, pending: list) -> list:
    """Suggest one trial a step, keep two running, end the older (every seventh step an error); the
    pattern the version-1 states were saved with."""
    out = []
    for step in steps:
        config = searcher.suggest(f"t{step}")
        if config == Searcher.FINISHED:
            return [*out, "FINISHED"]
        if config is not None:
            out.append(config)
            pending.append((f"t{step}", config))
        if len(pending) >= 2 or config is None:
            trial_id, done = pending.pop(0)
            value = zlib.crc32(repr(sorted(done.items())).encode()) % 1000 / 100.0
            error = (step + 1) % 7 == 0
            searcher.on_trial_complete(trial_id, None if error else {"val_delta_p": value}, error=error)
    return out


@pytest.mark.parametrize("name", sorted(V1_STUDIES))
def test_a_state_saved_before_the_search_package_restores_and_continues_identically(name):
    """Issue 25: a study saved before the algorithms became modules (Optuna study and random queue inside
    the group's state, ``optuna_number`` on each configuration) resumes exactly as it would have run."""
    study = parse_study(V1_STUDIES[name], default_name=name, check_registry=False)
    uninterrupted, pending = make_searcher(study), []
    expected = _replay(uninterrupted, range(5), pending)
    expected += _replay(uninterrupted, range(5, 60), pending)
    resumed, pending = make_searcher(study), []
    head = _replay(make_searcher(study), range(5), pending)  # what ran before the state was saved
    resumed.restore(str(V1_STATES / f"searcher_v1_{name}.pkl"))
    assert head + _replay(resumed, range(5, 60), pending) == expected
    assert expected[-1] == "FINISHED" and len(expected) == resumed.total + 1
