"""User-facing errors.

Everything the workbench rejects on purpose (a bad path, a malformed NIfTI, an unknown
method, a bad option) raises a subclass of :class:`WorkbenchError` whose message is one
line naming the file or value and what is wrong. The CLI prints that line and exits
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

__all__ = ["WorkbenchError", "DataError", "ConfigError"]


class WorkbenchError(Exception):
    """Base class: a one-line, user-facing error message."""


class DataError(WorkbenchError):
    """Input data is missing, unreadable or inconsistent. The message names the file."""


class ConfigError(WorkbenchError):
    """An option or parameter has a bad value. The message names it and the choices."""
