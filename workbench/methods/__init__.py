"""Methods, one module each, behind one interface (:class:`Method`) and a registry."""

from workbench.methods.base import Batch, Method
from workbench.methods.registry import METHODS, get_method, register
from workbench.methods import mm_supervised, prel, semi_cml, supervised  # noqa: F401  (registers them)

__all__ = ["Batch", "Method", "METHODS", "get_method", "register"]
