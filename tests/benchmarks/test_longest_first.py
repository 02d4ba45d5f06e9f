"""Longest-first dispatch: the costliest group's trials go out first; a mixed study ends sooner, running the
same trials."""

from benchmarks.longest_first import MIXED_METHODS, simulate
from mtl.methods import step_cost
from study.searcher import GroupSearch, StudySearcher


def test_step_cost_classes():
    assert step_cost("ew", 11) == 1 and step_cost("si", 11) == 1
    assert step_cost("db_mtl", 11) == 11 and step_cost("upgrad", 3) == 3  # T backward passes
    assert step_cost("famo", 11) == 2  # one extra forward after the step (a hook)
    assert step_cost("igbv1+mgda", 5) == 5


def test_the_costliest_open_group_gets_the_next_slot_then_the_least_loaded():
    groups = {
        m: GroupSearch(m, {}, [0, 1], "grid", 1, 0, study_name=f"t.{m}") for m in ("ew", "si", "db_mtl")
    }
    searcher = StudySearcher(groups, "val_delta_p", "max", costs={"ew": 1, "si": 1, "db_mtl": 11})
    owners = []
    for k in range(6):
        assert searcher.suggest(f"t{k}") is not None
        owners.append(searcher.owner[f"t{k}"])
    assert owners[:2] == ["db_mtl", "db_mtl"]  # both seeds of the costly group first
    assert sorted(owners[2:]) == ["ew", "ew", "si", "si"]
    # without costs: the old order (least loaded, ties round-robin)
    groups = {
        m: GroupSearch(m, {}, [0, 1], "grid", 1, 0, study_name=f"u.{m}") for m in ("ew", "si", "db_mtl")
    }
    plain = StudySearcher(groups, "val_delta_p", "max")
    first = []
    for k in range(3):
        plain.suggest(f"u{k}")
        first.append(plain.owner[f"u{k}"])
    assert first == ["ew", "si", "db_mtl"]


def test_a_mixed_study_ends_sooner_with_the_same_trials():
    before = simulate(MIXED_METHODS, seeds=3, slots=4, tasks=11, longest_first=False, configs=2)
    after = simulate(MIXED_METHODS, seeds=3, slots=4, tasks=11, longest_first=True, configs=2)
    assert after["ran"] == before["ran"] and after["trials"] == before["trials"] == 48
    assert after["makespan"] < 0.9 * before["makespan"]
    assert after["utilisation"] > before["utilisation"]
