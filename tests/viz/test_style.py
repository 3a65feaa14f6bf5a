"""workbench.viz.style: one colour per method, and axis labels that say how many seeds."""

import matplotlib
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from workbench.viz.style import PALETTE, method_colours, spread_label

matplotlib.use("Agg")


def test_method_colours_follow_first_appearance_and_keep_given_ones():
    colours = method_colours(["sup", "semi", "sup", "cps"])
    assert list(colours) == ["sup", "semi", "cps"]
    assert list(colours.values()) == list(PALETTE[:3])
    assert len(set(PALETTE)) == 20
    # a given colour is kept and not handed to another method
    colours = method_colours(["a", "b", "c"], {"b": PALETTE[0]})
    assert colours["b"] == PALETTE[0] and PALETTE[0] not in (colours["a"], colours["c"])
    assert colours["a"] != colours["c"]


@pytest.mark.parametrize(
    "counts, label",
    [
        ([1, 1], "DSC (1 seed, no error bar)"),
        ([], "DSC (1 seed, no error bar)"),
        ([3, 3], "DSC (mean over 3 seeds ± sample std)"),
        ([1, 3], "DSC (mean over 1-3 seeds; ± sample std where > 1)"),
    ],
)
def test_spread_label_says_how_many_seeds(counts, label):
    assert spread_label("DSC", counts) == label


def _rows(seeds, fractions=(0.05, 0.1)):
    return pd.DataFrame(
        [
            {
                "dataset": "brats",
                "method": method,
                "labeled": f,
                "seed": s,
                "modality": m,
                "case_id": "a",
                "dsc": base + f + 0.1 * s,
                "sens": 0.5,
            }
            for method, base in [("Sup", 0.2), ("Semi-CML", 0.4)]
            for f in fractions
            for s in seeds
            for m in ("t1", "flair")
        ]
    )


def _error_bars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


@pytest.mark.parametrize("fractions", [(0.05, 0.1), (0.1,)])
def test_one_seed_is_labelled_as_one_seed_without_error_bars(fractions):
    import matplotlib.pyplot as plt

    from workbench.reproduce import plot_dsc_vs_labeled

    fig = plot_dsc_vs_labeled(_rows([0], fractions), "brats")
    ax = fig.axes[0]
    label = ax.get_xlabel() if len(fractions) == 1 else ax.get_ylabel()
    assert label == "DSC (1 seed, no error bar)" and "±" not in label
    assert _error_bars(ax) == []
    assert sum(len(line.get_xydata()) for line in ax.lines if line.get_marker() == "o") == 2 * len(fractions)
    plt.close(fig)

    fig = plot_dsc_vs_labeled(_rows([0, 1], fractions), "brats")
    ax = fig.axes[0]
    label = ax.get_xlabel() if len(fractions) == 1 else ax.get_ylabel()
    assert label == "DSC (mean over 2 seeds ± sample std)"
    assert len(_error_bars(ax)) == 2  # one per method
    plt.close(fig)


def test_curves_and_bars_of_notebook_09_share_the_method_colours():
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from workbench.reproduce import plot_dsc_vs_labeled
    from workbench.viz.compare import plot_methods_dsc

    rows = _rows([0])
    lines = plot_dsc_vs_labeled(rows, "brats").axes[0]
    line_colour = {line.get_label(): to_hex(line.get_color()) for line in lines.lines if line.get_marker() == "o"}
    bars = plot_methods_dsc(rows[rows["labeled"] == 0.1]).axes[0]
    bar_colour = {
        t.get_text(): to_hex(p.get_facecolor(), keep_alpha=False) for t, p in zip(bars.get_xticklabels(), bars.patches)
    }
    assert line_colour == bar_colour == method_colours(["Sup", "Semi-CML"])
    plt.close("all")
