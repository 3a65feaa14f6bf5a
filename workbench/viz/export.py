"""Static copies of figures for a run folder: PNG for matplotlib and plotly alike.

Plotly figures (``go.Figure`` and ``go.FigureWidget``) are rendered by kaleido 1.x, which
drives a headless Chrome/Chromium. One browser is started on the first plotly export and
reused for every later one (about 0.2-0.5 s a figure instead of a few seconds). Each plotly
figure also gets an interactive ``.html`` next to its PNG; the HTML files of one folder share
one ``plotly.min.js`` copied there, so they open offline.

The browser is, in order: the ``BROWSER_PATH`` environment variable, kaleido's own download
(``kaleido_get_chrome``), then Chrome/Chromium on ``PATH`` or at the usual places
(``/usr/bin/chromium`` on Debian). It runs headless, without sandbox (we may be root), GPU or
background networking (a closed network would otherwise leave it waiting on refused
connections). When no browser is found or rendering fails, only the ``.html`` is written and
one :class:`FigureExportWarning` says why there is no PNG.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["save_figure", "FigureExportWarning", "find_browser", "plotly_backend", "close_plotly_backend"]

DPI = 120  # matplotlib PNGs
RENDER_TIMEOUT_S = 60.0  # first render includes the browser start (~4 s on 2 cores)
EXTRA_CHROMIUM_FLAGS = ("--disable-background-networking", "--disable-quic")


class FigureExportWarning(UserWarning):
    """A figure was saved without its PNG (the message says why)."""


def save_figure(fig: Any, path: str | Path, *, width: int | None = None, height: int | None = None) -> Path:
    """Save a matplotlib or plotly figure as a PNG (plotly: plus an interactive HTML).

    Args:
        fig: a matplotlib ``Figure``, or a plotly ``go.Figure`` / ``go.FigureWidget``.
        path: the file to write, with or without ``.png`` (``.html`` is also stripped); any
            other suffix is kept as part of the name. Missing folders are created.
        width, height: the PNG's size in pixels. Plotly: default to the figure's layout size
            (else plotly's 700 x 500). Matplotlib: if given, the figure is drawn at exactly that
            size (its own size is restored afterwards); if not, its own size at 120 dpi with
            the white margins trimmed.

    Returns:
        The PNG's path; for a plotly figure that could not be rendered, the HTML's path
        (and a :class:`FigureExportWarning` saying why).

    Example::

        save_figure(asc_heatmap(matrix), out / "asc_epoch_3")  # asc_epoch_3.png + .html
    """
    stem = Path(path)
    if stem.suffix.lower() in (".png", ".html"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    png = stem.with_name(stem.name + ".png")
    if _is_plotly(fig):
        return _save_plotly(fig, png, width, height)
    if hasattr(fig, "savefig"):
        _save_matplotlib(fig, png, width, height)
        return png
    raise TypeError(f"save_figure: expected a matplotlib or plotly figure, got {type(fig).__name__}")


def _is_plotly(fig: Any) -> bool:
    try:
        from plotly.basedatatypes import BaseFigure
    except ImportError:
        return False
    return isinstance(fig, BaseFigure)


def _save_matplotlib(fig, png: Path, width: int | None, height: int | None) -> None:
    if width is None and height is None:
        fig.savefig(png, dpi=DPI, bbox_inches="tight", facecolor="white")
        return
    old = fig.get_size_inches()
    w_px, h_px = (old * DPI).round()
    fig.set_size_inches((width or w_px) / DPI, (height or h_px) / DPI)
    try:
        fig.savefig(png, dpi=DPI, facecolor="white")
    finally:
        fig.set_size_inches(old)


def _save_plotly(fig, png: Path, width: int | None, height: int | None) -> Path:
    html = png.with_suffix(".html")
    fig.write_html(html, include_plotlyjs="directory", full_html=True)
    width = width or fig.layout.width or 700
    height = height or fig.layout.height or 500
    try:
        png.write_bytes(plotly_backend().render(fig, width, height))
    except Exception as err:  # noqa: BLE001 - any failure means: keep the HTML, say why
        png.unlink(missing_ok=True)
        warnings.warn(
            f"no PNG for {png.name} ({_reason(err)}); wrote {html.name} only", FigureExportWarning, stacklevel=3
        )
        return html
    return png


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else 'no message'}"


class _PlotlyBackend:
    """One kaleido browser on a private event loop thread, reused for every figure."""

    def __init__(self) -> None:
        self.browser: str | None = None
        self.error: Exception | None = None  # a failed start is not retried
        self.seconds: list[float] = []  # time of each render, for reports
        self._kaleido = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def render(self, fig, width: int, height: int) -> bytes:
        with self._lock:
            self._start()
            start = time.perf_counter()
            opts = {"format": "png", "width": int(width), "height": int(height), "scale": 1}
            data = self._call(self._kaleido.calc_fig(fig.to_dict(), opts=opts))
            self.seconds.append(time.perf_counter() - start)
            return data

    def _start(self) -> None:
        if self.error is not None:
            raise self.error
        if self._kaleido is not None:
            return
        try:
            self.browser = find_browser()
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="kaleido", daemon=True).start()
            self._kaleido = self._call(self._open(self.browser))
            atexit.register(self.close)
        except Exception as err:
            self.error = err
            self.close()
            raise

    async def _open(self, browser: str):
        import kaleido
        from choreographer.browsers.chromium import Chromium

        class QuietChromium(Chromium):
            def get_cli(self):
                return [*super().get_cli(), *EXTRA_CHROMIUM_FLAGS]

        k = kaleido.Kaleido(path=browser, browser_cls=QuietChromium, mathjax=False, timeout=RENDER_TIMEOUT_S)
        await k.open()
        return k

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(RENDER_TIMEOUT_S)

    def close(self) -> None:
        """Stop the browser (also at interpreter exit)."""
        if self._kaleido is not None:
            try:
                self._call(self._kaleido.close())
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
            self._kaleido = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None


def find_browser() -> str:
    """The Chrome/Chromium kaleido will use (module docstring); RuntimeError if none."""
    if path := os.environ.get("BROWSER_PATH"):
        if not Path(path).is_file():
            raise RuntimeError(f"BROWSER_PATH={path!r} is not a file")
        return path
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError as err:
        raise RuntimeError(f"kaleido is not installed ({err})") from None
    path = Chromium.find_browser(skip_local=False)
    if not path:
        raise RuntimeError("no Chrome/Chromium found (Debian: apt-get install chromium)")
    return path


_backend: _PlotlyBackend | None = None


def plotly_backend() -> _PlotlyBackend:
    """The shared kaleido browser (started on first use; ``.seconds`` holds render times)."""
    global _backend
    if _backend is None:
        _backend = _PlotlyBackend()
    return _backend


def close_plotly_backend() -> None:
    """Stop the shared browser; the next plotly export starts a new one."""
    global _backend
    if _backend is not None:
        _backend.close()
        _backend = None
