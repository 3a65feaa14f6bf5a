"""The ASC (Dice-similarity) matrices of a run: heatmaps and an epoch-slider explorer.

Semi-CML logs, for the first unlabeled batch of each epoch, the 2K x 2K matrix of eq. 8
over ``[F(x'_1..K), G(x''_1..K)]`` (event ``asc_matrix``; in PReL's stage 2
``asc_rel_matrix`` over ``[F(x'_1..K), P_s 1..K]``). The positives of eq. 6 sit on the two
off-diagonals at distance K; training should make them dark (high similarity) and the
rest light (Fig. 5a of the paper).

At CPU scale a matrix often spans a few hundredths, so each heatmap scales its colours to
its own off-diagonal range (:func:`colour_range`; the colour bar gives the range) rather
than to 0-1. A run logged since ``predicted_tumour_pixels`` joined the event (the pixels with
p > 0.5 of each logged prediction, counted from the predictions, not the labels) also says
when the logged slices' predictions hold no tumour (:func:`tumour_note`): then every map is
near-empty and S_dice compares faint noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from workbench.events import read_events

__all__ = [
    "asc_matrices",
    "asc_heatmap",
    "asc_explorer",
    "positive_mask",
    "epoch_title",
    "colour_range",
    "predicted_tumour",
    "tumour_note",
]


def asc_matrices(run_dir: str | Path, event: str = "asc_matrix") -> dict[int, np.ndarray]:
    """epoch -> (2K, 2K) matrix, from the run's event log."""
    return {r["epoch"]: np.asarray(r["matrix"], dtype=float) for r in read_events(run_dir, event)}


def predicted_tumour(run_dir: str | Path, event: str = "asc_matrix") -> dict[int, np.ndarray]:
    """epoch -> (2K,) predicted tumour pixels (p > 0.5) of each logged prediction, rows in the
    matrix's order; only the epochs whose event carries ``predicted_tumour_pixels``."""
    return {
        r["epoch"]: np.asarray(r["predicted_tumour_pixels"], dtype=int)
        for r in read_events(run_dir, event)
        if r.get("predicted_tumour_pixels") is not None
    }


def tumour_note(foreground: Sequence[int] | np.ndarray | None) -> str:
    """What the logged predictions hold, for a title: "" when unknown (``None``) or when every
    prediction has tumour pixels; otherwise which of them hold none (no pixel with p > 0.5)."""
    if foreground is None:
        return ""
    empty = int((np.asarray(foreground) == 0).sum())
    if empty == 0:
        return ""
    if empty == len(foreground):
        return "the logged slices' predictions hold no tumour (no pixel with p > 0.5)"
    return f"{empty} of the {len(foreground)} logged predictions hold no tumour (no pixel with p > 0.5)"


def colour_range(matrix: np.ndarray) -> tuple[float, float]:
    """(lowest, highest) off-diagonal value of a (2K, 2K) matrix: the colour scale of its heatmap.

    The diagonal (an anchor against itself) is left out, as in eq. 9. A flat matrix gets a
    range of ± 0.001 around its value (clipped to [0, 1]) so that the colour bar stays readable."""
    values = np.asarray(matrix, dtype=float)[~np.eye(len(matrix), dtype=bool)]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        low, high = max(0.0, low - 1e-3), min(1.0, high + 1e-3)
    return low, high


def positive_mask(n: int) -> np.ndarray:
    """Boolean (2K, 2K): True at the positive pairs (i, i + K mod 2K)."""
    k = n // 2
    mask = np.zeros((n, n), dtype=bool)
    idx = np.arange(n)
    mask[idx, (idx + k) % n] = True
    return mask


def _labels(n: int, modalities: tuple[str, str]) -> list[str]:
    k = n // 2
    return [f"{modalities[0]} #{i + 1}" for i in range(k)] + [f"{modalities[1]} #{i + 1}" for i in range(k)]


def _with_note(title: str, foreground: Sequence[int] | np.ndarray | None) -> str:
    note = tumour_note(foreground)
    return f"{title}<br><sup>{note}</sup>" if note else title


def epoch_title(epoch: int, foreground: Sequence[int] | np.ndarray | None = None) -> str:
    """The title of the heatmap of one epoch (the explorer's title when its slider moves);
    with ``foreground`` (that epoch's :func:`predicted_tumour`), a second line says when the
    logged predictions hold no tumour (:func:`tumour_note`)."""
    return _with_note(f"ASC Dice-similarity matrix, epoch {epoch}", foreground)


def _without_diagonal(matrix: np.ndarray) -> list[list[float | None]]:
    """The matrix as nested lists with None (a gap) on the diagonal: the anchor itself is not in
    eq. 9's denominator. None rather than NaN, which a widget's JSON message cannot carry."""
    rows = np.asarray(matrix, dtype=float).tolist()
    for i, row in enumerate(rows):
        row[i] = None
    return rows


