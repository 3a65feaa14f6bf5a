"""workbench.viz.translation: the Multi-ConDoS translation grid, from a run folder's samples/."""

import matplotlib
import numpy as np
import pytest

from workbench.errors import ConfigError
from workbench.viz.translation import plot_translations

matplotlib.use("Agg")


def _samples(run, epochs=(1, 2, 3)):
    (run / "samples").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for epoch in epochs:
        arrays = {
            name: rng.normal(size=(2, 8, 8)).astype(np.float32) + epoch
            for name in ("t1", "flair", "t1_to_flair", "t1_to_flair_to_t1", "flair_to_t1", "flair_to_t1_to_flair")
        }
        np.savez(run / "samples" / f"epoch_{epoch:04d}.npz", **arrays)
    return run


def test_first_and_last_epoch_in_rows_and_the_six_images_in_columns(tmp_path):
    run = _samples(tmp_path / "pre")
    fig = plot_translations(run, sample=1)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["t1", "t1 -> flair", "t1 -> flair -> t1", "flair", "flair -> t1", "flair -> t1 -> flair"] * 2
    assert [fig.axes[0].get_ylabel(), fig.axes[6].get_ylabel()] == ["epoch 1", "epoch 3"]
    data = np.load(run / "samples" / "epoch_0003.npz")
    shown = fig.axes[7].get_images()[0].get_array()
    assert np.allclose(shown, data["t1_to_flair"][1].T)  # second row = last epoch, sample 1
    # a translation into FLAIR is drawn in the real FLAIR's grey range
    assert fig.axes[7].get_images()[0].get_clim() == pytest.approx((data["flair"][1].min(), data["flair"][1].max()))


def test_chosen_epochs_and_clear_errors(tmp_path):
    run = _samples(tmp_path / "pre")
    assert len(plot_translations(run, epochs=[2]).axes) == 6
    with pytest.raises(ConfigError, match=r"no translations saved for epoch\(s\) \[7\]; saved: \[1, 2, 3\]"):
        plot_translations(run, epochs=[7])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no samples/epoch_"):
        plot_translations(tmp_path / "empty")
