"""The papers' published values (``workbench/data/paper_values.yaml``), by table id: what a grid's
``paper_table`` and a row's ``paper`` name, and what the tables and plots show as "paper (real
data)" next to our runs. The file is package data of ``workbench.data``, found through
:mod:`importlib.resources`, so it does not depend on where this module lies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

__all__ = ["PAPER_LABEL", "PaperTable", "load_paper_values"]

#: the label of the table rows and plot markers that hold published values
PAPER_LABEL = "paper (real data)"


@dataclass
class PaperTable:
    """Published values of one paper table: dataset -> fraction -> row -> modality -> (DSC, Sens);
    a value the paper does not report (the volumetric papers give no sensitivity) is NaN."""

    id: str
    paper: str
    table: str
    data: str
    values: dict[str, dict[float, dict[str, dict[str, tuple[float, float]]]]]

    def rows(self) -> list[str]:
        return list(dict.fromkeys(r for by_f in self.values.values() for rows in by_f.values() for r in rows))

    def get(self, dataset: str | None, labeled: float, row: str) -> dict[str, tuple[float, float]]:
        """``{modality: (dsc, sens)}``; empty when the paper has no such row."""
        by_fraction = self.values.get(dataset or "", {})
        for fraction, rows in by_fraction.items():
            if math.isclose(fraction, labeled):
                return rows.get(row, {})
        return {}

    @property
    def citation(self) -> str:
        return f"{self.paper}, {self.table} ({self.data})"


def _number(value: float | None) -> float:
    """A published value; ``null`` in the file (not reported) is NaN."""
    return math.nan if value is None else float(value)


def load_paper_values(path: str | Path | None = None) -> dict[str, PaperTable]:
    """The published values in ``workbench/data/paper_values.yaml`` (or ``path``), by table id."""
    text = Path(path).read_text() if path else (resources.files("workbench") / "data" / "paper_values.yaml").read_text()
    raw = yaml.safe_load(text)
    tables = {}
    for table_id, entry in raw["tables"].items():
        values = {
            dataset: {
                float(f): {
                    str(row): {m: (_number(v[0]), _number(v[1])) for m, v in cols.items()} for row, cols in rows.items()
                }
                for f, rows in by_f.items()
            }
            for dataset, by_f in entry["values"].items()
        }
        tables[table_id] = PaperTable(table_id, entry["paper"], entry["table"], entry["data"], values)
    return tables
