"""The napari viewer: its layers (no Qt), and screenshots under a virtual X server.

Qt runs only in subprocesses (``DISPLAY`` = an Xvfb this module starts), so no
QApplication outlives these tests inside the pytest process.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_with_display, tiny_config, virtual_display
from workbench.errors import ConfigError, DataError
from workbench.train import Trainer, predict_volume
from workbench.viz.napari_view import COLOURS, overlay_layers

ROOT = Path(__file__).resolve().parents[2]
PREL = {"m": 1, "p": 1, "L1": 2, "r": 0.5, "high_modality": "flair"}


@pytest.fixture(scope="module")
def supervised_run(brats_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("napari") / "supervised"
    trainer = Trainer(tiny_config(brats_dir, epochs=1, steps_per_epoch=1), run, quiet=True)
    trainer.fit()
    trainer.close()
    return run, trainer


@pytest.fixture(scope="module")
def prel_run(brats_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("napari") / "prel"
    config = tiny_config(
        brats_dir, method="semi-cml-prel", epochs=2, steps_per_epoch=1, unlabeled_batch_size=3, options=PREL
    )
    trainer = Trainer(config, run, quiet=True)
    trainer.fit()
    trainer.close()
    return run, trainer


def by_name(layers):
    return {kwargs["name"]: (data, kwargs, layer_type) for data, kwargs, layer_type in layers}


def test_layers_match_the_volume_and_the_predictions(supervised_run):
    run, trainer = supervised_run
    volume = trainer.splits.test[-1]
    layers = overlay_layers(run, volume.case_id, errors=True)
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == [
        "t1 image",
        "flair image",
        "t1 prediction",
        "flair prediction",
        "t1 FP / FN",
        "flair FP / FN",
        "ground truth",
        "ground truth (flair)",
        "captions",
    ]
    truth = volume.label[:, 0].numpy() > 0.5
    probs = predict_volume(trainer.method, volume, trainer.device)
    shift = (truth.shape[1] + 4) * volume.spacing[1]  # flair's panel is right of t1's, 4 voxels apart
    for data, kwargs, layer_type in layers[:-1]:
        meta = kwargs["metadata"]
        assert data.shape == truth.shape and meta["case_id"] == volume.case_id
        assert kwargs["scale"] == pytest.approx(volume.spacing)
        assert kwargs["translate"] == pytest.approx((0, shift * meta["panel"], 0))
        assert meta["panel"] == ("flair" in kwargs["name"])
        if layer_type == "labels":
            assert data.dtype == np.uint8 and set(np.unique(data)) <= ({0, 1, 2} if "FP" in kwargs["name"] else {0, 1})
            assert kwargs["colormap"][0] == "transparent"
    named = by_name(layers)
    for i, m in enumerate(["t1", "flair"]):
        image, kwargs, _ = named[f"{m} image"]
        inside = volume.images[:, i].numpy() != 0
        np.testing.assert_array_equal(image[inside], volume.images[:, i].numpy()[inside])
        assert np.isnan(image[~inside]).all()  # outside the brain: drawn black
        lo, hi = kwargs["contrast_limits"]
        assert lo < hi and kwargs["colormap"] == "gray"
        predicted = probs[m][:, 0].numpy() > 0.5
        np.testing.assert_array_equal(named[f"{m} prediction"][0], predicted)
        errors = named[f"{m} FP / FN"][0]
        np.testing.assert_array_equal(errors == 1, predicted & ~truth)
        np.testing.assert_array_equal(errors == 2, ~predicted & truth)
        assert named[f"{m} FP / FN"][1]["visible"] is False
    colours = {named[f"{m} prediction"][1]["colormap"][1] for m in ("t1", "flair")}
    assert len(colours | {COLOURS["ground_truth"]}) == 3  # distinguishable
    np.testing.assert_array_equal(named["ground truth"][0], truth)
    captions, kwargs, _ = named["captions"]
    assert captions.shape == (2, 2) and kwargs["text"]["string"][1].startswith("flair: prediction magenta")


def test_overlay_layout_stacks_the_modalities(supervised_run):
    run, _ = supervised_run
    layers = overlay_layers(run, side_by_side=False)
    assert [k["name"] for _, k, _ in layers] == [
        "t1 image",
        "flair image",
        "t1 prediction",
        "flair prediction",
        "ground truth",
        "captions",
    ]
    assert all(k["translate"] == (0, 0, 0) for _, k, _ in layers[:-1])
    assert [k["visible"] for _, k, _ in layers[:2]] == [True, False]  # tick flair to switch


def test_teacher_pseudo_label_layer(prel_run):
    run, trainer = prel_run
    volume = trainer.splits.test[0]
    named = by_name(overlay_layers(run, pseudo_labels=True))
    soft, kwargs, layer_type = named["teacher pseudo-label (flair)"]
    assert layer_type == "image" and kwargs["visible"] is False and kwargs["colormap"] == "magma"
    assert kwargs["translate"] == named["flair image"][1]["translate"]
    teacher = trainer.method.teacher.eval()
    with torch.no_grad():
        expected = torch.sigmoid(teacher(volume.images[:, 1:2]))[:, 0].numpy()
    np.testing.assert_allclose(soft, expected, atol=1e-5)
    assert 0 <= soft.min() and soft.max() <= 1 and soft.std() > 0


def test_errors_are_one_line(supervised_run, tmp_path):
    run, trainer = supervised_run
    with pytest.raises(DataError) as info:
        overlay_layers(run, "BraTS-nobody")
    message = str(info.value)
    assert "'BraTS-nobody'" in message and all(c in message for c in trainer.splits.test_cases)
    with pytest.raises(DataError, match="labeled training patient"):
        overlay_layers(run, trainer.splits.labeled_cases[0])
    with pytest.raises(ConfigError, match="semi-cml-prel"):
        overlay_layers(run, pseudo_labels=True)
    with pytest.raises(ConfigError, match="does not exist"):
        overlay_layers(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no checkpoint"):
        overlay_layers(tmp_path)


# Runs in a subprocess under Xvfb: the public screenshot(), then the same view with layers
# toggled, saved for the assertions below.
SHOTS = r"""
import json, sys
import numpy as np
from workbench.viz.napari_view import screenshot, show_run

