"""The cells of a grid: one training run per dataset, method, labeled fraction and seed, with its
run folder ``OUT/<dataset>-<method slug>-l<fraction>-s<seed>`` and its TrainConfig fields (and,
for a row with ``pretrain``, the pre-training folder it starts from). Also the checks made on a
run folder before a cell runs: is it finished, and was it made with other settings (then it is
never overwritten)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from workbench.data.synthetic import BUILTIN_FOLDER_NAME
from workbench.errors import DataError
from workbench.reproduce.grid import PRETRAIN_FROM_CELL, Grid, GridDataset, GridMethod

__all__ = ["Cell", "CellResult", "plan_cells"]

#: config fields that may differ between a run folder and the grid (where, not what, was run)
IGNORED_IN_COMPARISON = ("data", "init", "device", "eval_batch_size")


@dataclass
class Cell:
    """One training run of the grid."""

    dataset: GridDataset
    method: GridMethod
    labeled: float
    seed: int
    run_dir: Path
    config: dict[str, Any]  # TrainConfig fields
    pretrain_dir: Path | None = None
    pretrain_config: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return self.run_dir.name


@dataclass
class CellResult:
    """What happened to a cell in this call: finished (before), trained, resumed, restarted,
    failed or not run (``only_finished``)."""

    status: str
    error: str | None = None
    seconds: float = 0.0


def plan_cells(grid: Grid, out: str | Path) -> list[Cell]:
    """Every cell of ``grid`` with its run folder under ``out`` and its TrainConfig fields,
    in the order datasets, methods, fractions, seeds."""
    out = Path(out)
    cells = []
    pretrain_configs: dict[tuple[str, str, int], list[str]] = {}
    for dataset in grid.datasets:
        for method in grid.methods:
            for fraction in grid.fractions(method):
                for seed in grid.seeds:
                    values = {
                        **grid.settings,
                        **dataset.settings,
                        **grid.settings_by_labeled.get(fraction, {}),
                        **method.settings,
                    }
                    values.update(
                        method=method.method,
                        data=str(dataset.folder(out)),
                        fmt=dataset.fmt,
                        modalities=dataset.modalities,
                        labeled=fraction,
                        seed=seed,
                        options=dict(method.options),
                    )
                    run_dir = out / f"{dataset.name}-{method.slug}-l{fraction:g}-s{seed}"
                    cell = Cell(dataset, method, fraction, seed, run_dir, values)
                    if method.pretrain is not None:
                        _plan_pretrain(cell, out, pretrain_configs)
                    cells.append(cell)
    return cells


def _plan_pretrain(cell: Cell, out: Path, variants_of: dict[tuple[str, str, int], list[str]]) -> None:
    """Give a cell of a ``pretrain`` row its pre-training folder and config, and start it from there.

    The pre-training is shared by the row's fractions at one seed; a fraction whose pre-training
    config differs (e.g. other ``size`` by ``settings_by_labeled``) gets its own folder ``-l<fraction>``.
    ``variants_of`` collects the configs seen per (dataset, row, seed)."""
    from workbench.methods.multi_condos import PRETRAIN_DEFAULTS
    from workbench.train import TrainConfig

    assert cell.method.pretrain is not None
    base = dataclasses.asdict(TrainConfig(**cell.config))
    spec = dict(cell.method.pretrain)
    spec.setdefault("method", "multi-condos")
    cell.pretrain_config = {**PRETRAIN_DEFAULTS, **{k: base[k] for k in PRETRAIN_FROM_CELL}, **spec}
    text = json.dumps(cell.pretrain_config, sort_keys=True)
    variants = variants_of.setdefault((cell.dataset.name, cell.method.slug, cell.seed), [])
    if text not in variants:
        variants.append(text)
    suffix = "" if variants.index(text) == 0 else f"-l{cell.labeled:g}"
    cell.pretrain_dir = out / f"{cell.dataset.name}-{cell.method.slug}-pretrain{suffix}-s{cell.seed}"
    cell.config["init"] = str(cell.pretrain_dir)


# ------------------------------------------------------------------------ run-folder checks
def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _config_diff(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """``key: saved there, expected here`` for each field both define and that differs. The
    data folder may have moved, so only a built-in dataset's folder name is compared: it
    names the kind, patients, data seed and difficulty."""
    diff = [
        f"{k}: {saved[k]!r} there, {expected[k]!r} in the grid"
        for k in saved
        if k in expected and k not in IGNORED_IN_COMPARISON and _normal(saved[k]) != _normal(expected[k])
    ]
    there, here = (Path(str(c.get("data", ""))).name for c in (saved, expected))
    if BUILTIN_FOLDER_NAME.fullmatch(here) and there != here:
        diff.insert(0, f"data: built-in {there!r} there, {here!r} in the grid")
    return diff


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__})") from exc


def _expected_config(values: Mapping[str, Any]) -> dict[str, Any]:
    from workbench.train import TrainConfig

    return dataclasses.asdict(TrainConfig.from_dict(dict(values)))


def _conflict(run_dir: Path, values: Mapping[str, Any]) -> str | None:
    """Why ``run_dir`` cannot be used for this cell (a run with other settings), or None."""
    try:
        saved = _saved_config(run_dir)
    except DataError as exc:
        return f"{exc}; delete the folder or use another --out"
    if saved is None:
        return None
    diff = _config_diff(saved, _expected_config(values))
    if diff:
        return (
            f"run folder {run_dir} holds a run with other settings ({'; '.join(diff[:3])}); "
            "delete it or use another --out"
        )
    return None


def _is_finished(cell: Cell) -> bool:
    return (cell.run_dir / "metrics.json").is_file()
