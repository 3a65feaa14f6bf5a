"""Notebook 04, executed and exported to HTML, draws its plotly figures in a real browser, offline."""

from pathlib import Path

import pytest

from tests.browser.conftest import NOTEBOOKS, needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]


def _executed_html(run_dir: Path, tmp_path: Path) -> Path:
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    executed = tmp_path / "04_asc_explorer.ipynb"
    pm.execute_notebook(
        str(NOTEBOOKS / executed.name),
        str(executed),
        kernel_name="python3",
        cwd=str(tmp_path),
        parameters={"run_dir": str(run_dir), "out_dir": str(tmp_path / "out")},
        progress_bar=False,
    )
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(executed, as_version=4))
    html = tmp_path / "04_asc_explorer.html"
    html.write_text(body, encoding="utf-8")
    return html


def test_exported_notebook_draws_the_plotly_heatmaps_offline(asc_run, chromium, tmp_path):
    html = _executed_html(asc_run, tmp_path)
    assert html.stat().st_size > 1_000_000, "plotly.js is embedded in the page (the 'notebook' renderer)"
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    # offline, as a reader without network would be: the template's CDN scripts fail at once
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(html.as_uri(), wait_until="load", timeout=60_000)
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)

    plots = page.locator(".js-plotly-plot")
    assert plots.count() == 2, "the first- and last-epoch heatmaps (fig.show())"
    titles = [plots.nth(i).locator(".gtitle").text_content() for i in range(2)]
    # first line; a second one says when the logged predictions hold no tumour
    assert [t.startswith(f"ASC Dice-similarity matrix, epoch {e}") for t, e in zip(titles, (1, 3))] == [True, True]
    for i in range(2):
        plot = plots.nth(i)
        image = plot.locator(".heatmaplayer image")
        assert image.count() == 1 and image.get_attribute("href").startswith("data:image/png")
        assert plot.locator(".scatterlayer .point").count() == 6, "the 2K positive-pair outlines"
        assert plot.locator(".colorbar").count() == 1
        box = plot.bounding_box()
        assert box["width"] > 400 and box["height"] > 400
    assert not [e for e in errors if "Plotly" in e], errors
    plots.nth(1).screenshot(path=str(tmp_path / "heatmap.png"))
