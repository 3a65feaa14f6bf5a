"""The notebooks' text, read without running them: each .ipynb in step with its Jupytext text twin,
stored without outputs, LaTeX that renders, and citations a reader can follow."""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TEXT_TWINS = sorted(NOTEBOOK_DIR.glob("*.py"))
#: files of the project's design notes and seed papers, which are not in the repository
NOT_IN_REPO = re.compile(r"DESIGN\.md|STYLE\.md|seeds/|\b[\w-]+\.txt\b")
FIX = "run `make notebooks` (regenerates every .ipynb from its .py) and commit both"


def _cells(nb) -> list[tuple[str, str, list[str]]]:
    return [(cell.cell_type, cell.source, list(cell.metadata.get("tags", []))) for cell in nb.cells]


def _difference(stored, expected) -> str:
    """What differs between a cell of the .ipynb and the same cell read from the .py."""
    if stored[0] != expected[0]:
        return f"a {stored[0]} cell in the .ipynb, a {expected[0]} cell in the .py"
    if stored[2] != expected[2]:
        return f"tags {stored[2]} in the .ipynb, {expected[2]} in the .py"
    lines, want = stored[1].splitlines(), expected[1].splitlines()
    n = next((k for k, (a, b) in enumerate(zip(lines, want)) if a != b), min(len(lines), len(want)))
    return (f"source line {n + 1}: {lines[n] if n < len(lines) else '<end>'!r} in the .ipynb, "
            f"{want[n] if n < len(want) else '<end>'!r} in the .py")


def test_jupytext_pairs_every_notebook_with_a_percent_script():
    config = (NOTEBOOK_DIR / "jupytext.toml").read_text(encoding="utf-8")
    assert re.search(r'^formats\s*=\s*"ipynb,py:percent"', config, re.M), config


def test_every_notebook_has_its_text_twin_and_vice_versa():
    notebooks, texts = {p.stem for p in NOTEBOOKS}, {p.stem for p in TEXT_TWINS}
    assert notebooks, "no notebooks in notebooks/"
    assert not notebooks - texts, (f"notebooks without a text twin: {sorted(p + '.ipynb' for p in notebooks - texts)}"
                                   f" (create it: .venv/bin/jupytext --to py:percent notebooks/NAME.ipynb)")
    assert not texts - notebooks, (f"text twins without a notebook: {sorted(p + '.py' for p in texts - notebooks)}"
                                   f" (run `make notebooks`, or delete the .py)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_in_step_with_its_text_twin(path):
    """Cell types, sources and tags of the .ipynb are what jupytext reads from its .py."""
    twin = path.with_suffix(".py")
    if not twin.is_file():
        pytest.skip(f"{twin.name} is missing (see test_every_notebook_has_its_text_twin_and_vice_versa)")
    text = jupytext.read(twin)
    representation = text.metadata.get("jupytext", {}).get("text_representation", {})
    assert representation.get("format_name") == "percent", f"{twin.name} is not in Jupytext's percent format"
    assert text.metadata.get("kernelspec", {}).get("name") == "python3", f"{twin.name}: kernelspec is not python3"
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata.get("kernelspec") == text.metadata["kernelspec"], (
        f"{path.name}: kernelspec differs from {twin.name}'s; {FIX}")
    want, have = _cells(text), _cells(notebook)
    for i, (expected, stored) in enumerate(zip(want, have)):
        assert stored == expected, (
            f"{path.name} is out of step with {twin.name} at cell {i} ({_difference(stored, expected)}); {FIX}")
    assert len(have) == len(want), (
        f"{path.name} is out of step with {twin.name}: {len(have)} cells in the .ipynb, {len(want)} in the .py; {FIX}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; run `make notebooks` to strip them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell(path):
    """papermill injects its parameters after the one code cell tagged ``parameters``."""
    notebook = nbformat.read(path, as_version=4)
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: cells tagged 'parameters': {tagged} (papermill needs exactly one)"
    assert notebook.cells[tagged[0]].cell_type == "code", f"{path.name}: the 'parameters' cell is not code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_latex_has_single_backslashes(path):
    """``$1\\times1$`` in the cell source, not ``$1\\\\times1$`` (an escaped backslash)."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            assert "\\\\" not in cell.source, f"{path.name} {cell.id}: doubled backslash"
            assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", cell.source), f"{path.name} {cell.id}: control char"


@pytest.mark.parametrize("path", NOTEBOOKS + [ROOT / "README.md"], ids=lambda p: p.stem)
def test_citations_point_to_papers_or_files_in_the_repo(path):
    if path.suffix == ".ipynb":
        text = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
    else:
        text = path.read_text(encoding="utf-8")
    assert not NOT_IN_REPO.findall(text), f"{path.name} cites files that are not in the repository"
    for cited in re.findall(r"`(docs/[\w./-]+\.md)`", text):
        assert (ROOT / cited).is_file(), f"{path.name}: {cited} does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_states_its_measured_runtime_at_the_top(path):
    """The first cell says how long the notebook runs with its defaults, and on what machine."""
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell is not the title"
    match = re.search(r"\*\*Runtime\*\* \(defaults, measured on (?P<machine>[^)]+)\): (?P<text>[^\n]+)", first.source)
    assert match, f"{path.name}: no '**Runtime** (defaults, measured on MACHINE): ...' line in the first cell"
    assert "CPU" in match["machine"] and re.search(r"\d", match["text"]), match.group(0)