def _colour_bar_title(low: float, high: float) -> str:
    return f"S_dice (eq. 8)<br>colours: this<br>matrix's range<br>{low:.3f}-{high:.3f}"


def _heatmap_style(matrix: np.ndarray, foreground: Sequence[int] | np.ndarray | None) -> dict:
    """The parts of the heatmap trace that change with the matrix: z, its colour range, the
    colour bar title and, with ``foreground``, the hover text's tumour pixels."""
    low, high = colour_range(matrix)
    style = {
        "z": _without_diagonal(matrix),
        "zmin": low,
        "zmax": high,
        "colorbar": {"title": {"text": _colour_bar_title(low, high)}},
    }
    if foreground is not None:
        px = [int(v) for v in foreground]
        style["customdata"] = [[f"{px[i]} / {px[j]}" for j in range(len(px))] for i in range(len(px))]
        style["hovertemplate"] = (
            "anchor %{y}<br>vs %{x}<br>S_dice = %{z:.3f}<br>"
            "predicted tumour px (anchor / compared): %{customdata}<extra></extra>"
        )
    else:
        style["customdata"] = None
        style["hovertemplate"] = "anchor %{y}<br>vs %{x}<br>S_dice = %{z:.3f}<extra></extra>"
    return style


def asc_heatmap(
    matrix: np.ndarray,
    modalities: tuple[str, str] = ("A", "B"),
    title: str = "",
    foreground: Sequence[int] | np.ndarray | None = None,
) -> go.Figure:
    """Plotly heatmap of one (2K, 2K) ASC matrix.

    Rows are anchors, columns the compared predictions, both ordered
    ``[modality A #1..K, modality B #1..K]`` (``#j``: the j-th unlabeled slice of the batch).
    The colours span this matrix's own off-diagonal range (:func:`colour_range`, given in the
    colour bar), not 0-1. Positive pairs are outlined in red (one marker per
    :func:`positive_mask` entry); the diagonal (an anchor against itself, excluded from eq. 9)
    is grey. ``foreground`` (one epoch of :func:`predicted_tumour`) adds each prediction's
    tumour pixels to the hover text and, when ``title`` is empty, the :func:`tumour_note` to
    the default title (:func:`epoch_title` adds it to an epoch's title)."""
    n = matrix.shape[0]
    labels = _labels(n, modalities)
    fig = go.Figure(go.Heatmap(x=labels, y=labels, colorscale="Blues", **_heatmap_style(matrix, foreground)))
    rows, cols = np.nonzero(positive_mask(n))
    fig.add_trace(
        go.Scatter(
            x=[labels[c] for c in cols],
            y=[labels[r] for r in rows],
            mode="markers",
            marker={"symbol": "square-open", "size": 16, "color": "crimson", "line": {"width": 2}},
            name="positive pair (same slice, other modality)",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name="anchor itself (excluded)",
            marker={"symbol": "square", "size": 12, "color": "lightgrey"},
            hoverinfo="skip",
        )
    )
    # the top margin leaves room for a second title line (the tumour note) above the legend
    fig.update_layout(
        title={"text": title or _with_note("ASC Dice-similarity matrix", foreground), "y": 0.95},
        width=560,
        height=570,
        showlegend=True,
        plot_bgcolor="lightgrey",
        margin={"t": 120},
        xaxis={
            "title": "compared prediction (modality #slice)",
            "tickangle": -45,
            "showgrid": False,
            "range": [-0.5, n - 0.5],
        },
        yaxis={"title": "anchor prediction", "showgrid": False, "range": [n - 0.5, -0.5]},
        legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "font": {"size": 11}},
    )
    return fig


def asc_explorer(run_dir: str | Path, event: str = "asc_matrix"):
    """An ipywidgets epoch slider over the run's ASC matrices, driving a plotly FigureWidget.

    Returns the ``VBox`` (slider, figure); ``box.children[0].value = epoch`` redraws."""
    import ipywidgets as widgets

    matrices = asc_matrices(run_dir, event)
    if not matrices:
        raise ValueError(f"{run_dir}: no {event!r} events (train semi-cml or semi-cml-prel first)")
    foreground = predicted_tumour(run_dir, event)
    start = next(iter(read_events(run_dir, "run_start")), {})
    modalities = tuple(start.get("modalities", ("A", "B")))[:2]
    epochs = sorted(matrices)
    first = epochs[0]
    figure = go.FigureWidget(
        asc_heatmap(matrices[first], modalities, epoch_title(first, foreground.get(first)), foreground.get(first))
    )
    slider = widgets.SelectionSlider(
        options=epochs, value=epochs[0], description="epoch", continuous_update=False, layout={"width": "500px"}
    )

    def redraw(change) -> None:
        epoch = change["new"]
        with figure.batch_update():
            figure.data[0].update(_heatmap_style(matrices[epoch], foreground.get(epoch)))
            figure.layout.title.text = epoch_title(epoch, foreground.get(epoch))

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, figure])
