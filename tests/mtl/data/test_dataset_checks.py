"""Dataset and model arguments are checked without reading data or building a model (issue 13), with the
same checks the constructors and ``build_model`` apply."""

from __future__ import annotations

import pytest

from mtl.data import DATASETS, build_dataset, check_dataset, check_model
from mtl.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("synthetic", {"n_train": -5}, "synthetic n_train must be in [1, 10,000,000], got -5"),
        ("synthetic", {"num_tasks": 0}, "synthetic num_tasks must be in [1, 1000], got 0"),
        ("synthetic", {"n_val": 2.5}, "synthetic n_val must be an integer, got 2.5"),
        ("synthetic", {"n_val": True}, "synthetic n_val must be an integer, got True"),
        ("synthetic", {"noise": "loud"}, "noise must be a number, got the string 'loud'"),
        ("synthetic", {"num_tasks": 2, "scales": [1.0, -1.0]}, "scales must be 2 positive numbers"),
        ("qm9", {"subset": 5}, "qm9 subset must be an integer >= 13, got 5"),
        ("qm9", {"rebuild": "yes"}, "qm9 rebuild must be true or false, got 'yes'"),
        ("nyuv2", {"resolution": [0, 8]}, "nyuv2 resolution must be (height, width), got [0, 8]"),
        ("cityscapes", {"num_workers": -1}, "cityscapes num_workers must be >= 0, got -1"),
        ("office_home", {"subset": 0}, "office_home subset must be >= 1, got 0"),
        ("office31", {"root": 3}, "office31 root must be a string or a path or null, got 3"),
    ],
)
def test_bad_dataset_arguments_fail_without_any_data(name, kwargs, expected):
    """No data folder exists for the vision datasets here: the check never looks for one."""
    with pytest.raises(ConfigError) as info:
        check_dataset(name, kwargs)
    assert expected in str(info.value)


def test_the_constructor_applies_the_same_checks():
    for kwargs in ({"n_train": -5}, {"num_tasks": 0}, {"n_val": 2.5}):
        with pytest.raises(ConfigError) as checked:
            check_dataset("synthetic", kwargs)
        with pytest.raises(ConfigError) as built:
            build_dataset("synthetic", **kwargs)
        assert str(checked.value) == str(built.value)


def test_good_arguments_pass_with_numbers_spelled_as_strings():
    check_dataset("synthetic", {"n_train": "1e3", "noise": 0.1, "scales": [1, 2, 3]})
    check_dataset("qm9", {"subset": 1000, "graph": "bond", "cache_dir": "/tmp/x"})
    for name in DATASETS.names():
        check_dataset(name, {})  # the defaults are valid


@pytest.mark.parametrize(
    ("name", "architecture", "kwargs", "expected"),
    [
        ("synthetic", "hps", {"hiddn": 8}, "unknown model argument(s) ['hiddn'] for synthetic (did you mean "
                                          "'hidden'?); valid: hidden"),
        ("synthetic", "mtan", {}, "synthetic supports architectures: hps, mmoe, cgc, ple, dselect_k; got "
                                  "'mtan'"),
        ("synthetic", "hps", {"hidden": 0}, "synthetic model argument hidden must be an integer in [1, "
                                            "65,536]"),
        ("qm9", "hps", {"dims": 64}, "for qm9 (did you mean 'dim'?); valid: conv, dim, set2set_steps, steps"),
        ("qm9", "hps", {"conv": "gcn"}, "qm9 model argument conv must be one of factorized, pyg"),
        ("nyuv2", "unet", {}, "nyuv2 supports architectures: hps, cross_stitch, mtan, segnet, segnet_mtan"),
        ("office31", "hps", {"dropout": 1.0}, "office31 model argument dropout must be in [0, 1)"),
    ],
)  # fmt: skip
def test_bad_model_arguments_fail_without_building_a_model(name, architecture, kwargs, expected):
    with pytest.raises(ConfigError) as info:
        check_model(name, architecture, kwargs)
    assert expected in str(info.value)


def test_build_model_applies_the_same_model_checks():
    dataset = build_dataset("synthetic", n_train=8, n_val=4, n_test=4)
    with pytest.raises(ConfigError) as checked:
        check_model("synthetic", "hps", {"hiddn": 8})
    with pytest.raises(ConfigError) as built:
        dataset.build_model("hps", hiddn=8)
    assert str(checked.value) == str(built.value)
    check_model("nyuv2", "SegNet-MTAN", {})  # names as build_model normalises them
    assert dataset.build_model("hps", hidden=8).encoder[0].out_features == 8
