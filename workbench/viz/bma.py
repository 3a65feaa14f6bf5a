"""The BMA teacher over epochs: pool contents, accuracy, teacher updates and their alpha;
and the BMA, EMA and Base teachers of PReL side by side (the paper's Table 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import matplotlib.pyplot as plt
import plotly.graph_objects as go
from matplotlib.ticker import MaxNLocator

from workbench.events import read_events
from workbench.viz.curves import steering_label

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "plot_bma_timeline",
    "bma_decisions",
    "bma_pool_figure",
    "bma_explorer",
    "teacher_kind",
    "teacher_table",
    "plot_teacher_curves",
    "teacher_curves_figure",
    "teacher_explorer",
]


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
    words = {
        "wait": "waiting (t <= m)",
        "fill": "filling the pool",
        "init": "teacher initialised (copy)",
        "update": f"Acc_t > min(pool): replaced it, teacher moved with alpha = {d.get('alpha') or 0:.2f}",
        "skip": "Acc_t <= min(pool): no update",
    }
    return f"BMA pool of {high}, epoch {d['epoch']}<br><sub>{words.get(d['action'], d['action'])}</sub>"


def bma_pool_figure(high: str, d: dict, capacity: int) -> go.Figure:
    """One epoch's BMA decision: the pool after it (bars), Acc_t (dashed line) and min(pool)
    before it (dotted), eqs. 12-13."""
    pool = list(d.get("pool_after") or [])
    fig = go.Figure(
        go.Bar(
            x=[f"slot {i + 1}" for i in range(capacity)],
            y=pool + [None] * (capacity - len(pool)),
            marker_color="steelblue",
            name="pool after this epoch",
            hovertemplate="%{x}: DSC %{y:.3f}<extra></extra>",
        )
    )
    fig.add_hline(y=d["acc"], line_dash="dash", line_color="crimson")
    fig.add_trace(
        go.Scatter(
            x=[None], y=[None], mode="lines", line={"dash": "dash", "color": "crimson"}, name="Acc_t (this epoch)"
        )
    )
    fig.update_layout(
        title={"text": _pool_title(high, d), "font": {"size": 13}},
        width=620,
        height=380,
        yaxis={"title": "validation DSC", "range": [0, 1]},
        xaxis={"title": "pool slot"},
        legend={"orientation": "h", "y": -0.25},
    )
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
    slider = widgets.SelectionSlider(
        options=epochs, value=epochs[0], description="epoch", continuous_update=False, layout={"width": "500px"}
    )

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
        ax.plot(
            [r["epoch"] for r in val],
            [r["dsc"][m] for r in val],
            marker=".",
            lw=1,
            label=f"{m}" + (" (high, Acc_t)" if m == high else ""),
            alpha=0.9 if m == high else 0.5,
        )
    pool_min = [(d["epoch"], min(d["pool_after"])) for d in bma if d["pool_after"]]
    if pool_min:
        ax.step(*zip(*pool_min), where="post", color="grey", ls="--", label="min of pool")
    fills = [d for d in bma if d["action"] == "fill"]
    ax.scatter(
        [d["epoch"] for d in fills], [d["acc"] for d in fills], marker="s", color="grey", zorder=3, label="pool filled"
    )
    moved = [d for d in bma if d["teacher_updated"]]
    ax.scatter(
        [d["epoch"] for d in moved],
        [d["acc"] for d in moved],
        s=[30 + 300 * (1 - d["alpha"]) for d in moved],
        color="crimson",
        zorder=4,
        label="teacher updated (bigger: smaller alpha)",
    )
    skipped = [d for d in bma if d["action"] == "skip"]
    ax.scatter(
        [d["epoch"] for d in skipped],
        [d["acc"] for d in skipped],
        marker="x",
        color="black",
        zorder=4,
        label="no update (Acc_t <= min pool)",
    )
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


# ---------------------------------------------------------------- BMA vs EMA vs Base


def teacher_kind(run_dir: str | Path) -> str:
    """The run's PReL teacher (``bma``, ``ema`` or ``base``): from its ``stage`` event, else
    its ``config.json`` options (``bma`` when the option is not set)."""
    stage = read_events(run_dir, "stage")
    if stage and stage[0].get("teacher"):
        return str(stage[0]["teacher"])
    config = Path(run_dir) / "config.json"
    saved = json.loads(config.read_text()).get("config", {}) if config.is_file() else {}
    return str((saved.get("options") or {}).get("teacher", "bma"))


def teacher_table(runs: Mapping[str, str | Path]) -> pd.DataFrame:
    """Per teacher (row, in the order of ``runs``) and modality (column): the test DSC, the
    mean over the test patients (``metrics.json``), plus the high modality the run chose."""
    import pandas as pd

    rows = []
    for name, run_dir in runs.items():
        result = json.loads((Path(run_dir) / "metrics.json").read_text())
        chosen = read_events(run_dir, "high_modality")
        rows.append(
            {
                "teacher": name,
                **{m: s["dsc"] for m, s in result["summary"].items()},
                "high": chosen[-1]["high"] if chosen else "",
            }
        )
    return pd.DataFrame(rows).set_index("teacher")


def _stage2(run_dir: str | Path) -> int | None:
    stage = read_events(run_dir, "stage")
    return int(stage[0]["epoch"]) if stage else None


def plot_teacher_curves(runs: Mapping[str, str | Path]) -> plt.Figure:
    """The per-epoch DSC that steered each run (``val`` events: validation patients by
    default), one panel per modality (titled high / low when the runs agree on "high"), one
    line per teacher; dotted: the first stage-2 epoch.

    The runs differ only in their teacher, which watches stage 1 without training anyone,
    so their curves coincide up to L1 and part there."""
    curves = {name: read_events(run_dir, "val") for name, run_dir in runs.items()}
    modalities = list(dict.fromkeys(m for records in curves.values() for r in records for m in r["dsc"]))
    if not modalities:
        raise ValueError("plot_teacher_curves: no run has 'val' events")
    highs = {chosen[-1]["high"] for chosen in (read_events(r, "high_modality") for r in runs.values()) if chosen}
    roles = (
        {m: " (high)" if m in highs else " (low: re-learns in stage 2)" for m in modalities} if len(highs) == 1 else {}
    )
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.0 * len(modalities), 3.6), squeeze=False, sharey=True)
    styles = ["-", "--", ":", "-."]
    for ax, modality in zip(axes[0], modalities):
        for i, (name, records) in enumerate(curves.items()):
            points = [(r["epoch"], r["dsc"][modality]) for r in records if modality in r["dsc"]]
            if points:
                ax.plot(*zip(*points), ls=styles[i % len(styles)], marker="o", ms=2.5, label=name)
        starts = {_stage2(run_dir) for run_dir in runs.values()} - {None}
        for start in starts:
            ax.axvline(start - 0.5, color="goldenrod", ls=":", lw=1)
        ax.set_title(modality + roles.get(modality, ""))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, 1)
    labels = sorted({steering_label(run_dir) for run_dir in runs.values()})
    axes[0, 0].set_ylabel("; ".join(labels), fontsize=8)
    axes[0, -1].legend(fontsize=7, loc="lower right", title="teacher", title_fontsize=7)
    fig.suptitle("PReL with each teacher (dotted: stage 2 starts)", fontsize=10)
    fig.tight_layout()
    return fig


def _teacher_born(run_dir: str | Path, kind: str) -> tuple[int | None, str]:
    """(epoch, words) of the moment the high modality's teacher got its weights."""
    chosen = read_events(run_dir, "high_modality")
    high = chosen[-1]["high"] if chosen else None
    if kind == "bma":
        inits = [d for d in read_events(run_dir, "bma") if d["action"] == "init" and d["modality"] in (high, None)]
        return (inits[0]["epoch"], "BMA teacher initialised (copy)") if inits else (None, "")
    events = [t for t in read_events(run_dir, "teacher") if t.get("modality") in (high, None)]
    fallback = [t for t in events if t["action"] == "fallback_copy"]
    if kind == "base" or fallback:
        start = _stage2(run_dir)
        return (start - 1 if start else None), "teacher = copy of the high model at the end of stage 1"
    inits = [t for t in events if t["action"] == "init"]
    return (inits[0]["epoch"], "EMA teacher initialised, then averaged every step until L1") if inits else (None, "")


