"""Figures drawn from volumes, slice sets and run folders (matplotlib; saved as PNG)."""

from workbench.viz.curves import plot_training_curves
from workbench.viz.data import plot_intensity_histograms, plot_modalities

__all__ = ["plot_modalities", "plot_intensity_histograms", "plot_training_curves"]
