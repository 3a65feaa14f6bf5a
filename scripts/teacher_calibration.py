"""How confident is a PReL teacher? A table of soft predictions on the unlabeled training slices.

    python scripts/teacher_calibration.py runs/grid/brats-PReL_BMA-s0 runs/grid/brats-PReL_BMA-s1

For each finished semi-cml-prel run: the high modality's model G, the frozen teacher, and the
soft pseudo-labels P_s of eq. 14 (MC dropout + input noise), each as mean probability / mean
probability on background pixels / DSC at 0.5, on (up to) 96 unlabeled training slices.
Used for docs/results.md ("why PReL hurts here").
"""
import sys, torch
from workbench.train import Trainer
from workbench.teachers import mc_dropout_pseudo_labels
def dice(p, y):
    return 2 * ((p > .5) & (y > .5)).sum().item() / max((p > .5).sum().item() + (y > .5).sum().item(), 1)
print("| run | high | label fg | G: mean p / bg p / DSC | teacher: mean p / bg p / DSC | P_s (eq. 14): mean / bg p / DSC |")
print("|---|---|---|---|---|---|")
for run in sys.argv[1:]:
    t = Trainer.resume(run, quiet=True, read_only=True)
    m = t.method
    x = t.splits.train_unlabeled.images[:96]; y = t.splits.train_unlabeled.labels[:96]
    hi = t.splits.modalities.index(m.high)
    torch.manual_seed(0); m.eval()
    with torch.no_grad():
        g = torch.sigmoid(m.nets[m.high](x[:, hi:hi+1])); te = torch.sigmoid(m.teacher(x[:, hi:hi+1]))
    ps = mc_dropout_pseudo_labels(m.teacher, x[:, hi:hi+1], m.opts.mc_passes, m.opts.noise_std)
    cells = [f"{p.mean().item():.3f} / {p[y < .5].mean().item():.3f} / {dice(p, y):.3f}" for p in (g, te, ps)]
    print(f"| {run.split('/')[-1]} | {m.high} | {y.mean().item():.3f} | " + " | ".join(cells) + " |")
