"""Typed values for configs, method options and grid settings, checked by pydantic.

One rule for every place a user types a value (a ``TrainConfig`` field, a ``--set`` method
option, a grid file's ``settings``): the value must fit the field's annotation in pydantic's
strict mode — no string is read as a number, no number as true/false — with three
allowances made before the check: an integer fits a float field (it becomes a float),
NumPy scalars count as the Python numbers they hold, and a tuple counts as a list. A value
that does not fit gives one line naming the field, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from workbench.errors import ConfigError

__all__ = ["typed_value", "field_problem", "describe", "field_types", "config_from_dict"]


@functools.cache
def _adapter(hint: Any) -> TypeAdapter:
    return TypeAdapter(hint)


def _plain(value: Any) -> Any:
    """NumPy scalars -> Python numbers, tuples -> lists (recursively); the rest unchanged."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def typed_value(name: str, value: Any, hint: Any, prefix: str = "") -> Any:
    """``value`` validated against ``hint`` (see the module docstring) and converted (an int
    in a float field becomes a float); a one-line ConfigError otherwise."""
    try:
        return _adapter(hint).validate_python(_plain(value), strict=True)
    except ValidationError:
        raise ConfigError(f"{prefix}{name}={value!r}: expected {describe(hint)}") from None


def field_problem(name: str, value: Any, hint: Any) -> str | None:
    """The problem line of :func:`typed_value`, or None when ``value`` fits ``hint``."""
    try:
        typed_value(name, value, hint)
    except ConfigError as exc:
        return str(exc)
    return None


def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotations of a dataclass (string annotations included)."""
    return typing.get_type_hints(cls)


def describe(hint: Any) -> str:
    """``int | None`` -> "an integer or null" (for error messages)."""
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(describe(a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is list:
        item = typing.get_args(hint)[0]
        example = {str: '["t1", "flair"]', float: "[0.6, 0.85]", int: "[1, 2]"}.get(item, "[...]")
        return f"a JSON list like {example}"
    if origin is dict:
        return "a mapping"
    return names.get(hint, str(hint))


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """``cls(**values)`` for a config dataclass, with a one-line ConfigError naming an unknown key."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    return cls(**values)
