"""Notebook 04 in a real JupyterLab: run all cells, move the epoch slider, see the heatmap change."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import NOTEBOOKS, needs_chromium, open_and_run_all
from workbench.viz.asc import asc_matrices, epoch_title

pytestmark = [pytest.mark.browser, needs_chromium]
NAME = "04_asc_explorer.ipynb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(run_dir: Path, folder: Path) -> None:
    """Notebook 04 with papermill's injected parameters: read ``run_dir`` instead of training."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = parameterize_notebook(
        load_notebook_node(str(NOTEBOOKS / NAME)), {"run_dir": str(run_dir), "out_dir": str(folder / "out")}
    )
    nbformat.write(nb, folder / NAME)


class JupyterLab:
    """``jupyter lab`` in a subprocess with its own config/runtime/settings folders."""

    def __init__(self, root: Path, state: Path) -> None:
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            **{
                k: str(state / k.lower())
                for k in (
                    "JUPYTER_CONFIG_DIR",
                    "JUPYTER_DATA_DIR",
                    "JUPYTER_RUNTIME_DIR",
                    "JUPYTERLAB_SETTINGS_DIR",
                    "JUPYTERLAB_WORKSPACES_DIR",
                )
            },
        }
        # no "get notified about Jupyter news?" toast over the notebook
        settings = state / "jupyterlab_settings_dir" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        self.log = open(state / "server.log", "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--allow-root",
                f"--port={self.port}",
                "--ip=127.0.0.1",
                f"--ServerApp.token={self.token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.expose_app_in_browser=True",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            cwd=root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(
            f"{self.url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}; see {self.log.name}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"jupyter lab did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        """Shut down via the API (kernels included), then make sure the process is gone."""
        try:
            self.api("shutdown", method="POST")
            self.process.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture
def lab(asc_run, tmp_path):
    root, state = tmp_path / "notebooks", tmp_path / "state"
    root.mkdir(), state.mkdir()
    _prepare(asc_run, root)
    server = JupyterLab(root, state)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


def _shown_z(page) -> np.ndarray:
    """The z matrix the explorer's plotly figure draws (as plotly.js holds it in the page)."""
    z = page.evaluate("document.querySelector('.widget-vbox .js-plotly-plot')._fullData[0].z")
    return np.array(z, dtype=float)  # null (the diagonal gap) -> nan


def _expected_z(matrix) -> np.ndarray:
    shown = np.array(matrix, dtype=float)
    np.fill_diagonal(shown, np.nan)
    return shown


def test_epoch_slider_redraws_the_heatmap_in_jupyterlab(lab, asc_run, chromium, tmp_path):
    matrices = asc_matrices(asc_run)
    page = open_and_run_all(chromium, lab, NAME, 90_000)

    # the widgets rendered: the slider and the plotly FigureWidget in one VBox; the notebook's
    # last cell moved the slider to the last epoch from Python
    explorer = page.locator(".widget-vbox").filter(has=page.locator(".js-plotly-plot"))
    assert explorer.count() == 1
    handle = explorer.locator(".widget-slider .noUi-handle")
    readout = explorer.locator(".widget-readout")
    title = explorer.locator(".js-plotly-plot .gtitle")
    assert explorer.locator(".js-plotly-plot .heatmaplayer image").count() == 1
    # the title's first line (a second one says when the logged predictions hold no tumour)
    assert readout.text_content().strip() == "3" and title.text_content().startswith(epoch_title(3))
    np.testing.assert_allclose(_shown_z(page), _expected_z(matrices[3]))

    handle.focus()
    page.keyboard.press("ArrowLeft")  # one epoch back, as a student would
    page.wait_for_function(
        "t => document.querySelector('.widget-vbox .js-plotly-plot .gtitle')?.textContent.startsWith(t)",
        arg=epoch_title(2),
    )
    assert readout.text_content().strip() == "2"
    np.testing.assert_allclose(_shown_z(page), _expected_z(matrices[2]))
    assert not np.allclose(_expected_z(matrices[2]), _expected_z(matrices[3]), equal_nan=True)
    explorer.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "lab.png"))
