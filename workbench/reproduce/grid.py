"""The grid: what :func:`~workbench.reproduce.load.load_grid` makes of a grid file (layout:
:mod:`workbench.reproduce`): :class:`Grid` with its :class:`GridDataset` and :class:`GridMethod`
entries, the keys each block may hold, where grid files are found (the shipped ones in
``workbench/grids/``, package data found through :mod:`importlib.resources`), and the checks of
single values that the loader's block checkers share: a ``settings`` block against the
TrainConfig fields and their types (:func:`_settings_problems`, :func:`_type_problem`),
unknown keys, labeled fractions. :class:`GridError` reports every problem of a file at once."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from workbench.config import TrainConfig
from workbench.data.synthetic import dataset_folder_name
from workbench.errors import ConfigError
from workbench.fields import field_problem, field_types

__all__ = ["GridError", "Grid", "GridDataset", "GridMethod", "grid_path", "shipped_grids", "parse_claim", "slugify"]

BUILTIN_KINDS = ("brats", "hecktor")
FORMATS = ("auto", "brats", "hecktor", "generic", "la", "brats2019-h5")  # config.FORMATS (a test checks)
GRID_KEYS = (
    "name",
    "description",
    "paper_table",
    "datasets",
    "methods",
    "labeled",
    "seeds",
    "settings",
    "settings_by_labeled",
    "reference",
    "claims",
)
DATASET_KEYS = (
    "name",
    "kind",
    "patients",
    "data_seed",
    "difficulty",
    "path",
    "format",
    "modalities",
    "settings",
    "paper",
)
METHOD_KEYS = ("label", "method", "options", "pretrain", "labeled", "settings", "paper")
#: TrainConfig fields that the grid's structure sets; a ``settings`` block may not
CELL_FIELDS = ("method", "data", "fmt", "modalities", "labeled", "seed", "options", "init")
#: PretrainConfig fields taken from the cell; the rest may be set under ``pretrain``
PRETRAIN_FROM_CELL = (
    "data",
    "fmt",
    "modalities",
    "split",
    "split_seed",
    "test_fraction",
    "val_fraction",
    "crop",
    "size",
    "seed",
    "base_channels",
    "device",
)
PLACEHOLDER = "/EDIT"


class GridError(ConfigError):
    """A grid file with problems; ``problems`` holds one line per problem (key: what is wrong)."""

    def __init__(self, path: str | Path, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = [f"{path}: {p}" for p in problems]
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------- the grid
@dataclass
class GridDataset:
    """One dataset of a grid: a built-in ``kind`` generated on demand, or a real folder ``path``."""

    name: str
    kind: str | None = None  # brats | hecktor (built-in)
    path: Path | None = None  # a real folder
    fmt: str = "auto"
    modalities: list[str] | None = None
    patients: int = 20
    data_seed: int = 0
    difficulty: str | dict[str, Any] | None = None  # built-in: a preset name or mapping (None: paper)
    settings: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None  # the paper dataset whose columns match (brats / hecktor)

    def folder(self, out: Path) -> Path:
        """The data folder of this dataset (built-in: under ``out``)."""
        if self.kind:
            return out / dataset_folder_name(self.kind, self.patients, self.data_seed, self.difficulty)
        assert self.path is not None
        return self.path


@dataclass
class GridMethod:
    """One row of the tables: a registered method with options, optionally after a pre-training."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] | None = None  # PretrainConfig fields (method, epochs, ...)
    labeled: list[float] | None = None  # None: the grid's fractions
    settings: dict[str, Any] = field(default_factory=dict)
    paper: tuple[str, str] | None = None  # (paper table id, row)

    @property
    def slug(self) -> str:
        return slugify(self.label)


