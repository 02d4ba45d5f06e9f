"""Where a study keeps what: the folder layout under ``storage/<study>/`` (no Ray, no torch).

``study.yaml`` (the validated study), ``trials/`` and ``epochs/`` (Parquet, see :mod:`results_store`) and
``tune/study`` (Ray Tune's one experiment for the whole study). Light on purpose: ``study status`` and
``study ls`` read these paths without importing Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from results_store.location import storage_uri

if TYPE_CHECKING:
    from study.schema import Group, Study

STUDY_FILE = "study.yaml"
EXPERIMENT = "study"
GROUP_KEY = "group"
"""The key of each Tune trial's config naming its (dataset, method) group (:mod:`study.searcher`)."""
DEFAULT_KEY = "paper_default"
"""The key of a Tune trial's config that is true for a group's paper-default configuration (``tune.defaults``:
nothing from the search space set; :mod:`study.searcher`)."""


def tune_root(study: Study) -> str:
    """Where Ray Tune keeps the study's experiment."""
    return f"{storage_uri(study.storage).rstrip('/')}/{study.name}/tune"


def experiment_path(study: Study) -> str:
    """The study's one Tune experiment."""
    return f"{tune_root(study)}/{EXPERIMENT}"


def serial_experiment_path(study: Study, group: Group) -> str:
    """Where the serial engine (before one pool) kept a group's experiment; only to recognise old studies."""
    return f"{tune_root(study)}/{group.name}"
