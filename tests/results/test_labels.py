"""The one labeler of hyperparameter configurations (results_store.labels)."""

from __future__ import annotations

import math

import pandas as pd

from results_store.labels import CONFIG, DEFAULT_LABEL, config_label, with_config


def test_config_id_separates_configurations_with_equal_hyperparameters():
    frame = pd.DataFrame(
        {
            "dataset": ["d"] * 4,
            "method": ["m"] * 4,
            "hp/lr": [0.1, 0.1, 0.1, 0.2],
            "config_id": ["a", "a", "b", None],
        }
    )
    labels = list(with_config(frame)[CONFIG])
    assert labels == ["lr=0.1 [a]", "lr=0.1 [a]", "lr=0.1 [b]", "lr=0.2"]


def test_labels_skip_unset_values_and_name_an_empty_configuration_default():
    row = pd.Series({"hp/beta": 0.5, "hp/lr": math.nan, "hp/alpha_strategy": "max"})
    assert config_label(row, ["hp/alpha_strategy", "hp/beta", "hp/lr"]) == "alpha_strategy=max, beta=0.5"
    assert config_label(row, ["hp/lr"]) == DEFAULT_LABEL
    frame = pd.DataFrame(
        {"dataset": ["d", "d"], "method": ["m", "m"], "hp/seed": [0, 1], "hp/beta": [0.1, 0.1]}
    )
    assert list(with_config(frame)[CONFIG]) == ["beta=0.1", "beta=0.1"]  # the seed is not part of it
