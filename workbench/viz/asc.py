"""The ASC (Dice-similarity) matrices of a run: heatmaps and an epoch-slider explorer.

Semi-CML logs, for the first unlabeled batch of each epoch, the 2K x 2K matrix of eq. 8
over ``[F(x'_1..K), G(x''_1..K)]`` (event ``asc_matrix``; in PReL's stage 2
``asc_rel_matrix`` over ``[F(x'_1..K), P_s 1..K]``). The positives of eq. 6 sit on the two
off-diagonals at distance K; training should make them dark (high similarity) and the
rest light (Fig. 5a of the paper).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from workbench.events import read_events

__all__ = ["asc_matrices", "asc_heatmap", "asc_explorer", "positive_mask", "epoch_title"]


def asc_matrices(run_dir: str | Path, event: str = "asc_matrix") -> dict[int, np.ndarray]:
    """epoch -> (2K, 2K) matrix, from the run's event log."""
    return {r["epoch"]: np.asarray(r["matrix"], dtype=float) for r in read_events(run_dir, event)}


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


def epoch_title(epoch: int) -> str:
    """The title of the heatmap of one epoch (the explorer's title when its slider moves)."""
    return f"ASC Dice-similarity matrix, epoch {epoch}"


def _without_diagonal(matrix: np.ndarray) -> list[list[float | None]]:
    """The matrix as nested lists with None (a gap) on the diagonal: the anchor itself is not in
    eq. 9's denominator. None rather than NaN, which a widget's JSON message cannot carry."""
    rows = np.asarray(matrix, dtype=float).tolist()
    for i, row in enumerate(rows):
        row[i] = None
    return rows


def asc_heatmap(matrix: np.ndarray, modalities: tuple[str, str] = ("A", "B"), title: str = "") -> go.Figure:
    """Plotly heatmap of one (2K, 2K) ASC matrix.

    Rows are anchors, columns the compared predictions, both ordered
    ``[modality A #1..K, modality B #1..K]`` (``#j``: the j-th unlabeled slice of the batch).
    Positive pairs are outlined in red; the diagonal (an anchor against itself, excluded from
    eq. 9) is grey."""
    n = matrix.shape[0]
    labels = _labels(n, modalities)
    fig = go.Figure(go.Heatmap(z=_without_diagonal(matrix), x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues",
                               colorbar={"title": {"text": "S_dice<br>(eq. 8)"}},
                               hovertemplate="anchor %{y}<br>vs %{x}<br>S_dice = %{z:.3f}<extra></extra>"))
    rows, cols = np.nonzero(positive_mask(n))
    fig.add_trace(go.Scatter(x=[labels[c] for c in cols], y=[labels[r] for r in rows], mode="markers",
                             marker={"symbol": "square-open", "size": 16, "color": "crimson", "line": {"width": 2}},
                             name="positive pair (same slice, other modality)", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="anchor itself (excluded)",
                             marker={"symbol": "square", "size": 12, "color": "lightgrey"}, hoverinfo="skip"))
    fig.update_layout(title=title or "ASC Dice-similarity matrix", width=560, height=540, showlegend=True,
                      plot_bgcolor="lightgrey", margin={"t": 90},
                      xaxis={"title": "compared prediction (modality #slice)", "tickangle": -45, "showgrid": False,
                             "range": [-0.5, n - 0.5]},
                      yaxis={"title": "anchor prediction", "showgrid": False, "range": [n - 0.5, -0.5]},
                      legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "font": {"size": 11}})
    return fig


def asc_explorer(run_dir: str | Path, event: str = "asc_matrix"):
    """An ipywidgets epoch slider over the run's ASC matrices, driving a plotly FigureWidget.

    Returns the ``VBox`` (slider, figure); ``box.children[0].value = epoch`` redraws."""
    import ipywidgets as widgets

    matrices = asc_matrices(run_dir, event)
    if not matrices:
        raise ValueError(f"{run_dir}: no {event!r} events (train semi-cml or semi-cml-prel first)")
    start = next(iter(read_events(run_dir, "run_start")), {})
    modalities = tuple(start.get("modalities", ("A", "B")))[:2]
    epochs = sorted(matrices)
    figure = go.FigureWidget(asc_heatmap(matrices[epochs[0]], modalities, epoch_title(epochs[0])))
    slider = widgets.SelectionSlider(options=epochs, value=epochs[0], description="epoch",
                                     continuous_update=False, layout={"width": "500px"})

    def redraw(change) -> None:
        with figure.batch_update():
            figure.data[0].z = _without_diagonal(matrices[change["new"]])
            figure.layout.title.text = epoch_title(change["new"])

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, figure])
