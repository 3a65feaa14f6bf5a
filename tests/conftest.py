"""Shared fixtures: tiny built-in datasets generated once per test session."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# Tiny tensors: one thread is as fast, and many threads collapse when other jobs share the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def brats_dir(tmp_path_factory) -> Path:
    from workbench.data.synthetic import generate

    out = tmp_path_factory.mktemp("data") / "brats"
    generate("brats", out, 6, seed=0)
    return out


@pytest.fixture(scope="session")
def hecktor_dir(tmp_path_factory) -> Path:
    from workbench.data.synthetic import generate

    out = tmp_path_factory.mktemp("data") / "hecktor"
    generate("hecktor", out, 5, seed=0)
    return out


def tiny_config(data: Path, **overrides):
    """A TrainConfig that trains in seconds on CPU."""
    from workbench.train import TrainConfig

    values = dict(
        method="supervised",
        data=str(data),
        labeled=0.4,
        epochs=3,
        steps_per_epoch=2,
        batch_size=4,
        base_channels=4,
        size=32,
        eval_batch_size=16,
    )
    values.update(overrides)
    return TrainConfig(**values)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real headless Chromium (Playwright); skipped without one")


@contextlib.contextmanager
def virtual_display(size: str = "1280x1024x24"):
    """Start ``Xvfb`` on a free display number (``-displayfd``); yield ``":N"``; stop it."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb): napari screenshots need an X server")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 20)
        number = os.read(read_fd, 16).decode().strip() if ready else ""
        if not number:
            proc.kill()
            raise RuntimeError(f"Xvfb did not start: {proc.communicate()[1].decode()[-500:]}")
        yield f":{number}"
    finally:
        os.close(read_fd)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_with_display(display: str, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """``python args...`` in the repo root with ``DISPLAY`` set."""
    env = {**os.environ, "DISPLAY": display}
    env.pop("QT_QPA_PLATFORM", None)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
