"""Notebook 01 in a real JupyterLab: run all cells, then scrub the slice explorer and switch its
dataset and patient; the image widget shows the redrawn figure each time."""

from __future__ import annotations

import pytest

from tests.browser.conftest import NOTEBOOKS, needs_chromium, open_and_run_all
from tests.browser.test_jupyterlab import JupyterLab

pytestmark = [pytest.mark.browser, needs_chromium]
NAME = "01_data_tour.ipynb"


@pytest.fixture
def lab(tmp_path):
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root, state = tmp_path / "notebooks", tmp_path / "state"
    root.mkdir(), state.mkdir()
    nb = parameterize_notebook(
        load_notebook_node(str(NOTEBOOKS / NAME)), {"patients": 3, "size": 32, "out_dir": str(root / "out")}
    )
    nbformat.write(nb, root / NAME)
    server = JupyterLab(root, state)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


def _options(select) -> list[str]:
    return select.locator("option").evaluate_all("options => options.map(o => o.value)")


def _changed(page, old_src: str) -> None:
    """Wait until the explorer's image shows another PNG (a new blob URL) and has loaded it."""
    page.wait_for_function(
        """old => {
        const img = document.querySelector('img.widget-image');
        return img && img.src !== old && img.complete && img.naturalWidth > 0;
    }""",
        arg=old_src,
    )


def test_slice_explorer_follows_its_slider_and_dropdowns_in_jupyterlab(lab, chromium, tmp_path):
    page = open_and_run_all(chromium, lab, NAME, 120_000)

    # the last cell chose hecktor (CT, PET: two panels) and moved the slider to z = 0
    image = page.locator("img.widget-image")
    assert image.count() == 1
    page.wait_for_function("document.querySelector('img.widget-image').naturalWidth > 0")
    selects = page.locator(".widget-dropdown select")
    assert selects.nth(0).input_value() == "hecktor"
    assert selects.nth(1).input_value() == _options(selects.nth(1))[0], "the first patient"
    readout = page.locator(".widget-slider .widget-readout")
    assert readout.text_content().strip() == "0"
    two_panels = image.evaluate("img => img.naturalWidth")

    src = image.get_attribute("src")
    page.locator(".widget-slider .noUi-handle").focus()
    page.keyboard.press("ArrowRight")  # one slice up, as a student would
    _changed(page, src)
    assert readout.text_content().strip() == "1"

    src = image.get_attribute("src")
    selects.nth(0).select_option("brats")  # T1, T1ce, T2, FLAIR: four panels, twice as wide
    _changed(page, src)
    assert image.evaluate("img => img.naturalWidth") == 2 * two_panels
    patient = page.locator(".widget-dropdown select").nth(1)
    first, second = _options(patient)[:2]
    assert first.startswith("BraTS") and patient.input_value() == first
    src = image.get_attribute("src")
    patient.select_option(second)  # the slider jumps to that patient's largest-tumour slice
    _changed(page, src)
    assert patient.input_value() == second and readout.text_content().strip().isdigit()
    image.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "lab_slices.png"))
