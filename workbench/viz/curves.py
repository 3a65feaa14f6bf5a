"""Training curves from a run's ``events.jsonl``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from workbench.events import read_events

__all__ = ["plot_training_curves"]


def plot_training_curves(run_dir: str | Path, title: str = "") -> plt.Figure:
    """Left: every logged training loss per epoch. Right: test DSC per modality per epoch."""
    train = read_events(run_dir, "train")
    val = read_events(run_dir, "val")
    fig, (ax_loss, ax_dsc) = plt.subplots(1, 2, figsize=(10, 3.5))
    loss_names = [k for k in train[0] if k not in ("event", "epoch", "step", "lr")] if train else []
    for name in loss_names:
        ax_loss.plot([r["epoch"] for r in train], [r[name] for r in train], label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (epoch mean)")
    ax_loss.set_title("training losses")
    ax_loss.legend(fontsize=7)
    modalities = list(val[0]["dsc"]) if val else []
    for m in modalities:
        ax_dsc.plot([r["epoch"] for r in val], [r["dsc"][m] for r in val], marker="o", ms=3, label=m)
    ax_dsc.set_xlabel("epoch")
    ax_dsc.set_ylabel("mean per-patient DSC")
    ax_dsc.set_ylim(0, 1)
    ax_dsc.set_title("test DSC per modality")
    ax_dsc.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
