"""Method-specific options: a typed dataclass per method, filled from ``TrainConfig.options``."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from workbench.errors import ConfigError

__all__ = ["parse_options", "check_choice", "config_from_dict", "INPUTS"]

#: how the modalities enter a single-modality method: one model per modality, or all as channels (MM-)
INPUTS = ("single", "both")

T = TypeVar("T")


def _coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of the field's default, or a one-line ConfigError."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"option {key}={value!r}: expected true or false")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"option {key}={value!r}: expected a number")
        if isinstance(default, int) and not float(value).is_integer():
            raise ConfigError(f"option {key}={value!r}: expected an integer")
        return type(default)(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"option {key}={value!r}: expected a string")
    return value


def parse_options(cls: type[T], values: dict[str, Any], method: str) -> T:
    """``cls(**values)`` with a one-line ConfigError naming an unknown key or a wrong type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        choices = f"options: {', '.join(sorted(fields))}" if fields else "it takes no options"
        raise ConfigError(f"method {method!r} has no option {unknown[0]!r}; {choices}")
    return cls(**{k: _coerce(k, v, fields[k].default) for k, v in values.items()})


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    """One-line ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"unknown {option} {value!r}; choose one of: {', '.join(choices)}")


def config_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """``cls(**values)`` for a config dataclass, with a one-line ConfigError naming an unknown key."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    return cls(**values)
