"""Every notebook runs top to bottom through papermill with tiny parameters."""

from pathlib import Path

import papermill as pm
import pytest

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
}


def test_every_notebook_has_one_parameters_cell_and_a_tiny_setting():
    import nbformat

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assert path.name in TINY, f"{path.name}: add tiny parameters to this test"
        assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code"), f"{path.name}: strip outputs"


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, tmp_path):
    params = dict(TINY[name], out_dir=str(tmp_path / "out"))
    pm.execute_notebook(str(NOTEBOOKS / name), str(tmp_path / name), parameters=params, kernel_name="python3",
                        cwd=str(tmp_path), progress_bar=False)
    assert any((tmp_path / "out").rglob("*.png")), "the notebook saved its figures"
