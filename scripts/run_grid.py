"""Run a small comparison grid on the built-in data and write its table.

    python scripts/run_grid.py difficulty --out runs/difficulty      # supervised 10% vs 100%
    python scripts/run_grid.py semi-cml --out runs/semi-cml --jobs 2 # Table 3 rows + PReL teachers

Every cell is one ``Trainer`` run (its own run folder under OUT) with the shared CPU-scale
settings below; the same split (split_seed 0) for every seed, the seed changes
initialisation, dropout and batch order. Writes ``OUT/per_patient.csv`` (every patient,
modality and run) and ``OUT/summary.md``: per modality, the mean per-patient DSC, sensitivity
and HD95 of each run, then mean ± std over seeds (a single value where one seed ran). A finished cell (metrics.json present) is
not run again. (``workbench reproduce`` will replace this script.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

#: shared CPU-scale settings of every cell
SETTINGS = dict(epochs=20, steps_per_epoch=20, base_channels=16, size=64, batch_size=8, unlabeled_batch_size=4)

#: a row option naming a pre-training method: the cell pre-trains first (or reuses a finished one)
PRETRAIN = "_pretrain"

#: grid name -> rows: (row label, method, labeled fraction, options)
GRIDS: dict[str, list[tuple[str, str, float, dict]]] = {
    "difficulty": [
        ("supervised 10%", "supervised", 0.1, {}),
        ("supervised 100%", "supervised", 1.0, {}),
    ],
    "semi-cml": [
        ("sup", "supervised", 0.1, {}),
        ("sup+mse", "semi-cml", 0.1, {"variant": "sup+mse"}),
        ("sup+mse+asc", "semi-cml", 0.1, {"variant": "sup+mse+asc"}),
        # the other ablation rows of Table 3 and the multi-modal supervised baseline
        ("sup+nce", "semi-cml", 0.1, {"variant": "sup+nce"}),
        ("sup+asc", "semi-cml", 0.1, {"variant": "sup+asc"}),
        ("sup+mse+nce", "semi-cml", 0.1, {"variant": "sup+mse+nce"}),
        ("sup+mse+nce*", "semi-cml", 0.1, {"variant": "sup+mse+nce*"}),
        ("MM-", "mm-supervised", 0.1, {}),
        ("PReL Base", "semi-cml-prel", 0.1, {"teacher": "base"}),
        ("PReL EMA", "semi-cml-prel", 0.1, {"teacher": "ema"}),
        ("PReL BMA", "semi-cml-prel", 0.1, {"teacher": "bma"}),
        # the earlier default m = 10% of the epochs (m = 2 of 20: teacher initialised at epoch 5)
        ("PReL BMA m2", "semi-cml-prel", 0.1, {"teacher": "bma", "m": 2}),
    ],
    "methods": [  # issue 6: the other seed methods and baselines next to sup and PReL (shared cells)
        ("sup", "supervised", 0.1, {}),
        ("PReL BMA", "semi-cml-prel", 0.1, {"teacher": "bma"}),
        ("MT", "mean-teacher", 0.1, {"input": "single"}),
        ("UA-MT", "ua-mt", 0.1, {"input": "single"}),
        ("CPS", "cps", 0.1, {"input": "single"}),
        ("MM-CPS", "cps", 0.1, {"input": "both"}),
        ("cross-view", "cross-view", 0.1, {"input": "single"}),
        ("Meng", "meng-fusion", 0.1, {}),
        ("CMC", "cmc", 0.1, {}),
        # a supervised U-Net started from a Multi-ConDoS pre-training of the same seed (see _pretrain)
        ("Multi-ConDoS", "supervised", 0.1, {PRETRAIN: "multi-condos"}),
    ],
    # the rows of "semi-cml" as first measured: labeled and unlabeled slices in one forward pass
    "semi-cml-joint": [],  # filled below
    "w-sweep": [  # the unsupervised weights of eq. 11 around the defaults (w1 = 1, w2 = 0.5)
        ("sup+mse+asc w1=0.1", "semi-cml", 0.1, {"variant": "sup+mse+asc", "w1": 0.1}),
        ("sup+mse+asc w2=3", "semi-cml", 0.1, {"variant": "sup+mse+asc", "w2": 3.0}),
    ],
    "diagnostic": [  # unlabeled slices in the forward pass (BatchNorm) but no unsupervised gradient
        ("sup+mse w1=0", "semi-cml", 0.1, {"variant": "sup+mse", "w1": 0.0, "joint_forward": True}),
        ("sup+mse w1=0 split", "semi-cml", 0.1, {"variant": "sup+mse", "w1": 0.0, "joint_forward": False}),
        ("sup+mse+asc split", "semi-cml", 0.1, {"variant": "sup+mse+asc", "joint_forward": False}),
        ("PReL BMA split", "semi-cml-prel", 0.1, {"teacher": "bma", "joint_forward": False}),
    ],
}


GRIDS["semi-cml-joint"] = [
    (label, method, labeled, {**options, "joint_forward": True}) if method != "supervised" else
    (label, method, labeled, options) for label, method, labeled, options in GRIDS["semi-cml"]
    if label in ("sup", "sup+mse", "sup+mse+asc", "PReL Base", "PReL EMA", "PReL BMA")
]
for _label, _method, _labeled, _options in GRIDS["w-sweep"]:
    _options["joint_forward"] = True  # the sweep was run with the joint pass too


def _run_cell(cell: dict) -> list[dict]:
    import torch

    torch.set_num_threads(cell.pop("threads"))
    from workbench.train import TrainConfig, Trainer

    run_dir = Path(cell.pop("run_dir"))
    label, kind = cell.pop("label"), cell.pop("kind")
    metrics_path = run_dir / cell.pop("metrics_file")
    pretrain = cell["options"].pop(PRETRAIN, None)
    if pretrain and not metrics_path.exists():
        cell["init"] = str(_pretrain(cell, run_dir.with_name(f"{run_dir.name}-pretrain")))
    if metrics_path.exists():
        result = json.loads(metrics_path.read_text())
    else:
        trainer = Trainer(TrainConfig(**cell), run_dir, quiet=True, overwrite=True)
        result = trainer.fit()
        trainer.close()
    print(kind, label, cell["seed"], {m: round(s["dsc"], 3) for m, s in result["summary"].items()}, flush=True)
    return [{"kind": kind, "row": label, "seed": cell["seed"], **row} for row in result["per_patient"]]


def _pretrain(cell: dict, pretrain_dir: Path) -> Path:
    """A Multi-ConDoS pre-training with the cell's data, split, size, width and seed (10 x 20 steps)."""
    from workbench.errors import ConfigError
    from workbench.methods.multi_condos import PretrainConfig, Pretrainer, read_pretraining

    try:
        read_pretraining(pretrain_dir)
        return pretrain_dir
    except ConfigError:  # missing or unfinished: (re)run it
        pass
    config = PretrainConfig(data=cell["data"], size=cell["size"], base_channels=cell["base_channels"],
                            seed=cell["seed"])
    trainer = Pretrainer(config, pretrain_dir, quiet=True, overwrite=True)
    trainer.fit()
    trainer.close()
    return pretrain_dir


