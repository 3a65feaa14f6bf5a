"""Shared by the real-browser tests: the browser, its flags and a tiny Semi-CML run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_config
from workbench.viz.export import find_browser

# Headless, as root, on a closed network: without the background-networking flags Chromium
# keeps retrying refused connections.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def chromium_path() -> str | None:
    """BROWSER_PATH, else the Chrome/Chromium kaleido would use (/usr/bin/chromium on Debian)."""
    try:
        return find_browser()
    except RuntimeError:
        return None


needs_chromium = pytest.mark.skipif(
    chromium_path() is None, reason="no Chromium for Playwright (apt-get install chromium, or set BROWSER_PATH)"
)


def open_and_run_all(chromium, lab, name: str, timeout_ms: int, viewport=(1400, 1000)):
    """A page with notebook ``name`` of the JupyterLab ``lab`` open, its kernel connected, every
    cell run, and no stderr output; returns the page."""
    page = chromium.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.set_default_timeout(timeout_ms)
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}")
    page.wait_for_function("window.jupyterapp && document.querySelector('.jp-NotebookPanel .jp-Cell')")
    # wait for the notebook's kernel (kernelspec 'python3'), then Run > Run All Cells
    page.wait_for_function("""() => {
        const context = window.jupyterapp.shell.currentWidget?.sessionContext;
        return context?.session?.kernel?.connectionStatus === 'connected' && context.kernelDisplayStatus === 'idle';
    }""")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function("""() => window.jupyterapp.shell.currentWidget.content.widgets.every(
        c => c.model.type !== 'code' || (c.model.executionCount && !c.hasClass('jp-mod-running')))""")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_text_contents()
    return page


@pytest.fixture
def chromium():
    """A headless Chromium driven by Playwright (its own browser downloads are not needed)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def asc_run(brats_dir, tmp_path_factory) -> Path:
    """Three epochs of Semi-CML (2K = 6): notebook 04 reads it through ``run_dir`` instead of training."""
    from workbench.train import Trainer

    run = tmp_path_factory.mktemp("asc-run") / "run"
    trainer = Trainer(tiny_config(brats_dir, method="semi-cml", epochs=3, unlabeled_batch_size=3), run, quiet=True)
    trainer.fit()
    trainer.close()
    return run
