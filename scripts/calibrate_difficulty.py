"""Calibrate a built-in dataset's difficulty against the supervised rows of Semi-CML's Table 1.

    python scripts/calibrate_difficulty.py --kind brats --difficulty paper --out runs/paper-cpu --jobs 2
    python scripts/calibrate_difficulty.py --kind hecktor \
        --difficulty '{"contrast": {"CT": 1.6, "PT": 0.35}, "noise": {"PT": 1.5}}' --seeds 0

It trains the supervised U-Net (one per modality) on the built-in data with that difficulty at
the settings of the ``difficulty-cpu`` grid: 40 patients, 10% and 100% labeled, the given
seeds. The cells run through ``workbench reproduce``, so finished cells are kept and skipped
on a second call. Then it scores every finished cell on its **validation** patients, never
the test patients, and prints the mean DSC over seeds per modality and fraction. Each mean
sits beside the paper's supervised value (Table 1, first number of each pair) and the
difference. ``OUT/calibration-<kind>.csv`` gets the per-patient validation rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from workbench.data.synthetic import dataset_folder_name, resolve_difficulty
from workbench.reproduce import plan_cells, reproduce
from workbench.reproduce.grid import grid_path
from workbench.reproduce.paper import load_paper_values
from workbench.reproduce.results import collect_val_rows

PAPER_COLUMN = {"ct": "ct", "pet": "pet", "pt": "pet", "t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"}


def calibration_grid(kind: str, difficulty: str | dict, seeds: list[int], patients: int) -> dict:
    """The ``difficulty-cpu`` grid on one dataset of the given difficulty."""
    base = yaml.safe_load(grid_path("difficulty-cpu").read_text(encoding="utf-8"))
    return {
        "name": f"calibrate-{kind}",
        "description": f"supervised U-Net on built-in {kind} ({difficulty}), 10% and 100% labeled",
        "datasets": [{"name": kind, "kind": kind, "patients": patients, "data_seed": 0, "difficulty": difficulty}],
        "labeled": [0.1, 1.0],
        "seeds": seeds,
        "settings": base["settings"],
        "methods": [{"label": "sup", "method": "supervised"}],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["brats", "hecktor"], required=True)
    parser.add_argument("--difficulty", default="paper", help="a preset name or a JSON mapping of Difficulty fields")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--out", help="output folder (default: runs/calibrate/<kind>-p<patients>-<difficulty>)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    difficulty = json.loads(args.difficulty) if args.difficulty.lstrip().startswith("{") else args.difficulty
    resolve_difficulty(args.kind, difficulty)  # one line naming a bad value, before any work
    label = dataset_folder_name(args.kind, args.patients, 0, difficulty).removeprefix("data-")
    out = Path(args.out or f"runs/calibrate/{label}")
    out.mkdir(parents=True, exist_ok=True)
    grid_file = out / f"calibration-grid-{args.kind}.yaml"
    grid_file.write_text(yaml.safe_dump(calibration_grid(args.kind, difficulty, args.seeds, args.patients)))
    report = reproduce(grid_file, out, jobs=args.jobs, quiet=True)
    if report.failures:
        print(report.summary(), file=sys.stderr)
        return 1
    rows = collect_val_rows(plan_cells(report.grid, out))
    rows.to_csv(out / f"calibration-{args.kind}.csv", index=False)
    per_run = rows.groupby(["modality", "labeled", "seed"], sort=False)["dsc"].mean()
    paper = load_paper_values()["semi-cml-prel/table1"].values[args.kind]
    print(f"{out}: supervised U-Net, mean val DSC over seeds {args.seeds} (paper: Table 1 Sup)")
    print(f"{'modality':<8} {'labeled':>7} {'ours':>6} {'paper':>6} {'diff':>6}  per seed")
    for (modality, fraction), values in per_run.groupby(level=[0, 1], sort=False):
        target = paper[fraction]["Sup"][PAPER_COLUMN[modality.lower()]][0]
        seeds = " ".join(f"{v:.3f}" for v in values)
        mean = values.mean()
        print(f"{modality:<8} {fraction:>7g} {mean:>6.3f} {target:>6.3f} {mean - target:>+6.3f}  {seeds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
