import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from workbench.viz import export
from workbench.viz.asc import asc_heatmap
from workbench.viz.export import FigureExportWarning, find_browser, plotly_backend, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _browser() -> str | None:
    try:
        return find_browser()
    except RuntimeError:
        return None


needs_browser = pytest.mark.skipif(
    _browser() is None, reason="no Chrome/Chromium for kaleido (apt-get install chromium)"
)


def _matrix(n=6, seed=0):
    m = np.random.default_rng(seed).random((n, n))
    return (m + m.T) / 2


def _pixels(path):
    assert path.read_bytes()[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _line_figure():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2], [0, 1, 0.5], color="crimson")
    ax.set_title("a line")
    return fig


def test_matplotlib_png_at_120_dpi_trimmed(tmp_path):
    fig = _line_figure()
    path = save_figure(fig, tmp_path / "sub" / "line")
    plt.close(fig)
    assert path == tmp_path / "sub" / "line.png"
    pixels = _pixels(path)
    height, width, _ = pixels.shape
    assert width <= 4 * 120 and height <= 3 * 120 and width > 300  # tight bbox trims the white margin
    assert pixels.std() > 10, "the picture is not blank"
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 100)
    assert red.sum() > 50, "the crimson line was drawn"


def test_matplotlib_exact_size_and_figure_size_restored(tmp_path):
    fig = _line_figure()
    path = save_figure(fig, tmp_path / "line.png", width=300, height=200)
    assert Image.open(path).size == (300, 200)
    assert tuple(fig.get_size_inches()) == (4, 3)
    plt.close(fig)


def test_suffixes(tmp_path):
    fig = _line_figure()
    assert save_figure(fig, tmp_path / "a.html").name == "a.png"
    assert save_figure(fig, tmp_path / "run.1").name == "run.1.png"
    plt.close(fig)
    with pytest.raises(TypeError, match="expected a matplotlib or plotly figure, got list"):
        save_figure([1, 2], tmp_path / "x")


@needs_browser
def test_plotly_png_of_the_requested_size_plus_html(tmp_path):
    path = save_figure(asc_heatmap(_matrix(), ("t1", "flair"), "epoch 1"), tmp_path / "asc.png", width=400, height=300)
    assert path == tmp_path / "asc.png"
    pixels = _pixels(path)
    assert pixels.shape[:2] == (300, 400)
    assert pixels.std() > 10
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 80) & (pixels[..., 2] < 100)
    blue = (pixels[..., 2] > 120) & (pixels[..., 0] < 100)
    assert red.sum() > 50 and blue.sum() > 1000, "positive-pair outlines and blue heatmap cells were drawn"
    html = (tmp_path / "asc.html").read_text()
    assert "plotly.min.js" in html and (tmp_path / "plotly.min.js").stat().st_size > 1_000_000  # opens offline


@needs_browser
def test_plotly_default_size_is_the_layouts_and_one_browser_serves_all(tmp_path):
    backend = plotly_backend()
    save_figure(go.Figure(go.Scatter(x=[0, 1, 2], y=[1, 3, 2])), tmp_path / "warm")  # starts the browser if needed
    browser, renders = backend._kaleido, len(backend.seconds)
    widget = go.FigureWidget(asc_heatmap(_matrix(4), ("ct", "pet")))
    path = save_figure(widget, tmp_path / "widget")
    assert Image.open(path).size == (widget.layout.width, widget.layout.height)
    save_figure(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])), tmp_path / "bar")
    assert Image.open(tmp_path / "bar.png").size == (700, 500)  # plotly's default
    assert backend._kaleido is browser and len(backend.seconds) == renders + 2
    assert max(backend.seconds[-2:]) < 10, f"a render with a warm browser took {backend.seconds[-2:]} s"


@pytest.fixture
def fresh_backend(monkeypatch):
    """save_figure with a new, not yet started browser (the shared one is restored after)."""
    monkeypatch.setattr(export, "_backend", None)
    yield
    export.close_plotly_backend()


def test_no_chromium_gives_html_and_one_warning(tmp_path, monkeypatch, fresh_backend):
    from choreographer.browsers.chromium import Chromium

    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kwargs: None))
    with pytest.warns(FigureExportWarning) as caught:
        path = save_figure(asc_heatmap(_matrix()), tmp_path / "asc")
    assert len(caught) == 1
    assert str(caught[0].message) == (
        "no PNG for asc.png (RuntimeError: no Chrome/Chromium found (Debian: apt-get install chromium)); "
        "wrote asc.html only"
    )
    assert path == tmp_path / "asc.html" and path.is_file() and not (tmp_path / "asc.png").exists()
    with pytest.warns(FigureExportWarning, match="no Chrome/Chromium found"):  # not retried, same reason
        save_figure(asc_heatmap(_matrix()), tmp_path / "again")


def test_bad_browser_path_is_named(tmp_path, monkeypatch, fresh_backend):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-chrome"))
    with pytest.warns(FigureExportWarning, match=r"BROWSER_PATH='.*no-such-chrome' is not a file"):
        assert save_figure(go.Figure(), tmp_path / "empty").suffix == ".html"


def test_failed_render_leaves_no_partial_png(tmp_path, monkeypatch, fresh_backend):
    def broken(*args, **kwargs):
        raise TimeoutError("render took too long")

    monkeypatch.setattr(plotly_backend(), "render", broken)
    with pytest.warns(FigureExportWarning, match=r"no PNG for fig.png \(TimeoutError: render took too long\)"):
        path = save_figure(go.Figure(), tmp_path / "fig")
    assert path.suffix == ".html" and not (tmp_path / "fig.png").exists()
