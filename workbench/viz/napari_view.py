"""A napari viewer for one test patient of a run: each modality with its network's
prediction and the ground truth, optionally the PReL teacher's soft pseudo-label and
false-positive / false-negative maps.

From a notebook (napari needs Qt's event loop: run ``%gui qt`` in a cell first)::

    %gui qt
    from workbench.viz.napari_view import show_run
    viewer = show_run("runs/demo/semi-cml-prel", pseudo_labels=True, errors=True)

From the command line: ``workbench view RUN [--patient ID]``; headless, a PNG of the
largest-tumour slice: ``xvfb-run -a workbench view RUN --screenshot overlay.png``.

Every layer is in array axis order ``(Z, H, W)`` = (axial slice, RAS x, RAS y) with
``scale`` = the volume's spacing in mm, so lengths read in the viewer are in mm. The
viewer shows x to the right and y (anterior) up, as :func:`workbench.viz.plot_modalities`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from workbench.errors import ConfigError, DataError
from workbench.inference import OpenRun, open_run, predict_volume

if TYPE_CHECKING:
    import napari

    from workbench.data.slices import Volume

__all__ = ["overlay_layers", "show_run", "screenshot", "COLOURS"]

LayerDataTuple = tuple[Any, dict[str, Any], str]

TRANSPARENT = "transparent"
COLOURS = {
    "ground_truth": "#ffd60a",  # yellow outline
    "prediction": ["#00c8ff", "#ff4fd8", "#7cff4f", "#ff9f1a"],  # per modality: cyan, magenta, green, orange
    "false_positive": "#ff3b30",  # red
    "false_negative": "#2f7dff",  # blue
}
COLOUR_NAMES = {"#00c8ff": "cyan", "#ff4fd8": "magenta", "#7cff4f": "green", "#ff9f1a": "orange"}
AXIS_LABELS = ("z", "x", "y")  # a Volume's (Z, H, W): axial slice, RAS x, RAS y
PANEL_GAP = 4  # voxels of black between side-by-side panels


def _display_image(image: np.ndarray, kind: str) -> tuple[np.ndarray, tuple[float, float]]:
    """MR volumes are 0 outside the brain, which is mid-grey after z-scoring: show it as
    NaN (black). Contrast: 1st-99th percentile of the brain / body voxels."""
    inside = image[image != 0]
    lo, hi = (float(v) for v in np.percentile(inside if inside.size else image, [1, 99]))
    if kind == "mr":
        image = np.where(image != 0, image, np.float32(np.nan))
    return image, (lo, hi if hi > lo else lo + 1.0)


def _load(run_dir: str | Path, patient: str | None, overrides: dict[str, Any] | None = None) -> tuple[OpenRun, Volume]:
    """The run rebuilt read-only from its checkpoint (``overrides``: a moved ``data`` folder,
    another ``device``; see :func:`~workbench.inference.open_run`), and the chosen test volume."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} does not exist")
    opened = open_run(run, overrides)
    volumes = {v.case_id: v for v in opened.splits.test}
    if patient is None:
        return opened, opened.splits.test[0]
    if patient not in volumes:
        where = (
            "a labeled training patient"
            if patient in opened.splits.labeled_cases
            else "an unlabeled training patient"
            if patient in opened.splits.unlabeled_cases
            else "not a patient of this run"
        )
        raise DataError(f"patient {patient!r} is {where}; test patients of {run}: {', '.join(volumes)}")
    return opened, volumes[patient]


@torch.no_grad()
def _teacher_probabilities(opened: OpenRun, volume: Volume) -> tuple[str, np.ndarray]:
    """``sigmoid(teacher(x_high))`` ``(Z, H, W)`` of a PReL run, and the high modality."""
    method = opened.method
    if not hasattr(method, "high"):  # PReL: a teacher on the high-performance modality
        raise ConfigError(
            f"pseudo-labels need a teacher on one modality (semi-cml-prel); "
            f"run {opened.run_dir} is {opened.config.method!r}"
        )
    if method.high is None or not method.teacher_ready:
        raise ConfigError(
            f"run {opened.run_dir} stopped at epoch {opened.epoch}, before its teacher "
            f"was built: no pseudo-labels to show"
        )
    high, teacher = method.high, method.teacher
    index = opened.splits.modalities.index(high)
    was_training = teacher.training
    teacher.eval()  # one deterministic pass: no MC dropout, no input noise
    try:
        x = volume.images[:, index : index + 1]
        step = opened.config.eval_batch_size
        probs = [
            torch.sigmoid(teacher(x[i : i + step].to(opened.device)).float()).cpu() for i in range(0, x.shape[0], step)
        ]
    finally:
        teacher.train(was_training)
    return high, torch.cat(probs)[:, 0].numpy()


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """3D Dice of two boolean volumes; 1 when both are empty."""
    total = prediction.sum() + truth.sum()
    return float(2 * (prediction & truth).sum() / total) if total else 1.0


