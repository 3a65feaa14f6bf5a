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

__all__ = ["asc_matrices", "asc_heatmap", "asc_explorer", "positive_mask"]


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
    return [f"{modalities[0]} {i + 1}" for i in range(k)] + [f"{modalities[1]} {i + 1}" for i in range(k)]


def asc_heatmap(matrix: np.ndarray, modalities: tuple[str, str] = ("A", "B"), title: str = "") -> go.Figure:
    """Plotly heatmap of one ASC matrix; positive pairs outlined, the excluded diagonal greyed."""
    n = matrix.shape[0]
    labels = _labels(n, modalities)
    shown = matrix.astype(float).copy()
    np.fill_diagonal(shown, np.nan)  # the anchor itself is not in eq. 9's denominator
    fig = go.Figure(go.Heatmap(z=shown, x=labels, y=labels, zmin=0, zmax=1, colorscale="Blues",
                               colorbar={"title": {"text": "S_dice"}},
                               hovertemplate="anchor %{y}<br>vs %{x}<br>S_dice = %{z:.3f}<extra></extra>"))
    rows, cols = np.nonzero(positive_mask(n))
    fig.add_trace(go.Scatter(x=[labels[c] for c in cols], y=[labels[r] for r in rows], mode="markers",
                             marker={"symbol": "square-open", "size": 16, "color": "crimson", "line": {"width": 2}},
                             name="positive pair", hoverinfo="skip"))
    fig.update_layout(title=title or "ASC Dice-similarity matrix", width=520, height=500,
                      xaxis={"title": "compared map", "tickangle": -45}, yaxis={"title": "anchor", "autorange": "reversed"},
                      legend={"orientation": "h", "y": -0.25})
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
    figure = go.FigureWidget(asc_heatmap(matrices[epochs[0]], modalities, f"epoch {epochs[0]}"))
    slider = widgets.SelectionSlider(options=epochs, value=epochs[0], description="epoch",
                                     continuous_update=False, layout={"width": "500px"})

    def redraw(change) -> None:
        matrix = matrices[change["new"]].astype(float).copy()
        np.fill_diagonal(matrix, np.nan)
        with figure.batch_update():
            figure.data[0].z = matrix
            figure.layout.title.text = f"epoch {change['new']}"

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, figure])
