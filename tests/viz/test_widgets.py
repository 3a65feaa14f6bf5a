"""The notebooks' interactive figures, driven from Python without a browser."""

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import pytest
from matplotlib.collections import PathCollection

from tests.conftest import tiny_config
from workbench.events import EventLog, read_events
from workbench.train import Trainer
from workbench.viz.asc import asc_explorer, asc_matrices, epoch_title
from workbench.viz.bma import bma_explorer, plot_bma_timeline


@pytest.fixture(scope="module")
def semi_cml_run(brats_dir, tmp_path_factory):
    """Three epochs of Semi-CML: one ``asc_matrix`` event (2K = 6) per epoch."""
    run = tmp_path_factory.mktemp("semi-cml") / "run"
    trainer = Trainer(tiny_config(brats_dir, method="semi-cml", epochs=3, unlabeled_batch_size=3), run, quiet=True)
    trainer.fit()
    trainer.close()
    return run


def _shown(matrix):
    """What the heatmap shows: the matrix with its diagonal blanked."""
    shown = np.array(matrix, dtype=float)
    np.fill_diagonal(shown, np.nan)
    return shown


def test_asc_explorer_slider_redraws_heatmap_and_title(semi_cml_run):
    matrices = asc_matrices(semi_cml_run)
    assert sorted(matrices) == [1, 2, 3] and matrices[1].shape == (6, 6)
    assert not np.allclose(matrices[1], matrices[3]), "training changed the matrix"
    box = asc_explorer(semi_cml_run)
    slider, figure = box.children
    assert isinstance(slider, widgets.SelectionSlider) and isinstance(figure, go.FigureWidget)
    assert slider.options == (1, 2, 3) and slider.value == 1
    np.testing.assert_allclose(np.array(figure.data[0].z, dtype=float), _shown(matrices[1]))
    assert figure.layout.title.text == epoch_title(1)
    a, b = read_events(semi_cml_run, "run_start")[0]["modalities"]
    assert figure.data[0].x == (f"{a} #1", f"{a} #2", f"{a} #3", f"{b} #1", f"{b} #2", f"{b} #3")

    for epoch in (3, 2):
        slider.value = epoch
        np.testing.assert_allclose(np.array(figure.data[0].z, dtype=float), _shown(matrices[epoch]))
        assert figure.layout.title.text == epoch_title(epoch) == f"ASC Dice-similarity matrix, epoch {epoch}"
    # the positive-pair outlines do not move with the epoch
    assert list(zip(figure.data[1].x, figure.data[1].y)) == [
        (f"{b} #1", f"{a} #1"), (f"{b} #2", f"{a} #2"), (f"{b} #3", f"{a} #3"),
        (f"{a} #1", f"{b} #1"), (f"{a} #2", f"{b} #2"), (f"{a} #3", f"{b} #3")]


def test_asc_explorer_without_asc_events_says_what_to_train(tmp_path):
    log = EventLog(tmp_path / "events.jsonl")
    log.write("run_start", epoch=0, modalities=["t1", "flair"])
    log.close()
    with pytest.raises(ValueError, match="no 'asc_matrix' events \\(train semi-cml or semi-cml-prel first\\)"):
        asc_explorer(tmp_path)


@pytest.fixture
def bma_run(tmp_path):
    """A hand-written PReL log: m = 1, p = 1, so epoch 1 waits, 2 fills the pool, 3 initialises
    the teacher, 4 beats the pool (alpha = 1 - (0.5 - 0.3) / 0.5 = 0.6), 5 does not; stage 2 from 6."""
    flair = [0.1, 0.3, 0.4, 0.5, 0.45, 0.55, 0.6]
    log = EventLog(tmp_path / "events.jsonl")
    for epoch, acc in enumerate(flair, start=1):
        log.write("val", epoch=epoch, dsc={"t1": acc / 2, "flair": acc})
    decisions = [
        dict(epoch=1, action="wait", pool_after=[], teacher_updated=False, alpha=None),
        dict(epoch=2, action="fill", pool_after=[0.3], teacher_updated=False, alpha=None),
        dict(epoch=3, action="init", pool_after=[0.3], teacher_updated=True, alpha=0.0),
        dict(epoch=4, action="update", pool_after=[0.5], teacher_updated=True, alpha=0.6),
        dict(epoch=5, action="skip", pool_after=[0.5], teacher_updated=False, alpha=None),
    ]
    for d in decisions:
        log.write("bma", modality="flair", acc=flair[d["epoch"] - 1], **d)
    log.write("stage", epoch=6, stage=2, L1=6, L2=7)
    log.close()
    return tmp_path