def _labels(
    data: np.ndarray,
    name: str,
    colours: dict[int, str],
    classes: list[str],
    meta: dict[str, Any],
    common: dict[str, Any],
    **kwargs: Any,
) -> LayerDataTuple:
    colormap: dict[int | None, str] = {0: TRANSPARENT, **colours, None: TRANSPARENT}
    return (
        data.astype(np.uint8),
        {**common, "name": name, "colormap": colormap, "features": {"class": classes}, "metadata": meta, **kwargs},
        "labels",
    )


def overlay_layers(
    run_dir: str | Path,
    patient: str | None = None,
    *,
    pseudo_labels: bool = False,
    errors: bool = False,
    side_by_side: bool = True,
    threshold: float = 0.5,
    overrides: dict[str, Any] | None = None,
) -> list[LayerDataTuple]:
    """The napari layers of one test patient of a run, as ``(data, kwargs, layer_type)`` tuples
    (napari's LayerDataTuple), bottom layer first. Needs neither napari nor Qt.

    One panel per modality, side by side along x (``translate``; ``side_by_side=False``
    stacks them in one place instead, later modalities' images hidden: tick one to switch).
    Every 3D layer is ``(Z, H, W)`` with ``scale`` = the volume's spacing (mm). In order:

    * ``"<m> image"`` (``image``, float32): gray, contrast 1st-99th percentile of the
      non-zero voxels; MR background (0 outside the brain) is NaN, drawn black.
    * ``"<m> prediction"`` (``labels``, uint8 in {0, 1}): ``p > threshold`` of modality m's
      network, filled, one colour per modality (:data:`COLOURS`), opacity 0.5.
    * with ``errors``: ``"<m> FP / FN"`` (``labels``, 1 = false positive red, 2 = false
      negative blue), hidden.
    * with ``pseudo_labels``: ``"teacher pseudo-label (<high>)"`` (``image``, magma, 0-1,
      additive) on the high modality's panel: the PReL teacher's soft pseudo-label
      ``sigmoid(teacher(x_high))`` in one pass without MC dropout; hidden.
    * ``"ground truth"`` (``labels``, {0, 1}): a yellow outline (``metadata["contour"]``,
      set by :func:`show_run`; napari 0.9's ``add_labels`` has no ``contour`` argument), one
      per panel (``"ground truth (<m>)"`` for the later ones).
    * ``"captions"`` (``points``, 2D, no markers): above each panel, the modality, its
      prediction's colour and the patient's 3D Dice (empty prediction and truth: 1).

    ``kwargs["metadata"]`` holds ``kind`` (image, prediction, errors, pseudo_label,
    ground_truth, captions), ``case_id``, ``modality`` where there is one, and ``panel``.

    Args:
        run_dir: a run folder with ``checkpoint.pt`` (``workbench train``).
        patient: a test patient's case id; default the first test patient.
        pseudo_labels: add the teacher's soft pseudo-label (``semi-cml-prel`` runs only).
        errors: add a false-positive / false-negative layer per modality.
        side_by_side: one panel per modality (default), else every layer in one place.
        threshold: probability above which a voxel is predicted tumour (evaluation uses 0.5).
        overrides: ``{"data": folder, "device": name}`` for a run whose data folder moved or
            that was trained on another device (:func:`~workbench.inference.open_run`).

    Returns:
        list of ``(data, kwargs, layer_type)``: ``getattr(viewer, "add_" + layer_type)(data, **kwargs)``.

    Raises:
        ConfigError: no such run folder, or ``pseudo_labels`` for a run without a (built) teacher.
        DataError: no checkpoint, or ``patient`` is not a test patient (the message lists them).
    """
    from workbench.data.slices import modality_kind

    opened, volume = _load(run_dir, patient, overrides)
    modalities = opened.splits.modalities
    spacing = tuple(float(s) for s in volume.spacing)
    truth = volume.label[:, 0].numpy() > 0.5
    probs = predict_volume(opened.method, volume, opened.device, opened.config.eval_batch_size)
    predictions = {m: probs[m][:, 0].numpy() > threshold for m in modalities}
    soft = _teacher_probabilities(opened, volume) if pseudo_labels else None
    _, height, width = truth.shape

    def common(panel: int) -> dict[str, Any]:
        shift = panel * (height + PANEL_GAP) * spacing[1] if side_by_side else 0.0
        return {
            "scale": spacing,
            "translate": (0.0, shift, 0.0),
            "axis_labels": AXIS_LABELS,
            "units": ("mm", "mm", "mm"),
        }

    def meta(kind: str, panel: int, **more: Any) -> dict[str, Any]:
        return {"kind": kind, "case_id": volume.case_id, "panel": panel, **more}

    panels = range(len(modalities)) if side_by_side else [0] * len(modalities)
    colours = {m: COLOURS["prediction"][i % len(COLOURS["prediction"])] for i, m in enumerate(modalities)}
    layers: list[LayerDataTuple] = []
    for i, (m, panel) in enumerate(zip(modalities, panels)):
        image, limits = _display_image(volume.images[:, i].numpy(), modality_kind(m))
        layers.append(
            (
                image,
                {
                    **common(panel),
                    "name": f"{m} image",
                    "colormap": "gray",
                    "contrast_limits": limits,
                    "visible": side_by_side or i == 0,
                    "metadata": meta("image", panel, modality=m),
                },
                "image",
            )
        )
    for m, panel in zip(modalities, panels):
        layers.append(
            _labels(
                predictions[m],
                f"{m} prediction",
                {1: colours[m]},
                ["background", f"{m} prediction"],
                meta("prediction", panel, modality=m, colour=colours[m]),
                common(panel),
                opacity=0.5,
            )
        )
    if errors:
        for m, panel in zip(modalities, panels):
            error = np.zeros(truth.shape, np.uint8)
            error[predictions[m] & ~truth] = 1
            error[~predictions[m] & truth] = 2
            layers.append(
                _labels(
                    error,
                    f"{m} FP / FN",
                    {1: COLOURS["false_positive"], 2: COLOURS["false_negative"]},
                    ["correct", "false positive", "false negative"],
                    meta("errors", panel, modality=m),
                    common(panel),
                    opacity=0.8,
                    visible=False,
                )
            )
    if soft is not None:
        high, probability = soft
        panel = panels[modalities.index(high)]
        layers.append(
            (
                probability,
                {
                    **common(panel),
                    "name": f"teacher pseudo-label ({high})",
                    "colormap": "magma",
                    "contrast_limits": (0.0, 1.0),
                    "blending": "additive",
                    "visible": False,
                    "metadata": meta("pseudo_label", panel, modality=high),
                },
                "image",
            )
        )
    for panel in sorted(set(panels)):
        name = "ground truth" if panel == 0 else f"ground truth ({modalities[panel]})"
        layers.append(
            _labels(
                truth,
                name,
                {1: COLOURS["ground_truth"]},
                ["background", "tumour"],
                meta("ground_truth", panel, colour=COLOURS["ground_truth"], contour=1),
                common(panel),
                opacity=1.0,
            )
        )
    captions = [
        (
            f"{m}: prediction {COLOUR_NAMES.get(colours[m], colours[m])}, 3D DSC {_dice(predictions[m], truth):.2f}",
            panel,
        )
        for m, panel in zip(modalities, panels)
    ]
    if not side_by_side:
        captions = [(" | ".join(text for text, _ in captions), 0)]
    above = np.array([[panel * (height + PANEL_GAP) + (height - 1) / 2, width + 2.5] for _, panel in captions])
    layers.append(
        (
            above,
            {
                "name": "captions",
                "scale": spacing[1:],
                "size": 0,
                "axis_labels": AXIS_LABELS[1:],
                "units": ("mm", "mm"),
                "metadata": meta("captions", 0),
                "text": {"string": [text for text, _ in captions], "color": "white", "size": 11, "anchor": "center"},
            },
            "points",
        )
    )
    return layers


