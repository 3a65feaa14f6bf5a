"""How confident is a PReL teacher? A table of soft predictions on the unlabeled training slices.

    python scripts/teacher_calibration.py runs/grid/brats-PReL_BMA-s0 runs/grid/brats-PReL_BMA-s1

For each finished semi-cml-prel run: the high modality's model G, the frozen teacher, and the
soft pseudo-labels P_s of eq. 14 (MC dropout + input noise), each as mean probability / mean
probability on background pixels / DSC at 0.5, on (up to) 96 unlabeled training slices.
Used for docs/results.md ("why PReL hurts here").
"""

import sys

import torch

from workbench.teachers import mc_dropout_pseudo_labels
from workbench.train import Trainer

SLICES = 96


def hard_dice(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """DSC of the thresholded (p > 0.5) prediction over all slices together."""
    pred, truth = probs > 0.5, labels > 0.5
    return 2 * (pred & truth).sum().item() / max(pred.sum().item() + truth.sum().item(), 1)


def calibration_row(run: str) -> str:
    trainer = Trainer.resume(run, quiet=True, read_only=True)
    method = trainer.method
    images = trainer.splits.train_unlabeled.images[:SLICES]
    labels = trainer.splits.train_unlabeled.labels[:SLICES]
    high = trainer.splits.modalities.index(method.high)
    x = images[:, high : high + 1]
    torch.manual_seed(0)
    method.eval()
    with torch.no_grad():
        g = torch.sigmoid(method.nets[method.high](x))
        teacher = torch.sigmoid(method.teacher(x))
    soft = mc_dropout_pseudo_labels(method.teacher, x, method.opts.mc_passes, method.opts.noise_std)
    cells = [
        f"{p.mean().item():.3f} / {p[labels < 0.5].mean().item():.3f} / {hard_dice(p, labels):.3f}"
        for p in (g, teacher, soft)
    ]
    trainer.close()
    return (
        f"| {run.rstrip('/').split('/')[-1]} | {method.high} | {labels.mean().item():.3f} | " + " | ".join(cells) + " |"
    )


def main(runs: list[str]) -> None:
    print(
        "| run | high | label fg | G: mean p / bg p / DSC | teacher: mean p / bg p / DSC | "
        "P_s (eq. 14): mean / bg p / DSC |"
    )
    print("|---|---|---|---|---|---|")
    for run in runs:
        print(calibration_row(run))


if __name__ == "__main__":
    main(sys.argv[1:])
