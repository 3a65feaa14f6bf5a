"""Keep a grid's finished cells without their weights, and put them back: a grid resumes on
another machine, or in a fresh checkout, with its finished cells skipped.

    python scripts/grid_record.py save --grid semi-cml-paper-cpu --out runs/paper-cpu \
        --to docs/results/semi-cml-paper-cpu/cells
    python scripts/grid_record.py restore --grid semi-cml-paper-cpu --out runs/paper-cpu \
        --to docs/results/semi-cml-paper-cpu/cells

``save`` copies each finished cell's record (config.json, metrics.json, per_patient.csv and,
where the validation patients were scored, val_metrics.json) into ``TO/<cell folder>/``; the
checkpoint stays behind (tens of MB per cell). ``restore`` copies them into the grid's output
folder for every cell that has no run folder there yet, never over an existing one, and makes
val_metrics.json newer than metrics.json so the cached validation scores are read as they are.
A restored cell is finished for ``workbench reproduce`` (it has metrics.json) and its tables;
what needs the weights (``workbench eval``, the viewers, scoring the validation patients
anew) needs the original run folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from workbench.reproduce import load_grid, plan_cells
from workbench.reproduce.results import VAL_METRICS

RECORD_FILES = ("config.json", "metrics.json", "per_patient.csv", VAL_METRICS)


def save(cells, target: Path) -> int:
    kept = 0
    for cell in cells:
        if not (cell.run_dir / "metrics.json").is_file():
            continue
        folder = target / cell.run_dir.name
        folder.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (cell.run_dir / name).is_file():
                shutil.copy2(cell.run_dir / name, folder / name)
        kept += 1
    return kept


def restore(cells, source: Path) -> int:
    restored = 0
    for cell in cells:
        folder = source / cell.run_dir.name
        if not (folder / "metrics.json").is_file() or cell.run_dir.exists():
            continue
        cell.run_dir.mkdir(parents=True)
        for name in RECORD_FILES:
            if (folder / name).is_file():
                shutil.copy2(folder / name, cell.run_dir / name)
        cached = cell.run_dir / VAL_METRICS
        if cached.is_file():  # a checkout's file times are arbitrary: the cache must read as fresh
            later = (cell.run_dir / "metrics.json").stat().st_mtime + 1
            os.utime(cached, (later, later))
        restored += 1
    return restored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("--grid", required=True, help="a grid file or shipped grid name")
    parser.add_argument("--out", required=True, help="the grid's output folder")
    parser.add_argument("--to", required=True, help="where the records are kept")
    args = parser.parse_args(argv)
    grid = load_grid(args.grid, check_paths=False, check_device=False)
    cells = plan_cells(grid, Path(args.out))
    if args.action == "save":
        print(f"kept {save(cells, Path(args.to))} finished cells in {args.to}")
    else:
        print(f"restored {restore(cells, Path(args.to))} cells into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
