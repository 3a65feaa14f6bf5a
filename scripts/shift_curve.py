"""DSC against a test-time misalignment of one modality: CMC's robustness claim, measured.

    python scripts/shift_curve.py runs/paper-cpu/hecktor-CMC-l0.1-s0 runs/paper-cpu/hecktor-Meng-l0.1-s0 \\
        --modality pet --shifts 0 1 2 4 8 --out shift_curve.csv

For every run and every shift d, the named modality of each test volume is moved d voxels
along the slice rows (``--axis rows``, or columns, or both: d along each) and, with
``--rotate``, turned by the same number of degrees, as ``workbench eval --shift`` does
(:class:`workbench.inference.Perturbation`); the labels and the other modality stay. The run is
loaded once and scored at every shift; the table gives each modality's mean per-patient DSC
over the test patients. A single-modality model (supervised, Semi-CML) predicts each modality
from its own channel, so only the moved modality's row changes; a fused model (CMC, Meng,
MM-CPS) shows how the misalignment reaches the other modality's prediction.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from workbench.inference import Perturbation, open_run


def shift_table(run_dirs: list[str], modality: str, shifts: list[float], axis: str, rotate: bool) -> pd.DataFrame:
    rows = []
    for run_dir in run_dirs:
        opened = open_run(run_dir)
        for d in shifts:
            dx = d if axis in ("rows", "both") else 0.0
            dy = d if axis in ("columns", "both") else 0.0
            perturbation = Perturbation({modality: (dx, dy, d if rotate else 0.0)})
            scores = opened.evaluate(perturbation=perturbation)
            for m, summary in scores["summary"].items():
                rows.append(
                    {"run": run_dir, "method": opened.config.method, "shift": d, "modality": m, "dsc": summary["dsc"]}
                )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--modality", required=True, help="the modality to move (e.g. pet, flair)")
    parser.add_argument("--shifts", nargs="+", type=float, default=[0, 1, 2, 4, 8], help="voxels (default: 0 1 2 4 8)")
    parser.add_argument("--axis", choices=["rows", "columns", "both"], default="rows", help="(default: rows)")
    parser.add_argument("--rotate", action="store_true", help="also rotate by the shift's value in degrees")
    parser.add_argument("--out", help="also write the table as CSV")
    args = parser.parse_args(argv)
    table = shift_table(args.runs, args.modality, args.shifts, args.axis, args.rotate)
    wide = table.pivot_table(index=["run", "modality"], columns="shift", values="dsc")
    print(wide.round(3).to_string())
    if args.out:
        table.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
