"""Data-tour figures: each modality of a patient with the label outline, and histograms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from workbench.data.slices import Volume

__all__ = ["plot_modalities", "plot_intensity_histograms", "tumour_centre_slice"]


def tumour_centre_slice(volume: Volume) -> int:
    """Index of the axial slice with the largest tumour area."""
    areas = volume.label.flatten(1).sum(dim=1)
    return int(areas.argmax())


def plot_modalities(volumes: list[Volume], modalities: list[str], title: str = "") -> plt.Figure:
    """One row per patient: each modality at its largest-tumour slice, ground truth outlined in red."""
    n_rows, n_cols = len(volumes), len(modalities) + 1
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.4 * n_cols, 2.4 * n_rows), squeeze=False)
    for row, volume in zip(axes, volumes):
        z = tumour_centre_slice(volume)
        label = volume.label[z, 0].numpy()
        for ax, (i, m) in zip(row, enumerate(modalities)):
            image = volume.images[z, i].numpy()
            inside = image[image != 0]  # window on the foreground, not the zero background
            lo, hi = np.percentile(inside if inside.size else image, [1, 99])
            ax.set_facecolor("black")  # zero background (outside the brain / air) drawn black
            ax.imshow(np.ma.masked_equal(image, 0).T, cmap="gray", origin="lower", vmin=lo, vmax=hi)
            ax.contour(label.T, levels=[0.5], colors="red", linewidths=0.8, origin="lower")
            ax.set_title(f"{volume.case_id}\n{m}, z={z}", fontsize=8)
        row[-1].imshow(label.T, cmap="Reds", origin="lower", vmin=0, vmax=1)
        row[-1].set_title("label (whole tumour)", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_intensity_histograms(volumes: list[Volume], modalities: list[str], bins: int = 60) -> plt.Figure:
    """Per modality: normalised intensity histograms of tumour vs non-tumour foreground voxels.
    The more the two overlap, the harder the modality is to segment."""
    fig, axes = plt.subplots(1, len(modalities), figsize=(3.6 * len(modalities), 2.8), squeeze=False)
    for ax, (i, m) in zip(axes[0], enumerate(modalities)):
        values = np.concatenate([v.images[:, i].numpy().ravel() for v in volumes])
        labels = np.concatenate([v.label[:, 0].numpy().ravel() for v in volumes]) > 0.5
        foreground = values != 0
        edges = np.histogram_bin_edges(values[foreground], bins=bins)
        ax.hist(values[foreground & ~labels], bins=edges, density=True, alpha=0.6, label="background tissue")
        ax.hist(values[labels], bins=edges, density=True, alpha=0.6, label="tumour", color="tab:red")
        ax.set_title(m)
        ax.set_xlabel("normalised intensity")
        ax.set_ylabel("density")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
