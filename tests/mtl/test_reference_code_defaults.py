"""Where a paper is silent, the defaults follow its reference code: DB-MTL's β schedule is LibMTL's
(``--DB_beta 0.9``, ``--DB_beta_sigma 0``: a constant β)."""

from __future__ import annotations

import inspect

import pytest

from mtl.aggregators.basic import MaxNorm
from mtl.methods import build_method


def test_db_mtl_default_beta_is_constant_as_in_libmtl():
    defaults = {k: p.default for k, p in inspect.signature(MaxNorm).parameters.items()}
    assert defaults["beta"] == 0.9 and defaults["beta_sigma"] == 0.0
    method = build_method("db_mtl", ["a", "b", "c"])
    assert method.aggregator.beta_sigma == 0.0
    assert [method.aggregator.beta_at(k) for k in (1, 10, 1000)] == pytest.approx([0.9, 0.9, 0.9])
