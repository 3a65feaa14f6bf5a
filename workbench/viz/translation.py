"""Multi-ConDoS pre-training seen as images: A -> B -> A and B -> A -> B translations per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from workbench.errors import ConfigError

__all__ = ["plot_translations"]


def plot_translations(run_dir: str | Path, epochs: list[int] | None = None, sample: int = 0) -> plt.Figure:
    """One row per epoch: x^A, G(x^A) (as B), back to A, then x^B, its translation to A and back.

    Args:
        run_dir: a ``workbench pretrain --method multi-condos`` run folder (its ``samples/``).
        epochs: which saved epochs to show (default: the first and the last).
        sample: which of the saved slices.
    """
    from workbench.methods.multi_condos import read_samples

    samples = read_samples(run_dir)
    if not samples:
        raise ConfigError(f"{run_dir}: no samples/epoch_*.npz (not a finished multi-condos pre-training epoch)")
    chosen = epochs or sorted({min(samples), max(samples)})
    missing = [e for e in chosen if e not in samples]
    if missing:
        raise ConfigError(f"{run_dir}: no translations saved for epoch(s) {missing}; saved: {sorted(samples)}")
    first = samples[chosen[0]]
    a, b = [k for k in first if "_to_" not in k]  # the two real modalities, X then Y
    columns = [a, f"{a}_to_{b}", f"{a}_to_{b}_to_{a}", b, f"{b}_to_{a}", f"{b}_to_{a}_to_{b}"]
    titles = [a, f"{a} -> {b}", f"{a} -> {b} -> {a}", b, f"{b} -> {a}", f"{b} -> {a} -> {b}"]
    fig, axes = plt.subplots(len(chosen), len(columns), figsize=(2.1 * len(columns), 2.3 * len(chosen)), squeeze=False)
    for i, epoch in enumerate(chosen):
        for j, (key, title) in enumerate(zip(columns, titles)):
            image = np.asarray(samples[epoch][key][sample], dtype=float)
            # each modality in the same grey range as its real image, so translations compare fairly
            real = samples[epoch][key.rsplit("_to_", 1)[-1]][sample]
            axes[i, j].imshow(image.T, cmap="gray", origin="lower", vmin=float(np.min(real)), vmax=float(np.max(real)))
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            axes[i, j].set_title(title, fontsize=8)
        axes[i, 0].set_ylabel(f"epoch {epoch}")
    fig.suptitle("Multi-ConDoS pre-training: translations of one training slice")
    fig.tight_layout()
    return fig
