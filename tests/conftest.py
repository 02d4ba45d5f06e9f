"""Shared test fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture
def tiny_synthetic():
    """A small synthetic dataset for fast trainer tests."""
    from mtl.data import build_dataset

    return build_dataset("synthetic", n_train=96, n_val=32, n_test=32, hidden=16)
