"""ASHA per configuration (issue 22 item 3), with fake trials: the seeds of one configuration are promoted or
stopped together, on the mean of their rung scores, against the other configurations of the group; a seed
that arrives early is paused there until its siblings arrive (not judged alone), then resumed or stopped with
them; the rung state survives the searcher's save/restore."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from study.asha import ConfigASHA, rung_milestones
from study.scheduler import StudyScheduler
from study.searcher import GROUP_KEY, GroupSearch, StudySearcher, config_key

CONTINUE, STOP, PAUSE = TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.PAUSE


class Controller:
    """Tune's controller as a scheduler sees it: ``stop_trial`` of a PAUSED trial calls the scheduler's
    ``on_trial_remove`` (Ray 2.60 ``TuneController.stop_trial``)."""

    def __init__(self, sched, trials=()) -> None:
        self.sched = sched
        self.stopped: list[str] = []
        self.trials = {t.trial_id: t for t in trials}

    def get_trials(self) -> list:
        return list(self.trials.values())

    def stop_trial(self, trial) -> None:
        self.stopped.append(trial.trial_id)
        self.sched.on_trial_remove(self, trial)


def trial(config: str, seed: int, group: str = "g") -> SimpleNamespace:
    return SimpleNamespace(
        trial_id=f"{config}_s{seed}", config={GROUP_KEY: group, "lr": config, "seed": seed}, last_result={}
    )


def asha(seeds: int = 2, max_t: int = 4, rf: float = 2.0) -> ConfigASHA:
    return ConfigASHA(
        time_attr="t",
        metric="m",
        mode="max",
        max_t=max_t,
        grace_period=1,
        reduction_factor=rf,
        seeds_per_config=seeds,
        config_key=lambda t: config_key(t.config),
    )


def result(t: int, m: float) -> dict:
    return {"t": t, "m": m}


def test_rungs_match_rays_asha():
    for grace, rf, max_t in ((1, 2, 4), (1, 3, 10), (2, 2, 17), (1, 3, 1)):
        ray = ASHAScheduler(time_attr="t", metric="m", mode="max", max_t=max_t, grace_period=grace,
                            reduction_factor=rf)  # fmt: skip
        expected = sorted(m for m, _ in ray._brackets[0]._rungs)
        assert rung_milestones(grace, rf, max_t) == expected


def test_one_configuration_never_stops_a_seed():
    """The cluster bug: with one configuration and seeds [0, 1], per-seed ASHA stopped seed 1."""
    sched = asha()
    a0, a1 = trial("a", 0), trial("a", 1)
    ctl = Controller(sched, (a0, a1))
    for t in (a0, a1):
        sched.on_trial_add(ctl, t)
    for step in range(1, 4):  # rungs 1, 2 (and max_t 4): seed 0 waits at each for seed 1
        assert sched.on_trial_result(ctl, a0, result(step, 10.0)) == (PAUSE if step in (1, 2) else CONTINUE)
        assert sched.on_trial_result(ctl, a1, result(step, -50.0)) == CONTINUE
        assert not sched.waiting  # seed 1 completed the decision: seed 0 may resume
    assert sched.on_trial_result(ctl, a0, result(4, 10.0)) == STOP  # max_t, as Ray's ASHA
    assert not sched.cut and not ctl.stopped
    # the same results through Ray's per-seed ASHA stop the worse seed
    ray = ASHAScheduler(time_attr="t", metric="m", mode="max", max_t=4, grace_period=1, reduction_factor=2)
    for t in (a0, a1):
        ray.on_trial_add(None, t)
    ray.on_trial_result(None, a0, result(1, 10.0))
    assert ray.on_trial_result(None, a1, result(1, -50.0)) == STOP


def test_decision_uses_the_mean_over_seeds():
    """b's seeds score 6 and 6 (mean 6); a's 10 and 0 (mean 5). Per seed, a's seed 0 is the best trial
    and Ray's ASHA keeps it; per configuration a is below b's mean and both of a's seeds stop."""
    sched = asha()
    trials = {(c, s): trial(c, s) for c in "ab" for s in (0, 1)}
    ctl = Controller(sched, trials.values())
    for t in trials.values():
        sched.on_trial_add(ctl, t)
    assert sched.on_trial_result(ctl, trials["b", 0], result(1, 6.0)) == PAUSE  # waits for b's seed 1
    assert sched.waiting_ids() == {"b_s0"}
    assert sched.on_trial_result(ctl, trials["b", 1], result(1, 6.0)) == CONTINUE
    assert sched.waiting_ids() == set()  # b promoted: its seed 0 may resume
    assert sched.on_trial_result(ctl, trials["a", 0], result(1, 10.0)) == PAUSE  # waits for a's seed 1
    assert sched.on_trial_result(ctl, trials["a", 1], result(1, 0.0)) == STOP
    assert ctl.stopped == ["a_s0"] and not sched.waiting  # a cut: the paused seed is stopped with it
    key = {c: config_key(trials[c, 0].config) for c in "ab"}
    assert sched.recorded[1] == {key["b"]: 6.0, key["a"]: 5.0}
    assert sched.num_stopped == 2
    ray = ASHAScheduler(time_attr="t", metric="m", mode="max", max_t=4, grace_period=1, reduction_factor=2)
    for t in trials.values():
        ray.on_trial_add(None, t)
    ray_decisions = {
        key: ray.on_trial_result(None, trials[key], result(1, m))
        for key, m in ((("b", 0), 6.0), (("b", 1), 6.0), (("a", 0), 10.0), (("a", 1), 0.0))
    }
    assert ray_decisions["a", 0] == CONTINUE and ray_decisions["a", 1] == STOP  # the seeds split


