"""Scrub through the axial slices of a patient: a z slider and a patient dropdown over a
matplotlib drawing of one slice.

* :func:`slice_explorer` (notebook 01): each modality of a preprocessed patient side by
  side, the label outlined in red (:func:`plot_slice`).
* :func:`overlay_explorer` (notebook 07): the matplotlib rendition of the napari overlay of
  a run's test patient, each modality with its prediction filled, the ground truth outlined
  and the false-positive / false-negative map (:func:`plot_overlay_slice`).

Both return ``VBox([HBox([patient Dropdown, z IntSlider]), Image])``. The image is a PNG of a
matplotlib figure that is redrawn whenever the slider or the dropdown moves, so it shows in
JupyterLab, in a notebook exported with its widget state, and, as its initial state, in a
papermill run. The box also carries ``box.patient`` (the dropdown), ``box.slider``,
``box.image`` and ``box.figure`` (the figure behind the image)::

    box = slice_explorer(volumes, ["t1", "flair"])
    box.slider.value = 12              # slice 12 of the first patient
    box.patient.value = "BraTS-0003"   # another patient, at its largest-tumour slice
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from workbench.viz.data import tumour_centre_slice
from workbench.viz.widgets import figure_png

if TYPE_CHECKING:
    import ipywidgets

    from workbench.data.slices import Volume

__all__ = ["plot_slice", "plot_overlay_slice", "slice_explorer", "overlay_explorer"]


def _window(image: np.ndarray) -> tuple[float, float]:
    """1st-99th percentile of the non-zero voxels (the zero background would drag it down)."""
    inside = image[image != 0]
    lo, hi = (float(v) for v in np.percentile(inside if inside.size else image, [1, 99]))
    return lo, hi if hi > lo else lo + 1.0


def _largest(label: np.ndarray) -> int:
    """Index of the slice of a ``(Z, H, W)`` mask with the most foreground."""
    return int(label.reshape(label.shape[0], -1).sum(axis=1).argmax())


def _slice_title(case_id: str, z: int, depth: int, largest: int, area: int) -> str:
    tumour = f"tumour {area} px" if area else "no tumour"
    return f"{case_id}, slice z = {z} of 0..{depth - 1}: {tumour}" + (" (largest)" if z == largest else "")


def plot_slice(
    volume: Volume,
    modalities: Sequence[str],
    z: int,
    figure: Figure | None = None,
    limits: Sequence[tuple[float, float]] | None = None,
) -> Figure:
    """Axial slice ``z`` of one patient: each modality side by side, the label outlined in red.

    Args:
        volume: a preprocessed patient (images ``(Z, M, H, W)``, label ``(Z, 1, H, W)``).
        modalities: the names of the M channels, in order.
        z: the slice index, ``0 <= z < Z``.
        figure: draw into this (empty) figure; default a new pyplot figure.
        limits: per modality the grey window ``(lo, hi)``; default the 1st-99th percentile
            of the patient's non-zero voxels of that modality (one window for the whole
            volume, so the contrast does not jump while scrubbing).

    Returns:
        the figure: one axes per modality, its image (zero background masked, drawn black)
        first, then the outline when the slice has tumour.
    """
    n = len(modalities)
    fig = figure if figure is not None else plt.figure(figsize=(2.6 * n, 3.0))
    axes = fig.subplots(1, n, squeeze=False)[0]
    label = volume.label[z, 0].numpy()
    for ax, (i, m) in zip(axes, enumerate(modalities)):
        lo, hi = limits[i] if limits is not None else _window(volume.images[:, i].numpy())
        ax.set_facecolor("black")
        ax.imshow(np.ma.masked_equal(volume.images[z, i].numpy(), 0).T, cmap="gray", origin="lower", vmin=lo, vmax=hi)
        if label.any():
            ax.contour(label.T, levels=[0.5], colors="red", linewidths=0.8, origin="lower")
        ax.set_title(m, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    depth = volume.images.shape[0]
    fig.suptitle(_slice_title(volume.case_id, z, depth, tumour_centre_slice(volume), int(label.sum())), fontsize=10)
    fig.tight_layout()
    return fig


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """3D Dice of two boolean volumes; 1 when both are empty."""
    total = prediction.sum() + truth.sum()
    return float(2 * (prediction & truth).sum() / total) if total else 1.0


def plot_overlay_slice(
    layers: list[tuple[Any, dict[str, Any], str]], z: int | None = None, figure: Figure | None = None
) -> Figure:
    """One axial slice of :func:`~workbench.viz.napari_view.overlay_layers`, with matplotlib.

    Top row, per modality: its image (grey, the layer's contrast limits, MR background
    black), its prediction filled in the napari viewer's colour for it, the ground truth
    outlined in gold, and the patient's 3D DSC in the title. Bottom row (when the layers
    have ``errors``): false positives red, false negatives blue.

    Args:
        layers: ``overlay_layers(run, patient, ...)`` (side by side or stacked).
        z: the slice; default the one with the largest tumour area.
        figure: draw into this (empty) figure; default a new pyplot figure.

    Returns:
        the figure (``2 x M`` axes with errors, else ``1 x M``).
    """
    from workbench.viz.napari_view import COLOUR_NAMES, COLOURS

    named = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in layers}
    truth = named["ground truth"][0].astype(bool)
    z = _largest(truth) if z is None else z
    modalities = [kwargs["metadata"]["modality"] for _, kwargs, _ in layers if kwargs["metadata"]["kind"] == "image"]
    errors = all(f"{m} FP / FN" in named for m in modalities)
    rows = 2 if errors else 1
    n = len(modalities)
    fig = figure if figure is not None else plt.figure(figsize=(4.2 * n, 4.1 * rows))
    axes = fig.subplots(rows, n, squeeze=False)
    gray = plt.get_cmap("gray").copy()
    gray.set_bad("black")  # NaN: MR background, as napari draws it
    for j, m in enumerate(modalities):
        image, kwargs = named[f"{m} image"]
        lo, hi = kwargs["contrast_limits"]
        for ax in axes[:, j]:
            ax.imshow(np.ma.masked_invalid(image[z]).T, cmap=gray, vmin=lo, vmax=hi, origin="lower")
            if truth[z].any():
                ax.contour(truth[z].T, levels=[0.5], colors="gold", linewidths=1.2, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
        prediction, kwargs = named[f"{m} prediction"]
        colour = kwargs["metadata"].get("colour", COLOURS["prediction"][j % len(COLOURS["prediction"])])
        axes[0, j].imshow(
            np.ma.masked_equal(prediction[z], 0).T,
            cmap=ListedColormap([colour]),
            alpha=0.55,
            origin="lower",
            vmin=0,
            vmax=1,
        )
        dsc = _dice(prediction.astype(bool), truth)
        axes[0, j].set_title(
            f"{m}: prediction ({COLOUR_NAMES.get(colour, colour)}), truth (gold)\n3D DSC of this patient {dsc:.2f}",
            fontsize=9,
        )
        if errors:
            fp_fn = ListedColormap([COLOURS["false_positive"], COLOURS["false_negative"]])
            axes[1, j].imshow(
                np.ma.masked_equal(named[f"{m} FP / FN"][0][z], 0).T,
                cmap=fp_fn,
                alpha=0.85,
                origin="lower",
                vmin=1,
                vmax=2,
            )
            axes[1, j].set_title(f"{m}: false positive (red), false negative (blue)", fontsize=9)
    case_id = layers[0][1]["metadata"]["case_id"]
    fig.suptitle(_slice_title(case_id, z, truth.shape[0], _largest(truth), int(truth[z].sum())))
    fig.tight_layout()
    return fig


@dataclass
class _Patient:
    """What the explorer needs of one patient: its number of slices, the slice to start at,
    and how to draw slice z into a figure."""

    depth: int
    start: int
    draw: Callable[[Figure, int], Any]


def _scrubber(
    patients: Sequence[str], first: str, load: Callable[[str], _Patient], figsize: tuple[float, float]
) -> ipywidgets.VBox:
    """The widget of the module docstring; ``load(case_id)`` is called once per patient."""
    import ipywidgets as widgets

    loaded: dict[str, _Patient] = {}

    def get(case_id: str) -> _Patient:
        if case_id not in loaded:
            loaded[case_id] = load(case_id)
        return loaded[case_id]

    patient = get(first)
    figure = Figure(figsize=figsize)  # not a pyplot figure: the inline backend never shows it on its own
    dropdown = widgets.Dropdown(options=list(patients), value=first, description="patient")
    slider = widgets.IntSlider(
        value=patient.start,
        min=0,
        max=patient.depth - 1,
        description="z (axial)",
        continuous_update=False,
        layout={"width": "420px"},
    )
    image = widgets.Image(format="png", layout={"max_width": "100%"})
    box = widgets.VBox([widgets.HBox([dropdown, slider]), image])
    moving = {"patient": False}  # the slider follows a new patient: draw once, not per change

    def redraw(change=None) -> None:
        if moving["patient"]:
            return
        figure.clear()
        get(dropdown.value).draw(figure, slider.value)
        image.value = figure_png(figure)

    def switch(change) -> None:
        chosen = get(change["new"])
        moving["patient"] = True
        try:
            slider.max = chosen.depth - 1
            slider.value = chosen.start
        finally:
            moving["patient"] = False
        redraw()

    slider.observe(redraw, names="value")
    dropdown.observe(switch, names="value")
    redraw()
    box.patient, box.slider, box.image, box.figure = dropdown, slider, image, figure
    return box


def slice_explorer(volumes: Sequence[Volume], modalities: Sequence[str], patient: str | None = None) -> ipywidgets.VBox:
    """Scrub through the axial slices of preprocessed patients (:func:`plot_slice`).

    Args:
        volumes: the patients (their ``case_id`` fill the dropdown, in this order).
        modalities: the names of the volumes' channels, in order.
        patient: the case id shown first; default the first volume's.

    Returns:
        the widget of the module docstring, at the first patient's largest-tumour slice.
        Choosing another patient moves the slider to that patient's largest-tumour slice.

    Raises:
        ValueError: no volumes, or ``patient`` is not one of them.
    """
    by_id = {v.case_id: v for v in volumes}
    if not by_id:
        raise ValueError("slice_explorer: no volumes")
    first = patient or next(iter(by_id))
    if first not in by_id:
        raise ValueError(f"slice_explorer: no patient {first!r}; patients: {', '.join(by_id)}")

    def load(case_id: str) -> _Patient:
        volume = by_id[case_id]
        limits = [_window(volume.images[:, i].numpy()) for i in range(len(modalities))]
        return _Patient(
            volume.images.shape[0],
            tumour_centre_slice(volume),
            lambda fig, z: plot_slice(volume, modalities, z, fig, limits),
        )

    return _scrubber(list(by_id), first, load, (2.6 * len(modalities), 3.0))


def overlay_explorer(
    run_dir: str | Path,
    patient: str | None = None,
    *,
    errors: bool = True,
    pseudo_labels: bool = False,
    layers: list | None = None,
    overrides: dict[str, Any] | None = None,
) -> ipywidgets.VBox:
    """Scrub through the slices of a run's test patients with their prediction overlays
    (:func:`plot_overlay_slice` of :func:`~workbench.viz.napari_view.overlay_layers`).

    Args:
        run_dir: a run folder with ``checkpoint.pt``.
        patient: the test patient shown first; default the first test patient.
        errors, pseudo_labels, overrides: as ``overlay_layers``.
        layers: ``overlay_layers(run_dir, patient, ...)`` already computed for the first
            patient (saves predicting it again).

    Returns:
        the widget of the module docstring; its dropdown lists the run's test patients
        (``config.json["split"]["test"]``), each predicted when it is first chosen.

    Raises:
        ConfigError, DataError: as ``overlay_layers``.
    """
    from workbench.viz.napari_view import overlay_layers

    def compute(case_id: str | None) -> list:
        return overlay_layers(run_dir, case_id, errors=errors, pseudo_labels=pseudo_labels, overrides=overrides)

    first_layers = layers if layers is not None else compute(patient)
    first = first_layers[0][1]["metadata"]["case_id"]
    config = Path(run_dir) / "config.json"
    split = json.loads(config.read_text()).get("split", {}) if config.is_file() else {}
    patients = list(split.get("test") or [first])
    if first not in patients:
        patients.insert(0, first)

    def load(case_id: str) -> _Patient:
        patient_layers = first_layers if case_id == first else compute(case_id)
        truth = next(data for data, kwargs, _ in patient_layers if kwargs["name"] == "ground truth")
        return _Patient(truth.shape[0], _largest(truth), lambda fig, z: plot_overlay_slice(patient_layers, z, fig))

    n = sum(kwargs["metadata"]["kind"] == "image" for _, kwargs, _ in first_layers)
    return _scrubber(patients, first, load, (3.4 * n, 3.4 * (2 if errors else 1)))
