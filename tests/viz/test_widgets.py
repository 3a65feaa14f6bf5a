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
from workbench.viz.asc import asc_explorer, asc_matrices, colour_range, epoch_title, predicted_tumour
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
    assert figure.layout.title.text == epoch_title(1, predicted_tumour(semi_cml_run)[1])
    a, b = read_events(semi_cml_run, "run_start")[0]["modalities"]
    assert figure.data[0].x == (f"{a} #1", f"{a} #2", f"{a} #3", f"{b} #1", f"{b} #2", f"{b} #3")

    tumour = predicted_tumour(semi_cml_run)
    assert sorted(tumour) == [1, 2, 3] and tumour[1].shape == (6,)
    for epoch in (3, 2):
        slider.value = epoch
        np.testing.assert_allclose(np.array(figure.data[0].z, dtype=float), _shown(matrices[epoch]))
        assert figure.layout.title.text == epoch_title(epoch, tumour[epoch])
        assert figure.layout.title.text.startswith(f"ASC Dice-similarity matrix, epoch {epoch}")
        assert (figure.data[0].zmin, figure.data[0].zmax) == colour_range(matrices[epoch])
    # the positive-pair outlines do not move with the epoch
    assert list(zip(figure.data[1].x, figure.data[1].y)) == [
        (f"{b} #1", f"{a} #1"),
        (f"{b} #2", f"{a} #2"),
        (f"{b} #3", f"{a} #3"),
        (f"{a} #1", f"{b} #1"),
        (f"{a} #2", f"{b} #2"),
        (f"{a} #3", f"{b} #3"),
    ]


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


# ------------------------------------------------------------------ generic pieces


def test_switcher_builds_each_view_once_and_swaps_it_in():
    from workbench.viz.widgets import switcher

    built = []

    def make(name):
        return lambda: built.append(name) or widgets.Label(name)

    box = switcher({"a": make("a"), "b": make("b")}, description="pick")
    dropdown, view = box.children
    assert dropdown.description == "pick" and dropdown.options == ("a", "b") and view.value == "a"
    assert built == ["a"], "the other views are built when first chosen"
    dropdown.value = "b"
    assert box.children[1].value == "b" and built == ["a", "b"]
    dropdown.value = "a"
    assert box.children[1] is box.views["a"] and built == ["a", "b"]
    with pytest.raises(ValueError, match="'c' is not a view; choose one of: a, b"):
        switcher({"a": make("a"), "b": make("b")}, description="pick", value="c")


def per_patient_rows():
    import pandas as pd

    rows = []
    for method, base in (("sup", 0.3), ("mt", 0.5), ("prel", 0.7)):
        for modality, shift in (("t1", 0.0), ("flair", 0.2)):
            for patient in range(2):
                rows.append(
                    {
                        "method": method,
                        "seed": 0,
                        "modality": modality,
                        "case_id": f"P{patient}",
                        "dsc": base + shift + 0.01 * patient,
                        "sens": 0.5,
                        "hd95": 3.0,
                    }
                )
    return pd.DataFrame(rows)


def test_methods_explorer_redraws_table_and_plot_for_the_chosen_methods():
    from workbench.viz.widgets import methods_explorer

    open_before = plt.get_fignums()  # figures other tests left open
    box = methods_explorer(per_patient_rows(), title="demo (dashed: {reference})")
    select, table_html, image = box.children
    assert isinstance(select, widgets.SelectMultiple) and select is box.select
    assert select.options == ("sup", "mt", "prel") and select.value == ("sup", "mt", "prel")
    assert list(box.table.index.get_level_values("method").unique()) == ["sup", "mt", "prel"]
    assert "prel" in table_html.value and bytes(image.value)[:8] == b"\x89PNG\r\n\x1a\n"
    before = bytes(image.value)

    select.value = ("prel", "sup")  # clicked in another order: the table keeps the rows' order
    assert list(box.table.index.get_level_values("method").unique()) == ["sup", "prel"]
    assert box.table.loc[("prel", "flair"), "dsc"] == pytest.approx(0.905)
    assert ">mt<" not in table_html.value and ">prel<" in table_html.value
    assert [t.get_text() for t in box.figure.axes[0].get_xticklabels()] == ["sup", "prel"]
    assert box.figure.get_suptitle() == "demo (dashed: sup)"
    assert bytes(image.value) != before
    from matplotlib.colors import to_hex

    from workbench.viz.style import method_colours

    bars = [to_hex(p.get_facecolor()) for p in box.figure.axes[0].patches]
    assert bars == [method_colours(["sup", "mt", "prel"])[m] for m in ("sup", "prel")]  # prel keeps its colour
    select.value = ("mt",)
    assert box.figure.get_suptitle() == "demo (dashed: mt)"

    select.value = ()
    assert box.table is None and box.figure is None and "no method chosen" in table_html.value
    assert image.layout.display == "none"
    select.value = ("sup",)
    assert image.layout.display is None and list(box.table.index.get_level_values("method")) == ["sup", "sup"]
    assert plt.get_fignums() == open_before, "the widget's figures are closed: the inline backend shows them once"


