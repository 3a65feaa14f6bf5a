"""Running a grid: :func:`reproduce` plans the cells, skips the finished ones, refuses run folders
made with other settings, generates the built-in data, runs the rest (in this process, or in
``jobs`` spawned worker processes, each row's pre-training before the cells that start from it)
and tabulates. A cell is a call of :class:`~workbench.train.Trainer` (:func:`_train`; a
``pretrain`` row first runs the Multi-ConDoS pre-training, a run of the method ``multi-condos``,
:func:`_pretrain`); a failure is reported in one line and never stops the other cells."""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from workbench.errors import ConfigError, DataError, WorkbenchError
from workbench.reproduce.cells import Cell, CellResult, _config_diff, _conflict, _is_finished, plan_cells
from workbench.reproduce.grid import Grid, GridDataset
from workbench.reproduce.load import load_grid
from workbench.reproduce.results import collect_protocols, collect_rows
from workbench.reproduce.tables import ResultTable, decide_claims, results_tables, tabulate
from workbench.stats import ProtocolCard, protocol_card

__all__ = ["GridReport", "reproduce"]

#: what a cell's run returns: ``{"status", "error", "seconds"}``
Outcome = dict[str, Any]
Done = Callable[[Cell, Outcome], None]


@dataclass
class GridReport:
    """The outcome of :func:`reproduce`: each cell's result, the tidy rows, tables and files."""

    grid: Grid
    out: Path
    cells: list[Cell]
    results: dict[str, CellResult]
    rows: pd.DataFrame
    tables: list[ResultTable]
    files: list[Path]
    protocols: list[dict[str, Any] | None] = field(default_factory=list)  # of the finished cells
    claims: pd.DataFrame | None = None  # decide_claims(rows, grid)

    @property
    def card(self) -> ProtocolCard:
        """The protocol card of the finished cells."""
        return protocol_card(self.protocols, len(self.grid.seeds))

    @property
    def failures(self) -> list[tuple[Cell, CellResult]]:
        return [(c, self.results[c.key]) for c in self.cells if self.results[c.key].status == "failed"]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for cell in self.cells:
            status = self.results[cell.key].status
            counts[status] = counts.get(status, 0) + 1
        return counts

    def summary(self) -> str:
        """A few lines: what ran, what failed (with the error), where the outputs are."""
        counts = ", ".join(f"{n} {status}" for status, n in self.counts().items())
        lines = [f"grid {self.grid.name}: {len(self.cells)} cells ({counts}) in {self.out}"]
        for cell, result in self.failures:
            lines.append(f"FAILED {cell.key}: {result.error}")
        lines += [f"wrote {p}" for p in self.files]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ running
def reproduce(
    grid: Grid | str | Path,
    out: str | Path,
    *,
    jobs: int = 1,
    only_finished: bool = False,
    threads: int = 0,
    quiet: bool = False,
    rows: Sequence[str] | None = None,
) -> GridReport:
    """Run every unfinished cell of a grid (unless ``only_finished``), then tabulate.

    Args:
        grid: a :class:`Grid`, or a grid file / shipped grid name (validated here).
        out: the output folder: run folders, data, tables, plots.
        jobs: parallel worker processes (spawned); 1 runs the cells in this process.
        only_finished: train nothing; tabulate the cells that have ``metrics.json``.
        threads: torch threads per cell; 0: all cores with ``jobs == 1`` (torch's default),
            else cores / jobs.
        quiet: no progress bar.
        rows: run only the cells of these row labels (e.g. the rows of one claim first); the
            tables still show every finished cell. None: every row.

    Returns:
        A :class:`GridReport`; its ``failures`` list the cells that failed.
    """
    if not isinstance(grid, Grid):
        grid = load_grid(grid, check_paths=not only_finished, check_device=not only_finished)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1")
    labels = [m.label for m in grid.methods]
    unknown = [r for r in rows or () if r not in labels]
    if unknown:
        raise ConfigError(
            f"--rows {', '.join(map(repr, unknown))}: not a row of {grid.name}; its rows: {', '.join(labels)}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = plan_cells(grid, out)
    results: dict[str, CellResult] = {}
    todo: list[Cell] = []
    for cell in cells:
        conflict = _conflict(cell.run_dir, cell.config)
        if conflict:
            results[cell.key] = CellResult("failed", conflict)
        elif _is_finished(cell):
            results[cell.key] = CellResult("finished")
        elif only_finished or (rows is not None and cell.method.label not in rows):
            results[cell.key] = CellResult("not run")
        else:
            todo.append(cell)
    if todo:
        _run_todo(grid, out, cells, todo, results, jobs, _threads(jobs, threads), quiet)
    done_cells = [c for c in cells if results[c.key].status not in ("failed", "not run")]
    rows = collect_rows(done_cells)
    tables = results_tables(rows, grid)
    report = GridReport(
        grid,
        out,
        cells,
        results,
        rows,
        tables,
        [],
        protocols=collect_protocols(done_cells),
        claims=decide_claims(rows, grid),
    )
    report.files = tabulate(report)
    return report


def _run_todo(
    grid: Grid,
    out: Path,
    cells: list[Cell],
    todo: list[Cell],
    results: dict[str, CellResult],
    jobs: int,
    threads: int | None,
    quiet: bool,
) -> None:
    """Write grid.yaml, generate the built-in data the cells need and run them with a progress
    bar, putting each cell's :class:`CellResult` into ``results``."""
    from tqdm.auto import tqdm

    (out / "grid.yaml").write_text(grid.text, encoding="utf-8")
    for dataset in grid.datasets:
        if dataset.kind and any(c.dataset is dataset for c in todo):
            _make_builtin(dataset, out)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"{grid.name} cells", unit="cell", disable=quiet)

    def done(cell: Cell, result: Outcome) -> None:
        results[cell.key] = CellResult(result["status"], result.get("error"), result.get("seconds", 0.0))
        failed = sum(r.status == "failed" for r in results.values())
        bar.set_postfix_str(f"{cell.key}: {result['status']}" + (f", {failed} failed" if failed else ""))
        bar.update(1)

    try:
        _run_cells(todo, jobs, threads, done)
    finally:
        bar.close()


