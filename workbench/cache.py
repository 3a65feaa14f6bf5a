"""The notebooks' shared runs and built-in datasets.

A finished run is kept under ``<cache>/<method>-<key>``, the key a SHA-256 of the full
:class:`~workbench.config.TrainConfig` (its data folder replaced by the folder's content
hash), the workbench version and the torch version (:func:`run_key`). A class that runs
notebooks 01 to 09 trains each configuration once; a run killed half way is resumed from its
checkpoint the next time it is asked for. Delete the cache folder to train everything again.
The built-in datasets are shared the same way (:func:`builtin_data`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from filelock import FileLock

import workbench
from workbench.config import TrainConfig
from workbench.data import synthetic
from workbench.data.fingerprint import content_sha256
from workbench.errors import ConfigError
from workbench.methods import get_method
from workbench.methods.options import parse_options
from workbench.runs import RUN_MARKER, absolute_path, check_out_folder
from workbench.train import Trainer

__all__ = ["run_key", "cached_run", "builtin_data", "DEFAULT_CACHE"]

#: where the notebooks keep shared runs and built-in datasets (relative to the working directory)
DEFAULT_CACHE = "runs/cache"


def builtin_data(
    kind: str,
    patients: int,
    seed: int = 0,
    cache: str | Path = DEFAULT_CACHE,
    difficulty: synthetic.DifficultySpec = None,
) -> Path:
    """The built-in dataset ``kind`` (brats | hecktor) of ``patients`` patients, data seed
    ``seed`` and ``difficulty`` (a preset name, None: ``paper``; see
    :data:`~workbench.data.synthetic.DIFFICULTY_PRESETS`), generated once into
    ``<cache>/<synthetic.dataset_folder_name(...)>`` and reused. Notebooks run side by side
    share it: one process generates it (under the lock file ``<folder>.lock``) while the
    others wait, then read it."""
    name = synthetic.dataset_folder_name(kind, patients, seed, difficulty)
    folder = check_out_folder(Path(cache) / name, "cache")
    if folder.exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not folder.exists():  # another process may have made it while this one waited
            # written to <folder>.partial, then renamed
            synthetic.generate(kind, folder, patients, seed=seed, difficulty=difficulty)
    return folder


def run_key(config: TrainConfig) -> str:
    """The cache key of a run: SHA-256 of its full config (data folder -> content hash, paths
    made absolute), the workbench version and the torch version; 16 hex digits."""
    values = dataclasses.asdict(config)
    method = get_method(config.method)  # options with their defaults: {} and {"w2": default} are one run
    values["options"] = dataclasses.asdict(parse_options(method.options_class, dict(config.options), config.method))
    values["data"] = content_sha256(Path(config.data).resolve())
    values["init"] = absolute_path(config.init)
    record = {"config": values, "workbench": workbench.__version__, "torch": torch.__version__}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_run(config: TrainConfig, cache: str | Path = DEFAULT_CACHE, quiet: bool = False) -> Path:
    """The folder of a finished run of ``config``: trained into ``<cache>/<run_key>`` the first
    time, resumed there if an earlier call was stopped, returned as it is after that."""
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
