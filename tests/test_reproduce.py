"""workbench.reproduce: grid validation, running cells (skip, fail, resume), tables and the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from workbench.cli import main
from workbench.errors import ConfigError, DataError
from workbench.reproduce import (
    GridError,
    collect_rows,
    load_grid,
    load_paper_values,
    parse_claim,
    plan_cells,
    plot_dsc_vs_labeled,
    read_per_patient,
    reproduce,
    results_tables,
    shipped_grids,
    slugify,
)
from workbench.stats import TEST_FEEDBACK_STAMP, bootstrap_ci

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY_SETTINGS = {
    "epochs": 2,
    "steps_per_epoch": 2,
    "base_channels": 4,
    "size": 32,
    "batch_size": 4,
    "unlabeled_batch_size": 2,
}
TINY_DATA = {"name": "brats", "kind": "brats", "patients": 5}


def write_grid(path: Path, **overrides) -> Path:
    """A 2 methods x 2 fractions x 1 seed grid on 5 built-in patients, with ``overrides``."""
    grid = {
        "name": "tiny",
        "paper_table": "semi-cml-prel/table1",
        "datasets": [dict(TINY_DATA)],
        "methods": [
            {"label": "Sup", "method": "supervised", "paper": "Sup"},
            {"label": "Semi-CML", "method": "semi-cml", "options": {"variant": "sup+mse+asc"}},
        ],
        "labeled": [0.05, 0.1],
        "seeds": [0],
        "settings": dict(TINY_SETTINGS),
    }
    grid.update(overrides)
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


def with_data(out: Path, finished: Path) -> Path:
    """``out`` with the built-in data folder of ``finished`` copied in (no regeneration)."""
    out.mkdir(parents=True, exist_ok=True)
    for folder in finished.glob("data-*"):
        shutil.copytree(folder, out / folder.name)
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny grid run once, in 2 spawned worker processes; read, never changed, by the tests."""
    root = tmp_path_factory.mktemp("reproduce")
    grid = write_grid(root / "grid.yaml")
    report = reproduce(grid, root / "out", jobs=2, quiet=True)
    return root / "out", grid, report


# ------------------------------------------------------------------------------------ running
def test_grid_runs_end_to_end(finished):
    out, grid, report = finished
    assert report.counts() == {"trained": 4} and not report.failures
    assert sorted(p.name for p in out.glob("brats-*")) == [
        "brats-Semi-CML-l0.05-s0",
        "brats-Semi-CML-l0.1-s0",
        "brats-Sup-l0.05-s0",
        "brats-Sup-l0.1-s0",
    ]
    rows = pd.read_csv(out / "per_patient.csv")
    assert list(rows.columns[:6]) == ["dataset", "method", "labeled", "seed", "modality", "case_id"]
    assert {"dsc", "sens", "hd95", "asd", "biou"} <= set(rows.columns)
    assert len(rows) == 4 * 2  # 4 cells x 1 test patient x 2 modalities
    assert set(rows["labeled"]) == {0.05, 0.1} and set(rows["modality"]) == {"t1", "flair"}
    md = (out / "tables.md").read_text()
    assert "### brats, 5% labeled" in md and "### brats, 10% labeled" in md
    assert "| method | seeds | T1 DSC | T1 Sens | FLAIR DSC | FLAIR Sens |" in md
    assert md.index("## Protocol card") < md.index("### brats, 5% labeled")  # the card on top
    assert "- **what steered training**: validation patients (selection val)" in md
    comparison = md.split("*vs Sup: paired DSC")[1].split("###")[0]
    assert "| Semi-CML | 1 | " in comparison and "not decided (p = n/a)" in comparison  # 1 pair decides nothing
    # the paper's Sup row at 10% (Table 1, BraTS T1 / FLAIR), marked as real data
    assert '↳ *paper (real data): Table 1 "Sup"* | – | *0.2724* | *0.2597* | *0.4264* | *0.4410* |' in md
    html = (out / "tables.html").read_text()
    # the card, and per dataset x fraction the results table and the comparison with Sup
    assert html.count("<table") == 1 + 2 * 2 and "paper (real data)" in html and "FLAIR" in html
    assert "<h2>Protocol card</h2>" in html
    assert (out / "dsc_vs_labeled_brats.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "cells.csv").is_file() and (out / "grid.yaml").read_text() == grid.read_text()


def test_a_rerun_skips_finished_cells(finished):
    out, grid, _ = finished
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("brats-*/*") if p.is_file()}
    report = reproduce(grid, out, quiet=True)
    assert report.counts() == {"finished": 4}
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in stamps} == stamps  # no run folder touched


