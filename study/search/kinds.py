"""The distribution kinds of a search space (one small class each over :class:`Distribution`) and
:data:`KINDS`, the one list of them: the YAML keys of :class:`study.search.params.Param` and its messages
derive from it, so a new kind is one class and one entry here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from results_store.columns import infer_hp_type
from study.search.distribution import Distribution, Int, Scalar


class Categorical(Distribution):
    """A finite list of distinct values."""

    item = Scalar
    discrete = True

    def check(self) -> None:
        if not self.raw:
            raise ValueError(f"{self.key} needs at least one value")
        if len({repr(v) for v in self.raw}) != len(self.raw):
            raise ValueError(f"{self.key} values must be distinct, got {self.raw}")

    def finite_values(self) -> list[Any]:
        return list(self.raw)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.raw[int(rng.integers(len(self.raw)))]

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.CategoricalDistribution(list(self.raw))

    def probe_values(self) -> list[Any]:
        return list(self.raw)

    def column_type(self) -> str:
        return infer_hp_type(self.raw)


class Choice(Categorical):
    """``{choice: [...]}``: one of the values (sampled; expanded as a grid under ``search: grid``)."""

    key = "choice"


class Grid(Categorical):
    """``{grid: [...]}``: every value is run (random and grid search; a space of grid parameters only is
    enumerated whatever the algorithm)."""

    key = "grid"
    enumerated = True


class Bounded(Distribution):
    """``[low, high]``: finite, ``low < high``."""

    item = float

    @property
    def bounds(self) -> tuple[Any, Any]:
        return self.raw[0], self.raw[1]

    def check(self) -> None:
        if len(self.raw) != 2:
            raise ValueError(f"{self.key} needs [low, high], got {self.raw}")
        lo, hi = self.raw
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise ValueError(f"{self.key} needs finite low < high, got {self.raw}")

    def finite_values(self) -> Sequence[Any] | None:
        return None

    def probe_values(self) -> list[Any]:
        return [float(v) for v in self.bounds]

    def column_type(self) -> str:
        return "float"


class Uniform(Bounded):
    """``{uniform: [low, high]}``: a float, uniform."""

    key = "uniform"

    def sample(self, rng: np.random.Generator) -> Any:
        return float(rng.uniform(*self.bounds))

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(*self.bounds)


class LogUniform(Bounded):
    """``{loguniform: [low, high]}``: a float, uniform in log space (``low > 0``)."""

    key = "loguniform"

    def check(self) -> None:
        super().check()
        if self.raw[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.raw}")

    def sample(self, rng: np.random.Generator) -> Any:
        lo, hi = self.bounds
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    def to_optuna(self) -> Any:
        import optuna

        return optuna.distributions.FloatDistribution(*self.bounds, log=True)


class IntRange(Bounded):
    """``{int: [low, high]}``: an integer, both bounds inclusive; ``log: true`` draws it log-uniformly."""

    key = "int"
    item = Int
    takes_log = True

    def check(self) -> None:
        super().check()
        if self.log and self.raw[0] <= 0:
            raise ValueError(f"int with log: true needs low > 0, got {self.raw}")

    def finite_values(self) -> range:
        lo, hi = self.bounds
        return range(int(lo), int(hi) + 1)

    def sample(self, rng: np.random.Generator) -> Any:
        lo, hi = self.bounds
        if self.log:
            value = math.floor(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))
            return min(max(value, int(lo)), int(hi))
        return int(rng.integers(int(lo), int(hi) + 1))

    def to_optuna(self) -> Any:
        import optuna

        lo, hi = self.bounds
        return optuna.distributions.IntDistribution(int(lo), int(hi), log=self.log)

    def probe_values(self) -> list[Any]:
        return [int(v) for v in self.bounds]

    def column_type(self) -> str:
        return "int"


KINDS: tuple[type[Distribution], ...] = (Choice, Grid, Uniform, LogUniform, IntRange)
"""Every kind, in the order the study file's messages list them."""
