"""Every notebook runs top to bottom through papermill with tiny parameters."""

import contextlib
from pathlib import Path

import papermill as pm
import pytest
import yaml

from tests.conftest import virtual_display

from workbench.viz.export import find_browser

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

TINY = {
    "01_data_tour.ipynb": {"patients": 3, "size": 32},
    "02_supervised_baseline.ipynb": {"patients": 5, "epochs": 2, "steps_per_epoch": 2, "base_channels": 4,
                                      "size": 32, "labeled": 0.5},
    "03_semi_cml_step_by_step.ipynb": {"patients": 5, "epochs": 2, "steps_per_epoch": 2, "base_channels": 4,
                                        "size": 32, "labeled": 0.5, "k_unlabeled": 3},
    "04_asc_explorer.ipynb": {"patients": 5, "epochs": 3, "steps_per_epoch": 2, "base_channels": 4, "size": 32,
                              "k_unlabeled": 3},
    "05_prel_bma.ipynb": {"patients": 5, "epochs": 6, "steps_per_epoch": 2, "base_channels": 4, "size": 32,
                          "labeled": 0.5, "k_unlabeled": 3, "m": 1, "p": 1, "L1": 4},
    "06_tsne_features.ipynb": {"patients": 5, "epochs": 2, "steps_per_epoch": 2, "base_channels": 4, "size": 32,
                               "labeled": 0.5, "sample": 40},
    "07_napari_overlay.ipynb": {"patients": 5, "epochs": 6, "steps_per_epoch": 2, "base_channels": 4, "size": 32,
                                "labeled": 0.5, "k_unlabeled": 3, "m": 1, "p": 1, "L1": 4},
    "08_methods_side_by_side.ipynb": {"patients": 5, "epochs": 3, "steps_per_epoch": 2, "base_channels": 4,
                                      "size": 32, "labeled": 0.5, "pretrain_epochs": 2, "volumetric_epochs": 1,
                                      "patch": [16, 16, 16],
                                      "methods": ["supervised", "mean-teacher", "ua-mt", "cps", "cross-view",
                                                  "meng-fusion", "cmc", "multi-condos", "semi-cml-prel"]},
    # a 2 methods x 2 fractions x 1 seed grid on 5 built-in patients (tests/notebooks/tiny_grid.yaml)
    "09_reproduction_tables.ipynb": {"grid": str(Path(__file__).resolve().parent / "tiny_grid.yaml"), "jobs": 1,
                                     "only_finished": False},
}

# Every figure a notebook shows is saved into out_dir (workbench.viz.export.save_figure);
# the plotly ones also get an interactive .html.
PNGS = {
    "01_data_tour.ipynb": ["slices_brats", "slices_hecktor", "slice_explorer", "histograms_brats",
                           "histograms_hecktor"],
    "02_supervised_baseline.ipynb": ["curves"],
    "03_semi_cml_step_by_step.ipynb": ["unlabeled_pairs", "asc_matrix_untrained", "curves_semi_cml"],
    "04_asc_explorer.ipynb": ["asc_explorer", "asc_epoch_1", "asc_epoch_3", "asc_first_last", "asc_pos_neg",
                              "curves", "asc_explorer_last_epoch"],
    "05_prel_bma.ipynb": ["bma_timeline", "bma_pool_last_epoch", "pseudo_labels", "stage2_gain", "teacher_curves"],
    "06_tsne_features.ipynb": ["tsne_semi_cml_slices_by_source", "tsne_semi_cml_slices_by_tumour",
                               "tsne_compare_slices", "tsne_compare_pixels"],
    "07_napari_overlay.ipynb": ["overlay_slice", "overlay_explorer", "napari_overlay"],
    "08_methods_side_by_side.ipynb": ["methods_dsc", "methods_curves", "multi_condos_translations",
                                      "volumetric_patch_and_prediction", "volumetric_napari"],
    "09_reproduction_tables.ipynb": ["dsc_vs_labeled_brats", "methods_dsc_brats"],
}
PLOTLY = {"bma_pool_last_epoch", "asc_explorer", "asc_epoch_1", "asc_epoch_3", "asc_explorer_last_epoch", "tsne_semi_cml_slices_by_source",
          "tsne_semi_cml_slices_by_tumour", "tsne_compare_slices", "tsne_compare_pixels"}
