"""Name -> method class registry; ``workbench train --method NAME`` looks names up here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.methods.base import Method

__all__ = ["METHODS", "register", "get_method"]

METHODS: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator adding a method under its ``name``."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type["Method"]:
    """The class registered as ``name``; ConfigError listing the choices otherwise."""
    import workbench.methods  # noqa: F401  (registers the built-in methods)

    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]
