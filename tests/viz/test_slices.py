"""The slice explorers of notebooks 01 and 07, driven from Python: move the slider, choose a
patient, and read back what the figure behind the image draws."""

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from tests.conftest import tiny_config
from workbench.data.slices import Volume
from workbench.train import Trainer
from workbench.viz.napari_view import COLOURS, overlay_layers
from workbench.viz.slices import overlay_explorer, plot_overlay_slice, plot_slice, slice_explorer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def volume(case_id: str, depth: int, areas: list[int], seed: int) -> Volume:
    """``depth`` slices of 8 x 8, two modalities with a zero background border; slice z has a
    square tumour of ``areas[z]`` pixels (0: none)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(depth, 2, 8, 8, generator=g) + 0.5
    images[:, :, 0, :] = 0  # background
    label = torch.zeros(depth, 1, 8, 8)
    for z, area in enumerate(areas):
        side = int(area**0.5)
        label[z, 0, 2 : 2 + side, 2 : 2 + side] = 1
    return Volume(case_id, images, label, (2.0, 1.0, 1.0))


@pytest.fixture
def volumes():
    return [volume("P1", 6, [0, 4, 9, 16, 4, 0], seed=0), volume("P2", 4, [0, 25, 0, 0], seed=1)]


def shown(ax) -> np.ndarray:
    """The array an axes' first image draws (masked pixels as NaN)."""
    return np.ma.filled(ax.images[0].get_array().astype(float), np.nan)


def expected(vol: Volume, z: int, channel: int) -> np.ndarray:
    image = vol.images[z, channel].numpy().T.astype(float)
    return np.where(image != 0, image, np.nan)


def test_plot_slice_draws_each_modality_with_the_outline(volumes):
    vol = volumes[0]
    fig = plot_slice(vol, ["t1", "flair"], 3)
    assert [ax.get_title() for ax in fig.axes] == ["t1", "flair"]
    for i, ax in enumerate(fig.axes):
        np.testing.assert_array_equal(shown(ax), expected(vol, 3, i))
        assert len(ax.collections) == 1, "the red label outline"
    assert fig.get_suptitle() == "P1, slice z = 3 of 0..5: tumour 16 px (largest)"
    plt.close(fig)
    fig = plot_slice(vol, ["t1", "flair"], 0)  # no tumour: no outline, and no contour warning
    assert all(len(ax.collections) == 0 for ax in fig.axes)
    assert fig.get_suptitle() == "P1, slice z = 0 of 0..5: no tumour"
    plt.close(fig)


def test_slice_explorer_slider_and_patient_redraw_the_image(volumes):
    open_before = plt.get_fignums()  # figures other tests left open
    box = slice_explorer(volumes, ["t1", "flair"])
    (dropdown, slider), image = box.children[0].children, box.children[1]
    assert (dropdown, slider, image) == (box.patient, box.slider, box.image)
    assert isinstance(dropdown, widgets.Dropdown) and isinstance(slider, widgets.IntSlider)
    assert isinstance(image, widgets.Image) and bytes(image.value)[:8] == PNG_MAGIC
    assert dropdown.options == ("P1", "P2") and dropdown.value == "P1"
    assert (slider.min, slider.max, slider.value) == (0, 5, 3)  # the largest-tumour slice
    np.testing.assert_array_equal(shown(box.figure.axes[1]), expected(volumes[0], 3, 1))
    window = box.figure.axes[0].images[0].get_clim()

    before = bytes(image.value)
    slider.value = 1
    np.testing.assert_array_equal(shown(box.figure.axes[0]), expected(volumes[0], 1, 0))
    assert box.figure.get_suptitle() == "P1, slice z = 1 of 0..5: tumour 4 px"
    assert bytes(image.value) != before
    assert box.figure.axes[0].images[0].get_clim() == window, "one grey window for the whole volume"

    dropdown.value = "P2"  # 4 slices, largest tumour at z = 1
    assert (slider.max, slider.value) == (3, 1)
    np.testing.assert_array_equal(shown(box.figure.axes[0]), expected(volumes[1], 1, 0))
    assert box.figure.get_suptitle() == "P2, slice z = 1 of 0..3: tumour 25 px (largest)"
    assert len(box.figure.axes) == 2, "the figure is redrawn, not drawn over"
    slider.value = 3
    assert box.figure.get_suptitle() == "P2, slice z = 3 of 0..3: no tumour"
    assert plt.get_fignums() == open_before, "no pyplot figure for the inline backend to show twice"


