"""Methods, one module each, behind one interface (:class:`Method`) and a registry."""

from workbench.methods.base import Batch, Method
from workbench.methods.registry import METHODS, get_method, register
from workbench.methods import cmc, cps, cross_view, mean_teacher, meng, mm_supervised, multi_condos, prel, semi_cml, supervised, ua_mt  # noqa: F401  (registers them)

__all__ = ["Batch", "Method", "METHODS", "get_method", "register"]
