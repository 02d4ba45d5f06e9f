"""A name -> constructor registry that validates names and keyword arguments.

Unknown names and unknown keyword arguments are rejected with a message listing the valid ones, so a
typo in a study file fails before any compute is spent.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from mtl.errors import ConfigError, UnknownNameError

T = TypeVar("T")
_LOOKS_NUMERIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _as_number(kind: str, name: str, key: str, annotation: Any, value: Any) -> Any:
    """``value`` for a parameter declared as a plain ``int`` or ``float``: a string that spells a number
    becomes that number (YAML 1.1 reads ``1e4`` and ``1.0e4`` as strings; the CLI's ``-m sac_lr=1e-3`` too),
    any other string is refused with a clear message; everything else is returned unchanged."""
    if annotation not in (int, float, "int", "float") or not isinstance(value, str):
        return value
    if not _LOOKS_NUMERIC.match(value.strip()):
        raise ConfigError(f"{kind} '{name}': {key} must be a number, got the string {value!r}")
    number = float(value)
    return int(number) if annotation in (int, "int") and number.is_integer() else number


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``name``, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """Maps names to constructors.

    ``context`` names are keyword arguments the library supplies itself (e.g. ``num_tasks``); they are
    not user-settable and are excluded from the listed valid keyword arguments.
    """

    def __init__(self, kind: str, context: Iterable[str] = ()) -> None:
        self.kind = kind
        self.context = frozenset(context)
        self._entries: dict[str, Callable[..., T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries or name in self._aliases:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = factory
            for alias in aliases:
                self._aliases[alias] = name
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def canonical(self, name: str) -> str:
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string, got {type(name).__name__}")
        key = name.strip().lower()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            valid = ", ".join(self.names())
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(key, self._entries)}; valid: {valid}"
            )
        return key

    def factory(self, name: str) -> Callable[..., T]:
        return self._entries[self.canonical(name)]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """User-settable keyword arguments of ``name`` with their defaults."""
        sig = inspect.signature(self.factory(name))
        return {
            p.name: p
            for p in sig.parameters.values()
            if p.name not in self.context and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def check_kwargs(self, name: str, kwargs: dict[str, Any]) -> None:
        valid = self.parameters(name)
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            listed = ", ".join(sorted(valid)) or "none"
            raise ConfigError(
                f"unknown keyword argument(s) {unknown} for {self.kind} '{self.canonical(name)}'"
                f"{did_you_mean(unknown[0], valid)}; valid: {listed}"
            )
        for key, value in kwargs.items():
            _as_number(self.kind, self.canonical(name), key, valid[key].annotation, value)

    def coerce(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``kwargs`` (checked) with numbers given as strings (the CLI's -m k=1e-3, YAML's 1e4) as numbers."""
        self.check_kwargs(name, kwargs)
        params = self.parameters(name)
        return {k: _as_number(self.kind, name, k, params[k].annotation, v) for k, v in kwargs.items()}

    def build(self, name: str, /, context: dict[str, Any] | None = None, **kwargs: Any) -> T:
        kwargs = self.coerce(name, kwargs)
        factory = self.factory(name)
        accepted = inspect.signature(factory).parameters
        ctx = {k: v for k, v in (context or {}).items() if k in accepted}
        return factory(**ctx, **kwargs)
