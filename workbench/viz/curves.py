"""Training curves from a run's ``events.jsonl``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from workbench.events import read_events

__all__ = ["plot_training_curves", "steering_label"]

_STEERING = {
    "val": "validation DSC (steers training)",
    "train": "training-accuracy DSC (labeled patients; steers training)",
    "test": "test DSC (steers training): test feedback (paper protocol)",
}
#: runs made before the validation split scored the test patients after every epoch
_EARLIER = "test DSC (earlier protocol: steered training)"
TEST_CURVE_LABEL = "test (not used in training)"


def steering_label(run_dir: str | Path) -> str:
    """What the run's per-epoch ``val`` scores are, for axis labels and legends: validation,
    training accuracy or (paper protocol, stamped) test patients."""
    val = read_events(run_dir, "val")
    on = val[0].get("on") if val else None
    return _STEERING.get(on, _EARLIER)


def plot_training_curves(run_dir: str | Path, title: str = "") -> plt.Figure:
    """Left: every logged training loss per epoch, each where it exists (a method's stages
    log different losses). Right: the per-epoch DSC per modality that steered training
    (validation patients by default) and, when the run logged it (``test_curve``), the test
    DSC, dashed and labelled "test (not used in training)"."""
    train = read_events(run_dir, "train")
    val = read_events(run_dir, "val")
    test_curve = read_events(run_dir, "test_curve")
    fig, (ax_loss, ax_dsc) = plt.subplots(1, 2, figsize=(10, 3.5))
    skip = ("event", "epoch", "step", "lr", "time")
    loss_names = list(dict.fromkeys(k for r in train for k in r if k not in skip))
    for name in loss_names:
        points = [(r["epoch"], r[name]) for r in train if name in r]
        ax_loss.plot(*zip(*points), label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (epoch mean)")
    ax_loss.set_title("training losses")
    if loss_names:
        ax_loss.legend(fontsize=7)
    label = steering_label(run_dir)
    modalities = list(dict.fromkeys(m for r in val for m in r["dsc"]))
    for m in modalities:
        (line,) = ax_dsc.plot([r["epoch"] for r in val], [r["dsc"][m] for r in val], marker="o", ms=3, label=m)
        if test_curve:
            ax_dsc.plot(
                [r["epoch"] for r in test_curve],
                [r["dsc"][m] for r in test_curve],
                ls="--",
                color=line.get_color(),
                label=f"{m}: {TEST_CURVE_LABEL}",
            )
    ax_dsc.set_xlabel("epoch")
    ax_dsc.set_ylabel("mean per-patient DSC")
    ax_dsc.set_ylim(0, 1)
    ax_dsc.set_title(label.split(" (")[0] + " per modality" + (" (solid)" if test_curve else ""), fontsize=10)
    if modalities:
        ax_dsc.legend(fontsize=7, title=label, title_fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
