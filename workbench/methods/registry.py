"""Name -> method class registry, filled as the method modules are imported; look names up
with :func:`workbench.methods.get_method`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.methods.base import Method

__all__ = ["METHODS", "register"]

METHODS: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator adding a method under its ``name``."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} is empty or already registered")
    METHODS[cls.name] = cls
    return cls