def _require_display() -> None:
    """A one-line error instead of Qt aborting the process when there is no screen."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise ConfigError(
            "no display for napari (DISPLAY is not set): use a desktop session or a virtual "
            "X server, e.g. xvfb-run -a workbench view RUN --screenshot overlay.png"
        )


def show_run(
    run_dir: str | Path,
    patient: str | None = None,
    viewer: napari.Viewer | None = None,
    *,
    pseudo_labels: bool = False,
    errors: bool = False,
    side_by_side: bool = True,
    show: bool = True,
    size: tuple[int, int] = (1280, 800),
    overrides: dict[str, Any] | None = None,
) -> napari.Viewer:
    """Open (or fill) a napari viewer with :func:`overlay_layers` of one test patient, in 2D
    at the axial slice with the largest tumour area.

    In Jupyter run ``%gui qt`` first so the window stays responsive; from a script call
    ``napari.run()`` afterwards to block until the window is closed (``workbench view``
    does). Hovering a label shows its class in the status bar.

    Args:
        run_dir: a run folder with ``checkpoint.pt``.
        patient: a test patient's case id; default the first test patient.
        viewer: add the layers to this viewer (its dims order, camera and text overlay
            change); default a new one.
        pseudo_labels: add the PReL teacher's soft pseudo-label (hidden until ticked).
        errors: add a false-positive / false-negative layer per modality (hidden).
        side_by_side: one panel per modality, else all layers in one place.
        show: show the window. ``False`` renders it without putting it on screen, for
            :func:`screenshot` (Qt still needs a display: Xvfb on a headless machine).
        size: (width, height) in screen pixels of a new viewer's window.
        overrides: as :func:`overlay_layers`.

    Returns:
        the viewer.

    Raises:
        ConfigError, DataError: as :func:`overlay_layers`; ConfigError on Linux without a display.
    """
    layers = overlay_layers(
        run_dir, patient, pseudo_labels=pseudo_labels, errors=errors, side_by_side=side_by_side, overrides=overrides
    )
    _require_display()
    # qtpy picks PyQt5 first when a venv still has it from before the PyQt6 pin, and napari
    # then prints its PyQt5 deprecation warning: prefer the pinned binding.
    os.environ.setdefault("QT_API", "pyqt6")
    import napari

    truth = next(data for data, kw, _ in layers if kw["metadata"]["kind"] == "ground_truth")
    case_id, scale = layers[0][1]["metadata"]["case_id"], layers[0][1]["scale"]
    if viewer is None:
        viewer = napari.Viewer(title=f"workbench view {Path(run_dir).name}: {case_id}", show=False)
        window = viewer.window._qt_window
        window.resize(*size)
        if not show:
            from qtpy.QtCore import Qt

            window.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        window.show()  # never mapped on screen with WA_DontShowOnScreen, but it renders
    for data, kwargs, layer_type in layers:
        layer = getattr(viewer, f"add_{layer_type}")(data, **kwargs)
        if "contour" in kwargs["metadata"]:
            layer.contour = kwargs["metadata"]["contour"]
    viewer.dims.ndisplay = 2
    viewer.dims.order = (0, 2, 1)  # rows = y, columns = x ...
    viewer.scene.camera.orientation2d = ("up", "right")  # ... y pointing up
    z = int(truth.reshape(truth.shape[0], -1).sum(axis=1).argmax())
    viewer.dims.set_point(0, z * scale[0])
    viewer.canvas.overlays.text.text = f"{case_id}, largest tumour at z={z}; ground truth: yellow outline"
    viewer.canvas.overlays.text.position = "bottom_left"
    viewer.canvas.overlays.text.font_size = 11
    viewer.canvas.overlays.text.visible = True
    viewer.canvas.overlays.scale_bar.visible = True
    viewer.reset_view()
    return viewer


def screenshot(
    run_dir: str | Path,
    path: str | Path,
    patient: str | None = None,
    *,
    pseudo_labels: bool = False,
    errors: bool = False,
    side_by_side: bool = True,
    size: tuple[int, int] = (1500, 760),
    overrides: dict[str, Any] | None = None,
) -> np.ndarray:
    """Save the canvas of :func:`show_run` (2D, largest-tumour slice) as a PNG without
    putting a window on screen. Qt still needs a display: on a headless machine run under
    ``xvfb-run``.

    Returns:
        the screenshot, ``(height, width, 4)`` uint8 RGBA.
    """
    viewer = show_run(
        run_dir,
        patient,
        pseudo_labels=pseudo_labels,
        errors=errors,
        side_by_side=side_by_side,
        show=False,
        size=size,
        overrides=overrides,
    )
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return viewer.screenshot(str(path), canvas_only=True, flash=False)
    finally:
        viewer.close()
