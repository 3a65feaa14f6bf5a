"""Measure how hard the built-in data is: supervised U-Net, 10% vs 100% labels, per modality.

    python scripts/difficulty.py --out runs/difficulty          # ~25 min on 2 CPU cores

Writes ``OUT/per_patient.csv`` (every patient, modality, run) and ``OUT/summary.md`` (mean
per-patient DSC and sensitivity per modality: mean ± std over training seeds). Same split
(split_seed 0) for every seed; the seed changes initialisation, dropout and batch order.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from workbench.data.synthetic import generate
from workbench.train import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/difficulty")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--kinds", nargs="+", default=["brats", "hecktor"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int, default=20)
    parser.add_argument("--base-channels", type=int, default=16)
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for kind in args.kinds:
        data = out / f"data-{kind}"
        if not data.exists():
            generate(kind, data, args.patients, seed=0)
        for fraction in args.fractions:
            for seed in args.seeds:
                config = TrainConfig(method="supervised", data=str(data), labeled=fraction, seed=seed,
                                     epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                                     base_channels=args.base_channels)
                trainer = Trainer(config, out / f"{kind}-l{fraction:g}-s{seed}", quiet=True, overwrite=True)
                result = trainer.fit()
                trainer.close()
                for row in result["per_patient"]:
                    rows.append({"kind": kind, "labeled": fraction, "seed": seed, **row})
                print(kind, fraction, seed, {m: round(s["dsc"], 3) for m, s in result["summary"].items()}, flush=True)
    with open(out / "per_patient.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| data | modality | labeled | DSC | Sens | HD95 (mm) |", "|---|---|---|---|---|---|"]
    for kind in args.kinds:
        modalities = sorted({r["modality"] for r in rows if r["kind"] == kind})
        for m in modalities:
            for fraction in args.fractions:
                cells = []
                for metric in ("dsc", "sens", "hd95"):
                    per_seed = [np.nanmean([r[metric] for r in rows if r["kind"] == kind and r["modality"] == m
                                            and r["labeled"] == fraction and r["seed"] == s]) for s in args.seeds]
                    cells.append(f"{np.mean(per_seed):.3f} ± {np.std(per_seed):.3f}")
                lines.append(f"| {kind} | {m} | {fraction:.0%} | " + " | ".join(cells) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