#: text every run of a notebook must show (stream, plain, markdown or HTML outputs): the split,
#: what steered training (validation, not test) and the protocol card next to its results tables
OUTPUT_TEXT = {
    "02_supervised_baseline.ipynb": ["unlabeled patients:", "val patients:", "test patients:",
                                     "steered training: validation patients", "sample std (ddof 1)",
                                     "sample std over patients"],
    "03_semi_cml_step_by_step.ipynb": ["labeled patients:", "unlabeled patients:", "val patients:",
                                        "test patients:", "steered training: validation patients"],
    "05_prel_bma.ipynb": ["val patients:", "validation DSC (steers training)", "validation (steers training)",
                          "test (not used in training)", "steered training: validation patients"],
    "08_methods_side_by_side.ipynb": ["Protocol card", "validation patients (selection val)",
                                      "sample std over seeds, ddof 1", "95% bootstrap CI"],
    "09_reproduction_tables.ipynb": ["Protocol card", "validation patients (selection val)",
                                     "sample std over seeds, ddof 1", "95% bootstrap CI", "vs Sup: paired DSC",
                                     "not decided (p = n/a)", "Sup &lt; Semi-CML"],
}
#: notebook 09 runs the tiny grid with a claimed order, so that its claims table is shown
TINY_CLAIMS = 'reference: Sup\nclaims:\n  - "Sup < Semi-CML"\n'

#: text no run of a notebook may show: per-epoch scores called test scores, unstamped
FORBIDDEN_TEXT = ["test feedback (paper protocol)", "earlier protocol: steered training"]
#: notebooks that take a napari screenshot when a display exists (an Xvfb started here)
NEEDS_DISPLAY = {"07_napari_overlay.ipynb", "08_methods_side_by_side.ipynb"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_every_notebook_has_one_parameters_cell_and_a_tiny_setting():
    import nbformat

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert path.name in TINY, f"{path.name}: add tiny parameters to this test"
        assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code"), f"{path.name}: strip outputs"


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, tmp_path, monkeypatch):
    params = dict(TINY[name], out_dir=str(tmp_path / "out"))
    if name == "09_reproduction_tables.ipynb":
        grid = tmp_path / "tiny_grid_claims.yaml"
        grid.write_text(Path(params["grid"]).read_text() + TINY_CLAIMS)
        params["grid"] = str(grid)
    with contextlib.ExitStack() as stack:
        if name in NEEDS_DISPLAY:  # the kernel inherits DISPLAY from this process
            monkeypatch.setenv("DISPLAY", stack.enter_context(virtual_display()))
        pm.execute_notebook(str(NOTEBOOKS / name), str(tmp_path / name), parameters=params, kernel_name="python3",
                            cwd=str(tmp_path), progress_bar=False)
    _check_outputs(name, tmp_path / name, tmp_path / "out")


def test_notebook_08_tabulates_a_reproduce_output_folder(tmp_path):
    """With ``grid_dir``, notebook 08 reads the finished cells of a ``workbench reproduce --out``
    folder (the tiny grid at 10% plus a Multi-ConDoS row with a 1-epoch pre-training) and trains nothing."""
    from workbench.reproduce import reproduce

    spec = yaml.safe_load((Path(__file__).resolve().parent / "tiny_grid.yaml").read_text())
    spec["labeled"] = [0.1]
    spec["methods"].append({"label": "Multi-ConDoS", "method": "supervised",
                            "pretrain": {"method": "multi-condos", "epochs": 1, "steps_per_epoch": 2, "batch_size": 4}})
    grid = tmp_path / "tiny_methods.yaml"
    grid.write_text(yaml.safe_dump(spec, sort_keys=False))
    report = reproduce(grid, tmp_path / "grid", quiet=True)
    assert not report.failures and len(report.cells) == 3
    name = "08_methods_side_by_side.ipynb"
    params = {"grid_dir": str(tmp_path / "grid"), "grid": "", "kind": "brats", "labeled": 0.1,
              "out_dir": str(tmp_path / "out")}  # grid "": the grid.yaml that reproduce wrote there
    pm.execute_notebook(str(NOTEBOOKS / name), str(tmp_path / name), parameters=params, kernel_name="python3",
                        cwd=str(tmp_path), progress_bar=False)
    _check_outputs(name, tmp_path / name, tmp_path / "out", skip=("volumetric_patch_and_prediction", "volumetric_napari"))
    assert "3 finished cells of 3 rows of grid tiny" in _output_text(tmp_path / name)
    assert "section 6 skipped" in _output_text(tmp_path / name)  # trains nothing, in 3D neither
    assert not any(p.is_dir() for p in (tmp_path / "out").iterdir())  # no run folder: nothing trained here


