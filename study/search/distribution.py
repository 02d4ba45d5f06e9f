"""The base of a searched parameter's distribution: one subclass per kind (:mod:`study.search.kinds`), each
owning what the study does with that kind -- check the YAML values, count and list the finite values, draw
a value, hand Optuna its distribution, probe validation, name the column type."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BeforeValidator

Scalar = bool | int | float | str
"""A value a ``choice``/``grid`` may list."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"Input should be a valid integer, not a boolean (got {value!r})")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
"""An integer in a study file: pydantic's lax mode would read ``true`` as 1 (``seeds: [true]`` ran seed 1)."""


class Distribution(ABC):
    """One searched parameter's distribution, built from its YAML list (``raw``) and options (``log``).

    A kind declares its YAML key (:attr:`key`), the type of the list's items (:attr:`item`), whether it is a
    finite list of values (:attr:`discrete`), whether every value is run (:attr:`enumerated`, ``grid``) and
    whether it takes ``log: true`` (:attr:`takes_log`)."""

    key: ClassVar[str]
    item: ClassVar[Any]
    discrete: ClassVar[bool] = False
    enumerated: ClassVar[bool] = False
    takes_log: ClassVar[bool] = False

    def __init__(self, raw: Sequence[Any], log: bool = False) -> None:
        self.raw = list(raw)
        self.log = log

    @abstractmethod
    def check(self) -> None:
        """Raise ``ValueError`` (the message names the kind) when the YAML values are unusable."""

    @abstractmethod
    def finite_values(self) -> Sequence[Any] | None:
        """Every value it can take (not materialised for a range), or None when it is continuous."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn with ``rng``."""

    @abstractmethod
    def to_optuna(self) -> Any:
        """The Optuna distribution of the same values (Optuna imported here, lazily)."""

    @abstractmethod
    def probe_values(self) -> list[Any]:
        """Values that exercise validation: every discrete value, or both bounds."""

    @abstractmethod
    def column_type(self) -> str:
        """The type of its ``hp/<name>`` column (:mod:`results_store.columns`)."""

    def describe(self) -> str:
        """The distribution as the study file writes it, for messages."""
        log = ", log: true" if self.log else ""
        return f"{{{self.key}: {self.raw}{log}}}"
