"""The notebooks' text, read without running them: LaTeX that renders, and citations a reader can follow."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: files of the project's design notes and seed papers, which are not in the repository
NOT_IN_REPO = re.compile(r"DESIGN\.md|STYLE\.md|seeds/|\b[\w-]+\.txt\b")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_latex_has_single_backslashes(path):
    """``$1\\times1$`` in the cell source, not ``$1\\\\times1$`` (a non-raw generator string)."""
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