run, out = sys.argv[1], sys.argv[2]
png = screenshot(run, out + "/overlay.png", size=(1200, 720))
viewer = show_run(run, show=False, size=(1200, 720))
shots = {"default": viewer.screenshot(canvas_only=True, flash=False)}
for layer in viewer.layers:
    layer.visible = layer.metadata["kind"] == "image"
shots["images"] = viewer.screenshot(canvas_only=True, flash=False)
for layer in viewer.layers:  # only the first panel's ground truth, filled and opaque
    layer.visible = layer.name == "ground truth"
viewer.layers["ground truth"].contour = 0
shots["truth"] = viewer.screenshot(canvas_only=True, flash=False)
np.savez(out + "/shots.npz", png=png, **shots)
import qtpy  # after show_run(): it picks the binding
json.dump({"qt": qtpy.API_NAME, "point": list(viewer.dims.point), "order": list(viewer.dims.order),
           "zoom": viewer.scene.camera.zoom, "center": list(viewer.scene.camera.center),
           "orientation": list(viewer.scene.camera.orientation2d)},
          open(out + "/view.json", "w"))
viewer.close()
"""


def is_colour(shot: np.ndarray, hex_colour: str, tolerance: int = 40) -> np.ndarray:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return (np.abs(shot[..., :3].astype(int) - rgb) <= tolerance).all(axis=-1)


def test_screenshot_shows_the_tumour_where_it_is(supervised_run, tmp_path):
    import imageio.v3 as iio

    run, trainer = supervised_run
    volume = trainer.splits.test[0]
    with virtual_display() as display:
        result = run_with_display(display, ["-c", SHOTS, str(run), str(tmp_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    shots = np.load(tmp_path / "shots.npz")
    view = json.loads((tmp_path / "view.json").read_text())
    # the pinned binding, not napari's deprecated PyQt5 backend (it logs a warning on start)
    assert view["qt"] == "PyQt6"
    assert "backend is deprecated" not in result.stdout + result.stderr
    png = iio.imread(tmp_path / "overlay.png")
    np.testing.assert_array_equal(png, shots["png"])
    np.testing.assert_array_equal(png, shots["default"])  # screenshot() is the default view

    # 2D, axial slice with the largest tumour area, x to the right and y up
    truth = volume.label[:, 0].numpy() > 0.5
    z = int(truth.sum(axis=(1, 2)).argmax())
    sz, sx, sy = volume.spacing
    assert view["point"][0] == pytest.approx(z * sz)
    assert view["order"] == [0, 2, 1] and view["orientation"] == ["up", "right"]

    # where the ground truth of slice z must land on the canvas (pixel centres at voxel indices)
    h, w = shots["truth"].shape[:2]
    xs, ys = np.nonzero(truth[z])
    zoom, (_, centre_y, centre_x) = view["zoom"], view["center"]
    expected_col = w / 2 + (xs.mean() * sx - centre_x) * zoom
    expected_row = h / 2 - (ys.mean() * sy - centre_y) * zoom
    tumour = is_colour(shots["truth"], COLOURS["ground_truth"])
    rows, cols = np.nonzero(tumour)
    voxel_px = zoom * sx
    assert abs(cols.mean() - expected_col) < voxel_px and abs(rows.mean() - expected_row) < voxel_px
    assert tumour.sum() == pytest.approx(len(xs) * voxel_px * zoom * sy, rel=0.15)

    # per panel (flair's is panel_px to the right): both modalities drawn under the tumour
    # (MR tumour voxels can be dark: most, not all), the yellow ground-truth outline on the
    # tumour's rim and nowhere else, and the label layers changing the tumour's pixels
    panel_px = int(round((truth.shape[1] + 4) * sx * zoom))
    outline = is_colour(shots["default"], COLOURS["ground_truth"])
    changed = (shots["default"][..., :3] != shots["images"][..., :3]).any(axis=-1)
    split = int(expected_col + panel_px / 2)  # between the two copies of the tumour
    for panel, half in ((0, np.s_[:, :split]), (1, np.s_[:, split:])):
        here = np.zeros_like(tumour)
        here[:, panel * panel_px :] = tumour[:, : w - panel * panel_px]
        assert (shots["images"][here, :3].max(axis=-1) > 10).mean() > 0.6, f"black image in panel {panel}"
        rim = outline[half] & here[half]
        assert rim.sum() > 0.15 * here.sum(), f"no ground-truth outline in panel {panel}"
        assert (outline[half] & ~here[half]).sum() < 0.05 * rim.sum(), f"yellow off the tumour in panel {panel}"
        assert changed[here].mean() > 0.15
