"""Methods, one module each, behind one interface (:class:`Method`) and a registry."""

from workbench.errors import ConfigError
from workbench.methods import (
    cmc,
    cps,
    cross_view,
    mean_teacher,
    meng,
    mm_supervised,
    multi_condos,
    prel,
    semi_cml,
    supervised,
    ua_mt,
)  # importing the modules registers them
from workbench.methods.base import Batch, Method
from workbench.methods.registry import METHODS, register

__all__ = ["Batch", "Method", "METHODS", "get_method", "register"]


def get_method(name: str) -> type[Method]:
    """The class registered as ``name``; ConfigError listing the choices otherwise."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]