def test_notebook_09_only_finished_tabulates_and_counts_the_missing_cells(tmp_path):
    """``only_finished = True`` trains nothing: of the tiny grid's 4 cells only the 2 at 10%
    have run (``workbench reproduce`` of that fraction alone), so 2 are tabulated and 2 missing."""
    from workbench.reproduce import load_grid, plan_cells, reproduce

    tiny = Path(__file__).resolve().parent / "tiny_grid.yaml"
    spec = yaml.safe_load(tiny.read_text())
    spec["labeled"] = [0.1]
    half = tmp_path / "tiny_10.yaml"
    half.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "grid"
    assert len(reproduce(half, out, quiet=True).cells) == 2
    before = sorted(p.name for p in out.iterdir())
    name = "09_reproduction_tables.ipynb"
    params = {"grid": str(tiny), "out_dir": str(out), "jobs": 1, "only_finished": True}
    pm.execute_notebook(str(NOTEBOOKS / name), str(tmp_path / name), parameters=params, kernel_name="python3",
                        cwd=str(tmp_path), progress_bar=False)
    shown = _output_text(tmp_path / name)
    assert "tiny: 4 cells, 2 already finished" in shown and "tabulating those only (only_finished = True)" in shown
    assert "2 of 4 cells are missing (not run)" in shown
    missing = [c.run_dir for c in plan_cells(load_grid(tiny, check_paths=False, check_device=False), out)
               if c.labeled == 0.05]
    assert len(missing) == 2 and not any(d.exists() for d in missing), "nothing trained"
    assert {p.name for p in out.iterdir() if p.is_dir()} <= set(before)


@pytest.fixture(scope="module")
def given_runs(tmp_path_factory) -> dict[str, str]:
    """Tiny finished runs to hand to the notebooks that view a given run: supervised, Semi-CML
    and Semi-CML + PReL (whose stage-2 losses appear only from epoch L1)."""
    from workbench.cache import builtin_data, cached_run
    from workbench.train import TrainConfig

    cache = tmp_path_factory.mktemp("given-runs")
    tiny = dict(data=str(builtin_data("brats", 5, cache=cache)), labeled=0.5, epochs=6, steps_per_epoch=2,
                base_channels=4, size=32, unlabeled_batch_size=3)
    prel = {"m": 1, "p": 1, "L1": 4}
    return {method: str(cached_run(TrainConfig(method=method, options=prel if method == "semi-cml-prel" else {},
                                               **tiny), cache, quiet=True))
            for method in ("supervised", "semi-cml", "semi-cml-prel")}


#: the notebooks that view a given run folder, and which runs they are given
GIVEN = {
    "04_asc_explorer.ipynb": {"run_dir": "semi-cml-prel"},
    "06_tsne_features.ipynb": {"supervised_run": "supervised", "semi_cml_run": "semi-cml", "sample": 40},
    "07_napari_overlay.ipynb": {"run_dir": "semi-cml-prel"},
}


@pytest.mark.parametrize("name", sorted(GIVEN))
def test_notebook_views_a_given_run_and_trains_nothing(name, given_runs, tmp_path, monkeypatch):
    params = {key: given_runs.get(value, value) for key, value in GIVEN[name].items()}
    params["out_dir"] = str(tmp_path / "out")
    with contextlib.ExitStack() as stack:
        if name in NEEDS_DISPLAY:
            monkeypatch.setenv("DISPLAY", stack.enter_context(virtual_display()))
        pm.execute_notebook(str(NOTEBOOKS / name), str(tmp_path / name), parameters=params, kernel_name="python3",
                            cwd=str(tmp_path), progress_bar=False)
    _check_outputs(name, tmp_path / name, tmp_path / "out")
    assert not (tmp_path / "runs" / "cache").exists()  # nothing trained or generated here


def _check_outputs(name: str, executed: Path, out: Path, skip: tuple[str, ...] = ()) -> None:
    """The texts an executed notebook must (and must not) show, and the figures it saved in
    ``out`` (but those in ``skip``, of a section the run's parameters leave out)."""
    shown = _output_text(executed)
    for text in OUTPUT_TEXT.get(name, []):
        assert text in shown, f"{name}: its outputs do not show {text!r}"
    for text in FORBIDDEN_TEXT:
        assert text not in shown, f"{name}: its outputs show {text!r}"
    for stem in (s for s in PNGS[name] if s not in skip):
        png = out / f"{stem}.png"
        if stem in PLOTLY:
            assert (out / f"{stem}.html").is_file(), f"{stem}.html: the interactive copy"
            if not png.exists() and not _has_browser():
                continue  # no browser for kaleido: save_figure wrote the HTML and warned
        assert png.is_file(), f"{name} did not save {png.name}; it saved {sorted(p.name for p in out.glob('*.png'))}"
        assert png.read_bytes()[:8] == PNG_MAGIC, png.name


def _has_browser() -> bool:
    try:
        find_browser()
    except RuntimeError:
        return False
    return True


def _output_text(path: Path) -> str:
    """Every text output of an executed notebook, joined (streams, text/plain, markdown, HTML)."""
    import nbformat

    parts = []
    for cell in nbformat.read(path, as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            for mime in ("text/plain", "text/markdown", "text/html"):
                value = output.get("data", {}).get(mime)
                if value:
                    parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)