def test_slice_explorer_draws_once_per_patient_switch(volumes, monkeypatch):
    import workbench.viz.slices as slices

    box = slice_explorer(volumes, ["t1", "flair"], patient="P2")
    assert box.patient.value == "P2" and box.slider.value == 1
    calls = []
    monkeypatch.setattr(slices, "figure_png", lambda fig: calls.append(fig) or b"png")
    box.patient.value = "P1"  # the slider's max and value both change
    assert len(calls) == 1 and box.slider.value == 3
    with pytest.raises(ValueError, match="no patient 'P9'; patients: P1, P2"):
        slice_explorer(volumes, ["t1", "flair"], patient="P9")


@pytest.fixture(scope="module")
def run_with_two_test_patients(brats_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("slices") / "supervised"
    trainer = Trainer(tiny_config(brats_dir, epochs=1, steps_per_epoch=1, test_fraction=0.4), run, quiet=True)
    trainer.fit()
    trainer.close()
    assert len(trainer.splits.test) >= 2
    return run, trainer


def largest(truth: np.ndarray) -> int:
    return int(truth.reshape(truth.shape[0], -1).sum(axis=1).argmax())


def test_plot_overlay_slice_draws_the_layers_of_one_slice(run_with_two_test_patients):
    run, trainer = run_with_two_test_patients
    layers = overlay_layers(run, errors=True)
    named = {kwargs["name"]: data for data, kwargs, _ in layers}
    truth = named["ground truth"]
    z = largest(truth)
    fig = plot_overlay_slice(layers)
    axes = np.array(fig.axes).reshape(2, 2)
    for j, m in enumerate(["t1", "flair"]):
        image = np.ma.filled(axes[0, j].images[0].get_array().astype(float), np.nan)
        np.testing.assert_array_equal(image, named[f"{m} image"][z].T)
        prediction = axes[0, j].images[1]
        np.testing.assert_array_equal(np.ma.filled(prediction.get_array(), 0), named[f"{m} prediction"][z].T)
        assert prediction.get_cmap()(1.0)[:3] == pytest.approx(
            tuple(int(COLOURS["prediction"][j][k : k + 2], 16) / 255 for k in (1, 3, 5))
        )
        errors = axes[1, j].images[1]
        np.testing.assert_array_equal(np.ma.filled(errors.get_array(), 0), named[f"{m} FP / FN"][z].T)
        assert "3D DSC of this patient" in axes[0, j].get_title()
    case_id = trainer.splits.test[0].case_id
    assert fig.get_suptitle().startswith(f"{case_id}, slice z = {z} of 0..")
    plt.close(fig)
    fig = plot_overlay_slice(overlay_layers(run), z=0)  # without errors: one row
    assert len(fig.axes) == 2 and fig.get_suptitle().startswith(f"{case_id}, slice z = 0 of")
    plt.close(fig)


def test_overlay_explorer_scrubs_and_switches_test_patients(run_with_two_test_patients, monkeypatch):
    import workbench.viz.napari_view as napari_view

    run, trainer = run_with_two_test_patients
    first, second = (v.case_id for v in trainer.splits.test[:2])
    layers = overlay_layers(run, errors=True)
    computed = []
    original = napari_view.overlay_layers
    monkeypatch.setattr(napari_view, "overlay_layers", lambda *a, **k: computed.append(a[1]) or original(*a, **k))
    box = overlay_explorer(run, layers=layers)
    assert computed == [], "the given layers are reused"
    assert box.patient.options == tuple(trainer.splits.test_cases) and box.patient.value == first
    truth = {kwargs["name"]: data for data, kwargs, _ in layers}["ground truth"]
    assert (box.slider.max, box.slider.value) == (truth.shape[0] - 1, largest(truth))
    assert len(box.figure.axes) == 4 and bytes(box.image.value)[:8] == PNG_MAGIC

    z = (box.slider.value + 3) % truth.shape[0]
    box.slider.value = z
    flair = {kwargs["name"]: data for data, kwargs, _ in layers}["flair prediction"]
    np.testing.assert_array_equal(np.ma.filled(box.figure.axes[1].images[1].get_array(), 0), flair[z].T)
    assert f"slice z = {z} of" in box.figure.get_suptitle()

    box.patient.value = second
    assert computed == [second]
    named = {kwargs["name"]: data for data, kwargs, _ in original(run, second, errors=True)}
    assert box.slider.value == largest(named["ground truth"])
    np.testing.assert_array_equal(
        np.ma.filled(box.figure.axes[0].images[1].get_array(), 0), named["t1 prediction"][box.slider.value].T
    )
    assert box.figure.get_suptitle().startswith(second)
    box.patient.value = first  # cached: not predicted again
    assert computed == [second]
