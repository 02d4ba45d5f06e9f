"""Fixtures of the analysis tests: one study written by the project's own writer, loaded once."""

from __future__ import annotations

import pytest

from tests.analysis.fixture_study import write_study


@pytest.fixture(scope="session")
def study_path(tmp_path_factory) -> str:
    return write_study(str(tmp_path_factory.mktemp("results")))


@pytest.fixture(scope="session")
def study(study_path):
    from analysis.load import load_study

    return load_study(study_path)


@pytest.fixture(scope="session")
def figures(study, tmp_path_factory):
    """Every figure, drawn once for all tests (the slowest step: a few seconds)."""
    from analysis.plots import all_plots

    return all_plots(study, tmp_path_factory.mktemp("plots"))
