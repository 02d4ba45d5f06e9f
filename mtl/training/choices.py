"""A small registry of names in declaration order: what each name stands for, and one rejection of an
unknown name that lists the valid ones (the optimisers, LR schedulers and gradient modes a trial may name)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from mtl.errors import UnknownNameError
from mtl.registry import did_you_mean

T = TypeVar("T")


class Choices(Mapping[str, T], Generic[T]):
    """``kind``'s names mapped to their entries (a factory, a description), in the order given: the order
    they are listed in messages and help texts."""

    def __init__(self, kind: str, entries: Mapping[str, T]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{did_you_mean(str(name), self._entries)}; "
                f"valid: {', '.join(self._entries)}"
            )
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
