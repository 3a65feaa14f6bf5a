import matplotlib.pyplot as plt
import pytest

from workbench.events import EventLog
from workbench.viz.curves import plot_training_curves, steering_label


def _run(tmp_path, on="val", test_curve=False):
    """A hand-written PReL-like log: stage 1 logs sup_t1 / asc, stage 2 rel_t1 only."""
    log = EventLog(tmp_path / "events.jsonl")
    for epoch in range(1, 5):
        losses = {"loss": 1.0 / epoch, "sup_t1": 0.5, "asc": 0.2} if epoch < 3 else {"loss": 0.3, "rel_t1": 0.1}
        log.write("train", epoch=epoch, step=epoch * 2, lr=1e-3, **losses)
        val = {"epoch": epoch, "step": epoch * 2, "dsc": {"t1": 0.1 * epoch, "flair": 0.2 * epoch}}
        log.write("val", **val, **({"on": on} if on else {}))
        if test_curve:
            log.write(
                "test_curve",
                epoch=epoch,
                step=epoch * 2,
                dsc={"t1": 0.05 * epoch, "flair": 0.15 * epoch},
                note="test (not used in training)",
            )
    log.close()
    return tmp_path


def test_curves_plot_every_loss_where_it_exists(tmp_path):
    fig = plot_training_curves(_run(tmp_path))
    losses = {line.get_label(): line.get_xdata().tolist() for line in fig.axes[0].lines}
    assert losses == {"loss": [1, 2, 3, 4], "sup_t1": [1, 2], "asc": [1, 2], "rel_t1": [3, 4]}
    plt.close(fig)


@pytest.mark.parametrize(
    "on, words",
    [
        ("val", "validation DSC"),
        ("train", "training-accuracy"),
        ("test", "test feedback (paper protocol)"),
        (None, "earlier protocol"),
    ],
)
def test_the_dsc_panel_says_what_steered_training(tmp_path, on, words):
    run = _run(tmp_path, on=on)
    assert words in steering_label(run)
    fig = plot_training_curves(run)
    assert words in fig.axes[1].get_legend().get_title().get_text()
    plt.close(fig)


def test_test_curve_is_dashed_and_labelled_not_used_in_training(tmp_path):
    fig = plot_training_curves(_run(tmp_path, test_curve=True))
    dashed = [line for line in fig.axes[1].lines if line.get_linestyle() == "--"]
    assert sorted(line.get_label() for line in dashed) == [
        "flair: test (not used in training)",
        "t1: test (not used in training)",
    ]
    plt.close(fig)
