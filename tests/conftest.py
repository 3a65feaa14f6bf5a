"""Shared fixtures: tiny built-in datasets generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


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

    values = dict(method="supervised", data=str(data), labeled=0.4, epochs=3, steps_per_epoch=2, batch_size=4,
                  base_channels=4, size=32, eval_batch_size=16)
    values.update(overrides)
    return TrainConfig(**values)