def test_bma_timeline_traces_reflect_the_events(bma_run):
    fig = plot_bma_timeline(bma_run)
    ax, ax_alpha = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["flair (high, Acc_t)"].get_ydata()) == [0.1, 0.3, 0.4, 0.5, 0.45, 0.55, 0.6]
    assert list(lines["t1"].get_xdata()) == [1, 2, 3, 4, 5, 6, 7]
    assert list(lines["min of pool"].get_ydata()) == [0.3, 0.3, 0.5, 0.5]  # epochs 2..5
    points = {c.get_label(): c for c in ax.collections}
    assert points["pool filled"].get_offsets().tolist() == [[2, 0.3]]
    moved = points["teacher updated (bigger: smaller alpha)"]
    assert moved.get_offsets().tolist() == [[3, 0.4], [4, 0.5]]
    np.testing.assert_allclose(moved.get_sizes(), [330, 30 + 300 * 0.4])  # init copies: alpha = 0, biggest
    assert points["no update (Acc_t <= min pool)"].get_offsets().tolist() == [[5, 0.45]]
    assert ax.get_title() == "BMA teacher built from flair: moved at 2 epochs (init included)"
    # bottom: one stem per teacher update, at its alpha, labelled
    stems = [c for c in ax_alpha.collections if isinstance(c, PathCollection)][0]
    assert stems.get_offsets().tolist() == [[3, 0.0], [4, 0.6]]
    assert [t.get_text() for t in ax_alpha.texts] == ["init: copy", "0.60"]
    shaded = [p for p in ax.patches if p.get_facecolor()[3] < 1]  # stage 2, from L1 - 0.5 to the last epoch
    assert shaded and shaded[0].get_x() == 5.5
    plt.close(fig)


def test_bma_timeline_without_bma_events(tmp_path):
    EventLog(tmp_path / "events.jsonl").close()
    with pytest.raises(ValueError, match="no 'bma' events"):
        plot_bma_timeline(tmp_path)


def test_bma_timeline_follows_the_chosen_high_modality(bma_run):
    log = EventLog(bma_run / "events.jsonl")
    log.write("bma", epoch=3, modality="t1", acc=0.2, action="init", pool_after=[0.15], teacher_updated=True, alpha=0.0)
    log.write("high_modality", epoch=5, high="flair", low="t1")
    log.close()
    fig = plot_bma_timeline(bma_run)
    points = {c.get_label(): c for c in fig.axes[0].collections}
    assert points["teacher updated (bigger: smaller alpha)"].get_offsets().tolist() == [[3, 0.4], [4, 0.5]]
    plt.close(fig)


def test_bma_explorer_slider_redraws_pool_and_title(bma_run):
    box = bma_explorer(bma_run)
    slider, figure = box.children
    assert isinstance(slider, widgets.SelectionSlider) and isinstance(figure, go.FigureWidget)
    assert list(slider.options) == [1, 2, 3, 4, 5]
    assert "waiting" in figure.layout.title.text and list(figure.data[0].y) == [None]
    slider.value = 4  # the update epoch: pool [0.5], Acc_t 0.5, alpha 0.6
    assert list(figure.data[0].y) == [0.5] and figure.layout.shapes[0].y0 == 0.5
    assert "epoch 4" in figure.layout.title.text and "alpha = 0.60" in figure.layout.title.text
    slider.value = 5
    assert "no update" in figure.layout.title.text and figure.layout.shapes[0].y0 == 0.45