@dataclass
class Grid:
    """A validated grid (see :mod:`workbench.reproduce` for the YAML)."""

    name: str
    path: Path
    datasets: list[GridDataset]
    methods: list[GridMethod]
    labeled: list[float]
    seeds: list[int]
    settings: dict[str, Any] = field(default_factory=dict)
    settings_by_labeled: dict[float, dict[str, Any]] = field(default_factory=dict)
    paper_table: str | None = None
    description: str = ""
    text: str = ""  # the YAML as read
    reference: str | None = None  # the row the others are tested against; None: the first method
    claims: list[str] = field(default_factory=list)  # claimed orders, "a < b < c" (see parse_claim)

    def fractions(self, method: GridMethod) -> list[float]:
        return method.labeled if method.labeled is not None else self.labeled

    @property
    def reference_label(self) -> str:
        """The label of the row every other row is tested against."""
        return self.reference if self.reference is not None else self.methods[0].label

    def all_fractions(self) -> list[float]:
        return sorted({f for m in self.methods for f in self.fractions(m)})


def parse_claim(text: str) -> list[tuple[str, str, str]]:
    """The adjacent pairs of a claimed order: ``"a < b > c"`` -> ``[("a", "<", "b"), ("b", ">", "c")]``.

    Labels are the text between the ``<`` / ``>`` signs, stripped (empty when a sign has nothing
    on one side)."""
    parts = re.split(r"([<>])", text)
    labels, ops = [p.strip() for p in parts[0::2]], parts[1::2]
    return [(labels[i], ops[i], labels[i + 1]) for i in range(len(ops))]


def slugify(label: str) -> str:
    """A file-name-safe form of a row label: ``sup+mse+nce*`` -> ``sup-mse-ncestar``."""
    text = label.strip().replace("+", "-").replace("*", "star").replace("%", "pct").replace(" ", "_")
    return re.sub(r"[^A-Za-z0-9._-]", "", text) or "row"


def shipped_grids() -> list[str]:
    """Names of the grids shipped in ``workbench/grids/``."""
    folder = resources.files("workbench") / "grids"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def grid_path(name_or_path: str | Path) -> Path:
    """A grid file: an existing path, or the name of a shipped grid (``semi-cml-table1-cpu``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = Path(str(resources.files("workbench") / "grids" / f"{name_or_path}.yaml"))
    if shipped.is_file():
        return shipped
    if path.is_dir():
        raise GridError(name_or_path, ["is a folder, not a grid YAML file"])
    raise GridError(name_or_path, [f"no such grid file (shipped grids: {', '.join(shipped_grids())})"])


# ------------------------------------------------------------------------------- value checks
def _type_problem(key: str, value: Any, hint: Any) -> str | None:
    """A problem line when ``value`` does not fit a TrainConfig field typed ``hint``: the one
    typed check of configs, options and grids (:func:`workbench.fields.field_problem`)."""
    return field_problem(key, value, hint)


def _settings_problems(where: str, values: Any, check_device: bool = False) -> list[str]:
    """Unknown keys, grid-owned keys and wrongly typed values of a ``settings`` block (and,
    with ``check_device``, ``device: cuda`` on a machine without a CUDA GPU)."""
    import torch

    if values is None:
        return []
    if not isinstance(values, dict):
        return [f"{where}: expected a mapping of TrainConfig fields, got {values!r}"]
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = field_types(TrainConfig)
    problems = []
    for key, value in values.items():
        if key in CELL_FIELDS:
            problems.append(
                f"{where}.{key}: set by the grid itself (datasets / methods / labeled / seeds), not in settings"
            )
        elif key not in fields:
            problems.append(
                f"{where}.{key}: unknown setting; TrainConfig fields: "
                f"{', '.join(k for k in fields if k not in CELL_FIELDS)}"
            )
        else:
            problem = _type_problem(f"{where}.{key}", value, hints[key])
            if problem:
                problems.append(problem)
            elif key == "device" and value == "cuda" and check_device and not torch.cuda.is_available():
                problems.append(
                    f"{where}.device: 'cuda' but this machine has no CUDA GPU; set {where}.device "
                    "to cpu or auto, or run on a GPU"
                )
    return problems


def _unknown_keys(where: str, values: dict, known: Sequence[str]) -> list[str]:
    return [
        f"{where}{'.' if where else ''}{k}: unknown key; known keys: {', '.join(known)}"
        for k in values
        if k not in known
    ]


def _fraction_problem(where: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        return f"{where}: {value!r} is not a labeled fraction in (0, 1] (e.g. 0.1 for 10%)"
    return None
