"""The registry of search algorithms: the study file's ``search.algorithm`` names and their classes."""

from __future__ import annotations

from mtl.registry import Registry
from study.search.base import SearchAlgorithm

DEFAULT_ALGORITHM = "optuna"


class AlgorithmRegistry(Registry[SearchAlgorithm]):
    """A :class:`mtl.registry.Registry` that also lists its names as the study file's messages do: the
    default first, then in registration order."""

    def in_order(self) -> list[str]:
        return sorted(self._entries, key=lambda name: name != DEFAULT_ALGORITHM)

    def algorithm(self, name: str) -> type[SearchAlgorithm]:
        """The class registered as ``name`` (an unknown name is refused, listing the valid ones)."""
        return self.factory(name)  # type: ignore[return-value]


ALGORITHMS = AlgorithmRegistry("search algorithm")
