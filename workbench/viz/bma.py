"""The BMA teacher over epochs: pool contents, accuracy, teacher updates and their alpha."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from workbench.events import read_events

__all__ = ["plot_bma_timeline"]


def plot_bma_timeline(run_dir: str | Path) -> plt.Figure:
    """Top: the high-performance model's test DSC per epoch (Acc_t), the pool's minimum,
    and the epochs where the teacher moved (marker size ~ 1 - alpha, the new model's weight).
    Bottom: alpha of every teacher update. Shaded: stage 2."""
    bma = read_events(run_dir, "bma")
    val = read_events(run_dir, "val")
    stage = read_events(run_dir, "stage")
    if not bma:
        raise ValueError(f"{run_dir}: no 'bma' events (train semi-cml-prel with teacher=bma)")
    # the teacher that was used; a run deciding "high" itself may log a pool for every modality
    chosen = read_events(run_dir, "high_modality")
    high = chosen[-1]["high"] if chosen else bma[0]["modality"]
    bma = [d for d in bma if d["modality"] == high]
    fig, (ax, ax_alpha) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for m in val[0]["dsc"]:
        ax.plot([r["epoch"] for r in val], [r["dsc"][m] for r in val], marker=".", lw=1,
                label=f"test DSC {m}" + (" (high, Acc_t)" if m == high else ""), alpha=0.9 if m == high else 0.5)
    pool_min = [(d["epoch"], min(d["pool_after"])) for d in bma if d["pool_after"]]
    if pool_min:
        ax.step(*zip(*pool_min), where="post", color="grey", ls="--", label="min of pool")
    fills = [d for d in bma if d["action"] == "fill"]
    ax.scatter([d["epoch"] for d in fills], [d["acc"] for d in fills], marker="s", color="grey", zorder=3,
               label="pool filled")
    moved = [d for d in bma if d["teacher_updated"]]
    ax.scatter([d["epoch"] for d in moved], [d["acc"] for d in moved], s=[30 + 300 * (1 - d["alpha"]) for d in moved],
               color="crimson", zorder=4, label="teacher updated (bigger: smaller alpha)")
    skipped = [d for d in bma if d["action"] == "skip"]
    ax.scatter([d["epoch"] for d in skipped], [d["acc"] for d in skipped], marker="x", color="black", zorder=4,
               label="no update (Acc_t <= min pool)")
    if stage:
        for a in (ax, ax_alpha):
            a.axvspan(stage[0]["epoch"] - 0.5, val[-1]["epoch"] + 0.5, color="gold", alpha=0.15)
        ax.text(stage[0]["epoch"] - 0.4, 0.97, "stage 2 (re-learning):\nteacher frozen", fontsize=8, va="top")
    ax.set_ylabel("mean per-patient test DSC")
    ax.set_ylim(0, 1)
    n = len(moved)
    ax.set_title(f"BMA teacher built from {high}: moved at {n} epoch{'s' if n != 1 else ''} (init included)")
    legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for handle in legend.legend_handles:  # the size-coded markers at one size in the legend
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([40])
    # a stem per update, so that alpha = 0 (the init copy) is visible too
    ax_alpha.vlines([d["epoch"] for d in moved], 0, [d["alpha"] for d in moved], color="crimson", lw=3)
    ax_alpha.scatter([d["epoch"] for d in moved], [d["alpha"] for d in moved], color="crimson", s=25, zorder=3)
    for d in moved:
        note = "init: copy" if d["action"] == "init" else f"{d['alpha']:.2f}"
        ax_alpha.annotate(note, (d["epoch"], d["alpha"]), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax_alpha.set_ylim(0, 1.15)
    ax_alpha.set_yticks([0, 0.5, 1])
    ax_alpha.set_ylabel("alpha (eq. 12)\nweight of old teacher")
    ax_alpha.set_xlabel("epoch")
    ax_alpha.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
