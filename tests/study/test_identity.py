"""Canonical method identity: one name per method at validation, for the group, Tune and the results."""

from __future__ import annotations

import pytest
import yaml

from mtl.methods import canonical_method_name, parse_method, valid_method_names
from study.schema import StudyError, validate_study

BASE = {"name": "ids", "datasets": ["synthetic"], "train": {"epochs": 2}}


def parts(name: str) -> tuple[str, str | None]:
    spec = parse_method(name)
    return spec.balancer, spec.aggregator


@pytest.mark.parametrize(
    "spellings",
    [
        ["db_mtl", "db-mtl", "DB-MTL", "dbmtl", "log+max_norm", "si+maxnorm", "log + max_norm"],
        ["si", "log"],
        ["max_norm", "ew+max_norm", "maxnorm"],
        ["imtl", "imtl_l+imtl_g"],
        ["igbv1+nash_mtl", "igb_v1+nash"],
    ],
)
def test_every_spelling_of_a_method_has_one_name(spellings):
    names = {canonical_method_name(s) for s in spellings}
    assert len(names) == 1
    assert {parts(s) for s in spellings} == {parts(names.pop())}


def test_canonical_names_keep_the_method():
    for name in valid_method_names():
        canonical = canonical_method_name(name)
        assert parts(canonical) == parts(name)
        assert canonical_method_name(canonical) == canonical
    # different methods keep different names
    assert len({canonical_method_name(n) for n in ("ew", "si", "max_norm", "db_mtl", "sum")}) == 5


def test_two_spellings_of_one_method_are_rejected_naming_both():
    with pytest.raises(StudyError) as exc:
        validate_study({**BASE, "methods": ["ew", "db_mtl", "db-mtl"]})
    message = str(exc.value)
    assert "methods[2].name" in message and "'db-mtl'" in message and "'db_mtl'" in message
    with pytest.raises(StudyError, match=r"methods\[1\]\.name: 'log\+max_norm' is the same method"):
        validate_study({**BASE, "methods": [{"name": "db_mtl", "kwargs": {"beta": 0.5}}, "log+max_norm"]})


def test_groups_use_the_canonical_name_and_it_survives_a_reload():
    study = validate_study({**BASE, "methods": ["log+max_norm", "ew+max_norm", "LOG", "igb_v1+nash"]})
    names = ["db_mtl", "max_norm", "si", "igbv1+nash_mtl"]
    assert [g.method for g in study.groups()] == names
    assert [g.label for g in study.groups()] == [f"synthetic/{n}" for n in names]
    again = validate_study(yaml.safe_load(study.to_yaml()))  # what `study resume` reads back
    assert [g.method for g in again.groups()] == names


def test_trial_rows_get_the_parts_and_directions():
    from study.trial import TrialSetup, trial_info

    settings = TrialSetup(
        study="s",
        storage="/tmp/x",
        dataset="synthetic",
        method="db_mtl",
        train={},
        seeds=[0],
        hp_names=["beta"],
        hp_types={"beta": "float"},
    )
    info = trial_info(settings, "t_00000", 0, {"beta": 0.5}, {"t0": {"mae": False}, "t1": {"acc": True}})
    assert (info.method, info.balancer, info.aggregator) == ("db_mtl", "si", "max_norm")
    assert info.directions == {"t0/mae": False, "t1/acc": True}
    settings.method = "gls"
    assert (trial_info(settings, "t", 0, {}).aggregator, trial_info(settings, "t", 0, {}).balancer) == (
        None,
        "gls",
    )
