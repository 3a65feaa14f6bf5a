"""The validation scores of a grid's finished cells: what a choice made from the grid may read.

    python scripts/val_scores.py --grid semi-cml-paper-cpu --out runs/paper-cpu

The test patients only judge (docs/results.md, "The protocol"), so a setting chosen from a grid
(a loss weight, the data's difficulty) is chosen on these numbers. The script scores every
finished cell on its validation patients (:func:`workbench.reproduce.results.collect_val_rows`,
kept in each run's val_metrics.json). It prints the mean over seeds of each run's mean DSC
per dataset, row, labeled fraction and modality, with the mean of the modalities, and writes
``OUT/val_per_patient.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from workbench.reproduce import load_grid, plan_cells
from workbench.reproduce.results import collect_val_rows


def val_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of the per-run mean DSC: index (dataset, method, labeled), one column per
    modality, ``mean`` over the modalities and ``seeds``."""
    per_run = rows.groupby(["dataset", "method", "labeled", "modality", "seed"], sort=False)["dsc"].mean()
    table = per_run.groupby(level=[0, 1, 2, 3], sort=False).mean().unstack("modality")
    table["mean"] = table.mean(axis=1)
    table["seeds"] = per_run.groupby(level=[0, 1, 2], sort=False).apply(lambda s: s.index.get_level_values(4).nunique())
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", required=True, help="a grid file or shipped grid name")
    parser.add_argument("--out", required=True, help="the grid's output folder")
    args = parser.parse_args(argv)
    grid = load_grid(args.grid, check_paths=False, check_device=False)
    out = Path(args.out)
    rows = collect_val_rows(plan_cells(grid, out))
    if rows.empty:
        print(f"{out}: no finished cells of {grid.name}", file=sys.stderr)
        return 1
    rows.to_csv(out / "val_per_patient.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.float_format", "{:.3f}".format):
        print(f"{grid.name} in {out}: mean val DSC over seeds (validation patients, every slice)")
        print(val_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
