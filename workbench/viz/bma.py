"""The BMA teacher over epochs: pool contents, accuracy, teacher updates and their alpha."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from matplotlib.ticker import MaxNLocator

from workbench.events import read_events
from workbench.viz.curves import steering_label

__all__ = ["plot_bma_timeline", "bma_decisions", "bma_pool_figure", "bma_explorer"]


def bma_decisions(run_dir: str | Path) -> tuple[str, list[dict]]:
    """(high modality, its ``bma`` events in epoch order). A run that decides "high" itself
    (``high_modality=auto``) logs a pool for every modality; the chosen one is returned."""
    bma = read_events(run_dir, "bma")
    if not bma:
        raise ValueError(f"{run_dir}: no 'bma' events (train semi-cml-prel with teacher=bma)")
    chosen = read_events(run_dir, "high_modality")
    high = chosen[-1]["high"] if chosen else bma[0]["modality"]
    return high, [d for d in bma if d["modality"] == high]


def _pool_title(high: str, d: dict) -> str:
    words = {"wait": "waiting (t <= m)", "fill": "filling the pool", "init": "teacher initialised (copy)",
             "update": f"Acc_t > min(pool): replaced it, teacher moved with alpha = {d.get('alpha') or 0:.2f}",
             "skip": "Acc_t <= min(pool): no update"}
    return f"BMA pool of {high}, epoch {d['epoch']}<br><sub>{words.get(d['action'], d['action'])}</sub>"


def bma_pool_figure(high: str, d: dict, capacity: int) -> go.Figure:
    """One epoch's BMA decision: the pool after it (bars), Acc_t (dashed line) and min(pool)
    before it (dotted), eqs. 12-13."""
    pool = list(d.get("pool_after") or [])
    fig = go.Figure(go.Bar(x=[f"slot {i + 1}" for i in range(capacity)], y=pool + [None] * (capacity - len(pool)),
                           marker_color="steelblue", name="pool after this epoch",
                           hovertemplate="%{x}: DSC %{y:.3f}<extra></extra>"))
    fig.add_hline(y=d["acc"], line_dash="dash", line_color="crimson")
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"dash": "dash", "color": "crimson"},
                             name="Acc_t (this epoch)"))
    fig.update_layout(title={"text": _pool_title(high, d), "font": {"size": 13}}, width=620, height=380,
                      yaxis={"title": "validation DSC", "range": [0, 1]}, xaxis={"title": "pool slot"},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def bma_explorer(run_dir: str | Path):
    """An ipywidgets epoch slider over the BMA decisions of a run, driving a plotly
    FigureWidget of the pool (:func:`bma_pool_figure`). Returns the ``VBox`` (slider,
    figure); ``box.children[0].value = epoch`` redraws."""
    import ipywidgets as widgets

    high, decisions = bma_decisions(run_dir)
    by_epoch = {d["epoch"]: d for d in decisions}
    capacity = max((len(d.get("pool_after") or []) for d in decisions), default=1) or 1
    epochs = sorted(by_epoch)
    figure = go.FigureWidget(bma_pool_figure(high, by_epoch[epochs[0]], capacity))
    slider = widgets.SelectionSlider(options=epochs, value=epochs[0], description="epoch",
                                     continuous_update=False, layout={"width": "500px"})

    def redraw(change) -> None:
        d = by_epoch[change["new"]]
        pool = list(d.get("pool_after") or [])
        with figure.batch_update():
            figure.data[0].y = pool + [None] * (capacity - len(pool))
            figure.layout.shapes[0].y0 = figure.layout.shapes[0].y1 = d["acc"]
            figure.layout.title.text = _pool_title(high, d)

    slider.observe(redraw, names="value")
    return widgets.VBox([slider, figure])


def plot_bma_timeline(run_dir: str | Path) -> plt.Figure:
    """Top: the high-performance model's per-epoch DSC (Acc_t, on the patients that steer
    training: validation by default, see :func:`~workbench.viz.curves.steering_label`), the pool's minimum,
    and the epochs where the teacher moved (marker size ~ 1 - alpha, the new model's weight).
    Bottom: alpha of every teacher update. Shaded: stage 2."""
    high, bma = bma_decisions(run_dir)
    val = read_events(run_dir, "val")
    label = steering_label(run_dir)
    stage = read_events(run_dir, "stage")
    fig, (ax, ax_alpha) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for m in val[0]["dsc"]:
        ax.plot([r["epoch"] for r in val], [r["dsc"][m] for r in val], marker=".", lw=1,
                label=f"{m}" + (" (high, Acc_t)" if m == high else ""), alpha=0.9 if m == high else 0.5)
    pool_min = [(d["epoch"], min(d["pool_after"])) for d in bma if d["pool_after"]]
    if pool_min:
        ax.step(*zip(*pool_min), where="post", color="grey", ls="--", label="min of pool")
    fills = [d for d in bma if d["action"] == "fill"]
    ax.scatter([d["epoch"] for d in fills], [d["acc"] for d in fills], marker="s", color="grey", zorder=3,
               label="pool filled")
    moved = [d for d in bma if d["teacher_updated"]]
    ax.scatter([d["epoch"] for d in moved], [d["acc"] for d in moved], s=[30 + 300 * (1 - d["alpha"]) for d in moved],
               color="crimson", zorder=4, label="teacher updated (bigger: smaller alpha)")
    skipped = [d for d in bma if d["action"] == "skip"]
    ax.scatter([d["epoch"] for d in skipped], [d["acc"] for d in skipped], marker="x", color="black", zorder=4,
               label="no update (Acc_t <= min pool)")
    if stage:
        for a in (ax, ax_alpha):
            a.axvspan(stage[0]["epoch"] - 0.5, val[-1]["epoch"] + 0.5, color="gold", alpha=0.15)
        ax.text(stage[0]["epoch"] - 0.4, 0.97, "stage 2 (re-learning):\nteacher frozen", fontsize=8, va="top")
    ax.set_ylabel(label.replace(" (", "\n("), fontsize=8)
    ax.set_ylim(0, 1)
    n = len(moved)
    ax.set_title(f"BMA teacher built from {high}: moved at {n} epoch{'s' if n != 1 else ''} (init included)")
    legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for handle in legend.legend_handles:  # the size-coded markers at one size in the legend
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([40])
    # a stem per update, so that alpha = 0 (the init copy) is visible too
    ax_alpha.vlines([d["epoch"] for d in moved], 0, [d["alpha"] for d in moved], color="crimson", lw=3)
    ax_alpha.scatter([d["epoch"] for d in moved], [d["alpha"] for d in moved], color="crimson", s=25, zorder=3)
    for d in moved:
        note = "init: copy" if d["action"] == "init" else f"{d['alpha']:.2f}"
        ax_alpha.annotate(note, (d["epoch"], d["alpha"]), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax_alpha.set_ylim(0, 1.15)
    ax_alpha.set_yticks([0, 0.5, 1])
    ax_alpha.set_ylabel("alpha (eq. 12)\nweight of old teacher")
    ax_alpha.set_xlabel("epoch")
    ax_alpha.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
