"""Shared by the real-browser tests: the browser, its flags and a tiny Semi-CML run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_config
from workbench.viz.export import find_browser

# Headless, as root, on a closed network: without the background-networking flags Chromium
# keeps retrying refused connections.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def chromium_path() -> str | None:
    """BROWSER_PATH, else the Chrome/Chromium kaleido would use (/usr/bin/chromium on Debian)."""
    try:
        return find_browser()
    except RuntimeError:
        return None


needs_chromium = pytest.mark.skipif(chromium_path() is None,
                                    reason="no Chromium for Playwright (apt-get install chromium, or set BROWSER_PATH)")


@pytest.fixture
def chromium():
    """A headless Chromium driven by Playwright (its own browser downloads are not needed)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
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
