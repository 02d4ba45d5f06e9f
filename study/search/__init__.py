"""Pluggable search: one module per algorithm over a small base (:mod:`study.search.base`: propose, tell,
state), named in :data:`ALGORITHMS`, and the searched parameters (:mod:`study.search.params`) whose kinds
(:mod:`study.search.kinds`) carry their own behaviour. A new algorithm is a module registering its class
and one import line here; the study file's ``search.algorithm`` accepts it from then on."""

from study.search import grid_search, optuna_tpe, random_search  # noqa: F401  (registration)
from study.search.base import DEFAULT_SAMPLES, Proposal, SearchAlgorithm, config_id
from study.search.params import Param, Space, space_size
from study.search.registry import ALGORITHMS, DEFAULT_ALGORITHM

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "DEFAULT_SAMPLES",
    "Param",
    "Proposal",
    "SearchAlgorithm",
    "Space",
    "config_id",
    "space_size",
]
