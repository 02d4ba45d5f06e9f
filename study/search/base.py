"""The base of a search algorithm: what one (dataset, method) group's search must do.

An algorithm proposes configurations of the group's space (:meth:`SearchAlgorithm.propose`), is told the
score of each (:meth:`SearchAlgorithm.tell`: the mean over its seeds, or a failure) and saves and restores
its whole state (:meth:`~SearchAlgorithm.state_dict`), so a resumed study proposes what an uninterrupted one
would. Seeds, the paper-default configuration and the dispatch over groups are not its business
(:mod:`study.searcher`). Class attributes and class methods tell the study file (:mod:`study.schema`) what
the algorithm accepts; :data:`study.search.registry.ALGORITHMS` names every algorithm.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from study.search.params import Param

DEFAULT_SAMPLES = 8
"""Configurations per group when the study gives no ``num_samples``."""


def config_id(params: Mapping[str, Any]) -> str:
    """What names a configuration (its parameters in name order) among a group's."""
    return repr(sorted(params.items()))


@dataclass
class Proposal:
    """A configuration and what its algorithm needs to be told its score (``token``; None: never told)."""

    params: dict[str, Any]
    token: Any = None


class SearchAlgorithm(ABC):
    """Proposes configurations of one group's ``space`` (name -> :class:`~study.search.params.Param`).

    ``budget`` is how many configurations the group wants from it (:attr:`count` may be fewer: a finite
    space runs out); ``seed`` seeds :attr:`rng` (and the algorithm's own sampler); ``study_name`` names the
    search (unique per study and group); ``unique``: never propose one configuration twice."""

    default_samples: ClassVar[int] = DEFAULT_SAMPLES
    """Configurations per group when the study gives no ``search.num_samples``."""
    tune_conflict: ClassVar[str | None] = None
    """Why it cannot give every group the same budget under ``tune:`` (None: it can)."""
    takes_continuous: ClassVar[bool] = True
    """Whether it searches continuous parameters (``uniform``, ``loguniform``, ``int``)."""

    def __init__(
        self, space: Mapping[str, Param], budget: int, seed: int | None, *, study_name: str, unique: bool
    ) -> None:
        self.space = dict(space)
        self.budget = int(budget)
        self.rng = np.random.default_rng(seed)
        self.study_name = study_name
        self.unique = unique

    @property
    @abstractmethod
    def count(self) -> int:
        """How many configurations it proposes in all."""

    @abstractmethod
    def propose(self, known: Mapping[str, float | None]) -> Proposal:
        """The next configuration, not one of ``known`` (:func:`config_id` -> the score told, None while it
        runs or when it failed)."""

    def tell(self, token: Any, value: float | None) -> None:
        """The score of the proposal ``token`` (the mean over its seeds), or None: it failed. (An algorithm
        that learns nothing from scores, such as random search, ignores it.)"""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    # -- what the study file may ask for (study.schema) ---------------------------------------------------
    @classmethod
    def study_problems(cls, study: Any) -> list[str]:
        """Problems of a :class:`study.schema.Study` searched by this algorithm, as ``field: reason``."""
        return []
