"""Fault tests reuse the study tests' helpers: tiny synthetic studies and Ray hygiene."""

from tests.study.conftest import OBJECT_STORE, ray_clean, session_pids, study_dict  # noqa: F401