def _summary(rows: list[dict], labels: list[str], kinds: list[str], seeds: list[int]) -> str:
    lines = ["| data | row | modality | seeds | DSC | Sens | HD95 (mm) |", "|---|---|---|---|---|---|---|"]
    for kind in kinds:
        modalities = list(dict.fromkeys(r["modality"] for r in rows if r["kind"] == kind))
        for m in modalities:
            for label in labels:
                cells = []
                for metric in ("dsc", "sens", "hd95"):
                    per_seed = []
                    for s in seeds:
                        values = [r[metric] for r in rows if (r["kind"], r["row"], r["modality"], r["seed"])
                                  == (kind, label, m, s)]
                        if values:
                            per_seed.append(np.nanmean(np.asarray(values, dtype=float)))
                    cells.append(f"{np.mean(per_seed):.3f} ± {np.std(per_seed, ddof=1):.3f}" if len(per_seed) > 1
                                 else f"{per_seed[0]:.3f}" if per_seed else "-")
                lines.append(f"| {kind} | {label} | {m} | {len(per_seed)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grid", choices=sorted(GRIDS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kinds", nargs="+", default=["brats", "hecktor"])
    parser.add_argument("--rows", nargs="+", help="only these row labels of the grid (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes (threads split between them)")
    parser.add_argument("--only-finished", action="store_true",
                        help="train nothing: tabulate the cells whose run folder has metrics.json")
    parser.add_argument("--metrics-file", default="metrics.json",
                        help="with --only-finished: which metrics file of each run to tabulate, e.g. "
                             "metrics_tumour.json written by `workbench eval RUN --test-slices tumour --json`")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: cores / jobs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a shared setting, e.g. --set epochs=30")
    args = parser.parse_args()
    from workbench.data.synthetic import generate

    settings = dict(SETTINGS)
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = json.loads(value)
    out = Path(args.out)
    cells = []
    for kind in args.kinds:
        data = out / f"data-{kind}"
        if not data.exists():
            generate(kind, data, args.patients, seed=0)
        for label, method, labeled, options in GRIDS[args.grid]:
            if args.rows and label not in args.rows:
                continue
            for seed in args.seeds:
                slug = label.replace(" ", "_").replace("%", "pct").replace("+", "-").replace("*", "star")
                cells.append(dict(settings, method=method, data=str(data), labeled=labeled, seed=seed,
                                  options=dict(options), label=label, kind=kind,
                                  run_dir=str(out / f"{kind}-{slug}-s{seed}"), metrics_file=args.metrics_file,
                                  threads=args.threads or max(1, (os.cpu_count() or 1) // args.jobs)))
    if args.only_finished:
        cells = [c for c in cells if (Path(c["run_dir"]) / args.metrics_file).exists()]
    if args.jobs == 1:  # in this process: nothing is left running if it is killed
        rows = [row for cell in cells for row in _run_cell(cell)]
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            rows = [row for cell_rows in pool.map(_run_cell, cells) for row in cell_rows]
    suffix = Path(args.metrics_file).stem.removeprefix("metrics")
    with open(out / f"per_patient{suffix}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    labels = [label for label, *_ in GRIDS[args.grid] if not args.rows or label in args.rows]
    table = _summary(rows, labels, args.kinds, args.seeds)
    done = sorted({(r["kind"], r["row"], r["seed"]) for r in rows})
    header = f"settings: {settings}, patients {args.patients}; runs tabulated: {len(done)}\n\n"
    (out / f"summary{suffix}.md").write_text(header + table)
    print(table)


if __name__ == "__main__":
    main()
