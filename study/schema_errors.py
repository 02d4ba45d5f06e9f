"""How a study file's problems are told: pydantic errors as ``field: reason`` lines (the allowed values or
fields named, with a did-you-mean) and a YAML loader that rejects a key written twice."""

from __future__ import annotations

import re
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from mtl.registry import did_you_mean


def _unwrap(annotation: Any, key: Any) -> Any:
    """The type found under ``key`` inside a (possibly optional) list/dict/model annotation."""
    for arg in (annotation, *get_args(annotation)):
        origin = get_origin(arg)
        if isinstance(key, int) and origin is list:
            return get_args(arg)[0]
        if origin is dict and not isinstance(key, int):
            return get_args(arg)[1]
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            fields = {f.alias or n: f for n, f in arg.model_fields.items()} | arg.model_fields
            if key in fields:
                return fields[key].annotation
    return None


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> Any:
    """The model class (one with ``allowed_fields``) at ``loc`` below ``root``, or None."""
    current: Any = root
    for key in loc:
        current = _unwrap(current, key)
        if current is None:
            return None
    for arg in (current, *get_args(current)):
        if isinstance(arg, type) and issubclass(arg, BaseModel) and hasattr(arg, "allowed_fields"):
            return arg
    return None


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def format_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """Pydantic errors of validating ``root`` as ``field: reason`` lines naming the allowed values or
    fields (with a did-you-mean for an unknown field)."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and ("function-" in p or p in _UNION_TAGS))
        )
        msg = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            model = _model_at(loc[:-1], root)
            if model is not None:
                allowed = model.allowed_fields()
                msg = f"unknown field{did_you_mean(str(loc[-1]), allowed)}; allowed: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "literal_error" or err["type"].endswith(("_type", "_parsing")):
            msg += f" (got {err['input']!r})"
        where = _loc(loc)
        for line in msg.split("\n"):
            if where and not re.match(r"^[\w.\[\]]+: ", line):
                lines.append(f"{where}: {line}")
            else:
                lines.append(line)
    return lines


_UNION_TAGS = ("str", "int", "float", "bool", "list[...]", "dict[str,...]")


class UniqueKeyLoader(yaml.SafeLoader):
    """A :class:`yaml.SafeLoader` that rejects a key written twice in one mapping (PyYAML keeps the last one
    silently: a second ``train:`` block would replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key '{key}' (first given on line {first_line[key] + 1})",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)
