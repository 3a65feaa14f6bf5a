"""DSC (or sensitivity) against the labeled fraction, one figure per dataset of a grid
(``dsc_vs_labeled_<dataset>.png``): a line plot over the fractions, or, for a grid with a single
fraction, a dot plot with one row per method. Both draw the mean over seeds of each run's mean
over patients, the sample std over seeds as error bar and the papers' values as open markers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pandas as pd

from workbench.errors import ConfigError
from workbench.reproduce.grid import Grid
from workbench.reproduce.paper import PAPER_LABEL, PaperTable, load_paper_values
from workbench.reproduce.results import _modality_header, _per_seed, _stamped, _with_stamp
from workbench.stats import sample_std

__all__ = ["plot_dsc_vs_labeled"]

#: a row's published values on one modality: ``(method, modality) -> [(labeled %, value), ...]``
Published = Callable[[str, str], list[tuple[float, float]]]


def plot_dsc_vs_labeled(
    rows: pd.DataFrame,
    dataset: str,
    grid: Grid | None = None,
    papers: Mapping[str, PaperTable] | None = None,
    metric: str = "dsc",
    colours: Mapping[str, str] | None = None,
) -> Any:
    """DSC (or ``metric="sens"``) against the labeled fraction: one panel per modality, one line
    per method (mean over seeds of each run's mean over patients; error bar: the sample std over
    seeds, ddof 1, drawn only where a point has more than one seed). The axis label says how
    many seeds (:func:`workbench.viz.style.spread_label`: "1 seed, no error bar" for one).
    Methods take :func:`workbench.viz.style.method_colours` in their order in ``rows``, as in
    :func:`workbench.viz.compare.plot_methods_dsc` (``colours`` fixes them).
    With ``grid``, a row's published values (at the row's fractions) are drawn in the same
    colour, dotted with open markers.

    A grid with a single labeled fraction (e.g. a Table 3 ablation) would stack every method on
    one x position, so it is drawn as a dot plot instead: one row per method, the metric on the
    x axis with the std over seeds as a horizontal error bar, the paper's value as an open
    marker on the same row.

    When a plotted run was steered by its test patients (``selection`` test), the title carries
    :data:`~workbench.stats.TEST_FEEDBACK_STAMP`."""
    panels = _panels(rows, dataset, grid, papers, metric, colours)
    return _dot_plot(panels) if len(panels.fractions) == 1 else _line_plot(panels)


@dataclass
class _Panels:
    """What both plots of one dataset draw."""

    dataset: str
    quantity: str  # DSC | sensitivity
    points: pd.DataFrame  # index (method, labeled, modality); columns mean, std (over seeds), seeds
    modalities: list[str]
    methods: list[str]  # in their order in the rows
    fractions: list[float]
    colours: dict[str, str]
    axis_label: str
    stamped: bool
    published: Published

    def of(self, method: str, modality: str) -> pd.DataFrame | None:
        """The points of one method on one modality, by labeled fraction (None: it has none)."""
        try:
            return self.points.xs((method, modality), level=["method", "modality"]).sort_index()
        except KeyError:
            return None


def _panels(
    rows: pd.DataFrame,
    dataset: str,
    grid: Grid | None,
    papers: Mapping[str, PaperTable] | None,
    metric: str,
    colours: Mapping[str, str] | None,
) -> _Panels:
    """The points of ``dataset`` in ``rows`` (checked), with the grid's published values."""
    from workbench.viz.style import method_colours, spread_label

    if metric not in ("dsc", "sens"):
        raise ConfigError(f"metric {metric!r}: choose dsc or sens")
    sub = rows[rows["dataset"] == dataset]
    if sub.empty:
        raise ConfigError(f"no finished runs of dataset {dataset!r} to plot")
    per_seed = _per_seed(sub)[metric]
    grouped = per_seed.groupby(level=["method", "labeled", "modality"], sort=False)
    points = pd.DataFrame({"mean": grouped.mean(), "std": grouped.agg(sample_std), "seeds": grouped.size()})
    if grid is not None and papers is None:
        papers = load_paper_values()
    methods = list(dict.fromkeys(sub["method"]))
    quantity = "DSC" if metric == "dsc" else "sensitivity"
    return _Panels(
        dataset=dataset,
        quantity=quantity,
        points=points,
        modalities=list(dict.fromkeys(sub["modality"])),
        methods=methods,
        fractions=sorted(set(sub["labeled"])),
        colours=method_colours(methods, colours),
        axis_label=spread_label(quantity, points["seeds"]),
        stamped=_stamped(sub),
        published=_published_values(grid, papers, dataset, 0 if metric == "dsc" else 1),
    )