def _threads(jobs: int, threads: int) -> int | None:
    if threads > 0:
        return threads
    if jobs > 1:
        return max(1, (os.cpu_count() or 1) // jobs)
    return None


def _make_builtin(dataset: GridDataset, out: Path) -> None:
    from workbench.data.synthetic import generate

    folder = dataset.folder(out)
    if not folder.exists():
        generate(str(dataset.kind), folder, dataset.patients, dataset.data_seed, difficulty=dataset.difficulty)


# ------------------------------------------------------------------------- work in a process
def _run_task(task: dict[str, Any]) -> Outcome:
    """Run one training cell or pre-training (in a worker process or in this one).

    Returns ``{"status", "error", "seconds"}``; never raises for a failing run: the error
    is reported in one line and its traceback written to ``RUN/error.log``.
    """
    start = time.perf_counter()
    run_dir = Path(task["run_dir"])
    try:
        if task.get("threads"):
            import torch

            torch.set_num_threads(int(task["threads"]))
        status = _pretrain(run_dir, task["config"]) if task["kind"] == "pretrain" else _train(run_dir, task["config"])
        (run_dir / "error.log").unlink(missing_ok=True)
        return {"status": status, "error": None, "seconds": time.perf_counter() - start}
    except Exception as exc:  # noqa: BLE001  (any failure of one cell is reported, the others go on)
        if isinstance(exc, WorkbenchError):
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            message = f"{type(exc).__name__}: {first} (traceback in {run_dir / 'error.log'})"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass
        return {"status": "failed", "error": message, "seconds": time.perf_counter() - start}


def _train(run_dir: Path, values: dict[str, Any]) -> str:
    from workbench.train import TrainConfig, Trainer

    if (run_dir / "metrics.json").is_file():
        return "finished"
    config = TrainConfig.from_dict(dict(values))
    trainer, status = None, "trained"
    if (run_dir / "checkpoint.pt").is_file():
        try:
            trainer, status = Trainer.resume(run_dir, quiet=True), "resumed"
        except DataError as exc:
            # only an unreadable checkpoint means starting again; any other problem (e.g. the data
            # folder moved) is reported, and the checkpoint is kept
            if not str(exc).startswith(f"{run_dir / 'checkpoint.pt'}: "):
                raise
            trainer, status = None, "restarted"
        if trainer is not None:
            diff = _config_diff(dataclasses.asdict(trainer.config), dataclasses.asdict(config))
            if diff:
                trainer.close()
                raise ConfigError(
                    f"run folder {run_dir} holds a checkpoint with other settings ({'; '.join(diff[:3])})"
                )
    if trainer is None:
        trainer = Trainer(config, run_dir, quiet=True, overwrite=True)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return status


def _pretrain(run_dir: Path, values: dict[str, Any]) -> str:
    """The Multi-ConDoS pre-training of a ``pretrain`` row: a training run of the method
    ``multi-condos`` (finished when it can start a U-Net: :func:`read_pretraining`)."""
    from workbench.methods.multi_condos import read_pretraining

    if not (run_dir / "metrics.json").is_file():  # a finished pre-training of the earlier loop has none
        try:
            read_pretraining(run_dir)
            return "finished"
        except WorkbenchError:
            pass
    return _train(run_dir, values)


# ---------------------------------------------------------------------------- scheduling
def _task(kind: str, run_dir: Path, config: dict[str, Any], threads: int | None) -> dict[str, Any]:
    return {"kind": kind, "run_dir": str(run_dir), "config": config, "threads": threads}


def _pretrain_failed(folder: Path, error: str | None) -> Outcome:
    return {"status": "failed", "error": f"pre-training {folder} failed: {error}"}


def _run_cells(cells: list[Cell], jobs: int, threads: int | None, done: Done) -> None:
    """Run the cells (and their pre-trainings first), calling ``done(cell, result)`` for each."""
    pretrains: dict[Path, dict[str, Any]] = {}
    waiting: dict[Path, list[Cell]] = {}
    for cell in cells:
        if cell.pretrain_dir is not None:
            assert cell.pretrain_config is not None
            pretrains[cell.pretrain_dir] = cell.pretrain_config
            waiting.setdefault(cell.pretrain_dir, []).append(cell)
    if jobs == 1:
        _run_in_order(cells, pretrains, threads, done)
    else:
        _run_in_pool(cells, pretrains, waiting, jobs, threads, done)


def _run_in_order(cells: list[Cell], pretrains: dict[Path, dict[str, Any]], threads: int | None, done: Done) -> None:
    """In this process, in order (each pre-training when its first cell comes): nothing is left
    running if it is interrupted."""
    outcome: dict[Path, Outcome] = {}
    for cell in cells:
        folder = cell.pretrain_dir
        if folder is not None:
            if folder not in outcome:
                problem = _conflict(folder, pretrains[folder])
                outcome[folder] = (
                    {"status": "failed", "error": problem}
                    if problem
                    else _run_task(_task("pretrain", folder, pretrains[folder], threads))
                )
            if outcome[folder]["status"] == "failed":
                done(cell, _pretrain_failed(folder, outcome[folder]["error"]))
                continue
        done(cell, _run_task(_task("train", cell.run_dir, cell.config, threads)))


def _run_in_pool(
    cells: list[Cell],
    pretrains: dict[Path, dict[str, Any]],
    waiting: dict[Path, list[Cell]],
    jobs: int,
    threads: int | None,
    done: Done,
) -> None:
    """In ``jobs`` spawned worker processes: the pre-trainings and the cells without one first,
    each pre-training's cells once it has finished."""
    pool = ProcessPoolExecutor(
        jobs, mp_context=get_context("spawn"), initializer=exit_with_parent, initargs=(os.getpid(),)
    )
    futures: dict[Future, tuple[str, Any]] = {}

    def submit(kind: str, item: Any, run_dir: Path, config: dict[str, Any]) -> None:
        try:
            futures[pool.submit(_run_task, _task(kind, run_dir, config, threads))] = (kind, item)
        except (BrokenProcessPool, RuntimeError) as exc:
            result = {"status": "failed", "error": f"not started: the worker pool is broken ({exc})"}
            for cell in [item] if kind == "train" else waiting[item]:
                done(cell, result if kind == "train" else _pretrain_failed(item, result["error"]))

    try:
        for folder, config in pretrains.items():
            problem = _conflict(folder, config)
            if problem:
                for cell in waiting[folder]:
                    done(cell, _pretrain_failed(folder, problem))
            else:
                submit("pretrain", folder, folder, config)
        for cell in cells:
            if cell.pretrain_dir is None:
                submit("train", cell, cell.run_dir, cell.config)
        while futures:
            finished, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for future in finished:
                kind, item = futures.pop(future)
                result = _future_result(future)
                if kind == "train":
                    done(item, result)
                elif result["status"] == "failed":
                    for cell in waiting[item]:
                        done(cell, _pretrain_failed(item, result["error"]))
                else:
                    for cell in waiting[item]:
                        submit("train", cell, cell.run_dir, cell.config)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


#: how often a worker checks that the process that started it is still there (seconds)
PARENT_CHECK_SECONDS = 2.0


def exit_with_parent(parent_pid: int) -> None:
    """A worker's initializer: a daemon thread ends the worker once ``parent_pid`` is gone (the
    ``workbench reproduce`` that started it was killed or interrupted), so no cell keeps
    training for a grid nobody runs. The cell's last checkpoint is whole (written atomically):
    the next ``workbench reproduce`` resumes it."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(143)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _future_result(future: Future) -> Outcome:
    """A worker's outcome, or a failure when its process died or the task could not be sent."""
    try:
        return future.result()
    except BrokenProcessPool:
        return {"status": "failed", "error": "its worker process died (killed, or out of memory)"}
    except Exception as exc:  # noqa: BLE001  (e.g. a task that could not be pickled)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
