"""Generic pieces of the notebooks' widgets: a matplotlib figure as a PNG for an image
widget, a dropdown that switches between views, and a picker of methods for the
comparison table and plot.

Every widget here is built from data a run already wrote, so a papermill run just renders
its initial state (the notebooks save their figures with
:func:`~workbench.viz.export.save_figure` as well). Figures drawn for a widget are closed
after rendering, so that the inline backend does not show them a second time.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import ipywidgets
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["figure_png", "switcher", "methods_explorer"]

#: resolution of the PNGs that image widgets show (screen, not print)
WIDGET_DPI = 100


def figure_png(figure: Figure, dpi: int = WIDGET_DPI) -> bytes:
    """The figure as PNG bytes (white background), for ``ipywidgets.Image(value=...)``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def switcher(views: Mapping[str, Callable[[], Any]], description: str, value: str | None = None) -> ipywidgets.VBox:
    """A Dropdown over named views; each view is built on its first choice and kept.

    Args:
        views: name -> a function returning a widget (or anything ipywidgets can display
            as a child: a plotly ``FigureWidget``, an ``Image``, ...).
        description: the dropdown's label, e.g. ``"teacher"`` or ``"dataset"``.
        value: the view shown first; default the first name.

    Returns:
        ``VBox([Dropdown, view])``; ``box.children[0].value = name`` shows view ``name``.
        ``box.views`` holds the views built so far (name -> widget).

    Raises:
        ValueError: no views, or ``value`` is not one of them.
    """
    import ipywidgets as widgets

    names = list(views)
    if not names:
        raise ValueError("switcher: no views to choose from")
    value = names[0] if value is None else value
    if value not in views:
        raise ValueError(f"switcher: {value!r} is not a view; choose one of: {', '.join(names)}")
    built: dict[str, Any] = {}

    def view(name: str) -> Any:
        if name not in built:
            built[name] = views[name]()
        return built[name]

    dropdown = widgets.Dropdown(options=names, value=value, description=description)
    box = widgets.VBox([dropdown, view(value)])

    def switch(change) -> None:
        box.children = (dropdown, view(change["new"]))

    dropdown.observe(switch, names="value")
    box.views = built
    return box


def methods_explorer(rows: pd.DataFrame, title: str = "per-patient DSC (dashed: {reference})") -> ipywidgets.VBox:
    """A multi-select of the methods in ``rows`` that redraws the comparison table
    (:func:`~workbench.viz.compare.methods_table`) and plot
    (:func:`~workbench.viz.compare.plot_methods_dsc`) for the chosen ones.

    Args:
        rows: per-patient rows with a ``method`` column (``collect_runs`` /
            ``workbench.reproduce.collect_rows``).
        title: the plot's title; ``{reference}`` is replaced by the first chosen method,
            the one drawn as the dashed line.

    Returns:
        ``VBox([SelectMultiple, HTML table, Image plot])``, all methods chosen;
        ``box.children[0].value = ("a", "b")`` (``box.select``) redraws both for methods a
        and b, in the order of ``rows`` whatever the order of the clicks. ``box.table`` is
        the shown table (a DataFrame) and ``box.figure`` the shown figure; both None when
        nothing is chosen.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from workbench.viz.compare import methods_table, plot_methods_dsc
    from workbench.viz.style import method_colours

    methods = list(dict.fromkeys(rows["method"]))
    colours = method_colours(methods)  # fixed for every subset: a method keeps its colour
    if not methods:
        raise ValueError("methods_explorer: no rows")
    select = widgets.SelectMultiple(
        options=methods,
        value=tuple(methods),
        rows=min(len(methods), 10),
        description="methods",
        tooltip="ctrl- or shift-click to choose several",
        layout={"width": "360px"},
    )
    table_html = widgets.HTML()
    image = widgets.Image(format="png", layout={"max_width": "100%"})
    box = widgets.VBox([select, table_html, image])

    def redraw(change=None) -> None:
        chosen = [m for m in methods if m in select.value]
        if not chosen:
            box.table = box.figure = None
            table_html.value = "<i>no method chosen: choose at least one</i>"
            image.layout.display = "none"
            return
        subset = rows[rows["method"].isin(chosen)]
        table = methods_table(subset)
        figure = plot_methods_dsc(subset, title=title.format(reference=chosen[0]), colours=colours)
        table_html.value = table.round(3).to_html(na_rep="")
        image.value = figure_png(figure)
        image.layout.display = None
        plt.close(figure)
        box.table, box.figure = table, figure

    select.observe(redraw, names="value")
    redraw()
    box.select = select
    return box
