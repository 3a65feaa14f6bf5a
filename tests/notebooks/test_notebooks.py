"""Every notebook runs top to bottom through papermill with tiny parameters."""

import contextlib
from pathlib import Path

import papermill as pm
import pytest

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
    "07_napari_overlay.ipynb": {"patients": 5, "epochs": 3, "steps_per_epoch": 2, "base_channels": 4, "size": 32,
                                "labeled": 0.5},
    "08_methods_side_by_side.ipynb": {"patients": 5, "epochs": 3, "steps_per_epoch": 2, "base_channels": 4,
                                      "size": 32, "labeled": 0.5, "pretrain_epochs": 2},
    # a 2 methods x 2 fractions x 1 seed grid on 5 built-in patients (tests/notebooks/tiny_grid.yaml)
    "09_reproduction_tables.ipynb": {"grid": str(Path(__file__).resolve().parent / "tiny_grid.yaml"), "jobs": 1},
}

# Every figure a notebook shows is saved into out_dir (workbench.viz.export.save_figure);
# the plotly ones also get an interactive .html.
PNGS = {
    "01_data_tour.ipynb": ["slices_brats", "slices_hecktor", "histograms_brats", "histograms_hecktor"],
    "02_supervised_baseline.ipynb": ["curves"],
    "03_semi_cml_step_by_step.ipynb": ["unlabeled_pairs", "asc_matrix_untrained", "curves_semi_cml"],
    "04_asc_explorer.ipynb": ["asc_explorer", "asc_epoch_1", "asc_epoch_3", "asc_first_last", "asc_pos_neg",
                              "curves", "asc_explorer_last_epoch"],
    "05_prel_bma.ipynb": ["bma_timeline", "bma_pool_last_epoch", "pseudo_labels", "stage2_gain"],
    "06_tsne_features.ipynb": ["tsne_semi_cml_slices_by_source", "tsne_semi_cml_slices_by_tumour",
                               "tsne_compare_slices", "tsne_compare_pixels"],
    "07_napari_overlay.ipynb": ["overlay_slice", "napari_overlay"],
    "08_methods_side_by_side.ipynb": ["methods_dsc", "methods_curves", "multi_condos_translations"],
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
NEEDS_DISPLAY = {"07_napari_overlay.ipynb"}
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
    shown = _output_text(tmp_path / name)
    for text in OUTPUT_TEXT.get(name, []):
        assert text in shown, f"{name}: its outputs do not show {text!r}"
    for text in FORBIDDEN_TEXT:
        assert text not in shown, f"{name}: its outputs show {text!r}"
    out = tmp_path / "out"
    for stem in PNGS[name]:
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
