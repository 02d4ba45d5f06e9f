"""A searched hyperparameter as the study file writes it: exactly one distribution key, e.g.::

    beta:           {choice: [0.1, 0.5, 0.9]}      # categorical (sampled; a grid under `search: grid`)
    alpha_strategy: {grid: [max, mean]}            # every value (random and grid search only)
    sac_lr:         {loguniform: [1.0e-4, 1.0e-3]}
    beta:           {uniform: [0.1, 0.9]}
    buffer_size:    {int: [1000, 100000], log: true}   # bounds inclusive

:class:`Param` is the pydantic model of one entry; its keys are derived from :data:`study.search.kinds.KINDS`
and what each kind means is its :class:`~study.search.distribution.Distribution` (:attr:`Param.dist`).
Where a sampled value goes in the trial's config is :mod:`study.space`.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, model_validator

from study.search.distribution import Distribution
from study.search.kinds import KINDS

KIND_NAMES = tuple(k.key for k in KINDS)
LOG_KINDS = tuple(k.key for k in KINDS if k.takes_log)


def _field_name(key: str) -> str:
    """The attribute holding kind ``key`` (``int_`` for ``int``: a builtin's name)."""
    return f"{key}_" if hasattr(builtins, key) else key


class _ParamShape(BaseModel):
    """The checks of every search-space entry (the fields are added by :func:`_param_model`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    _dist: Distribution | None = PrivateAttr(default=None)

    @classmethod
    def allowed_fields(cls) -> list[str]:
        return [f.alias or name for name, f in cls.model_fields.items()]

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(
                f"a search-space entry must be a mapping with one of {', '.join(KIND_NAMES)} "
                f"(e.g. {{choice: [0.1, 0.5]}}), got {data!r}"
            )
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> _ParamShape:
        given = [k for k in KINDS if getattr(self, _field_name(k.key)) is not None]
        if len(given) != 1:
            names = [k.key for k in given]
            raise ValueError(f"give exactly one of {', '.join(KIND_NAMES)}; got {names or 'none'}")
        kind = given[0]
        log = bool(getattr(self, "log", False))
        dist = kind(getattr(self, _field_name(kind.key)), log=log)
        dist.check()
        if log and not kind.takes_log:
            raise ValueError(f"log applies to {' and '.join(LOG_KINDS)} only (use loguniform for floats)")
        self._dist = dist
        return self

    # -- what the study asks of an entry (the kind answers) -----------------------------------------------
    @property
    def dist(self) -> Distribution:
        """This entry's distribution (its kind's behaviour)."""
        assert self._dist is not None
        return self._dist

    @property
    def kind(self) -> str:
        return self.dist.key

    @property
    def discrete(self) -> bool:
        return self.dist.discrete

    @property
    def values(self) -> list[Any]:
        """The values of a discrete kind (``choice``/``grid``); empty for a range."""
        return list(self.dist.finite_values() or []) if self.discrete else []

    def probe_values(self) -> list[Any]:
        return self.dist.probe_values()

    def column_type(self) -> str:
        return self.dist.column_type()


def _param_model() -> type[_ParamShape]:
    """``Param``: one optional list per kind of :data:`KINDS` (YAML key = the kind's key) plus ``log``."""
    fields: dict[str, Any] = {
        _field_name(k.key): (list[k.item] | None, Field(default=None, alias=k.key)) for k in KINDS
    }
    fields["log"] = (bool, False)
    return create_model(
        "Param",
        __base__=_ParamShape,
        __module__=__name__,
        __doc__="One searched hyperparameter: exactly one of the distribution keys (module docstring).",
        **fields,
    )


Param = _param_model()
Space = dict[str, Param]


def space_size(space: Mapping[str, Param]) -> int | None:
    """How many distinct configurations ``space`` has, or None when a parameter is continuous."""
    size = 1
    for param in space.values():
        values = param.dist.finite_values()
        if values is None:
            return None
        size *= len(values)
    return size
