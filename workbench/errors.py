"""User-facing errors.

Everything the workbench rejects on purpose (a bad path, a malformed NIfTI, an unknown
method, a bad option) raises a subclass of :class:`WorkbenchError` whose message is one
line naming the file or value and what is wrong. The CLI prints that line and exits
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

__all__ = ["WorkbenchError", "DataError", "ConfigError", "TrainingInterrupted", "training_interrupted"]

from pathlib import Path


class WorkbenchError(Exception):
    """Base class: a one-line, user-facing error message."""


class DataError(WorkbenchError):
    """Input data is missing, unreadable or inconsistent. The message names the file."""


class ConfigError(WorkbenchError):
    """An option or parameter has a bad value. The message names it and the choices."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Trainer.fit`. The run folder keeps its last checkpoint (the end
    of the last completed epoch, or the start of training), from which ``--resume`` (or
    :meth:`Trainer.resume`) continues exactly; the message says which and how. The
    interrupted Trainer object itself is left mid-epoch: do not call its ``fit`` again."""


def training_interrupted(
    run_dir: Path, kept: int | None, epochs: int, command: str = "workbench train"
) -> TrainingInterrupted:
    """The error for Ctrl-C during a run: which checkpoint is kept and how to continue."""
    if kept is None:
        return TrainingInterrupted(f"{run_dir}: stopped before the first checkpoint; start again")
    where = "after training, during the evaluation" if kept >= epochs else f"in epoch {kept + 1}"
    return TrainingInterrupted(
        f"{run_dir}: stopped {where}; its checkpoint of epoch {kept} is kept: "
        f"continue with `{command} --resume {run_dir}`"
    )