def _published_values(
    grid: Grid | None, papers: Mapping[str, PaperTable] | None, dataset: str, index: int
) -> Published:
    """``published(method, modality)``: (labeled %, paper value) of a row that cites the paper,
    at the row's fractions (``index`` 0: DSC, 1: Sens); none without a grid."""
    rows_of = {m.label: m for m in grid.methods} if grid is not None else {}
    paper_dataset = next((d.paper for d in grid.datasets if d.name == dataset), None) if grid is not None else None

    def published(method: str, modality: str) -> list[tuple[float, float]]:
        row = rows_of.get(method)
        if row is None or row.paper is None or papers is None:
            return []
        assert grid is not None
        table, name = papers[row.paper[0]], row.paper[1]
        return [
            (f * 100, table.get(paper_dataset, f, name)[modality][index])
            for f in grid.fractions(row)
            if modality in table.get(paper_dataset, f, name)
        ]

    return published


def _line_plot(panels: _Panels) -> Any:
    """Several fractions: the metric against the labeled %, one line per method (log axis when the
    fractions span more than a factor 8), the published values dotted in the same colour."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fractions = panels.fractions
    fig, axes = plt.subplots(
        1, len(panels.modalities), figsize=(4.6 * len(panels.modalities) + 1.8, 3.8), squeeze=False, sharey=True
    )
    drew_paper = False
    for ax, modality in zip(axes[0], panels.modalities):
        for method in panels.methods:
            points = panels.of(method, modality)
            if points is None:
                continue
            colour = panels.colours[method]
            paper = panels.published(method, modality)
            spread = points["std"].notna()  # one seed: no sample std, so no error bar
            ax.plot(points.index * 100, points["mean"], color=colour, marker="o", ms=4, lw=1.4, label=method)
            if spread.any():
                ax.errorbar(
                    points.index[spread] * 100,
                    points["mean"][spread],
                    yerr=points["std"][spread],
                    color=colour,
                    capsize=3,
                    lw=1.4,
                    ls="none",
                )
            if paper:
                ax.plot(*zip(*paper), color=colour, ls=":", marker="o", mfc="none", ms=6, lw=1.2)
            drew_paper = drew_paper or bool(paper)
        ax.set_title(_modality_header(modality))
        ax.grid(alpha=0.3)
        if fractions[-1] / fractions[0] > 8:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g}" for f in fractions])
        ax.set_xlabel("labeled patients (%)")
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel(panels.axis_label)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if drew_paper:
        handles.append(plt.Line2D([], [], color="grey", ls=":", marker="o", mfc="none"))
        labels.append(f"{PAPER_LABEL} (same colour)")
    fig.suptitle(_with_stamp(f"{panels.dataset}: {panels.quantity} vs labeled fraction", panels.stamped))
    return _finish(fig, handles, labels)


def _dot_plot(panels: _Panels) -> Any:
    """One fraction: one row per method, top to bottom in grid order, the metric on the x axis,
    the published value at that fraction as an open marker on the row."""
    import matplotlib.pyplot as plt

    fraction, methods = panels.fractions[0], panels.methods
    fig, axes = plt.subplots(
        1,
        len(panels.modalities),
        figsize=(3.6 * len(panels.modalities) + 1.8, 0.32 * len(methods) + 1.4),
        squeeze=False,
        sharey=True,
    )
    drew_paper = False
    for ax, modality in zip(axes[0], panels.modalities):
        for position, method in enumerate(methods):
            points = panels.of(method, modality)
            if points is None:
                continue
            colour = panels.colours[method]
            # only the paper's value at the plotted fraction (a partial grid may have more)
            paper = [(f, v) for f, v in panels.published(method, modality) if math.isclose(f, fraction * 100)]
            spread = points["std"].notna()  # one seed: no sample std, so no error bar
            ax.plot(points["mean"], [position] * len(points), color=colour, marker="o", ms=5, ls="none", label=method)
            if spread.any():
                ax.errorbar(
                    points["mean"][spread],
                    [position] * int(spread.sum()),
                    xerr=points["std"][spread],
                    color=colour,
                    capsize=3,
                    lw=1.4,
                    ls="none",
                )
            if paper:
                ax.plot(
                    [v for _, v in paper],
                    [position] * len(paper),
                    color=colour,
                    ls="none",
                    marker="o",
                    mfc="none",
                    ms=7,
                )
            drew_paper = drew_paper or bool(paper)
        ax.set_title(_modality_header(modality))
        ax.grid(alpha=0.3)
        ax.set_yticks(range(len(methods)), methods)
        ax.set_ylim(len(methods) - 0.5, -0.5)
        ax.set_xlim(0, 1)
        ax.set_xlabel(panels.axis_label)
    fig.suptitle(_with_stamp(f"{panels.dataset}: {panels.quantity} at {fraction * 100:g}% labeled", panels.stamped))
    handles, labels = [], []
    if drew_paper:
        handles, labels = (
            [plt.Line2D([], [], color="grey", ls="none", marker="o", mfc="none")],
            [f"{PAPER_LABEL} (open marker)"],
        )
    return _finish(fig, handles, labels)


def _finish(fig: Any, handles: list, labels: list[str]) -> Any:
    """The legend to the right of the panels (when there is one), and a tight layout."""
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