# ------------------------------------------------------------------ BMA vs EMA vs Base


@pytest.fixture
def teacher_runs(bma_run, tmp_path_factory):
    """The hand-written BMA log above and two like it with an EMA and a Base teacher: the same
    stage 1 (the teacher trains no one), different stage 2; each with its metrics.json."""
    import json

    from workbench.viz.bma import teacher_kind

    flair = [0.1, 0.3, 0.4, 0.5, 0.45, 0.55, 0.6]
    log = bma_run / "events.jsonl"  # scored on the validation patients, as a run of today
    records = [json.loads(line) for line in log.read_text().splitlines()]
    log.write_text("".join(json.dumps({**r, "on": "val"} if r["event"] == "val" else r) + "\n" for r in records))
    runs = {"BMA": bma_run}
    for name, stage2 in (("EMA", [0.5, 0.52]), ("Base", [0.4, 0.42])):
        run = tmp_path_factory.mktemp(name.lower())
        log = EventLog(run / "events.jsonl")
        for epoch, acc in enumerate(flair[:5] + stage2, start=1):
            log.write("val", epoch=epoch, dsc={"t1": acc / 2, "flair": acc}, on="val")
        if name == "EMA":
            log.write("teacher", kind="ema", action="init", epoch=3, modality="flair")
        log.write("high_modality", epoch=5, high="flair", low="t1")
        log.write("stage", epoch=6, stage=2, L1=6, L2=7, teacher=name.lower())
        log.close()
        runs[name] = run
    for i, run in enumerate(runs.values()):
        summary = {"t1": {"dsc": 0.2 + i / 10}, "flair": {"dsc": 0.6 + i / 10}}
        (run / "metrics.json").write_text(json.dumps({"summary": summary}))
    assert [teacher_kind(r) for r in runs.values()] == ["bma", "ema", "base"]
    return runs


def test_teacher_table_and_curves(teacher_runs):
    from workbench.viz.bma import plot_teacher_curves, teacher_table

    table = teacher_table(teacher_runs)
    assert list(table.index) == ["BMA", "EMA", "Base"] and list(table.columns) == ["t1", "flair", "high"]
    assert table.loc["EMA", "flair"] == pytest.approx(0.7) and table.loc["Base", "high"] == "flair"
    fig = plot_teacher_curves(teacher_runs)
    ax_t1, ax_flair = fig.axes
    assert ax_flair.get_title() == "flair (high)" and ax_t1.get_title() == "t1 (low: re-learns in stage 2)"
    assert ax_t1.get_xlabel() == "epoch"
    assert ax_t1.get_ylabel() == "validation DSC (steers training)"
    lines = {line.get_label(): line for line in ax_flair.get_lines() if not line.get_label().startswith("_")}
    assert list(lines) == ["BMA", "EMA", "Base"]
    assert list(lines["EMA"].get_ydata()) == [0.1, 0.3, 0.4, 0.5, 0.45, 0.5, 0.52]
    assert list(lines["BMA"].get_ydata())[:5] == list(lines["Base"].get_ydata())[:5], "same stage 1"
    assert [line.get_xdata()[0] for line in ax_flair.get_lines() if line.get_label().startswith("_")] == [5.5]
    plt.close(fig)


def test_teacher_explorer_shows_the_pool_of_bma_and_the_curves_of_the_others(teacher_runs):
    from workbench.viz.bma import teacher_explorer

    box = teacher_explorer(teacher_runs)
    dropdown, view = box.children
    assert dropdown.description == "teacher" and dropdown.options == ("BMA", "EMA", "Base")
    slider, pool = view.children  # BMA: the pool explorer
    assert isinstance(slider, widgets.SelectionSlider) and "BMA pool of flair" in pool.layout.title.text

    dropdown.value = "EMA"
    curves = box.children[1]
    assert isinstance(curves, go.FigureWidget) and curves.layout.title.text.startswith("EMA teacher")
    assert curves.layout.yaxis.title.text == "validation DSC (steers training)"
    traces = {t.name: t for t in curves.data}
    assert list(traces["flair (high: the teacher's model)"].y) == [0.1, 0.3, 0.4, 0.5, 0.45, 0.5, 0.52]
    born = traces["EMA teacher initialised, then averaged every step until L1"]
    assert list(born.x) == [3] and list(born.y) == [0.4]
    assert curves.layout.shapes[0].x0 == 5.5  # stage 2 shaded

    dropdown.value = "Base"
    traces = {t.name: t for t in box.children[1].data}
    born = traces["teacher = copy of the high model at the end of stage 1"]
    assert list(born.x) == [5] and list(born.y) == [0.45]
    dropdown.value = "BMA"
    assert box.children[1] is view, "built once, kept"
