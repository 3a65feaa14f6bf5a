"""Run folders: how a run is written, replaced, read back and opened.

A run is a folder::

    RUN/config.json        the TrainConfig (plus versions, data summary, protocol card)
    RUN/checkpoint.pt      written atomically (temp file + rename) at the start and after every epoch
    RUN/events.jsonl       one JSON record per line: train losses, val scores, method events
    RUN/metrics.json       final per-patient metrics and their summary
    RUN/per_patient.csv    the same rows as a table

Every file is written atomically (:func:`atomic_write`): a crash leaves the old file or the
new one, never half of one. Checkpoints hold only tensors and plain containers and are read
with ``torch.load(..., weights_only=True)`` (:func:`load_checkpoint`): opening a run folder
somebody sent cannot execute code.

A new run never costs an existing one. :class:`NewRunFolder` is made before anything is
loaded (it checks the target) and opened only once the config, the data and the method
have been built, so a failed start leaves no folder behind. When the target already holds
a run and ``overwrite`` is set, the new run is written into a staging folder beside it,
``.<name>.overwrite``, and replaces the old run only at :meth:`NewRunFolder.commit`, which
the loops call once the new run's first checkpoint is on disk: until then the old run is
untouched, and a start that fails (or is killed) leaves it exactly as it was.

Paths stored in a run's ``config.json`` are absolute (:func:`absolute_path`), so that a run
folder can be evaluated from any working directory.

A finished run is opened for evaluation, viewing and notebooks by
:func:`workbench.inference.open_run`, without a training loop.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from workbench.errors import ConfigError, DataError

__all__ = [
    "NewRunFolder",
    "absolute_path",
    "check_out_folder",
    "atomic_write",
    "atomic_write_text",
    "atomic_torch_save",
    "versions",
    "load_checkpoint",
    "RUN_MARKER",
    "RUN_FILES",
    "SAMPLES",
    "RESUME_OVERRIDES",
    "EVAL_OVERRIDES",
]

#: the files that make a folder a run (a checkpoint is what ``--resume`` needs)
RUN_MARKER = "checkpoint.pt"
#: the folder of a run's per-epoch arrays (Method.epoch_samples)
SAMPLES = "samples"
#: the files of a run; an earlier failed start's are removed when a new run starts in its folder
RUN_FILES = ("events.jsonl", "checkpoint.pt", "metrics.json", "per_patient.csv", "config.json")
#: what a resumed or opened run may change: where the data is and what runs it, never what was trained
RESUME_OVERRIDES = ("data", "device")
EVAL_OVERRIDES = ("test_slices", "eval_batch_size")  # and, only when evaluating, how the test is scored


def absolute_path(path: str | None) -> str | None:
    """``path`` made absolute against the current directory (``~`` expanded); None and ""
    stay as they are."""
    if not path:
        return path
    return os.fspath(Path(path).expanduser().resolve())


def check_out_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` as a Path; a one-line ConfigError when it names an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder")
    return path


class NewRunFolder:
    """The folder a new run is written to (see the module docstring).

    Use::

        folder = NewRunFolder(out, overwrite)   # checks only: nothing is created
        ...                                     # validate, load the data, build the method
        run_dir = folder.open()                 # the folder to write into
        ...                                     # config.json, events, the first checkpoint
        run_dir = folder.commit()               # the final folder (replaces an old run)
    """

    def __init__(self, target: str | Path, overwrite: bool = False) -> None:
        self.target = check_out_folder(target)
        self.replaces = (self.target / RUN_MARKER).exists()
        if self.replaces and not overwrite:
            raise ConfigError(f"run folder {self.target} already has a run: use --resume, --overwrite or another --out")
        self.staging = self.target.with_name(f".{self.target.name}.overwrite")
        self.path: Path | None = None  # where the run is being written, once opened

    def open(self, leftovers: tuple[str, ...] = ()) -> Path:
        """Create the folder to write into: the staging folder when replacing a run, else the
        target itself (an existing target without a run keeps its other files; ``leftovers``,
        file names of an earlier failed start, are removed)."""
        if self.replaces:
            shutil.rmtree(self.staging, ignore_errors=True)  # an earlier replacement that never committed
            self.staging.mkdir(parents=True)
            self.path = self.staging
        else:
            self.target.mkdir(parents=True, exist_ok=True)
            for name in leftovers:
                (self.target / name).unlink(missing_ok=True)
            self.path = self.target
        return self.path

    def commit(self) -> Path:
        """Make the run being written the run at ``target`` (a no-op unless it replaces one);
        returns ``target``. Open files in the staging folder stay valid (same file system)."""
        if self.path is None:
            raise RuntimeError("NewRunFolder.commit() before open()")
        if self.path == self.staging and self.staging.exists():
            old = self.target.with_name(f".{self.target.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.target, old)
            os.replace(self.staging, self.target)
            shutil.rmtree(old, ignore_errors=True)
        self.path = self.target
        return self.target


# ----------------------------------------------------------------------------- files
def atomic_write(path: Path, write: Callable[[Any], Any], mode: str = "wb") -> None:
    """``write(file)`` into a temp file in the same folder, fsync, then rename over ``path``.
    On any failure (disk full, interrupt) the temp file is removed and ``path`` is untouched."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def versions() -> dict[str, str]:
    """The versions a run was made with (stored in its config.json)."""
    import monai
    import nibabel

    commit = "unknown"
    with contextlib.suppress(Exception):
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or "unknown"
        )
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "monai": monai.__version__,
        "nibabel": nibabel.__version__,
        "git_commit": commit,
    }


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, on the CPU, read with ``weights_only=True``.

    Raises:
        DataError: no such file; a file torch cannot read; a file that holds other objects
            than tensors and plain containers (refused: unpickling them could run code).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # a class or function to import: not weights
            raise DataError(
                f"{path}: holds objects other than tensors and plain containers; refused "
                "(loading it could run code); a workbench checkpoint never does"
            ) from None
        raise DataError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001  (a truncated or foreign file: any failure means broken)
        raise DataError(f"{path}: unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: not a workbench checkpoint (a {type(state).__name__}, not a mapping)")
    return state
