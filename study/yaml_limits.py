"""Limits on a study file before it is parsed: its size, its nesting, its alias expansion, its list lengths.

A study file is small by nature (the shipped ones are under 4 KB). Without limits a 791-byte YAML "billion
laughs" (aliases of aliases) expanded into a 322 MB error message, 500 levels of nesting ended in a
RecursionError, and a 58 MB file was still being parsed after two minutes. :func:`check_yaml_limits` walks
PyYAML's event stream (iteratively: no recursion, nothing expanded) and raises :class:`YAMLLimitError` naming
the limit, the line and what to do, before anything is composed.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

MAX_BYTES = 1 << 20
"""1 MiB: a thousand times the largest shipped study."""
MAX_DEPTH = 32
"""Nesting of mappings and lists (the schema's deepest field is 5 levels down)."""
MAX_NODES = 100_000
"""Scalars, mappings and lists after aliases are expanded (what the parsed document would hold)."""
MAX_LIST = 10_000
"""Items in one list (seeds, choice values, methods, ...)."""


class YAMLLimitError(ValueError):
    """A study file beyond one of the limits of this module; the message says which and where."""


@dataclass
class _Open:
    anchor: str | None
    nodes: int = 1
    items: int = 0
    is_list: bool = False
    line: int = 0


def check_size(num_bytes: int) -> None:
    """Refuse a file larger than :data:`MAX_BYTES` before reading it."""
    if num_bytes > MAX_BYTES:
        raise YAMLLimitError(
            f"the file is {num_bytes:,} bytes; a study file may have at most {MAX_BYTES:,} "
            f"(studies are short: list seeds and values, or use a search space instead of long lists)"
        )


def check_yaml_limits(text: str) -> None:
    """Raise :class:`YAMLLimitError` if ``text`` exceeds a limit of this module (size, depth, expanded
    nodes, list length). Syntax errors are left to the parser that follows (this returns quietly)."""
    check_size(len(text.encode("utf-8", errors="replace")))
    sizes: dict[str, int] = {}  # anchor -> values it expands to
    stack: list[_Open] = []
    total = 0

    def add(count: int, line: int) -> None:
        """A value of ``count`` nodes (1, or an alias's expansion) in the innermost open collection."""
        nonlocal total
        total += count
        if total > MAX_NODES:
            raise YAMLLimitError(
                f"line {line}: the document expands to more than {MAX_NODES:,} values (aliases included); "
                f"a study file needs far fewer: check for aliases of aliases"
            )
        if stack:
            top = stack[-1]
            top.nodes += count
            top.items += 1
            if top.is_list and top.items > MAX_LIST:
                raise YAMLLimitError(
                    f"line {top.line}: a list with more than {MAX_LIST:,} items; a study needs far fewer "
                    f"(e.g. seeds: give a handful)"
                )

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_DEPTH:
                    raise YAMLLimitError(
                        f"line {line}: nested more than {MAX_DEPTH} levels deep; a study file's deepest "
                        f"field is a few levels down"
                    )
                add(1, line)
                is_list = isinstance(event, yaml.SequenceStartEvent)
                stack.append(_Open(event.anchor, is_list=is_list, line=line))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                done = stack.pop()
                if done.anchor is not None:
                    sizes[done.anchor] = done.nodes
                if stack:
                    stack[-1].nodes += done.nodes - 1  # its own node was counted when it opened
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                add(1, line)
            elif isinstance(event, yaml.AliasEvent):
                add(sizes.get(event.anchor, 1), line)
    except yaml.YAMLError:
        return  # the parser reports it, with its own position