def test_stopped_configuration_stops_all_seeds_and_promoted_one_continues():
    """Four configurations x three seeds, reduction factor 2: at rung 1 the configurations below the
    median of those judged before them are cut, every seed of them; the others' seeds all continue."""
    sched = asha(seeds=3, max_t=8)
    means = {"c0": 5.0, "c1": 1.0, "c2": 7.0, "c3": 3.0}  # decided in this order
    offsets = (-2.0, 0.0, 2.0)
    trials = {(c, s): trial(c, s) for c in means for s in range(3)}
    ctl = Controller(sched, trials.values())
    for t in trials.values():
        sched.on_trial_add(ctl, t)
    first = {}
    for c, mean in means.items():
        for s, off in enumerate(offsets):
            first[c, s] = sched.on_trial_result(ctl, trials[c, s], result(1, mean + off))
    # c0 alone: kept; c1 (1 < 5): cut; c2 (7 >= median(5, 1) = 3): kept; c3 (3 < median(5, 1, 7) = 5): cut
    assert set(sched.cut) == {config_key(trials["c1", 0].config), config_key(trials["c3", 0].config)}
    for c in means:
        expect = STOP if c in ("c1", "c3") else CONTINUE
        assert first[c, 0] == first[c, 1] == PAUSE  # the early seeds waited (not judged alone)
        assert first[c, 2] == expect  # the seed completing the decision learns it at once
    assert ctl.stopped == ["c1_s0", "c1_s1", "c3_s0", "c3_s1"]  # the cut ones' waiting seeds, with it
    assert not sched.waiting  # the promoted ones' waiting seeds are free to resume
    for c in ("c0", "c2"):  # at rung 2 they wait for each other again
        assert [sched.on_trial_result(ctl, trials[c, s], result(2, means[c])) for s in range(3)] == [
            PAUSE,
            PAUSE,
            CONTINUE,  # c0 first at rung 2; c2 (7) not below c0's 5
        ]


def test_a_failed_seed_does_not_block_its_configuration():
    """A seed that ends below the rung (failed) no longer counts: its siblings are judged without it."""
    sched = asha()
    b0, b1, a0, a1 = trial("b", 0), trial("b", 1), trial("a", 0), trial("a", 1)
    ctl = Controller(sched, (b0, b1, a0, a1))
    for t in (b0, b1, a0, a1):
        sched.on_trial_add(ctl, t)
    sched.on_trial_result(ctl, b0, result(1, 6.0))
    sched.on_trial_result(ctl, b1, result(1, 6.0))
    assert sched.on_trial_result(ctl, a0, result(1, 1.0)) == PAUSE  # waits for a's seed 1
    a1.last_result = {}
    sched.on_trial_error(ctl, a1)  # a's seed 1 failed before reaching the rung
    assert config_key(a0.config) in sched.cut  # judged on seed 0 alone: 1 < 6
    assert ctl.stopped == ["a_s0"]  # and the waiting seed 0 is stopped


