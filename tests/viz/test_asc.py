"""workbench.viz.asc: per-matrix colour range, positive-pair markers, and the no-tumour note."""

import numpy as np
import pytest

from workbench.events import EventLog
from workbench.viz.asc import (
    asc_explorer,
    asc_heatmap,
    colour_range,
    epoch_title,
    positive_mask,
    predicted_tumour,
    tumour_note,
)


def _matrix(n=6, low=0.41, high=0.44):
    """A CPU-scale matrix: off-diagonal values in [low, high], 1 on the diagonal."""
    values = np.ones((n, n))
    values[~np.eye(n, dtype=bool)] = np.linspace(low, high, n * n - n)
    return values


def test_colour_range_is_the_off_diagonal_range_of_the_matrix():
    assert colour_range(_matrix()) == pytest.approx((0.41, 0.44))
    assert colour_range(np.full((4, 4), 0.5)) == pytest.approx((0.499, 0.501))  # flat: still a readable bar
    assert colour_range(np.zeros((4, 4))) == pytest.approx((0.0, 0.001))


def test_heatmap_colours_follow_the_matrix_not_0_to_1():
    fig = asc_heatmap(_matrix(), ("t1", "flair"))
    heat = fig.data[0]
    assert (heat.zmin, heat.zmax) == pytest.approx((0.41, 0.44))
    assert "0.410-0.440" in heat.colorbar.title.text and "this" in heat.colorbar.title.text
    other = asc_heatmap(_matrix(low=0.1, high=0.9)).data[0]
    assert (other.zmin, other.zmax) == pytest.approx((0.1, 0.9))


def test_positive_pairs_are_marked_at_the_positive_mask():
    n = 6
    fig = asc_heatmap(_matrix(n), ("t1", "flair"))
    labels = list(fig.data[0].x)
    markers = fig.data[1]
    assert markers.marker.symbol == "square-open" and "positive pair" in markers.name
    marked = {(labels.index(y), labels.index(x)) for x, y in zip(markers.x, markers.y)}
    assert marked == {tuple(rc) for rc in np.argwhere(positive_mask(n))}
    assert len(marked) == n and all(c == (r + n // 2) % n for r, c in marked)


def test_tumour_note_says_when_the_logged_predictions_hold_no_tumour():
    assert tumour_note(None) == ""
    assert tumour_note([3, 1, 5, 2]) == ""
    assert tumour_note([0, 0, 0, 0]) == "the logged slices' predictions hold no tumour (no pixel with p > 0.5)"
    assert tumour_note([0, 4, 0, 1]).startswith("2 of the 4 logged predictions hold no tumour")
    assert epoch_title(2) == "ASC Dice-similarity matrix, epoch 2"
    assert epoch_title(2, [1, 1]) == "ASC Dice-similarity matrix, epoch 2"
    assert epoch_title(2, [0, 0]) == (
        "ASC Dice-similarity matrix, epoch 2<br><sup>the logged slices' predictions "
        "hold no tumour (no pixel with p > 0.5)</sup>"
    )
    fig = asc_heatmap(_matrix(4), foreground=[0, 0, 0, 0])
    assert "hold no tumour" in fig.layout.title.text
    assert fig.data[0].customdata[0][2] == "0 / 0" and "predicted tumour px" in fig.data[0].hovertemplate
    assert asc_heatmap(_matrix(4)).data[0].customdata is None


@pytest.fixture
def logged_run(tmp_path):
    """Two epochs of a hand-written log: epoch 1 with empty predictions, epoch 2 with tumour,
    epoch 3 logged before the field existed."""
    log = EventLog(tmp_path / "events.jsonl")
    log.write("run_start", epoch=0, modalities=["t1", "flair"])
    log.write(
        "asc_matrix",
        epoch=1,
        matrix=_matrix(4, 0.01, 0.02).tolist(),
        k=2,
        predicted_tumour_pixels=[0, 0, 0, 0],
        slice_pixels=1024,
    )
    log.write(
        "asc_matrix",
        epoch=2,
        matrix=_matrix(4, 0.3, 0.8).tolist(),
        k=2,
        predicted_tumour_pixels=[12, 30, 9, 25],
        slice_pixels=1024,
    )
    log.write("asc_matrix", epoch=3, matrix=_matrix(4, 0.4, 0.9).tolist(), k=2)
    log.close()
    return tmp_path


def test_explorer_rescales_and_retitles_per_epoch(logged_run):
    assert {e: v.tolist() for e, v in predicted_tumour(logged_run).items()} == {1: [0, 0, 0, 0], 2: [12, 30, 9, 25]}
    slider, figure = asc_explorer(logged_run).children
    assert (figure.data[0].zmin, figure.data[0].zmax) == pytest.approx((0.01, 0.02))
    assert "hold no tumour" in figure.layout.title.text
    slider.value = 2
    assert (figure.data[0].zmin, figure.data[0].zmax) == pytest.approx((0.3, 0.8))
    assert figure.layout.title.text == epoch_title(2)
    assert "0.300-0.800" in figure.data[0].colorbar.title.text
    assert figure.data[0].customdata[1][0] == "30 / 12"
    slider.value = 3  # no counts logged: no note, no tumour hover
    assert figure.layout.title.text == epoch_title(3) and figure.data[0].customdata is None
