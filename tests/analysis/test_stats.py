"""Paired bootstrap comparison across seeds."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import compare, paired_bootstrap


def test_compare_pairs_by_seed_hand_computation(study):
    result = compare(study, "db_mtl", "ew", dataset="synthetic", n_boot=2000, seed=1)
    # per seed: db_mtl (C1) Δp 15, 10, 10; ew 0, -10, -5 -> differences 15, 20, 15
    assert result.n_pairs == 3 and result.seeds == (0, 1, 2)
    assert result.mean_diff == pytest.approx(50 / 3)
    assert result.mean_a == pytest.approx(35 / 3) and result.mean_b == pytest.approx(-5.0)
    assert 15.0 - 1e-9 <= result.ci_low <= 50 / 3 <= result.ci_high <= 20.0 + 1e-9
    assert result.significant and result.verdict == "db_mtl is better"
    assert "3 paired seeds" in result.summary()


def test_bootstrap_is_deterministic_given_its_seed():
    a = {0: 1.0, 1: 2.0, 2: 4.0, 3: 3.0}
    b = {0: 0.5, 1: 2.5, 2: 1.0, 3: 3.0}
    r1 = paired_bootstrap(a, b, n_boot=500, seed=7)
    r2 = paired_bootstrap(a, b, n_boot=500, seed=7)
    r3 = paired_bootstrap(a, b, n_boot=500, seed=8)
    assert (r1.ci_low, r1.ci_high) == (r2.ci_low, r2.ci_high)
    assert (r1.ci_low, r1.ci_high) != (r3.ci_low, r3.ci_high)


def test_ci_contains_the_true_difference_and_excludes_zero():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 5, size=40)  # seed effect shared by both methods: pairing removes it
    a = dict(enumerate(shared + 1.0 + rng.normal(0, 0.5, 40)))
    b = dict(enumerate(shared + rng.normal(0, 0.5, 40)))
    r = paired_bootstrap(a, b, n_boot=4000, seed=0)
    assert r.ci_low < 1.0 < r.ci_high and r.ci_low > 0
    assert r.higher_is_better is True and r.verdict == "a is better"


def test_noise_is_not_called_a_gain():
    r = paired_bootstrap({0: 1.0, 1: -1.0, 2: 0.5}, {0: 0.0, 1: 0.0, 2: 0.0}, n_boot=1000)
    assert r.ci_low < 0 < r.ci_high and not r.significant and "no clear difference" in r.verdict


def test_lower_is_better_metric_and_unpaired_seeds():
    r = paired_bootstrap({0: 0.8, 1: 0.9, 2: 0.85, 5: 0.1}, {0: 1.0, 1: 1.1, 2: 1.0}, metric="test/t0/mae")
    assert r.n_pairs == 3 and r.unpaired_seeds == (5,)
    assert r.higher_is_better is False and r.verdict == "a is better"


def test_refuses_fewer_than_two_pairs(study):
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_bootstrap({0: 1.0, 1: 2.0}, {1: 1.0, 2: 3.0})
    with pytest.raises(ValueError, match="at least 2 seeds"):
        compare(study, "igbv1", "ew", dataset="toy_cls")  # igbv1 has seed 0 only
    with pytest.raises(ValueError, match="no eligible trial"):
        compare(study, "rlw", "ew", dataset="toy_cls")
    with pytest.raises(ValueError, match="choose one"):
        compare(study, "db_mtl", "ew")
