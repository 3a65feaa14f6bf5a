"""Run folders: where a new run is written, and how it replaces an old one.

A new run never costs an existing one. :class:`NewRunFolder` is made before anything is
loaded (it checks the target) and opened only once the config, the data and the method
have been built, so a failed start leaves no folder behind. When the target already holds
a run and ``overwrite`` is set, the new run is written into a staging folder beside it,
``.<name>.overwrite``, and replaces the old run only at :meth:`NewRunFolder.commit`, which
the loops call once the new run's first checkpoint is on disk: until then the old run is
untouched, and a start that fails (or is killed) leaves it exactly as it was.

Paths stored in a run's ``config.json`` are absolute (:func:`absolute_path`), so that a run
folder can be evaluated from any working directory.

The notebooks share their runs through a cache (:func:`cached_run`): a finished run is kept
under ``<cache>/<key>``, the key a SHA-256 of the full :class:`~workbench.train.TrainConfig`
(its data folder replaced by the folder's content hash), the workbench version and the
torch version. A class that runs notebooks 01 to 09 trains each configuration once; a run
killed half way is resumed from its checkpoint the next time it is asked for. Delete the
cache folder to train everything again. The built-in datasets are shared the same way
(:func:`builtin_data`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.train import TrainConfig

__all__ = ["NewRunFolder", "absolute_path", "check_out_folder", "run_key", "cached_run", "builtin_data",
           "DEFAULT_CACHE"]

#: where the notebooks keep shared runs and built-in datasets (relative to the working directory)
DEFAULT_CACHE = "runs/cache"

#: the files that make a folder a run (a checkpoint is what ``--resume`` needs)
RUN_MARKER = "checkpoint.pt"


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
            raise ConfigError(f"run folder {self.target} already has a run: use --resume, --overwrite "
                              "or another --out")
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


def builtin_data(kind: str, patients: int, seed: int = 0, cache: str | Path = DEFAULT_CACHE) -> Path:
    """The built-in dataset ``kind`` (brats | hecktor) of ``patients`` patients and data seed
    ``seed``, generated once into ``<cache>/data-<kind>-p<patients>-s<seed>`` and reused."""
    from workbench.data.synthetic import generate

    folder = check_out_folder(Path(cache) / f"data-{kind}-p{patients}-s{seed}", "cache")
    if not folder.exists():
        generate(kind, folder, patients, seed=seed)  # written to <folder>.partial, then renamed
    return folder


def run_key(config: "TrainConfig") -> str:
    """The cache key of a run: SHA-256 of its full config (data folder -> content hash, paths
    made absolute), the workbench version and the torch version; 16 hex digits."""
    import torch

    import workbench
    from workbench.data.fingerprint import content_sha256

    from workbench.methods import get_method
    from workbench.methods.options import parse_options

    values = dataclasses.asdict(config)
    method = get_method(config.method)  # options with their defaults: {} and {"w2": default} are one run
    values["options"] = dataclasses.asdict(parse_options(method.options_class, dict(config.options), config.method))
    values["data"] = content_sha256(Path(config.data).resolve())
    values["init"] = absolute_path(config.init)
    record = {"config": values, "workbench": workbench.__version__, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_run(config: "TrainConfig", cache: str | Path = DEFAULT_CACHE, quiet: bool = False) -> Path:
    """The folder of a finished run of ``config``: trained into ``<cache>/<run_key>`` the first
    time, resumed there if an earlier call was stopped, returned as it is after that."""
    from workbench.train import Trainer

    config.validate()
    if not Path(config.data).is_dir():
        raise ConfigError(f"data folder {config.data} does not exist")
    run_dir = Path(cache) / f"{config.method}-{run_key(config)}"
    if (run_dir / "metrics.json").is_file():
        if not quiet:
            print(f"{config.method}: the cached run {run_dir} (delete it to train again)")
        return run_dir
    if (run_dir / RUN_MARKER).is_file():
        trainer = Trainer.resume(run_dir, quiet=quiet)
    else:
        trainer = Trainer(config, run_dir, quiet=quiet)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return run_dir