def test_a_failing_cell_is_reported_and_the_others_finish(finished, tmp_path, capsys):
    out = with_data(tmp_path / "out", finished[0])
    grid = write_grid(
        tmp_path / "grid.yaml",
        labeled=[0.1],
        methods=[
            {"label": "Sup", "method": "supervised"},
            {"label": "bad", "method": "semi-cml", "options": {"variant": "bogus"}},  # raises when built
        ],
    )
    assert main(["reproduce", "--grid", str(grid), "--out", str(out), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "FAILED brats-bad-l0.1-s0: unknown variant 'bogus'" in printed
    cells = pd.read_csv(out / "cells.csv").set_index("method")
    assert cells.at["Sup", "status"] == "trained" and cells.at["bad", "status"] == "failed"
    assert (out / "brats-Sup-l0.1-s0" / "metrics.json").is_file()
    assert "unknown variant 'bogus'" in (out / "brats-bad-l0.1-s0" / "error.log").read_text()
    md = (out / "tables.md").read_text()
    assert "## Failed cells" in md and "`brats-bad-l0.1-s0`: unknown variant 'bogus'" in md
    assert "| Sup | 1 |" in md and "| bad | 0 | – |" in md


def test_a_killed_cell_resumes_and_ends_like_an_uninterrupted_one(finished, tmp_path):
    from workbench.train import TrainConfig, Trainer

    out = with_data(tmp_path / "out", finished[0])
    grid = load_grid(finished[1])
    cell = next(c for c in plan_cells(grid, out) if c.key == "brats-Semi-CML-l0.1-s0")
    trainer = Trainer(TrainConfig.from_dict(cell.config), cell.run_dir, quiet=True)
    assert trainer.fit(stop_after=1) is None  # "killed" after epoch 1: a checkpoint, no metrics.json
    trainer.close()
    assert (cell.run_dir / "checkpoint.pt").is_file() and not (cell.run_dir / "metrics.json").exists()

    report = reproduce(grid, out, quiet=True)
    assert report.results[cell.key].status == "resumed"
    assert report.counts() == {"trained": 3, "resumed": 1}
    events = [json.loads(line)["event"] for line in (cell.run_dir / "events.jsonl").read_text().splitlines()]
    assert "resume" in events
    resumed = json.loads((cell.run_dir / "metrics.json").read_text())["per_patient"]
    straight = json.loads((finished[0] / cell.key / "metrics.json").read_text())["per_patient"]
    assert resumed == straight


def test_an_unreadable_checkpoint_is_recomputed(finished, tmp_path):
    out = with_data(tmp_path / "out", finished[0])
    grid = write_grid(tmp_path / "grid.yaml", labeled=[0.1], methods=[{"label": "Sup", "method": "supervised"}])
    run = out / "brats-Sup-l0.1-s0"
    run.mkdir()
    shutil.copy(finished[0] / "brats-Sup-l0.1-s0" / "config.json", run / "config.json")
    (run / "checkpoint.pt").write_bytes(b"truncated by a full disk")
    report = reproduce(grid, out, quiet=True)
    assert report.results[run.name].status == "restarted"

    def metrics(folder: Path) -> dict:  # the protocol names the data folder, which differs between the two
        record = json.loads((folder / "metrics.json").read_text())
        record.get("protocol", {}).get("data", {}).pop("folder", None)
        return record

    assert metrics(run) == metrics(finished[0] / run.name)


def test_a_run_folder_with_other_settings_is_not_overwritten(finished, tmp_path):
    out = with_data(tmp_path / "out", finished[0])
    grid = write_grid(tmp_path / "grid.yaml", labeled=[0.1], methods=[{"label": "Sup", "method": "supervised"}])
    run = out / "brats-Sup-l0.1-s0"
    shutil.copytree(finished[0] / run.name, run)
    record = json.loads((run / "config.json").read_text())
    record["config"]["epochs"] = 3
    (run / "config.json").write_text(json.dumps(record))
    before = (run / "metrics.json").read_bytes()
    report = reproduce(grid, out, quiet=True)
    [(cell, result)] = report.failures
    assert cell.key == run.name and "epochs: 3 there, 2 in the grid" in result.error
    assert (run / "metrics.json").read_bytes() == before


def test_a_run_on_other_built_in_data_is_not_reused(finished, tmp_path):
    """The data folder may move, but a cell made on another difficulty (its built-in folder
    name) is another cell."""
    out = with_data(tmp_path / "out", finished[0])
    grid = write_grid(
        tmp_path / "grid.yaml",
        labeled=[0.1],
        methods=[{"label": "Sup", "method": "supervised"}],
        datasets=[{**TINY_DATA, "difficulty": "clear"}],
    )
    run = out / "brats-Sup-l0.1-s0"
    shutil.copytree(finished[0] / run.name, run)
    before = (run / "metrics.json").read_bytes()
    [(cell, result)] = reproduce(grid, out, quiet=True).failures
    assert "data: built-in 'data-brats-p5-s0-paper' there, 'data-brats-p5-s0' in the grid" in result.error
    assert (run / "metrics.json").read_bytes() == before


def test_rows_runs_only_those_rows_and_tabulates_every_finished_cell(finished, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("brats-Sup-l0.05-s0", "brats-Sup-l0.1-s0"):
        shutil.copytree(finished[0] / name, out / name)
    report = reproduce(finished[1], out, rows=["Sup"], quiet=True)
    assert report.counts() == {"finished": 2, "not run": 2}
    assert not list(out.glob("brats-Semi-CML-*")) and set(report.rows["method"]) == {"Sup"}
    with pytest.raises(ConfigError, match=r"--rows 'sup': not a row of tiny; its rows: Sup, Semi-CML"):
        reproduce(finished[1], out, rows=["sup"], quiet=True)


def test_validation_rows_score_the_val_patients_once(finished, tmp_path):
    from workbench.reproduce.results import VAL_METRICS, collect_val_rows

    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    cells = plan_cells(load_grid(finished[1]), out)
    rows = collect_val_rows(cells)
    test_rows = pd.read_csv(out / "per_patient.csv")
    assert list(rows.columns[:6]) == list(test_rows.columns[:6]) and len(rows) == 4 * 2  # 1 val patient
    assert set(rows["case_id"]).isdisjoint(test_rows["case_id"]) and rows["dsc"].between(0, 1).all()
    stamps = {c.run_dir: (c.run_dir / VAL_METRICS).stat().st_mtime_ns for c in cells}
    again = collect_val_rows(cells)
    assert again.equals(rows) and {c.run_dir: (c.run_dir / VAL_METRICS).stat().st_mtime_ns for c in cells} == stamps


def test_only_finished_trains_nothing(finished, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(finished[0] / "brats-Sup-l0.1-s0", out / "brats-Sup-l0.1-s0")
    report = reproduce(finished[1], out, only_finished=True, quiet=True)
    assert report.counts() == {"not run": 3, "finished": 1}
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["brats-Sup-l0.1-s0"]  # no data, no runs
    assert set(report.rows["method"]) == {"Sup"} and len(report.tables) == 1


def test_a_pretraining_row_pretrains_once_per_seed(tmp_path):
    grid = write_grid(
        tmp_path / "grid.yaml",
        methods=[{"label": "Multi-ConDoS", "method": "supervised", "pretrain": {"epochs": 1, "steps_per_epoch": 2}}],
    )
    report = reproduce(grid, tmp_path / "out", quiet=True)
    assert report.counts() == {"trained": 2}
    pretrain = tmp_path / "out" / "brats-Multi-ConDoS-pretrain-s0"
    saved = json.loads((pretrain / "config.json").read_text())["config"]  # a run of the pre-training method
    assert saved["method"] == "multi-condos" and saved["lr"] == 2e-4 and saved["epochs"] == 1
    for fraction in ("0.05", "0.1"):
        record = json.loads((tmp_path / "out" / f"brats-Multi-ConDoS-l{fraction}-s0" / "config.json").read_text())
        assert record["config"]["init"] == str(pretrain)


# ---------------------------------------------------------------------------- reading results
def test_one_reader_reads_a_runs_per_patient_rows_from_either_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {"case_id": "BraTS_001", "modality": "t1", "dsc": 0.123456789, "sens": 0.5},
        {"case_id": "BraTS_002", "modality": "t1", "dsc": float("nan"), "sens": 1.0},
    ]
    with pytest.raises(ConfigError, match="run: no metrics.json \\(has this run finished its test\\?\\)"):
        read_per_patient(run)
    with pytest.raises(ConfigError, match="run: no per_patient.csv"):
        read_per_patient(run, source="per_patient.csv")
    with pytest.raises(ConfigError, match="source 'events.jsonl': choose one of: metrics.json, per_patient.csv"):
        read_per_patient(run, source="events.jsonl")
    (run / "metrics.json").write_text(json.dumps({"epoch": 1, "summary": {}}))
    with pytest.raises(DataError, match="metrics.json: unreadable metrics \\(KeyError\\)"):
        read_per_patient(run)
    (run / "metrics.json").write_text("{")
    with pytest.raises(DataError, match="metrics.json: unreadable metrics \\(JSONDecodeError\\)"):
        read_per_patient(run)
    (run / "metrics.json").write_text(json.dumps({"per_patient": rows}))
    (run / "per_patient.csv").write_text("case_id,modality,dsc,sens\nBraTS_001,t1,0.123457,0.5\nBraTS_002,t1,nan,1\n")
    exact, table = read_per_patient(run), read_per_patient(run, source="per_patient.csv")
    assert list(exact.columns) == list(table.columns) == ["case_id", "modality", "dsc", "sens"]
    assert exact.at[0, "dsc"] == 0.123456789 and table.at[0, "dsc"] == 0.123457  # the CSV: 6 significant digits
    assert exact["dsc"].isna().tolist() == table["dsc"].isna().tolist() == [False, True]


def test_the_grid_tables_and_compare_read_the_same_rows(finished):
    """collect_rows (metrics.json) and viz.compare.collect_runs (per_patient.csv) of the same
    finished cells: the same patients and values, up to the CSV's 6 significant digits."""
    from workbench.viz.compare import collect_runs

    out, grid, _ = finished
    cells = [c for c in plan_cells(load_grid(grid), out) if c.labeled == 0.1]
    ours = collect_rows(cells)
    theirs = collect_runs({c.method.label: c.run_dir for c in cells})
    assert len(ours) == len(theirs) == 2 * 2
    for column in ("method", "seed", "modality"):
        assert ours[column].tolist() == theirs[column].tolist()
    assert ours["case_id"].astype(str).tolist() == theirs["case_id"].astype(str).tolist()
    for metric in ("dsc", "sens", "hd95"):
        assert theirs[metric].to_numpy() == pytest.approx(ours[metric].to_numpy(), rel=1e-5, nan_ok=True)


# ------------------------------------------------------------------------------------ tables
def test_tables_are_mean_and_std_over_seeds_with_the_papers_rows(tmp_path):
    grid = load_grid(write_grid(tmp_path / "grid.yaml", seeds=[0, 1], labeled=[0.1]))
    rows = pd.DataFrame(
        [
            # two patients per run: the run's value is their mean, then mean ± std over the seeds
            {
                "dataset": "brats",
                "method": "Sup",
                "labeled": 0.1,
                "seed": s,
                "modality": m,
                "case_id": c,
                "dsc": d,
                "sens": 0.5,
            }
            for s, m, c, d in [
                (0, "t1", "a", 0.1),
                (0, "t1", "b", 0.3),
                (1, "t1", "a", 0.3),
                (1, "t1", "b", 0.5),
                (0, "flair", "a", 0.8),
                (0, "flair", "b", 0.8),
                (1, "flair", "a", 0.9),
                (1, "flair", "b", 0.9),
            ]
        ]
    )
    [table] = results_tables(rows, grid)
    text = table.formatted()
    # seeds 0.2 and 0.4: sample std (ddof 1) sqrt(0.02) = 0.141 (ddof 0 would say 0.100); the CI is of
    # the mean over the 4 (patient, seed) scores
    low, high = bootstrap_ci([0.1, 0.3, 0.3, 0.5])
    assert table.std.at["Sup", ("T1", "DSC")] == pytest.approx(0.02**0.5)
    assert (table.ci_low.at["Sup", ("T1", "DSC")], table.ci_high.at["Sup", ("T1", "DSC")]) == (low, high)
    assert low < 0.3 < high
    assert text.at["Sup", ("T1", "DSC")] == f"0.300 ± 0.141 [{low:.2f}, {high:.2f}]"
    assert text.at["Sup", ("FLAIR", "DSC")].startswith("0.850 ± 0.071 [")
    assert text.at["Sup", ("", "seeds")] == "2"
    paper = 'paper (real data): Table 1 "Sup"'
    assert list(text.index) == ["Sup", paper, "Semi-CML"]
    assert text.at[paper, ("T1", "DSC")] == "0.2724" and text.at[paper, ("FLAIR", "Sens")] == "0.4410"
    assert text.at["Semi-CML", ("T1", "DSC")] == "–" and text.at["Semi-CML", ("", "seeds")] == "0"


def test_one_labeled_fraction_is_plotted_as_one_row_per_method_with_the_papers_marker(tmp_path):
    """A Table 3-like grid (one fraction) gets a dot plot: methods on the y axis in grid order,
    the mean over seeds on x with the std as error bar, the paper's value on the same row."""
    import matplotlib.pyplot as plt

    grid = load_grid(write_grid(tmp_path / "grid.yaml", seeds=[0, 1], labeled=[0.1]))
    rows = pd.DataFrame(
        [
            {
                "dataset": "brats",
                "method": method,
                "labeled": 0.1,
                "seed": s,
                "modality": m,
                "case_id": "a",
                "dsc": d + 0.1 * s,
                "sens": 0.5,
            }
            for method, base in [("Sup", 0.2), ("Semi-CML", 0.5)]
            for s in (0, 1)
            for m, d in [("t1", base), ("flair", base + 0.3)]
        ]
    )
    fig = plot_dsc_vs_labeled(rows, "brats", grid)
    t1, flair = fig.axes[:2]
    assert [t.get_text() for t in t1.get_yticklabels()] == ["Sup", "Semi-CML"]
    assert t1.get_ylim()[0] > t1.get_ylim()[1]  # first grid row on top
    points = sorted((round(x, 4), y) for line in t1.lines if line.get_marker() == "o" for x, y in line.get_xydata())
    # seeds 0.2 / 0.3 and 0.5 / 0.6; Table 1 "Sup", T1 DSC at 10%, as an open marker on Sup's row
    assert points == [(0.25, 0.0), (0.2724, 0.0), (0.55, 1.0)]
    assert "10% labeled" in fig._suptitle.get_text()
    plt.close(fig)

    # a two-fraction grid with only its 10% cells finished: the paper's 5% value (0.2255) stays off the plot
    partial = load_grid(write_grid(tmp_path / "partial.yaml", seeds=[0, 1], labeled=[0.05, 0.1]))
    fig = plot_dsc_vs_labeled(rows, "brats", partial)
    points = sorted(
        (round(x, 4), y) for line in fig.axes[0].lines if line.get_marker() == "o" for x, y in line.get_xydata()
    )
    assert points == [(0.25, 0.0), (0.2724, 0.0), (0.55, 1.0)]
    plt.close(fig)


# ------------------------------------------------------------------ statistics on made-up runs
PATIENTS = ("p1", "p2", "p3", "p4")
#: DSC of Sup per (seed, patient); Semi-CML adds 0.1 + a distinct small amount to every pair, MT
#: adds noise of both signs
SUP_DSC = {(s, c): 0.3 + 0.05 * i + 0.02 * s for s in (0, 1) for i, c in enumerate(PATIENTS)}
GAIN = {
    "Sup": [0.0] * 8,
    "Semi-CML": [0.1 + 0.003 * k for k in range(8)],
    "MT": [0.011, -0.012, 0.023, -0.024, 0.005, -0.006, 0.017, -0.018],
}


def protocol(selection="val"):
    return {
        "data": {
            "folder": "/x/data-brats-p5-s0",
            "format": "brats",
            "builtin": {"kind": "brats", "patients": 5, "seed": 0},
            "sha256": "ab" * 32,
        },
        "split_seed": 0,
        "patients": {"labeled": 1, "unlabeled": 2, "val": 1, "test": 4},
        "selection": selection,
        "unlabeled_slices": "body",
        "test_slices": "all",
        "empty_mask_rule": "both empty: DSC 1",
        "stamp": TEST_FEEDBACK_STAMP if selection == "test" else None,
    }


def made_up_grid(tmp_path: Path, **overrides) -> Path:
    """Sup, Semi-CML and MT at 10% with seeds 0 and 1, and claims with known verdicts."""
    values = dict(
        labeled=[0.1],
        seeds=[0, 1],
        methods=[
            {"label": "Sup", "method": "supervised"},
            {"label": "Semi-CML", "method": "semi-cml"},
            {"label": "MT", "method": "mean-teacher"},
        ],
        claims=["Sup < Semi-CML", "Semi-CML < MT", "Sup < MT"],
    )
    values.update(overrides)
    return write_grid(tmp_path / "grid.yaml", **values)


def write_finished_cells(grid_file: Path, out: Path, protocols=None) -> None:
    """A metrics.json for every cell of the grid (made-up per-patient scores, no training);
    ``protocols`` maps a cell key to its protocol dict (None: no protocol key; default: val)."""
    protocols = protocols or {}
    for cell in plan_cells(load_grid(grid_file), out):
        gain = GAIN[cell.method.label]
        per_patient = [
            {
                "modality": m,
                "case_id": c,
                "dsc": SUP_DSC[cell.seed, c] + gain[4 * cell.seed + i] + (0.4 if m == "flair" else 0.0),
                "sens": 0.5,
            }
            for m in ("t1", "flair")
            for i, c in enumerate(PATIENTS)
        ]
        record = {"epoch": 2, "per_patient": per_patient, "summary": {}}
        chosen = protocols.get(cell.key, protocol())
        if chosen is not None:
            record["protocol"] = chosen
        cell.run_dir.mkdir(parents=True)
        (cell.run_dir / "metrics.json").write_text(json.dumps(record))


def test_tables_test_each_row_against_the_reference_and_decide_the_claims(tmp_path):
    grid = made_up_grid(tmp_path)
    out = tmp_path / "out"
    write_finished_cells(grid, out)
    report = reproduce(grid, out, only_finished=True, quiet=True)
    assert report.counts() == {"finished": 6}
    [table] = report.tables
    assert table.reference == "Sup" and list(table.comparison.index) == ["Semi-CML", "MT"]
    # Semi-CML is better on each of the 8 (patient, seed) pairs: exact two-sided p = 2 / 2^8
    assert table.comparison.at["Semi-CML", ("T1", "pairs")] == 8
    assert table.comparison.at["Semi-CML", ("T1", "diff")] == pytest.approx(0.1 + 0.003 * 3.5)
    assert table.comparison.at["Semi-CML", ("T1", "p")] == pytest.approx(2 / 256)
    assert table.comparison.at["Semi-CML", ("FLAIR", "verdict")] == "holds (p = 0.0078)"
    assert table.comparison.at["MT", ("T1", "verdict")].startswith("not decided (p = 0.")

    md = (out / "tables.md").read_text()
    assert md.index("## Protocol card") < md.index("### brats, 10% labeled") < md.index("## Claims")
    assert "- **data**: built-in brats, 5 patients, data seed 0, sha256 abababababab" in md
    assert "- **patients per set**: 1 labeled / 2 unlabeled / 1 val / 4 test" in md
    assert "- **seeds**: 2" in md and "- **std**: sample std over seeds, ddof 1" in md
    assert "- **CI**: 95% bootstrap CI (BCa) of the mean over patients x seeds" in md
    assert "sample std over seeds (ddof 1)" in md and "ddof 0" not in md
    assert "| method | pairs | T1 Δ DSC | T1 verdict | T1 MDD | FLAIR Δ DSC | FLAIR verdict | FLAIR MDD |" in md
    assert "| Semi-CML | 8 | +0.111 | holds (p = 0.0078) | " in md
    assert "| brats | 10% | Sup < Semi-CML | T1 | 8 | -0.111 | holds (p = 0.0078) |" in md
    assert "| brats | 10% | Semi-CML < MT | FLAIR | 8 | +0.111 | reversed (p = 0.0078) |" in md
    assert "| brats | 10% | Sup < MT | T1 | 8 | " in md and TEST_FEEDBACK_STAMP not in md

    claims = pd.read_csv(out / "claims.csv", keep_default_na=False)
    assert list(claims.columns[:12]) == [
        "dataset",
        "labeled",
        "claim",
        "modality",
        "left",
        "op",
        "right",
        "n",
        "diff",
        "p",
        "verdict",
        "mdd",
    ]
    assert len(claims) == 3 * 2  # 3 pairs x 2 modalities
    verdicts = {(r.left, r.right, r.modality): r.verdict.split(" (")[0] for r in claims.itertuples()}
    assert verdicts == {
        ("Sup", "Semi-CML", "t1"): "holds",
        ("Sup", "Semi-CML", "flair"): "holds",
        ("Semi-CML", "MT", "t1"): "reversed",
        ("Semi-CML", "MT", "flair"): "reversed",
        ("Sup", "MT", "t1"): "not decided",
        ("Sup", "MT", "flair"): "not decided",
    }
    assert claims["n"].tolist() == [8] * 6 and claims["p"][0] == pytest.approx(2 / 256)
    assert report.claims["verdict"].tolist() == claims["verdict"].tolist()

    html = (out / "tables.html").read_text()
    assert "<h2>Protocol card</h2>" in html and "<h2>Claims</h2>" in html and "vs Sup: paired DSC" in html
    assert "reversed (p = 0.0078)" in html


def test_the_reference_row_is_a_grid_key(tmp_path):
    grid = made_up_grid(tmp_path, reference="MT", claims=None)
    out = tmp_path / "out"
    write_finished_cells(grid, out)
    report = reproduce(grid, out, only_finished=True, quiet=True)
    [table] = report.tables
    assert table.reference == "MT" and list(table.comparison.index) == ["Sup", "Semi-CML"]
    assert table.comparison.at["Semi-CML", ("T1", "verdict")] == "holds (p = 0.0078)"
    assert not (out / "claims.csv").exists() and "## Claims" not in (out / "tables.md").read_text()


def test_a_run_steered_by_its_test_patients_stamps_the_card_tables_and_plots(tmp_path):
    grid = made_up_grid(tmp_path)
    out = tmp_path / "out"
    write_finished_cells(grid, out, {"brats-MT-l0.1-s1": protocol("test"), "brats-Sup-l0.1-s1": None})
    report = reproduce(grid, out, only_finished=True, quiet=True)
    md = (out / "tables.md").read_text()
    assert md.startswith(f"# tiny — {TEST_FEEDBACK_STAMP}\n")
    assert f"## Protocol card ({TEST_FEEDBACK_STAMP})" in md
    assert (
        "- **what steered training**: validation patients (selection val); not recorded (run made before "
        f"protocol cards); the test patients (selection test): {TEST_FEEDBACK_STAMP}" in md
    )
    assert f"### brats, 10% labeled — {TEST_FEEDBACK_STAMP}" in md
    assert (
        "*vs Sup: paired DSC" in md
        and f"(Wilcoxon, alpha 0.05); MDD: the minimal detectable Δ at 80% power — {TEST_FEEDBACK_STAMP}*" in md
    )
    assert f"## Claims — {TEST_FEEDBACK_STAMP}" in md
    claims = pd.read_csv(out / "claims.csv", keep_default_na=False).set_index(["left", "right", "modality"])
    assert claims.at[("Sup", "Semi-CML", "t1"), "stamp"] == ""  # MT's runs are not in this pair
    assert claims.at[("Semi-CML", "MT", "t1"), "stamp"] == TEST_FEEDBACK_STAMP
    assert f"{TEST_FEEDBACK_STAMP}</h2>" in (out / "tables.html").read_text()
    assert set(report.rows["selection"].dropna()) == {"val", "test"}
    assert pd.read_csv(out / "per_patient.csv")["selection"].isna().sum() == 8  # Sup seed 1: no protocol
    fig = plot_dsc_vs_labeled(report.rows, "brats", report.grid)
    assert fig._suptitle.get_text().endswith(TEST_FEEDBACK_STAMP)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_error_bars_are_the_sample_std_over_seeds(tmp_path):
    import matplotlib.pyplot as plt

    grid = load_grid(write_grid(tmp_path / "grid.yaml", seeds=[0, 1], labeled=[0.1]))
    rows = pd.DataFrame(
        [
            {
                "dataset": "brats",
                "method": "Sup",
                "labeled": 0.1,
                "seed": s,
                "modality": m,
                "case_id": "a",
                "dsc": 0.2 + 0.2 * s,
                "sens": 0.5,
            }
            for s in (0, 1)
            for m in ("t1", "flair")
        ]
    )
    fig = plot_dsc_vs_labeled(rows, "brats", grid)
    [bars] = [c for c in fig.axes[0].collections if c.get_segments()]
    [(start, end)] = [segment for segment in bars.get_segments()]
    assert end[0] - start[0] == pytest.approx(2 * 0.02**0.5)  # ± sqrt(0.02), not ± 0.1 (ddof 0)
    plt.close(fig)


def test_slugs_and_run_folders(tmp_path):
    assert slugify("sup+mse+NCE*") == "sup-mse-NCEstar"
    assert slugify("PReL (BMA)") == "PReL_BMA"
    grid = load_grid(write_grid(tmp_path / "grid.yaml", seeds=[0, 3]))
    cells = plan_cells(grid, tmp_path / "out")
    assert len(cells) == 2 * 2 * 2
    assert cells[0].run_dir == tmp_path / "out" / "brats-Sup-l0.05-s0"
    assert cells[0].config["data"] == str(tmp_path / "out" / "data-brats-p5-s0-paper")
    assert {c.config["epochs"] for c in cells} == {2}


def test_settings_merge_in_order(tmp_path):
    grid = load_grid(
        write_grid(
            tmp_path / "grid.yaml",
            settings={**TINY_SETTINGS, "lr": 1e-3},
            datasets=[{**TINY_DATA, "settings": {"lr": 2e-3, "size": 48}}],
            settings_by_labeled={0.05: {"epochs": 3, "lr": 3e-3}},
            methods=[
                {"label": "Sup", "method": "supervised", "settings": {"lr": 4e-3}},
                {"label": "Sup 100%", "method": "supervised", "labeled": [1.0]},
            ],
            labeled=[0.05, 0.1],
        )
    )
    configs = {(c.method.label, c.labeled): c.config for c in plan_cells(grid, tmp_path)}
    assert set(configs) == {("Sup", 0.05), ("Sup", 0.1), ("Sup 100%", 1.0)}
    assert configs["Sup", 0.05]["lr"] == 4e-3 and configs["Sup", 0.05]["epochs"] == 3
    assert configs["Sup 100%", 1.0]["lr"] == 2e-3 and configs["Sup 100%", 1.0]["size"] == 48


# -------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "overrides, expected",
    [
        (
            {"methods": [{"label": "x", "method": "semi-cmll"}]},
            "methods[0] (x).method: unknown method 'semi-cmll'; choose one of:",
        ),
        ({"labeled": [0.1, 1.5]}, "labeled[1]: 1.5 is not a labeled fraction in (0, 1]"),
        ({"labeled": [0.1, "ten"]}, "labeled[1]: 'ten' is not a labeled fraction"),
        ({"methdos": []}, "methdos: unknown key; known keys: name, description, paper_table, datasets"),
        ({"settings": {"epochz": 3}}, "settings.epochz: unknown setting; TrainConfig fields:"),
        ({"settings": {"epochs": "20"}}, "settings.epochs='20': expected an integer"),
        ({"settings": {"seed": 1}}, "settings.seed: set by the grid itself"),
        ({"seeds": [0, -1]}, "seeds[1]: -1 is not a non-negative integer"),
        (
            {"datasets": [{"name": "real", "path": "no/such/folder", "format": "brats"}]},
            "datasets[0].path: '{root}/no/such/folder' does not exist or is not a folder (edit datasets[0].path)",
        ),
        (
            {"datasets": [{"name": "real", "path": "/EDIT/path/to/brats", "format": "brats"}]},
            "datasets[0].path: '/EDIT/path/to/brats' is a placeholder; copy grid.yaml and set datasets[0].path",
        ),
        ({"datasets": [{"name": "b", "kind": "lungs"}]}, "datasets[0].kind: unknown built-in dataset 'lungs'"),
        (
            {"datasets": [{"name": "b", "kind": "brats", "difficulty": "hard"}]},
            "datasets[0].difficulty 'hard' is unknown for brats; choose one of clear, paper",
        ),
        (
            {"datasets": [{"name": "b", "kind": "hecktor", "difficulty": {"contrast": {"t1": 2}}}]},
            "datasets[0].difficulty.contrast: hecktor has no modality 't1'",
        ),
        (
            {"methods": [{"label": "s", "method": "semi-cml", "options": {"varient": "sup"}}]},
            "methods[0] (s).options: method 'semi-cml' has no option 'varient'",
        ),
        (
            {"methods": [{"label": "s", "method": "supervised", "paper": "Nope"}]},
            "methods[0] (s).paper: 'Nope' is not a row of semi-cml-prel/table1",
        ),
        ({"settings_by_labeled": {0.2: {"epochs": 3}}}, "settings_by_labeled.0.2: not one of the grid's labeled"),
        (
            {"settings": {**TINY_SETTINGS, "size": 40}},
            "settings of brats / Sup / labeled 0.05: size=40: must be a multiple of 16",
        ),
        (
            {"claims": ["Sup < Semi-CMl"]},
            "claims[0] ('Sup < Semi-CMl'): 'Semi-CMl' is not a method label of the grid; labels: Sup, Semi-CML",
        ),
        ({"claims": ["Sup <"]}, "claims[0] ('Sup <'): expected method labels joined by < or >, e.g. 'sup < sup+mse'"),
        ({"claims": "Sup < Semi-CML"}, "claims: expected a list of orders such as 'sup < sup+mse'"),
        ({"claims": ["Sup < Sup"]}, "claims[0] ('Sup < Sup'): compares 'Sup' with itself"),
        (
            {
                "methods": [
                    {"label": "Sup", "method": "supervised"},
                    {"label": "Sup 100%", "method": "supervised", "labeled": [1.0]},
                ],
                "claims": ["Sup < Sup 100%"],
            },
            "claims[0] ('Sup < Sup 100%'): 'Sup' and 'Sup 100%' share no labeled fraction",
        ),
        ({"reference": "sup"}, "reference: 'sup' is not a method label of the grid; labels: Sup, Semi-CML"),
    ],
)
def test_each_problem_is_one_line_naming_the_key_and_value(tmp_path, overrides, expected):
    path = write_grid(tmp_path / "grid.yaml", **overrides)
    with pytest.raises(GridError) as info:
        load_grid(path)
    problems = info.value.problems
    assert len(problems) == 1, problems
    assert "\n" not in problems[0]
    assert problems[0].startswith(f"{path}: ")
    assert expected.format(root=tmp_path) in problems[0], problems[0]


def test_claims_are_chains_of_adjacent_pairs():
    assert parse_claim("sup < sup+mse < PReL (BMA)") == [("sup", "<", "sup+mse"), ("sup+mse", "<", "PReL (BMA)")]
    assert parse_claim("sup+ASC > sup+NCE") == [("sup+ASC", ">", "sup+NCE")]
    assert parse_claim("sup") == []


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    path = write_grid(tmp_path / "grid.yaml", labeled=[2], seeds=["a"], methods=[{"method": "nope"}])
    with pytest.raises(GridError) as info:
        load_grid(path)
    assert len(info.value.problems) == 3
    assert main(["reproduce", "--grid", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith(f"error: {path}: ") for line in err)


def test_broken_yaml_and_missing_grid_are_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("datasets: [\nmethods: x: y\n")
    with pytest.raises(GridError) as info:
        load_grid(path)
    [problem] = info.value.problems
    assert "not valid YAML (line" in problem
    with pytest.raises(GridError, match="no such grid file"):
        load_grid(tmp_path / "missing.yaml")


def test_shipped_grids_validate():
    assert {
        "quick-cpu",
        "semi-cml-table1-cpu",
        "semi-cml-table3-cpu",
        "semi-cml-table1-gpu",
        "semi-cml-table3-gpu",
    } <= set(shipped_grids())
    quick = load_grid("quick-cpu")  # notebook 09's default: minutes, not hours
    assert len(quick.datasets) * len(quick.methods) * len(quick.labeled) * len(quick.seeds) == 4
    table1 = load_grid("semi-cml-table1-cpu")
    assert [m.method for m in table1.methods] == [
        "supervised",
        "mean-teacher",
        "ua-mt",
        "cps",
        "cross-view",
        "meng-fusion",
        "cmc",
        "semi-cml",
        "semi-cml-prel",
    ]
    assert table1.labeled == [0.05, 0.1] and table1.seeds == [0, 1, 2]
    # the CPU-scale settings of every *-cpu grid; validation scores only where a method reads them
    assert table1.settings == {
        "epochs": 20,
        "steps_per_epoch": 20,
        "base_channels": 16,
        "size": 64,
        "batch_size": 8,
        "unlabeled_batch_size": 4,
        "val_scores": "if_used",
    }
    # cohorts that leave 4 validation and 8 test patients (issue 18)
    assert [d.patients for d in table1.datasets] == [40, 40]
    table3 = load_grid("semi-cml-table3-cpu")
    assert [m.options.get("variant") for m in table3.methods if m.method == "semi-cml"] == [
        "sup+mse",
        "sup+nce",
        "sup+asc",
        "sup+mse+nce",
        "sup+mse+nce*",
        "sup+mse+asc",
    ]
    assert [m.options["teacher"] for m in table3.methods if m.method == "semi-cml-prel"] == ["base", "ema", "bma"]
    assert table3.reference_label == "sup" and table3.claims == [
        "sup < sup+mse < sup+mse+ASC < PReL (BMA)",
        "PReL (Base) < PReL (EMA) < PReL (BMA)",
        "sup+ASC > sup+NCE",
        "sup+mse+ASC > sup+mse+NCE",
    ]
    assert quick.claims == ["Sup < Semi-CML + PReL"] and table1.reference_label == "Sup"
    assert "Sup < Semi-CML < Semi-CML + PReL" in table1.claims
    for name in ("semi-cml-table1-gpu", "semi-cml-table3-gpu"):
        grid = load_grid(name, check_paths=False, check_device=False)
        assert grid.claims == (table3.claims if "table3" in name else table1.claims)
    gpu_grids = [name for name in shipped_grids() if name.endswith("-gpu")]
    assert {"cross-view-la-gpu", "cross-view-brats2019-gpu", "meng-brats2019-gpu"} <= set(gpu_grids)
    for name in gpu_grids:  # every paper-scale grid: only its placeholder paths (and the GPU) keep it from running
        grid = load_grid(name, check_paths=False, check_device=False)
        assert all(d.path is not None for d in grid.datasets)
        with pytest.raises(GridError) as info:
            load_grid(name)
        paths = [p for p in info.value.problems if ".path: '/EDIT/" in p]
        assert len(paths) == len(grid.datasets) and all("is a placeholder; copy" in p for p in paths)
        import torch

        others = [p for p in info.value.problems if p not in paths]
        assert others == (
            []
            if torch.cuda.is_available()
            else [
                f"{grid.path}: settings.device: 'cuda' but this machine has no CUDA GPU; set "
                "settings.device to cpu or auto, or run on a GPU"
            ]
        )


#: the run command every shipped grid's header comment gives
GRID_COMMAND = re.compile(r"workbench reproduce --grid (\S+) --out (\S+)")
#: what a cell's settings may change without changing the method's construction-time checks
NOT_FOR_THE_METHOD = ("labeled", "seed", "data", "init", "crop", "size", "fmt")


@pytest.mark.parametrize("name", shipped_grids())
def test_every_shipped_grid_validates_builds_its_methods_and_says_how_to_run_it(name):
    import torch

    from workbench.data.slices import DEFAULT_MODALITIES
    from workbench.methods import get_method
    from workbench.train import TrainConfig

    grid = load_grid(name, check_paths=False, check_device=False)  # keys, methods, option names, settings, claims
    assert grid.name == name
    # the option values (a variant, a teacher, m against the epochs) are checked when a method is
    # built: build each distinct row once, on the meta device (no memory, no training)
    built = set()
    for cell in plan_cells(grid, "/nowhere"):
        key = json.dumps({k: v for k, v in cell.config.items() if k not in NOT_FOR_THE_METHOD}, sort_keys=True)
        if key in built:
            continue
        built.add(key)
        config = TrainConfig(**dict(cell.config, device="cpu"))
        modalities = config.modalities or list(DEFAULT_MODALITIES[cell.dataset.kind or cell.dataset.fmt])
        with torch.device("meta"):
            get_method(config.method)(modalities, config)
    [(command_grid, _), *_] = GRID_COMMAND.findall(grid.text)
    copied = all(d.path is not None for d in grid.datasets)  # a -gpu grid: copy it, then edit its paths
    assert command_grid == name or (copied and command_grid.endswith(".yaml")), command_grid


def test_grids_that_share_an_output_folder_agree_on_the_shared_cells():
    """Grids whose header runs them into one --out (e.g. runs/table3-cpu) reuse each other's run
    folders; a folder two grids plan must get the same settings from both, else the second grid
    would report it as a run with other settings."""
    by_out: dict[str, list[str]] = {}
    for name in shipped_grids():
        grid = load_grid(name, check_paths=False, check_device=False)
        [(_, out), *_] = GRID_COMMAND.findall(grid.text)
        by_out.setdefault(out, []).append(name)
    assert {
        "semi-cml-table3-cpu",
        "protocol-ablation-cpu",
        "methods-cpu",
        "w-sweep-cpu",
        "diagnostic-cpu",
        "semi-cml-joint-cpu",
        "semi-cml-table3-extra-cpu",
    } <= set(by_out["runs/table3-cpu"])
    for out, names in by_out.items():
        planned: dict[str, tuple[str, dict]] = {}
        for name in names:
            for cell in plan_cells(load_grid(name, check_paths=False, check_device=False), out):
                folders = [(cell.run_dir, cell.config)]
                if cell.pretrain_dir is not None:
                    folders.append((cell.pretrain_dir, cell.pretrain_config))
                for folder, config in folders:
                    first, expected = planned.setdefault(str(folder), (name, config))
                    assert config == expected, f"{folder}: {name} and {first} plan it with other settings"


def test_the_ported_grids_keep_the_rows_of_the_grid_script():
    """The rows of the removed grid script's methods, w-sweep and diagnostic grids (method, options),
    now shipped grids; its difficulty and semi-cml grids are difficulty-cpu and semi-cml-table3-cpu
    (+ semi-cml-table3-extra-cpu for MM- and PReL with m = 2), semi-cml-joint is semi-cml-joint-cpu."""

    def rows(name):
        grid = load_grid(name)
        assert grid.labeled == [0.1] and grid.seeds == [0, 1, 2]
        assert [(d.kind, d.patients) for d in grid.datasets] == [("brats", 40), ("hecktor", 40)]
        assert grid.settings == load_grid("semi-cml-table3-cpu").settings
        return [(m.method, m.options, m.pretrain) for m in grid.methods]

    single = {"input": "single"}
    w2 = {"w2": 0.5}  # the default these grids' tables were made with, pinned since w2 = 3.0
    assert rows("methods-cpu") == [
        ("supervised", {}, None),
        ("semi-cml-prel", {**w2, "teacher": "bma"}, None),
        ("mean-teacher", single, None),
        ("ua-mt", single, None),
        ("cps", single, None),
        ("cps", {"input": "both"}, None),
        ("cross-view", single, None),
        ("meng-fusion", {}, None),
        ("cmc", {}, None),
        ("supervised", {}, {"method": "multi-condos", "epochs": 10, "steps_per_epoch": 20}),
    ]
    joint = {"variant": "sup+mse+asc", "joint_forward": True}
    assert rows("w-sweep-cpu") == [
        ("semi-cml", {**w2, **joint}, None),
        ("semi-cml", {**w2, **joint, "w1": 0.1}, None),
        ("semi-cml", {**joint, "w2": 3.0}, None),
    ]
    assert rows("diagnostic-cpu") == [
        ("supervised", {}, None),
        ("semi-cml", {**w2, "variant": "sup+mse", "w1": 0.0, "joint_forward": True}, None),
        ("semi-cml", {**w2, "variant": "sup+mse", "w1": 0.0}, None),
        ("semi-cml", {**w2, "variant": "sup+mse+asc"}, None),
        ("semi-cml-prel", {**w2, "teacher": "bma"}, None),
    ]
    assert rows("semi-cml-joint-cpu")[1:] == [
        ("semi-cml", {**w2, "variant": v, "joint_forward": True}, None) for v in ("sup+mse", "sup+mse+asc")
    ] + [("semi-cml-prel", {**w2, "teacher": t, "joint_forward": True}, None) for t in ("base", "ema", "bma")]
    assert rows("semi-cml-table3-extra-cpu") == [
        ("supervised", {}, None),
        ("mm-supervised", {}, None),
        ("semi-cml-prel", {**w2, "teacher": "bma"}, None),
        ("semi-cml-prel", {**w2, "teacher": "bma", "m": 2}, None),
    ]


def test_the_volumetric_grids_run_the_papers_settings_and_cite_their_tables():
    """The 3D paper-scale grids: V-Net, SGD 0.01, the papers' patches and iterations, the paper
    rows they cite present in paper_values.yaml."""
    papers = load_paper_values()
    la, brats, meng = (
        load_grid(n, check_paths=False, check_device=False)
        for n in ("cross-view-la-gpu", "cross-view-brats2019-gpu", "meng-brats2019-gpu")
    )
    for grid, patch, iterations in ((la, [112, 112, 80], 17_000), (brats, [96, 96, 96], 40_000)):
        s = grid.settings
        assert (s["spatial_dims"], s["backbone"], s["optimizer"], s["lr"]) == (3, "vnet", "sgd", 0.01)
        assert s["patch"] == patch and s["epochs"] * s["steps_per_epoch"] == iterations
        assert (s["batch_size"], s["unlabeled_batch_size"]) == (4, 4)
        cml = next(m for m in grid.methods if m.label == "CML")
        assert cml.options["pretrain_epochs"] * s["steps_per_epoch"] == (2_000 if grid is la else 10_000)
    assert la.labeled == [0.05, 0.1] and brats.labeled == [0.1, 0.2] and meng.labeled == [0.05, 0.1]
    assert meng.settings["epochs"] * meng.settings["steps_per_epoch"] == 60_000 and meng.settings["patch"] == [96] * 3
    assert round(meng.settings["test_fraction"] * 335) == 60 and round(meng.settings["val_fraction"] * 335) == 25
    for grid in (la, brats, meng):
        for method in grid.methods:
            if method.paper is None:
                continue
            table_id, row = method.paper
            fractions = method.labeled or grid.labeled
            assert any(papers[table_id].get(grid.datasets[0].paper, f, row) for f in fractions), (grid.name, row)
    assert papers["cross-view/table1"].get("la", 0.1, "Ours")["mri"][0] == 0.9036
    # Table 2's full row is Table 1's "Ours" at 5% (the T1ce branch)
    full, ours = (
        papers[t].get("brats2019", 0.05, r)["t1ce"][0]
        for t, r in (("meng/table2", "+MMF+MAE+MCML"), ("meng/table1", "Ours"))
    )
    assert full == ours == 0.8516


def test_paper_values_agree_with_the_papers_text():
    """Every difference the Semi-CML + PReL text quotes (sections 4.4.1 and 4.5.2) from its tables."""
    t1, t3 = (load_paper_values()[f"semi-cml-prel/table{i}"] for i in (1, 3))

    def v(table, dataset, labeled, row, modality, metric=0):
        return table.get(dataset, labeled, row)[modality][metric]

    assert (v(t1, "hecktor", 0.01, "Ours", "ct"), v(t1, "hecktor", 0.01, "Ours", "pet")) == (0.2837, 0.4260)
    assert (v(t1, "hecktor", 0.01, "Sup", "ct"), v(t1, "hecktor", 0.01, "Sup", "pet")) == (0.1106, 0.2807)
    for labeled, modality, gain in [
        (0.05, "t2", 0.1577),
        (0.05, "t1ce", 0.2269),
        (0.1, "t1", 0.1784),
        (0.1, "flair", 0.1038),
    ]:
        got = v(t1, "brats", labeled, "Ours", modality) - v(t1, "brats", labeled, "Sup", modality)
        assert got == pytest.approx(gain, abs=5e-5), (labeled, modality)
    for row, dataset, (low, high), gaps in [
        ("sup+mse+ASC", "hecktor", ("ct", "pet"), (0.2253, 0.262)),
        ("sup+mse+ASC", "brats", ("t2", "t1ce"), (0.126, 0.1192)),
        ("PReL (BMA)", "hecktor", ("ct", "pet"), (0.213, 0.2023)),
        ("PReL (BMA)", "brats", ("t2", "t1ce"), (0.1044, 0.0728)),
    ]:
        for metric, gap in enumerate(gaps):
            got = v(t3, dataset, 0.1, row, high, metric) - v(t3, dataset, 0.1, row, low, metric)
            assert got == pytest.approx(gap, abs=5e-5), (row, dataset, metric)
    # Table 3's first and last rows are Table 1's Sup and Ours at 10%
    for dataset, modalities in (("hecktor", ("ct", "pet")), ("brats", ("t2", "t1ce"))):
        for m in modalities:
            assert t3.get(dataset, 0.1, "sup")[m] == t1.get(dataset, 0.1, "Sup")[m]
            assert t3.get(dataset, 0.1, "PReL (BMA)")[m] == t1.get(dataset, 0.1, "Ours")[m]


def test_cli_only_finished_tabulates(finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out, ignore=shutil.ignore_patterns("data-*"))
    assert main(["reproduce", "--grid", str(finished[1]), "--out", str(out), "--only-finished", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "4 cells (4 finished)" in printed and "### brats, 10% labeled" in printed


def test_workers_end_when_the_reproduce_process_is_killed(tmp_path):
    """A killed ``workbench reproduce`` leaves no worker training on (exit_with_parent)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from multiprocessing import get_context\n"
        "from workbench.reproduce.runner import exit_with_parent\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=get_context('spawn'), initializer=exit_with_parent,\n"
        "                               initargs=(os.getpid(),))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    pool.submit(time.sleep, 600)\n"
        "    time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)  # no clean-up in the parent at all
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    os.kill(worker, signal.SIGKILL)
    pytest.fail(f"worker {worker} still ran 30 s after its parent was killed")


def test_a_3d_grid_on_an_la_folder_uses_the_published_split_and_cites_the_paper(tmp_path):
    """A copied paper-scale grid at toy scale: LA h5 files the test writes, the published split,
    the V-Net in 3D on the CPU, and the paper's V-Net row next to ours."""
    from tests.data.test_benchmarks import _la_folder
    from workbench.data.benchmarks import shipped_split

    lists = shipped_split("la")
    data = _la_folder(tmp_path / "LA", lists["train"] + lists["test"], shape=(16, 16, 16))
    spec = yaml.safe_load(load_grid("cross-view-la-gpu", check_paths=False, check_device=False).text)
    spec["datasets"][0]["path"] = str(data)
    spec["labeled"], spec["seeds"] = [0.1], [0]
    spec["methods"] = [m for m in spec["methods"] if m["label"] == "V-Net"]
    spec["claims"] = []
    spec["settings"].update(
        patch=[16, 16, 16], crop=16, epochs=1, steps_per_epoch=1, base_channels=2, batch_size=2,
        device="cpu", precision="fp32", val_every=1,
    )  # fmt: skip
    grid = tmp_path / "la.yaml"
    grid.write_text(yaml.safe_dump(spec, sort_keys=False))
    report = reproduce(grid, tmp_path / "out", quiet=True)
    assert not report.failures and len(report.cells) == 1
    config = json.loads((report.cells[0].run_dir / "config.json").read_text())
    assert config["config"]["backbone"] == "vnet" and config["split"]["labeled"] == sorted(lists["train"][:8])
    assert config["split"]["test"] == sorted(lists["test"])
    text = (tmp_path / "out" / "tables.md").read_text()
    assert 'paper (real data): Table 1 "V-Net"' in text and "0.8274" in text and "published la" in text