def teacher_curves_figure(run_dir: str | Path, name: str = "") -> go.Figure:
    """Plotly: a PReL run's per-epoch steering DSC per modality, where its teacher got its
    weights (a marker on the high modality's curve) and stage 2 (shaded). The view of an EMA
    or Base run, which has no pool to show."""
    val = read_events(run_dir, "val")
    kind = teacher_kind(run_dir)
    name = name or kind
    chosen = read_events(run_dir, "high_modality")
    high = chosen[-1]["high"] if chosen else None
    fig = go.Figure()
    for m in dict.fromkeys(m for r in val for m in r["dsc"]):
        fig.add_trace(
            go.Scatter(
                x=[r["epoch"] for r in val],
                y=[r["dsc"][m] for r in val],
                mode="lines+markers",
                name=m + (" (high: the teacher's model)" if m == high else ""),
                line={"width": 3 if m == high else 1.5},
            )
        )
    born, words = _teacher_born(run_dir, kind)
    if born is not None and high is not None:
        at = [r["dsc"][high] for r in val if r["epoch"] == born]
        fig.add_trace(
            go.Scatter(
                x=[born],
                y=at[:1],
                mode="markers",
                name=words,
                marker={"symbol": "star", "size": 14, "color": "crimson"},
            )
        )
    start = _stage2(run_dir)
    if start is not None and val:
        fig.add_vrect(x0=start - 0.5, x1=val[-1]["epoch"] + 0.5, fillcolor="gold", opacity=0.15, line_width=0)
    fig.update_layout(
        title={
            "text": f"{name} teacher: the run's curves<br><sub>shaded: stage 2 (teacher frozen, "
            f"the low model re-learns from it)</sub>",
            "font": {"size": 13},
        },
        width=620,
        height=380,
        yaxis={"title": steering_label(run_dir), "range": [0, 1]},
        xaxis={"title": "epoch", "dtick": 1},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def teacher_explorer(runs: Mapping[str, str | Path]):
    """A teacher dropdown over PReL runs that differ in their teacher: a BMA run shows its
    pool explorer (:func:`bma_explorer`), an EMA or Base run, which has no pool, its curves
    (:func:`teacher_curves_figure`). Returns ``VBox([Dropdown, view])``
    (:func:`~workbench.viz.widgets.switcher`); ``box.children[0].value = name`` switches."""
    from workbench.viz.widgets import switcher

    def view(name: str, run_dir: str | Path):
        if read_events(run_dir, "bma"):
            return lambda: bma_explorer(run_dir)
        return lambda: go.FigureWidget(teacher_curves_figure(run_dir, name))

    return switcher({name: view(name, run_dir) for name, run_dir in runs.items()}, description="teacher")