def test_the_study_scheduler_resumes_promoted_seeds_first_and_never_a_waiting_one():
    """``choose_trial_to_run``: a paused trial whose configuration was promoted, then pending ones in Tune's
    order; a trial waiting at a rung is never resumed; the searcher leaves waiting trials out of its cap."""
    sched = StudyScheduler(lambda _g: asha())
    a0, a1, b0 = trial("a", 0), trial("a", 1), trial("b", 0)
    ctl = Controller(sched, (a0, a1, b0))
    for t in (a0, a1, b0):
        sched.on_trial_add(ctl, t)
    assert sched.on_trial_result(ctl, a0, result(1, 1.0)) == PAUSE
    a0.status, a1.status, b0.status = "PAUSED", "PENDING", "PENDING"
    assert sched.waiting_ids() == {"a_s0"}
    assert sched.choose_trial_to_run(ctl) is a1  # not the waiting a0
    a1.status = "RUNNING"
    assert sched.on_trial_result(ctl, a1, result(1, 1.0)) == CONTINUE  # a promoted (alone in its group)
    assert sched.choose_trial_to_run(ctl) is a0  # resumed before the pending b0
    searcher = StudySearcher({"g": GroupSearch("g", {}, [0, 1], "optuna", 2, 0, study_name="g")}, "m", "max")
    searcher.companion = sched
    searcher.max_concurrent = 1
    sched.on_trial_result(ctl, b0, result(1, 1.0))  # b0's seed 1 has not run: b0 waits at rung 1
    searcher.live["g"] = {"b_s0"}
    assert sched.waiting_ids() == {"b_s0"} and searcher.running() == 0  # its sibling can start


def test_min_mode_and_nan_scores():
    sched = ConfigASHA(time_attr="t", metric="m", mode="min", max_t=4, grace_period=1, reduction_factor=2,
                       seeds_per_config=1, config_key=lambda t: config_key(t.config))  # fmt: skip
    low, high = trial("low", 0), trial("high", 0)
    assert sched.on_trial_result(None, low, result(1, 1.0)) == CONTINUE
    assert sched.on_trial_result(None, high, result(1, 5.0)) == STOP  # larger loss is worse
    with pytest.raises(ValueError, match="mode"):
        ConfigASHA(time_attr="t", metric="m", mode="best", max_t=4, grace_period=1, reduction_factor=2,
                   seeds_per_config=1, config_key=str)  # fmt: skip
    nan = trial("nan", 0)
    sched.on_trial_result(None, nan, result(1, float("nan")))  # no finite score: no decision, no crash
    assert config_key(nan.config) not in sched.recorded[1]


