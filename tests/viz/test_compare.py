"""workbench.viz.compare: the methods table (mean over patients, then mean ± std over seeds) and its plots."""

import json

import matplotlib
import numpy as np
import pytest

from workbench.errors import ConfigError
from workbench.viz.compare import collect_runs, methods_table, plot_methods_dsc, plot_val_curves

matplotlib.use("Agg")


def _fake_run(path, seed, dsc_by_modality, val=None):
    """A finished run folder: per_patient.csv (two patients), config.json, events.jsonl."""
    path.mkdir(parents=True)
    lines = ["case_id,modality,dsc,sens,hd95"]
    for modality, values in dsc_by_modality.items():
        for i, value in enumerate(values):
            lines.append(f"P{i},{modality},{value},{value / 2},{10 * (i + 1)}")
    (path / "per_patient.csv").write_text("\n".join(lines) + "\n")
    (path / "config.json").write_text(json.dumps({"config": {"seed": seed}}))
    events = [{"event": "val", "epoch": e + 1, "step": 0, "dsc": d} for e, d in enumerate(val or [])]
    (path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


@pytest.fixture
def runs(tmp_path):
    return {
        "sup": [
            _fake_run(
                tmp_path / "sup-s0",
                0,
                {"t1": [0.2, 0.4], "flair": [0.8, 0.8]},
                val=[{"t1": 0.1, "flair": 0.5}, {"t1": 0.3, "flair": 0.8}],
            )
        ],
        "semi": [
            _fake_run(
                tmp_path / "semi-s0", 0, {"t1": [0.5, 0.7], "flair": [0.9, 0.7]}, val=[{"t1": 0.2, "flair": 0.6}]
            ),
            _fake_run(tmp_path / "semi-s1", 1, {"t1": [0.3, 0.3], "flair": [0.8, 0.8]}),
        ],
    }


def test_table_is_mean_over_patients_then_mean_and_std_over_seeds(runs):
    rows = collect_runs(runs)
    assert len(rows) == 12 and set(rows["seed"]) == {0, 1}
    table = methods_table(rows)
    assert list(table.index) == [("sup", "t1"), ("sup", "flair"), ("semi", "t1"), ("semi", "flair")]
    assert table.loc[("sup", "t1"), "seeds"] == 1
    assert table.loc[("sup", "t1"), "dsc"] == pytest.approx(0.3)
    assert np.isnan(table.loc[("sup", "t1"), "dsc_std"])  # one seed: no sample std
    # semi t1: seed 0 mean 0.6, seed 1 mean 0.3 -> 0.45 ± 0.212 (sample std over seeds, ddof 1)
    assert table.loc[("semi", "t1"), "seeds"] == 2
    assert table.loc[("semi", "t1"), "dsc"] == pytest.approx(0.45)
    assert table.loc[("semi", "t1"), "dsc_std"] == pytest.approx(0.15 * np.sqrt(2))
    assert table.loc[("semi", "t1"), "sens"] == pytest.approx(0.225)
    assert table.loc[("semi", "flair"), "hd95"] == pytest.approx(15.0)


def test_missing_results_name_the_folder(tmp_path):
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(ConfigError, match="unfinished: no per_patient.csv"):
        collect_runs({"x": tmp_path / "unfinished"})
    with pytest.raises(ConfigError, match="no runs"):
        collect_runs({})


def test_plots_have_one_panel_per_modality(runs):
    rows = collect_runs(runs)
    fig = plot_methods_dsc(rows)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["t1", "flair"]
    bars = [patch.get_height() for patch in panels[0].patches]
    assert np.allclose(bars, [0.3, 0.45])  # the bar is the mean of all dots
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["sup", "semi"]

    curves = plot_val_curves({label: dirs[0] for label, dirs in runs.items()})
    t1 = curves.axes[0]
    assert t1.get_title() == "t1" and len(t1.lines) == 2
    assert list(t1.lines[0].get_ydata()) == [0.1, 0.3]


def test_curves_need_val_events(tmp_path):
    run = _fake_run(tmp_path / "r", 0, {"t1": [0.5]})
    with pytest.raises(ConfigError, match="no run has 'val' events"):
        plot_val_curves({"r": run})


def test_a_method_has_one_colour_in_the_bar_plot_and_the_curves(runs):
    from matplotlib.colors import to_hex

    from workbench.viz.style import method_colours

    rows = collect_runs(runs)
    bars = plot_methods_dsc(rows).axes[0]
    bar_colour = {
        tick.get_text(): to_hex(patch.get_facecolor(), keep_alpha=False)
        for tick, patch in zip(bars.get_xticklabels(), bars.patches)
    }
    curves = plot_val_curves({label: dirs[0] for label, dirs in runs.items()}).axes[0]
    line_colour = {line.get_label(): to_hex(line.get_color()) for line in curves.lines}
    assert bar_colour == line_colour == method_colours(["sup", "semi"])
    assert len(set(bar_colour.values())) == 2
    # fixed colours pass through both
    fixed = {"semi": "#000000", "sup": "#ff0000"}
    bars = plot_methods_dsc(rows, colours=fixed).axes[0]
    assert [to_hex(p.get_facecolor(), keep_alpha=False) for p in bars.patches] == ["#ff0000", "#000000"]
    curves = plot_val_curves({label: dirs[0] for label, dirs in runs.items()}, colours=fixed).axes[0]
    assert [to_hex(line.get_color()) for line in curves.lines] == ["#ff0000", "#000000"]