def _events(n_configs: int = 6, seeds: int = 2, seed: int = 0) -> list[tuple[str, int, int, float]]:
    """A random interleaving of (config, seed, t, score) results, each trial reporting t = 1..4."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n_configs)
    queues = {
        (f"c{c}", s): [(f"c{c}", s, t, float(quality[c] + rng.normal(scale=0.5))) for t in range(1, 5)]
        for c in range(n_configs)
        for s in range(seeds)
    }
    out = []
    while any(queues.values()):
        keys = [k for k, q in queues.items() if q]
        out.append(queues[keys[int(rng.integers(len(keys)))]].pop(0))
    return out


def _replay(sched: StudyScheduler, events, stopped: set[str]) -> None:
    ctl = Controller(sched)
    for c, s, t, m in events:
        tr = ctl.trials.setdefault(f"{c}_s{s}", trial(c, s))
        if tr.trial_id in stopped or tr.trial_id in ctl.stopped:
            continue
        if sched.on_trial_result(ctl, tr, result(t, m)) == STOP:
            stopped.add(tr.trial_id)
            sched.on_trial_complete(ctl, tr, result(t, m))
    stopped.update(ctl.stopped)


def _study_parts() -> tuple[StudySearcher, StudyScheduler]:
    scheduler = StudyScheduler(lambda _g: asha(seeds=2, max_t=4))
    searcher = StudySearcher({"g": GroupSearch("g", {}, [0, 1], "optuna", 1, 0, study_name="g")}, "m", "max")
    searcher.companion = scheduler
    return searcher, scheduler


@pytest.mark.parametrize("split", [5, 17, 30])
def test_resumed_scheduler_stops_the_same_configurations(tmp_path, split):
    """An uninterrupted run and one saved (through the study's searcher, as Tune saves it) after ``split``
    results and restored into fresh objects stop exactly the same trials."""
    events = _events()
    _, whole = _study_parts()
    stopped_whole: set[str] = set()
    _replay(whole, events, stopped_whole)

    searcher, first = _study_parts()
    stopped: set[str] = set()
    _replay(first, events[:split], stopped)
    searcher.save(str(tmp_path / "searcher.pkl"))
    fresh_searcher, resumed = _study_parts()
    fresh_searcher.restore(str(tmp_path / "searcher.pkl"))
    _replay(resumed, events[split:], stopped)
    assert stopped == stopped_whole
    assert resumed.schedulers["g"].cut == whole.schedulers["g"].cut
    assert 0 < len(whole.schedulers["g"].cut) < 6  # some configurations cut, some promoted


def test_a_seed_waiting_at_a_rung_keeps_waiting_after_a_resume():
    """Saved while seed 0 waits at rung 1 and restored (Tune brings the trial back PENDING): it is not run
    before seed 1 reaches the rung; then it resumes (promoted) -- or would be stopped with it (cut)."""
    sched = StudyScheduler(lambda _g: asha())
    a0, a1 = trial("a", 0), trial("a", 1)
    ctl = Controller(sched, (a0, a1))
    for t in (a0, a1):
        sched.on_trial_add(ctl, t)
    assert sched.on_trial_result(ctl, a0, result(1, 3.0)) == PAUSE
    saved = sched.state_dict()
    assert saved["g"]["waiting"] == {"a_s0": 1.0}

    restored = StudyScheduler(lambda _g: asha())
    restored.load_state_dict(saved)
    a0, a1 = trial("a", 0), trial("a", 1)  # Tune's restored trial objects
    ctl = Controller(restored, (a0, a1))
    for t in (a0, a1):
        restored.on_trial_add(ctl, t)
    a0.status = a1.status = "PENDING"
    assert restored.choose_trial_to_run(ctl) is a1  # a0 still waits for its sibling
    a1.status = "RUNNING"
    assert restored.on_trial_result(ctl, a1, result(1, 5.0)) == CONTINUE
    assert restored.waiting_ids() == set() and restored.choose_trial_to_run(ctl) is a0
    assert restored.schedulers["g"].recorded[1] == {config_key(a0.config): 4.0}  # the mean of 3 and 5


def test_a_released_seed_resumes_only_under_the_study_cap():
    """Its slot went to another trial while it waited: with the cap reached, nothing is started."""
    sched = StudyScheduler(lambda _g: asha(), max_running=2, max_running_per_group=None)
    a0, a1, b0 = trial("a", 0), trial("a", 1), trial("b", 0)
    ctl = Controller(sched, (a0, a1, b0))
    for t in (a0, a1, b0):
        sched.on_trial_add(ctl, t)
    sched.on_trial_result(ctl, a0, result(1, 1.0))  # waits
    sched.on_trial_result(ctl, a1, result(1, 1.0))  # promoted: a0 released
    a0.status, a1.status, b0.status = "PAUSED", "RUNNING", "RUNNING"
    assert sched.choose_trial_to_run(ctl) is None  # 2 running = the cap
    b0.status = "TERMINATED"
    assert sched.choose_trial_to_run(ctl) is a0
    capped = StudyScheduler(lambda _g: asha(), max_running_per_group=1)
    ctl = Controller(capped, (a0, a1, b0))
    assert capped.choose_trial_to_run(ctl) is None  # a1 runs in group g: a0 waits for the group's slot
