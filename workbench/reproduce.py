"""``workbench reproduce``: a grid of datasets x methods x labeled fractions x seeds, run and tabulated.

A grid is a YAML file (shipped ones in ``workbench/grids/``, see :func:`grid_path`)::

    name: my-grid
    paper_table: semi-cml-prel/table1     # optional: published values to show (workbench/data/paper_values.yaml)
    datasets:
      - {name: brats, kind: brats, patients: 20}               # built-in: generated into OUT/data-...
      - {name: hecktor, path: /data/hecktor, format: hecktor,  # a real folder (relative: to the YAML)
         modalities: [ct, pet], settings: {crop: 144, size: null}}
    methods:
      - {label: Sup, method: supervised, paper: Sup}
      - {label: Semi-CML, method: semi-cml, options: {variant: sup+mse+asc}}
      - {label: Multi-ConDoS, method: supervised, pretrain: {method: multi-condos, epochs: 10}}
      - {label: Sup 100%, method: supervised, labeled: [1.0]}  # this row only at these fractions
    labeled: [0.05, 0.1]
    seeds: [0, 1, 2]
    settings: {epochs: 20, steps_per_epoch: 20}               # any TrainConfig field
    settings_by_labeled: {0.01: {epochs: 121}}
    reference: Sup                                            # optional: the row the others are tested against
    claims:                                                   # optional: claimed orders, decided on our runs
      - "Sup < Semi-CML"                                      # a chain "a < b < c" claims each adjacent pair

A cell's TrainConfig is ``settings``, then the dataset's ``settings``, then
``settings_by_labeled[fraction]``, then the method's ``settings``, plus the cell's method,
options, data, fraction and seed. :func:`load_grid` checks all of it before anything runs
and reports every problem as one line naming the key and the value.

**Design choice: a cell is a library call in a worker process, and its run folder is the
record.** The issue allowed a papermill run of a training notebook per cell. We call
:class:`~workbench.train.Trainer` directly instead, because (1) the run folder it writes
(``config.json`` with versions and the full config, ``events.jsonl``, ``checkpoint.pt``,
``metrics.json``, ``per_patient.csv``) already is a complete record, and an executed notebook
would only repeat it; (2) the Trainer resumes a killed cell exactly from its checkpoint,
which a re-executed notebook would not do without extra logic; (3) a failure is a Python
exception we can report in one line (with the traceback in ``RUN/error.log``) rather than a
papermill ``PapermillExecutionError`` wrapping a kernel traceback; (4) no kernel start-up per
cell. The notebook ``09_reproduction_tables.ipynb`` is the human-readable record of a grid:
it runs (or only tabulates) a grid and shows its tables and plots.

Cells: run folder ``OUT/<dataset>-<method slug>-l<fraction>-s<seed>``. A cell with
``metrics.json`` is finished and skipped; one with a checkpoint but no metrics (killed) is
resumed from it (from scratch if the checkpoint is unreadable); a folder made with other
settings is never overwritten: the cell is reported as failed and the message says which
settings differ. A failing cell does not stop the others; the exit status is then 1.
``--jobs N`` runs cells in N spawned processes (torch threads split between them). Rows
with a ``pretrain`` first run that pre-training once per (dataset, row, seed), in
``OUT/<dataset>-<method slug>-pretrain-s<seed>``, shared by the row's fractions.

Outputs in OUT: ``per_patient.csv`` (one tidy row per dataset, method, fraction, seed,
modality and test patient, every metric, and the run's ``selection``), ``tables.md`` and
``tables.html``, ``claims.csv`` (when the grid has ``claims``), ``dsc_vs_labeled_<dataset>.png``,
``cells.csv`` (each cell's status, time and error) and ``grid.yaml`` (the grid as run).

``tables.md`` / ``tables.html``, top to bottom (statistics: :mod:`workbench.stats`):

* the protocol card of the finished cells (data and hash, patients per set, what steered
  training, slices, empty-mask rule, seeds, the std / CI / test definitions);
* one table per dataset and fraction: rows = methods, columns = modality x (DSC, Sens); each of
  our cells is ``mean ± std [CI]``: the mean over seeds of the per-run mean over patients, the
  sample std over seeds (ddof 1) and the 95% bootstrap CI (BCa) of the mean over patients x
  seeds; the paper's values in rows marked "paper (real data)";
* under it, "vs <reference>": each other row's paired DSC difference to the ``reference`` row
  (default: the grid's first method) over matched (patient, seed) pairs, the Wilcoxon verdict on
  "row > reference" and the minimal detectable difference of the cohort;
* "Claims": each claimed order per dataset, fraction and modality on DSC, holds / reversed /
  not decided (p);
* the failed cells.

A run steered by its test patients (``selection: test``, the papers' protocol) stamps the card,
every table and plot it reaches with :data:`~workbench.stats.TEST_FEEDBACK_STAMP`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import yaml

from workbench.errors import ConfigError, DataError, WorkbenchError
from workbench.stats import (TEST_FEEDBACK_STAMP, PairedResult, ProtocolCard, bootstrap_ci, decide,
                             minimal_detectable_difference, paired_test, protocol_card, sample_std)

__all__ = [
    "GridError", "Grid", "GridDataset", "GridMethod", "Cell", "CellResult", "GridReport", "ResultTable",
    "PaperTable", "grid_path", "shipped_grids", "load_grid", "plan_cells", "reproduce", "tabulate",
    "collect_rows", "collect_protocols", "results_tables", "decide_claims", "claims_markdown", "claims_html",
    "parse_claim", "plot_dsc_vs_labeled", "load_paper_values",
]

BUILTIN_KINDS = ("brats", "hecktor")
FORMATS = ("auto", "brats", "hecktor", "generic")
GRID_KEYS = ("name", "description", "paper_table", "datasets", "methods", "labeled", "seeds", "settings",
             "settings_by_labeled", "reference", "claims")
DATASET_KEYS = ("name", "kind", "patients", "data_seed", "path", "format", "modalities", "settings", "paper")
METHOD_KEYS = ("label", "method", "options", "pretrain", "labeled", "settings", "paper")
#: TrainConfig fields that the grid's structure sets; a ``settings`` block may not
CELL_FIELDS = ("method", "data", "fmt", "modalities", "labeled", "seed", "options", "init")
#: PretrainConfig fields taken from the cell; the rest may be set under ``pretrain``
PRETRAIN_FROM_CELL = ("data", "fmt", "modalities", "split_seed", "test_fraction", "val_fraction", "crop", "size", "seed",
                      "base_channels", "device")
#: config fields that may differ between a run folder and the grid (where, not what, was run)
IGNORED_IN_COMPARISON = ("data", "init", "device", "eval_batch_size")
PLACEHOLDER = "/EDIT"
PAPER_LABEL = "paper (real data)"
#: the table columns' metrics: (per-patient column, header)
TABLE_METRICS = (("dsc", "DSC"), ("sens", "Sens"))


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
    settings: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None  # the paper dataset whose columns match (brats / hecktor)

    def folder(self, out: Path) -> Path:
        """The data folder of this dataset (built-in: under ``out``)."""
        if self.kind:
            return out / f"data-{self.kind}-p{self.patients}-s{self.data_seed}"
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
    """A validated grid (see the module docstring for the YAML)."""

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


def _check_claims(value: Any, methods: Sequence[GridMethod], labeled: Sequence[float]) -> tuple[list[str], list[str]]:
    """The ``claims`` list and one problem line per bad claim (not a chain, unknown label, a row
    against itself, two rows that share no labeled fraction)."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        return [], [f"claims: expected a list of orders such as 'sup < sup+mse', got {value!r}"]
    fractions = {m.label: set(m.labeled if m.labeled is not None else labeled) for m in methods}
    claims, problems = [], []
    for i, text in enumerate(value):
        if not isinstance(text, str):
            problems.append(f"claims[{i}]: {text!r} is not an order such as 'sup < sup+mse'")
            continue
        where = f"claims[{i}] ({text!r})"
        pairs = parse_claim(text)
        if not pairs or any(not left or not right for left, _, right in pairs):
            problems.append(f"{where}: expected method labels joined by < or >, e.g. 'sup < sup+mse'")
            continue
        labels = list(dict.fromkeys(label for left, _, right in pairs for label in (left, right)))
        unknown = [label for label in labels if label not in fractions]
        for label in unknown:
            problems.append(f"{where}: {label!r} is not a method label of the grid; labels: {', '.join(fractions)}")
        for left, _, right in pairs:
            if left in unknown or right in unknown:
                continue
            if left == right:
                problems.append(f"{where}: compares {left!r} with itself")
            elif not fractions[left] & fractions[right]:
                problems.append(f"{where}: {left!r} and {right!r} share no labeled fraction, so they are never "
                                "compared")
        claims.append(text)
    return claims, problems


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


def _type_problem(key: str, value: Any, annotation: str) -> str | None:
    """A problem line when ``value`` does not fit a dataclass field annotated ``annotation``."""
    parts = [p.strip() for p in str(annotation).split("|")]
    if value is None:
        return None if "None" in parts else f"{key}: null is not allowed"
    base = parts[0]
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }.get(base.split("[")[0], None)
    if ok is None:  # list[...] / dict[...]
        ok = isinstance(value, list) if base.startswith("list") else isinstance(value, dict)
    return None if ok else f"{key}: {value!r} is not a valid {base}"


def _settings_problems(where: str, values: Any, check_device: bool = False) -> list[str]:
    """Unknown keys, grid-owned keys and wrongly typed values of a ``settings`` block (and,
    with ``check_device``, ``device: cuda`` on a machine without a CUDA GPU)."""
    import torch

    from workbench.train import TrainConfig

    if values is None:
        return []
    if not isinstance(values, dict):
        return [f"{where}: expected a mapping of TrainConfig fields, got {values!r}"]
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    problems = []
    for key, value in values.items():
        if key in CELL_FIELDS:
            problems.append(f"{where}.{key}: set by the grid itself (datasets / methods / labeled / seeds), "
                            "not in settings")
        elif key not in fields:
            problems.append(f"{where}.{key}: unknown setting; TrainConfig fields: "
                            f"{', '.join(k for k in fields if k not in CELL_FIELDS)}")
        else:
            problem = _type_problem(f"{where}.{key}", value, fields[key].type)
            if problem:
                problems.append(problem)
            elif key == "device" and value == "cuda" and check_device and not torch.cuda.is_available():
                problems.append(f"{where}.device: 'cuda' but this machine has no CUDA GPU; set {where}.device "
                                "to cpu or auto, or run on a GPU")
    return problems


def _unknown_keys(where: str, values: dict, known: Sequence[str]) -> list[str]:
    return [f"{where}{'.' if where else ''}{k}: unknown key; known keys: {', '.join(known)}"
            for k in values if k not in known]


def _fraction_problem(where: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        return f"{where}: {value!r} is not a labeled fraction in (0, 1] (e.g. 0.1 for 10%)"
    return None


def load_grid(path: str | Path, *, check_paths: bool = True, check_device: bool = True) -> Grid:
    """Read and validate a grid file (or a shipped grid's name).

    Args:
        path: a YAML file, or a name from :func:`shipped_grids`.
        check_paths: require real dataset folders to exist (off to tabulate finished runs only).
        check_device: require a CUDA GPU when a setting asks for ``device: cuda``.

    Raises:
        GridError: every problem, one line each, naming the key and the value.
    """
    from workbench.methods import get_method
    from workbench.methods.options import parse_options
    from workbench.train import TrainConfig

    file = grid_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GridError(file, [f"not a UTF-8 text file (byte {exc.start})"]) from None
    except OSError as exc:
        raise GridError(file, [f"unreadable ({exc.strerror or type(exc).__name__})"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise GridError(file, [f"not valid YAML{where}: {problem}"]) from None
    if not isinstance(raw, dict):
        raise GridError(file, ["expected a mapping with keys datasets, methods, labeled, seeds, settings"])
    problems = _unknown_keys("", raw, GRID_KEYS)
    for key in ("datasets", "methods", "labeled", "seeds"):
        if not raw.get(key):
            problems.append(f"{key}: missing or empty")
    papers = load_paper_values()

    settings = raw.get("settings") or {}
    problems += _settings_problems("settings", settings, check_device)

    labeled: list[float] = []
    for i, value in enumerate(raw.get("labeled") or []):
        problem = _fraction_problem(f"labeled[{i}]", value)
        if problem:
            problems.append(problem)
        else:
            labeled.append(float(value))
    if len(set(labeled)) != len(labeled):
        problems.append(f"labeled: {raw.get('labeled')!r} lists a fraction twice")
    seeds: list[int] = []
    for i, value in enumerate(raw.get("seeds") or []):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"seeds[{i}]: {value!r} is not a non-negative integer")
        else:
            seeds.append(value)
    if len(set(seeds)) != len(seeds):
        problems.append(f"seeds: {raw.get('seeds')!r} lists a seed twice")

    paper_table = raw.get("paper_table")
    if paper_table is not None and paper_table not in papers:
        problems.append(f"paper_table: unknown table {paper_table!r}; known: {', '.join(papers)}")
        paper_table = None

    datasets: list[GridDataset] = []
    for i, entry in enumerate(raw.get("datasets") or []):
        where = f"datasets[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping (name, kind or path, ...), got {entry!r}")
            continue
        problems += _unknown_keys(where, entry, DATASET_KEYS)
        name = entry.get("name") or entry.get("kind")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            problems.append(f"{where}.name: {name!r} must be a short name of letters, digits, . _ -")
            name = f"dataset{i}"
        kind, folder = entry.get("kind"), entry.get("path")
        fmt = entry.get("format", "auto")
        if (kind is None) == (folder is None):
            problems.append(f"{where}: give either kind ({' / '.join(BUILTIN_KINDS)}, built-in data) or path "
                            "(a real folder)")
        if kind is not None and kind not in BUILTIN_KINDS:
            problems.append(f"{where}.kind: unknown built-in dataset {kind!r}; choose one of: "
                            f"{', '.join(BUILTIN_KINDS)} (or give path: for a real folder)")
        if fmt not in FORMATS:
            problems.append(f"{where}.format: unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
        path_value: Path | None = None
        if folder is not None:
            path_value = Path(str(folder)).expanduser()
            if not path_value.is_absolute():
                path_value = file.parent / path_value
            if check_paths and str(folder).startswith(PLACEHOLDER):
                problems.append(f"{where}.path: {folder!r} is a placeholder; copy {file.name} and set {where}.path "
                                f"to your {fmt if fmt != 'auto' else 'dataset'} folder")
            elif check_paths and not path_value.is_dir():
                problems.append(f"{where}.path: {str(path_value)!r} does not exist or is not a folder "
                                f"(edit {where}.path)")
        patients, data_seed = entry.get("patients", 20), entry.get("data_seed", 0)
        if isinstance(patients, bool) or not isinstance(patients, int) or patients < 3:
            problems.append(f"{where}.patients: {patients!r} must be an integer >= 3 (split by patient)")
        if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
            problems.append(f"{where}.data_seed: {data_seed!r} must be a non-negative integer")
        modalities = entry.get("modalities")
        if modalities is not None and (not isinstance(modalities, list) or not modalities
                                       or not all(isinstance(m, str) for m in modalities)):
            problems.append(f"{where}.modalities: {modalities!r} must be a list of modality names, e.g. [t1, flair]")
            modalities = None
        ds_settings = entry.get("settings") or {}
        problems += _settings_problems(f"{where}.settings", ds_settings, check_device)
        paper = entry.get("paper", kind or (fmt if fmt in BUILTIN_KINDS else None))
        known_papers = sorted({d for t in papers.values() for d in t.values})
        if "paper" in entry and paper not in known_papers:
            problems.append(f"{where}.paper: {paper!r} is not a dataset of the paper tables; choose one of: "
                            f"{', '.join(known_papers)}")
        datasets.append(GridDataset(name=name, kind=kind, path=path_value, fmt=fmt if kind is None else "auto",
                                    modalities=modalities, patients=patients, data_seed=data_seed,
                                    settings=dict(ds_settings) if isinstance(ds_settings, dict) else {},
                                    paper=paper))
    names = [d.name for d in datasets]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"datasets: the name {name!r} is used twice (give each a distinct name:)")

    methods: list[GridMethod] = []
    for i, entry in enumerate(raw.get("methods") or []):
        where = f"methods[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping (label, method, options, ...), got {entry!r}")
            continue
        problems += _unknown_keys(where, entry, METHOD_KEYS)
        name = entry.get("method")
        label = str(entry.get("label", name))
        where = f"methods[{i}] ({label})"
        options = entry.get("options") or {}
        method_ok = True
        try:
            cls = get_method(str(name))
        except ConfigError as exc:
            problems.append(f"{where}.method: {exc}")
            method_ok = False
        if not isinstance(options, dict):
            problems.append(f"{where}.options: expected a mapping of option: value, got {options!r}")
            options = {}
        elif method_ok:
            try:
                parse_options(cls.options_class, dict(options), cls.name)
            except ConfigError as exc:
                problems.append(f"{where}.options: {exc}")
        pretrain = entry.get("pretrain")
        if pretrain is not None:
            pretrain, pretrain_problems = _check_pretrain(where, pretrain)
            problems += pretrain_problems
        row_labeled = entry.get("labeled")
        fractions = None
        if row_labeled is not None:
            if not isinstance(row_labeled, list) or not row_labeled:
                problems.append(f"{where}.labeled: {row_labeled!r} must be a list of fractions, e.g. [1.0]")
            else:
                fractions = []
                for j, value in enumerate(row_labeled):
                    problem = _fraction_problem(f"{where}.labeled[{j}]", value)
                    if problem:
                        problems.append(problem)
                    else:
                        fractions.append(float(value))
        m_settings = entry.get("settings") or {}
        problems += _settings_problems(f"{where}.settings", m_settings, check_device)
        paper = entry.get("paper")
        paper_ref = None
        if paper is not None:
            paper_ref, problem = _check_paper_ref(where, paper, paper_table, papers)
            if problem:
                problems.append(problem)
        methods.append(GridMethod(label=label, method=str(name), options=dict(options), pretrain=pretrain,
                                  labeled=fractions, settings=dict(m_settings) if isinstance(m_settings, dict) else {},
                                  paper=paper_ref))
    slugs = [m.slug for m in methods]
    for slug in sorted({s for s in slugs if slugs.count(s) > 1}):
        twins = [m.label for m in methods if m.slug == slug]
        problems.append(f"methods: labels {twins} give the same run-folder name {slug!r}; rename one")

    by_labeled: dict[float, dict[str, Any]] = {}
    raw_by_labeled = raw.get("settings_by_labeled") or {}
    if not isinstance(raw_by_labeled, dict):
        problems.append(f"settings_by_labeled: expected a mapping fraction -> settings, got {raw_by_labeled!r}")
        raw_by_labeled = {}
    every_fraction = set(labeled) | {f for m in methods for f in (m.labeled or [])}
    for key, values in raw_by_labeled.items():
        problem = _fraction_problem(f"settings_by_labeled.{key}", key)
        if problem:
            problems.append(problem)
            continue
        if float(key) not in every_fraction:
            problems.append(f"settings_by_labeled.{key}: not one of the grid's labeled fractions "
                            f"{sorted(every_fraction)}")
        problems += _settings_problems(f"settings_by_labeled.{key}", values, check_device)
        by_labeled[float(key)] = dict(values) if isinstance(values, dict) else {}

    if not problems:  # the merged settings of every (dataset, method, fraction) as TrainConfig checks them
        seen: set[str] = set()
        for dataset in datasets:
            for method in methods:
                for fraction in (method.labeled or labeled):
                    values = {**settings, **dataset.settings, **by_labeled.get(fraction, {}), **method.settings}
                    if not check_device and values.get("device") == "cuda":
                        values["device"] = "cpu"
                    try:
                        TrainConfig(**values, method=method.method, data="grid", labeled=fraction,
                                    options=dict(method.options)).validate()
                    except ConfigError as exc:
                        line = f"settings of {dataset.name} / {method.label} / labeled {fraction:g}: {exc}"
                        if str(exc) not in seen:
                            seen.add(str(exc))
                            problems.append(line)
    labels = [m.label for m in methods]
    reference = raw.get("reference")
    if reference is not None and str(reference) not in labels:
        problems.append(f"reference: {reference!r} is not a method label of the grid; labels: {', '.join(labels)}")
    claims, claim_problems = _check_claims(raw.get("claims"), methods, labeled)
    problems += claim_problems
    if problems:
        raise GridError(file, problems)
    return Grid(name=str(raw.get("name") or file.stem), path=file, datasets=datasets, methods=methods,
                labeled=labeled, seeds=seeds, settings=dict(settings), settings_by_labeled=by_labeled,
                paper_table=paper_table, description=str(raw.get("description") or "").strip(), text=text,
                reference=str(reference) if reference is not None else None, claims=claims)


def _check_pretrain(where: str, value: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """``pretrain: multi-condos`` or ``pretrain: {method: multi-condos, epochs: 10, ...}``."""
    from workbench.methods.multi_condos import MultiConDoSOptions, PretrainConfig
    from workbench.methods.options import parse_options

    spec = {"method": value} if isinstance(value, str) else value
    if not isinstance(spec, dict):
        return None, [f"{where}.pretrain: expected a method name or a mapping, got {value!r}"]
    problems = []
    fields = {f.name: f for f in dataclasses.fields(PretrainConfig)}
    for key, item in spec.items():
        if key in PRETRAIN_FROM_CELL:
            problems.append(f"{where}.pretrain.{key}: taken from the cell's settings, not set here")
        elif key not in fields:
            allowed = [k for k in fields if k not in PRETRAIN_FROM_CELL]
            problems.append(f"{where}.pretrain.{key}: unknown key; known keys: {', '.join(allowed)}")
        else:
            problem = _type_problem(f"{where}.pretrain.{key}", item, fields[key].type)
            if problem:
                problems.append(problem)
    if spec.get("method", "multi-condos") != "multi-condos":
        problems.append(f"{where}.pretrain.method: unknown pre-training method {spec['method']!r}; "
                        "choose one of: multi-condos")
    if isinstance(spec.get("options"), dict):
        try:
            parse_options(MultiConDoSOptions, dict(spec["options"]), "multi-condos")
        except ConfigError as exc:
            problems.append(f"{where}.pretrain.options: {exc}")
    return dict(spec), problems


def _check_paper_ref(where: str, value: Any, default_table: str | None,
                     papers: Mapping[str, "PaperTable"]) -> tuple[tuple[str, str] | None, str | None]:
    """``paper: ROW`` (in the grid's paper_table) or ``paper: {table: ID, row: ROW}``."""
    if isinstance(value, str):
        table, row = default_table, value
        if table is None:
            return None, f"{where}.paper: {value!r} names a row but the grid has no paper_table"
    elif isinstance(value, dict) and set(value) <= {"table", "row"} and "row" in value:
        table, row = value.get("table", default_table), str(value["row"])
    else:
        return None, f"{where}.paper: expected a row name or {{table: ID, row: NAME}}, got {value!r}"
    if table not in papers:
        return None, f"{where}.paper.table: unknown table {table!r}; known: {', '.join(papers)}"
    rows = papers[table].rows()
    if row not in rows:
        return None, f"{where}.paper: {row!r} is not a row of {table}; rows: {', '.join(rows)}"
    return (str(table), row), None


# ------------------------------------------------------------------------------- paper values
@dataclass
class PaperTable:
    """Published values of one paper table: dataset -> fraction -> row -> modality -> (DSC, Sens)."""

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


def load_paper_values(path: str | Path | None = None) -> dict[str, PaperTable]:
    """The published values in ``workbench/data/paper_values.yaml`` (or ``path``), by table id."""
    text = Path(path).read_text() if path else (resources.files("workbench") / "data" / "paper_values.yaml").read_text()
    raw = yaml.safe_load(text)
    tables = {}
    for table_id, entry in raw["tables"].items():
        values = {
            dataset: {float(f): {str(row): {m: (float(v[0]), float(v[1])) for m, v in cols.items()}
                                 for row, cols in rows.items()} for f, rows in by_f.items()}
            for dataset, by_f in entry["values"].items()
        }
        tables[table_id] = PaperTable(table_id, entry["paper"], entry["table"], entry["data"], values)
    return tables


# --------------------------------------------------------------------------------------- cells
@dataclass
class Cell:
    """One training run of the grid."""

    dataset: GridDataset
    method: GridMethod
    labeled: float
    seed: int
    run_dir: Path
    config: dict[str, Any]  # TrainConfig fields
    pretrain_dir: Path | None = None
    pretrain_config: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return self.run_dir.name


@dataclass
class CellResult:
    """What happened to a cell in this call: finished (before), trained, resumed, restarted,
    failed or not run (``only_finished``)."""

    status: str
    error: str | None = None
    seconds: float = 0.0


def plan_cells(grid: Grid, out: str | Path) -> list[Cell]:
    """Every cell of ``grid`` with its run folder under ``out`` and its TrainConfig fields,
    in the order datasets, methods, fractions, seeds."""
    from workbench.train import TrainConfig

    out = Path(out)
    cells = []
    pretrain_configs: dict[tuple[str, str, int], list[str]] = {}
    for dataset in grid.datasets:
        for method in grid.methods:
            for fraction in grid.fractions(method):
                for seed in grid.seeds:
                    values = {**grid.settings, **dataset.settings, **grid.settings_by_labeled.get(fraction, {}),
                              **method.settings}
                    values.update(method=method.method, data=str(dataset.folder(out)), fmt=dataset.fmt,
                                  modalities=dataset.modalities, labeled=fraction, seed=seed,
                                  options=dict(method.options))
                    run_dir = out / f"{dataset.name}-{method.slug}-l{fraction:g}-s{seed}"
                    cell = Cell(dataset, method, fraction, seed, run_dir, values)
                    if method.pretrain is not None:
                        base = dataclasses.asdict(TrainConfig(**values))
                        spec = dict(method.pretrain)
                        spec.setdefault("method", "multi-condos")
                        cell.pretrain_config = {**{k: base[k] for k in PRETRAIN_FROM_CELL}, **spec}
                        key = (dataset.name, method.slug, seed)
                        text = json.dumps(cell.pretrain_config, sort_keys=True)
                        variants = pretrain_configs.setdefault(key, [])
                        if text not in variants:
                            variants.append(text)
                        suffix = "" if variants.index(text) == 0 else f"-l{fraction:g}"
                        cell.pretrain_dir = out / f"{dataset.name}-{method.slug}-pretrain{suffix}-s{seed}"
                        values["init"] = str(cell.pretrain_dir)
                    cells.append(cell)
    return cells


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _config_diff(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """``key: saved there, expected here`` for each field both define and that differs."""
    return [f"{k}: {saved[k]!r} there, {expected[k]!r} in the grid" for k in saved
            if k in expected and k not in IGNORED_IN_COMPARISON and _normal(saved[k]) != _normal(expected[k])]


def _saved_config(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "config.json"
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text(encoding="utf-8"))["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable ({type(exc).__name__})") from exc


def _expected_config(values: Mapping[str, Any], kind: str) -> dict[str, Any]:
    if kind == "pretrain":
        from workbench.methods.multi_condos import PretrainConfig

        return dataclasses.asdict(PretrainConfig.from_dict(dict(values)))
    from workbench.train import TrainConfig

    return dataclasses.asdict(TrainConfig.from_dict(dict(values)))


def _conflict(run_dir: Path, values: Mapping[str, Any], kind: str = "train") -> str | None:
    """Why ``run_dir`` cannot be used for this cell (a run with other settings), or None."""
    try:
        saved = _saved_config(run_dir)
    except DataError as exc:
        return f"{exc}; delete the folder or use another --out"
    if saved is None:
        return None
    diff = _config_diff(saved, _expected_config(values, kind))
    if diff:
        return (f"run folder {run_dir} holds a run with other settings ({'; '.join(diff[:3])}); "
                "delete it or use another --out")
    return None


def _is_finished(cell: Cell) -> bool:
    return (cell.run_dir / "metrics.json").is_file()


# ------------------------------------------------------------------------- work in a process
def _run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one training cell or pre-training (in a worker process or in this one).

    Returns ``{"status", "error", "seconds"}``; never raises for a failing run: the error
    is reported in one line and its traceback written to ``RUN/error.log``.
    """
    start = time.perf_counter()
    run_dir = Path(task["run_dir"])
    try:
        if task.get("threads"):
            import torch

            torch.set_num_threads(int(task["threads"]))
        status = _pretrain(run_dir, task["config"]) if task["kind"] == "pretrain" else _train(run_dir, task["config"])
        (run_dir / "error.log").unlink(missing_ok=True)
        return {"status": status, "error": None, "seconds": time.perf_counter() - start}
    except Exception as exc:  # noqa: BLE001  (any failure of one cell is reported, the others go on)
        if isinstance(exc, WorkbenchError):
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            message = f"{type(exc).__name__}: {first} (traceback in {run_dir / 'error.log'})"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.log").write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass
        return {"status": "failed", "error": message, "seconds": time.perf_counter() - start}


def _train(run_dir: Path, values: dict[str, Any]) -> str:
    from workbench.train import TrainConfig, Trainer

    if (run_dir / "metrics.json").is_file():
        return "finished"
    config = TrainConfig.from_dict(dict(values))
    trainer, status = None, "trained"
    if (run_dir / "checkpoint.pt").is_file():
        try:
            trainer, status = Trainer.resume(run_dir, quiet=True), "resumed"
        except DataError as exc:
            # only an unreadable checkpoint means starting again; any other problem (e.g. the data
            # folder moved) is reported, and the checkpoint is kept
            if not str(exc).startswith(f"{run_dir / 'checkpoint.pt'}: "):
                raise
            trainer, status = None, "restarted"
        if trainer is not None:
            diff = _config_diff(dataclasses.asdict(trainer.config), dataclasses.asdict(config))
            if diff:
                trainer.close()
                raise ConfigError(f"run folder {run_dir} holds a checkpoint with other settings ({'; '.join(diff[:3])})")
    if trainer is None:
        trainer = Trainer(config, run_dir, quiet=True, overwrite=True)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return status


def _pretrain(run_dir: Path, values: dict[str, Any]) -> str:
    from workbench.methods.multi_condos import PretrainConfig, Pretrainer, read_pretraining

    try:
        read_pretraining(run_dir)
        return "finished"
    except WorkbenchError:
        pass
    trainer, status = None, "trained"
    if (run_dir / "checkpoint.pt").is_file():
        try:
            trainer, status = Pretrainer.resume(run_dir, quiet=True), "resumed"
        except DataError as exc:  # as in _train: only an unreadable checkpoint means starting again
            if not str(exc).startswith(f"{run_dir / 'checkpoint.pt'}: "):
                raise
            trainer, status = None, "restarted"
    if trainer is None:
        trainer = Pretrainer(PretrainConfig.from_dict(dict(values)), run_dir, quiet=True, overwrite=True)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return status


# ------------------------------------------------------------------------------------ running
@dataclass
class GridReport:
    """The outcome of :func:`reproduce`: each cell's result, the tidy rows, tables and files."""

    grid: Grid
    out: Path
    cells: list[Cell]
    results: dict[str, CellResult]
    rows: pd.DataFrame
    tables: list["ResultTable"]
    files: list[Path]
    protocols: list[dict[str, Any] | None] = field(default_factory=list)  # of the finished cells
    claims: pd.DataFrame | None = None  # decide_claims(rows, grid)

    @property
    def card(self) -> ProtocolCard:
        """The protocol card of the finished cells."""
        return protocol_card(self.protocols, len(self.grid.seeds))

    @property
    def failures(self) -> list[tuple[Cell, CellResult]]:
        return [(c, self.results[c.key]) for c in self.cells if self.results[c.key].status == "failed"]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for cell in self.cells:
            status = self.results[cell.key].status
            counts[status] = counts.get(status, 0) + 1
        return counts

    def summary(self) -> str:
        """A few lines: what ran, what failed (with the error), where the outputs are."""
        counts = ", ".join(f"{n} {status}" for status, n in self.counts().items())
        lines = [f"grid {self.grid.name}: {len(self.cells)} cells ({counts}) in {self.out}"]
        for cell, result in self.failures:
            lines.append(f"FAILED {cell.key}: {result.error}")
        lines += [f"wrote {p}" for p in self.files]
        return "\n".join(lines)


def _threads(jobs: int, threads: int) -> int | None:
    if threads > 0:
        return threads
    if jobs > 1:
        return max(1, (os.cpu_count() or 1) // jobs)
    return None


def reproduce(grid: Grid | str | Path, out: str | Path, *, jobs: int = 1, only_finished: bool = False,
              threads: int = 0, quiet: bool = False) -> GridReport:
    """Run every unfinished cell of a grid (unless ``only_finished``), then tabulate.

    Args:
        grid: a :class:`Grid`, or a grid file / shipped grid name (validated here).
        out: the output folder: run folders, data, tables, plots.
        jobs: parallel worker processes (spawned); 1 runs the cells in this process.
        only_finished: train nothing; tabulate the cells that have ``metrics.json``.
        threads: torch threads per cell; 0: all cores with ``jobs == 1`` (torch's default),
            else cores / jobs.
        quiet: no progress bar.

    Returns:
        A :class:`GridReport`; its ``failures`` list the cells that failed.
    """
    from tqdm.auto import tqdm

    if not isinstance(grid, Grid):
        grid = load_grid(grid, check_paths=not only_finished, check_device=not only_finished)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = plan_cells(grid, out)
    results: dict[str, CellResult] = {}
    todo: list[Cell] = []
    for cell in cells:
        conflict = _conflict(cell.run_dir, cell.config)
        if conflict:
            results[cell.key] = CellResult("failed", conflict)
        elif _is_finished(cell):
            results[cell.key] = CellResult("finished")
        elif only_finished:
            results[cell.key] = CellResult("not run")
        else:
            todo.append(cell)
    if todo:
        (out / "grid.yaml").write_text(grid.text, encoding="utf-8")
        for dataset in grid.datasets:
            if dataset.kind and any(c.dataset is dataset for c in todo):
                _make_builtin(dataset, out)
        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"{grid.name} cells", unit="cell",
                   disable=quiet)

        def done(cell: Cell, result: dict[str, Any]) -> None:
            results[cell.key] = CellResult(result["status"], result.get("error"), result.get("seconds", 0.0))
            failed = sum(r.status == "failed" for r in results.values())
            bar.set_postfix_str(f"{cell.key}: {result['status']}" + (f", {failed} failed" if failed else ""))
            bar.update(1)

        try:
            _run_cells(todo, jobs, _threads(jobs, threads), done)
        finally:
            bar.close()
    done_cells = [c for c in cells if results[c.key].status not in ("failed", "not run")]
    rows = collect_rows(done_cells)
    tables = results_tables(rows, grid)
    report = GridReport(grid, out, cells, results, rows, tables, [], protocols=collect_protocols(done_cells),
                        claims=decide_claims(rows, grid))
    report.files = tabulate(report)
    return report


def _make_builtin(dataset: GridDataset, out: Path) -> None:
    from workbench.data.synthetic import generate

    folder = dataset.folder(out)
    if not folder.exists():
        generate(str(dataset.kind), folder, dataset.patients, dataset.data_seed)


def _task(kind: str, run_dir: Path, config: dict[str, Any], threads: int | None) -> dict[str, Any]:
    return {"kind": kind, "run_dir": str(run_dir), "config": config, "threads": threads}


def _run_cells(cells: list[Cell], jobs: int, threads: int | None,
               done: Callable[[Cell, dict[str, Any]], None]) -> None:
    """Run the cells (and their pre-trainings first), calling ``done(cell, result)`` for each."""
    pretrains: dict[Path, dict[str, Any]] = {}
    waiting: dict[Path, list[Cell]] = {}
    for cell in cells:
        if cell.pretrain_dir is not None:
            assert cell.pretrain_config is not None
            pretrains[cell.pretrain_dir] = cell.pretrain_config
            waiting.setdefault(cell.pretrain_dir, []).append(cell)

    def pretrain_failed(folder: Path, error: str | None) -> dict[str, Any]:
        return {"status": "failed", "error": f"pre-training {folder} failed: {error}"}

    def pretrain_problem(folder: Path) -> str | None:
        return _conflict(folder, pretrains[folder], kind="pretrain")

    if jobs == 1:  # in this process, in order: nothing is left running if it is interrupted
        outcome: dict[Path, dict[str, Any]] = {}
        for cell in cells:
            folder = cell.pretrain_dir
            if folder is not None:
                if folder not in outcome:
                    problem = pretrain_problem(folder)
                    outcome[folder] = ({"status": "failed", "error": problem} if problem else
                                       _run_task(_task("pretrain", folder, pretrains[folder], threads)))
                if outcome[folder]["status"] == "failed":
                    done(cell, pretrain_failed(folder, outcome[folder]["error"]))
                    continue
            done(cell, _run_task(_task("train", cell.run_dir, cell.config, threads)))
        return

    pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"))
    futures: dict[Future, tuple[str, Any]] = {}

    def submit(kind: str, item: Any, run_dir: Path, config: dict[str, Any]) -> None:
        try:
            futures[pool.submit(_run_task, _task(kind, run_dir, config, threads))] = (kind, item)
        except (BrokenProcessPool, RuntimeError) as exc:
            result = {"status": "failed", "error": f"not started: the worker pool is broken ({exc})"}
            for cell in ([item] if kind == "train" else waiting[item]):
                done(cell, result if kind == "train" else pretrain_failed(item, result["error"]))

    try:
        for folder, config in pretrains.items():
            problem = pretrain_problem(folder)
            if problem:
                for cell in waiting[folder]:
                    done(cell, pretrain_failed(folder, problem))
            else:
                submit("pretrain", folder, folder, config)
        for cell in cells:
            if cell.pretrain_dir is None:
                submit("train", cell, cell.run_dir, cell.config)
        while futures:
            finished, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for future in finished:
                kind, item = futures.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    result = {"status": "failed", "error": "its worker process died (killed, or out of memory)"}
                except Exception as exc:  # noqa: BLE001  (e.g. a task that could not be pickled)
                    result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                if kind == "train":
                    done(item, result)
                elif result["status"] == "failed":
                    for cell in waiting[item]:
                        done(cell, pretrain_failed(item, result["error"]))
                else:
                    for cell in waiting[item]:
                        submit("train", cell, cell.run_dir, cell.config)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------- results
def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: unreadable metrics ({type(exc).__name__})") from exc


def _protocol(run_dir: Path, metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's protocol dict: from metrics.json, else config.json; None for a run made before
    protocol cards."""
    protocol = metrics.get("protocol")
    if not protocol and (run_dir / "config.json").is_file():
        try:
            protocol = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("protocol")
        except (OSError, ValueError, AttributeError):
            protocol = None
    return dict(protocol) if isinstance(protocol, dict) and protocol else None


def collect_rows(cells: Sequence[Cell]) -> pd.DataFrame:
    """The tidy per-patient table of the finished cells: one row per dataset, method, labeled
    fraction, seed, modality and test patient, with every metric of ``metrics.json`` and the
    run's ``selection`` (what steered training; None for a run made before protocol cards)."""
    frames = []
    for cell in cells:
        path = cell.run_dir / "metrics.json"
        if not path.is_file():
            continue
        metrics = _read_metrics(path)
        if "per_patient" not in metrics:
            raise DataError(f"{path}: unreadable metrics (KeyError)")
        frame = pd.DataFrame(metrics["per_patient"])
        frame.insert(0, "seed", cell.seed)
        frame.insert(0, "labeled", cell.labeled)
        frame.insert(0, "method", cell.method.label)
        frame.insert(0, "dataset", cell.dataset.name)
        protocol = _protocol(cell.run_dir, metrics)
        frame["selection"] = protocol.get("selection") if protocol else None
        first = ["dataset", "method", "labeled", "seed", "modality", "case_id"]
        frames.append(frame[first + [c for c in frame.columns if c not in first]])
    if not frames:
        return pd.DataFrame(columns=["dataset", "method", "labeled", "seed", "modality", "case_id", "dsc", "sens",
                                     "selection"])
    return pd.concat(frames, ignore_index=True)


def collect_protocols(cells: Sequence[Cell]) -> list[dict[str, Any] | None]:
    """The ``protocol`` dict of each finished cell's metrics.json (None where it has none), for
    :func:`workbench.stats.protocol_card`."""
    protocols = []
    for cell in cells:
        path = cell.run_dir / "metrics.json"
        if path.is_file():
            protocols.append(_protocol(cell.run_dir, _read_metrics(path)))
    return protocols


def _per_seed(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over patients per run: index (dataset, method, labeled, modality, seed)."""
    keys = ["dataset", "method", "labeled", "modality", "seed"]
    return rows.groupby(keys, sort=False)[[m for m, _ in TABLE_METRICS]].mean()


def _stamped(rows: pd.DataFrame) -> bool:
    """Whether any of these rows comes from a run steered by its test patients."""
    return "selection" in rows.columns and bool((rows["selection"] == "test").any())


def _with_stamp(title: str, stamped: bool) -> str:
    return f"{title} — {TEST_FEEDBACK_STAMP}" if stamped else title


class _Scores:
    """Per-patient scores of the rows, by (dataset, method, labeled, modality), indexed by (case_id, seed)."""

    def __init__(self, rows: pd.DataFrame) -> None:
        self.groups: dict[tuple, pd.DataFrame] = {}
        if len(rows):
            for key, frame in rows.groupby(["dataset", "method", "labeled", "modality"], sort=False):
                self.groups[key] = frame.set_index(["case_id", "seed"])

    def values(self, dataset: str, method: str, labeled: float, modality: str, metric: str) -> pd.Series:
        frame = self.groups.get((dataset, method, labeled, modality))
        return pd.Series(dtype=float) if frame is None else frame[metric].astype(float).dropna()

    def paired(self, dataset: str, a: str, b: str, labeled: float, modality: str, metric: str = "dsc"
               ) -> PairedResult:
        """:func:`~workbench.stats.paired_test` of row ``b`` against row ``a`` over their matched
        (case_id, seed) pairs."""
        both = pd.concat([self.values(dataset, a, labeled, modality, metric),
                          self.values(dataset, b, labeled, modality, metric)], axis=1, join="inner").dropna()
        return paired_test(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy())


#: the fields of a comparison: pairs, mean difference, p-value, verdict text, minimal detectable difference
COMPARISON_FIELDS = ("pairs", "diff", "p", "verdict", "mdd")


def _comparison_values(result: PairedResult, expected: str) -> list[Any]:
    """The :data:`COMPARISON_FIELDS` of one paired result (verdict on ``expected``)."""
    verdict = decide(result, expected).text if result.n else "no pairs"  # type: ignore[arg-type]
    return [result.n, result.mean_diff, result.p, verdict, minimal_detectable_difference(result.diffs)]


def _signed(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:+.3f}"


def _plain(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3f}"


@dataclass
class ResultTable:
    """One table of the paper's layout: a dataset at a labeled fraction.

    ``mean`` and ``std`` have the row labels as index and (modality, metric header) columns
    (``std``: sample std over seeds, ddof 1); ``ci_low`` / ``ci_high`` the same layout, the 95%
    bootstrap CI of the mean over patients x seeds; ``seeds`` counts our runs per row (0 for the
    paper's rows); ``paper_rows`` names the rows holding published values. ``comparison`` holds,
    for each of our rows other than ``reference``, the paired DSC test against ``reference``:
    columns (modality, field) with the fields of :data:`COMPARISON_FIELDS` (diff = row −
    reference; the verdict is on "row > reference"). ``stamp`` is the test-feedback stamp when a
    run of this table was steered by its test patients.
    """

    dataset: str
    labeled: float
    mean: pd.DataFrame
    std: pd.DataFrame
    seeds: pd.Series
    paper_rows: dict[str, str]  # row label -> citation
    title: str = ""
    ci_low: pd.DataFrame | None = None
    ci_high: pd.DataFrame | None = None
    reference: str | None = None
    comparison: pd.DataFrame | None = None
    stamp: str | None = None

    def formatted(self) -> pd.DataFrame:
        """Strings ``mean ± std [CI low, CI high]`` (one seed: ``mean [CI]``; paper: 4 decimals as
        printed; missing: –)."""
        text = pd.DataFrame(index=self.mean.index, columns=self.mean.columns, dtype=object)
        for label in self.mean.index:
            for col in self.mean.columns:
                value, spread = self.mean.at[label, col], self.std.at[label, col]
                if pd.isna(value):
                    text.at[label, col] = "–"
                    continue
                if label in self.paper_rows:
                    text.at[label, col] = f"{value:.4f}"
                    continue
                several = self.seeds[label] > 1 and not pd.isna(spread)
                cell = f"{value:.3f} ± {spread:.3f}" if several else f"{value:.3f}"
                if self.ci_low is not None and self.ci_high is not None:
                    low, high = self.ci_low.at[label, col], self.ci_high.at[label, col]
                    if not (pd.isna(low) or pd.isna(high)):
                        cell += f" [{low:.2f}, {high:.2f}]"
                text.at[label, col] = cell
        text.insert(0, ("", "seeds"), [str(self.seeds[label]) if label not in self.paper_rows else "–"
                                       for label in self.mean.index])
        text.columns = pd.MultiIndex.from_tuples(list(text.columns))
        text.index.name = "method"
        return text

    @property
    def comparison_title(self) -> str:
        return _with_stamp(f"vs {self.reference}: paired DSC over matched test patient x seed pairs, "
                           f"Δ = row − {self.reference}, verdict on \"row > {self.reference}\" "
                           "(Wilcoxon, alpha 0.05); MDD: the minimal detectable Δ at 80% power", bool(self.stamp))

    def comparison_formatted(self) -> pd.DataFrame | None:
        """The comparison as strings: pairs, then per modality Δ DSC, verdict, MDD (None without one)."""
        if self.comparison is None or self.comparison.empty:
            return None
        modalities = list(dict.fromkeys(m for m, _ in self.comparison.columns))
        text = pd.DataFrame(index=self.comparison.index, dtype=object)
        text.index.name = "method"
        text[("", "pairs")] = [" / ".join(dict.fromkeys(str(int(self.comparison.at[label, (m, "pairs")]))
                                                        for m in modalities)) for label in self.comparison.index]
        for m in modalities:
            text[(m, "Δ DSC")] = [_signed(v) for v in self.comparison[(m, "diff")]]
            text[(m, "verdict")] = list(self.comparison[(m, "verdict")])
            text[(m, "MDD")] = [_plain(v) for v in self.comparison[(m, "mdd")]]
        text.columns = pd.MultiIndex.from_tuples(list(text.columns))
        return text

    def to_markdown(self) -> str:
        """The table, then (when there is one) the comparison against the reference row."""
        table = self.formatted()
        headers = ["method"] + [f"{m} {metric}".strip() for m, metric in table.columns]
        lines = [f"### {self.title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for label, row in table.iterrows():
            cells = list(row)
            if label in self.paper_rows:
                cells = [c if c == "–" else f"*{c}*" for c in cells]
                label = f"↳ *{label}*"
            lines.append("| " + " | ".join([str(label)] + cells) + " |")
        comparison = self.comparison_formatted()
        if comparison is not None:
            headers = ["method"] + [f"{m} {metric}".strip() for m, metric in comparison.columns]
            lines += ["", f"*{self.comparison_title}*", "", "| " + " | ".join(headers) + " |",
                      "|" + "---|" * len(headers)]
            lines += ["| " + " | ".join([str(label)] + list(row)) + " |" for label, row in comparison.iterrows()]
        return "\n".join(lines)

    def styler(self) -> Any:
        """A pandas Styler of :meth:`formatted`, the paper's rows grey and italic."""
        table = self.formatted()
        paper = set(self.paper_rows)

        def style(row: pd.Series) -> list[str]:
            css = "color: #666; font-style: italic" if row.name in paper else ""
            return [css] * len(row)

        return table.style.apply(style, axis=1).set_caption(self.title)

    def comparison_styler(self) -> Any:
        """A pandas Styler of :meth:`comparison_formatted` (None without a comparison)."""
        comparison = self.comparison_formatted()
        return None if comparison is None else comparison.style.set_caption(self.comparison_title)

    def to_html(self) -> str:
        """The table, then (when there is one) the comparison against the reference row."""
        comparison = self.comparison_styler()
        return self.styler().to_html() + ("" if comparison is None else comparison.to_html())


def _modality_header(modality: str) -> str:
    return modality.upper() if re.fullmatch(r"[a-z0-9]+", modality) else modality


def results_tables(rows: pd.DataFrame, grid: Grid, papers: Mapping[str, PaperTable] | None = None
                   ) -> list[ResultTable]:
    """One :class:`ResultTable` per dataset and labeled fraction with at least one finished run.

    Our rows: mean ± sample std (ddof 1) over seeds of each run's mean over patients, and the 95%
    bootstrap CI (BCa) of the mean over the per-(patient, seed) scores (none from a single score).
    Below a row with a ``paper`` reference, the published value in a row marked "paper (real
    data)" (only for the modalities we have columns for). Each table's ``comparison`` tests every other row of ours
    against the grid's reference row on DSC (:func:`workbench.stats.paired_test`, matched by
    test patient and seed).
    """
    papers = load_paper_values() if papers is None else papers
    per_seed = _per_seed(rows) if len(rows) else None
    scores = _Scores(rows)
    reference = grid.reference_label
    tables = []
    for dataset in grid.datasets:
        modalities = list(dict.fromkeys(rows.loc[rows["dataset"] == dataset.name, "modality"])) if len(rows) else []
        if not modalities:  # no results of ours for this dataset: no table
            continue
        columns = pd.MultiIndex.from_tuples([(_modality_header(m), header) for m in modalities
                                             for _, header in TABLE_METRICS])
        for fraction in grid.all_fractions():
            labels, means, stds, lows, highs, seeds, paper_rows = [], [], [], [], [], [], {}
            ours = []
            for method in grid.methods:
                if fraction not in grid.fractions(method):
                    continue
                mean_row, std_row, low_row, high_row, n = [], [], [], [], 0
                for m in modalities:
                    for metric, _ in TABLE_METRICS:
                        values = pd.Series(dtype=float)
                        if per_seed is not None:
                            key = (dataset.name, method.label, fraction, m)
                            try:
                                values = per_seed[metric].xs(key, level=[0, 1, 2, 3]).dropna()
                            except KeyError:
                                pass
                        n = max(n, len(values))
                        mean_row.append(values.mean() if len(values) else math.nan)
                        std_row.append(sample_std(values))
                        cell_scores = scores.values(dataset.name, method.label, fraction, m, metric)
                        # one score has no spread to resample: no interval rather than a zero-width one
                        low, high = bootstrap_ci(cell_scores) if len(cell_scores) >= 2 else (math.nan, math.nan)
                        low_row.append(low)
                        high_row.append(high)
                labels.append(method.label)
                ours.append(method.label)
                means.append(mean_row)
                stds.append(std_row)
                lows.append(low_row)
                highs.append(high_row)
                seeds.append(n)
                if method.paper is not None:
                    table_id, paper_row = method.paper
                    published = papers[table_id].get(dataset.paper, fraction, paper_row)
                    label = f'{PAPER_LABEL}: {papers[table_id].table} "{paper_row}"'
                    if any(m in published for m in modalities) and label not in labels:  # shown once
                        labels.append(label)
                        means.append([published[m][i] if m in published else math.nan
                                      for m in modalities for i in range(len(TABLE_METRICS))])
                        for block in (stds, lows, highs):
                            block.append([math.nan] * len(columns))
                        seeds.append(0)
                        paper_rows[label] = papers[table_id].citation
            if not any(s > 0 for s in seeds):  # nothing of ours (published values alone are no table)
                continue
            comparison = None
            others = [label for label in ours if label != reference]
            if reference in ours and others:
                comparison = pd.DataFrame(
                    [[value for m in modalities
                      for value in _comparison_values(scores.paired(dataset.name, reference, label, fraction, m), ">")]
                     for label in others],
                    index=others, columns=pd.MultiIndex.from_tuples([(_modality_header(m), f) for m in modalities
                                                                     for f in COMPARISON_FIELDS]))
            sub = rows[(rows["dataset"] == dataset.name) & (rows["labeled"] == fraction)]
            stamped = _stamped(sub)
            frame = partial(pd.DataFrame, index=labels, columns=columns)
            tables.append(ResultTable(
                dataset.name, fraction, frame(means), frame(stds), pd.Series(seeds, index=labels), paper_rows,
                title=_with_stamp(f"{dataset.name}, {fraction * 100:g}% labeled", stamped),
                ci_low=frame(lows), ci_high=frame(highs), reference=reference if comparison is not None else None,
                comparison=comparison, stamp=TEST_FEEDBACK_STAMP if stamped else None))
    return tables


#: the columns of :func:`decide_claims` (and claims.csv)
CLAIM_COLUMNS = ("dataset", "labeled", "claim", "modality", "left", "op", "right", "n", "diff", "p", "verdict",
                 "mdd", "stamp")


def decide_claims(rows: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """Each claimed order of ``grid.claims`` decided on our runs, on DSC.

    One row per adjacent pair of a claim ("a < b < c": a < b and b < c), dataset, labeled
    fraction both rows run at, and modality: ``n`` matched (test patient, seed) pairs, ``diff``
    the mean of left − right, ``p`` the two-sided Wilcoxon signed-rank p-value, ``verdict`` on
    "left op right" (holds / reversed / not decided (p); "no pairs" when a side has no finished
    run), ``mdd`` the minimal detectable difference, and ``stamp`` when a run of the pair was
    steered by its test patients. Columns: :data:`CLAIM_COLUMNS`.
    """
    scores = _Scores(rows)
    methods = {m.label: m for m in grid.methods}
    records = []
    for dataset in grid.datasets:
        in_dataset = rows[rows["dataset"] == dataset.name] if len(rows) else rows
        modalities = list(dict.fromkeys(in_dataset["modality"]))
        for claim in grid.claims:
            for left, op, right in parse_claim(claim):
                common = set(grid.fractions(methods[left])) & set(grid.fractions(methods[right]))
                for fraction in sorted(common):
                    pair_rows = in_dataset[(in_dataset["labeled"] == fraction)
                                           & in_dataset["method"].isin([left, right])]
                    for m in modalities:
                        result = scores.paired(dataset.name, right, left, fraction, m)  # diffs: left − right
                        n, diff, p, verdict, mdd = _comparison_values(result, op)
                        records.append(dict(zip(CLAIM_COLUMNS, (
                            dataset.name, fraction, claim, m, left, op, right, n, diff, p, verdict, mdd,
                            TEST_FEEDBACK_STAMP if _stamped(pair_rows) else "",
                        ))))
    return pd.DataFrame(records, columns=list(CLAIM_COLUMNS))


def _claims_title(claims: pd.DataFrame) -> str:
    return _with_stamp("Claims", bool((claims["stamp"] != "").any()) if len(claims) else False)


CLAIMS_NOTE = ("Each claimed order of the grid, per adjacent pair, on DSC over matched test patient x seed pairs: "
               "Δ = left − right, two-sided Wilcoxon signed-rank, alpha 0.05, no correction for multiple "
               "comparisons; MDD: the minimal detectable Δ at 80% power (optimistic: seeds share patients).")


def _claims_text(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims as display strings."""
    return pd.DataFrame({
        "dataset": claims["dataset"], "labeled": [f"{f * 100:g}%" for f in claims["labeled"]],
        "claim": [f"{a} {op} {b}" for a, op, b in zip(claims["left"], claims["op"], claims["right"])],
        "modality": [_modality_header(m) for m in claims["modality"]], "pairs": claims["n"].astype(str),
        "Δ DSC": [_signed(v) for v in claims["diff"]], "verdict": claims["verdict"],
        "MDD": [_plain(v) for v in claims["mdd"]],
    })


def claims_markdown(claims: pd.DataFrame) -> str:
    """The "Claims" section of tables.md."""
    text = _claims_text(claims)
    lines = [f"## {_claims_title(claims)}", "", CLAIMS_NOTE, "", "| " + " | ".join(text.columns) + " |",
             "|" + "---|" * len(text.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in text.itertuples(index=False)])


def claims_html(claims: pd.DataFrame) -> str:
    """The "Claims" section of tables.html."""
    import html

    table = _claims_text(claims).style.hide(axis="index").to_html()
    return f"<h2>{html.escape(_claims_title(claims))}</h2><p>{html.escape(CLAIMS_NOTE)}</p>{table}"


def plot_dsc_vs_labeled(rows: pd.DataFrame, dataset: str, grid: Grid | None = None,
                        papers: Mapping[str, PaperTable] | None = None, metric: str = "dsc",
                        colours: Mapping[str, str] | None = None) -> Any:
    """DSC (or ``metric="sens"``) against the labeled fraction: one panel per modality, one line
    per method (mean over seeds of each run's mean over patients; error bar: the sample std over
    seeds, ddof 1, drawn only where a point has more than one seed). The axis label says how
    many seeds (:func:`workbench.viz.style.spread_label`: "1 seed, no error bar" for one).
    Methods take :func:`workbench.viz.style.method_colours` in their order in ``rows``, as in
    :func:`workbench.viz.compare.plot_methods_dsc` (``colours`` fixes them).
    With ``grid``, a row's published values (at the row's fractions) are drawn in the same
    colour, dotted with open markers.

    A grid with a single labeled fraction (e.g. a Table 3 ablation) would stack every method on
    one x position, so it is drawn as a dot plot instead: one row per method, the metric on the
    x axis with the std over seeds as a horizontal error bar, the paper's value as an open
    marker on the same row.

    When a plotted run was steered by its test patients (``selection`` test), the title carries
    :data:`~workbench.stats.TEST_FEEDBACK_STAMP`."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from workbench.viz.style import method_colours, spread_label

    if metric not in ("dsc", "sens"):
        raise ConfigError(f"metric {metric!r}: choose dsc or sens")
    sub = rows[rows["dataset"] == dataset]
    if sub.empty:
        raise ConfigError(f"no finished runs of dataset {dataset!r} to plot")
    per_seed = _per_seed(sub)[metric]
    grouped = per_seed.groupby(level=["method", "labeled", "modality"], sort=False)
    points_of = pd.DataFrame({"mean": grouped.mean(), "std": grouped.agg(sample_std), "seeds": grouped.size()})
    stamped = _stamped(sub)
    modalities = list(dict.fromkeys(sub["modality"]))
    methods = list(dict.fromkeys(sub["method"]))
    rows_of = {m.label: m for m in grid.methods} if grid is not None else {}
    if grid is not None and papers is None:
        papers = load_paper_values()
    paper_dataset = next((d.paper for d in grid.datasets if d.name == dataset), None) if grid is not None else None
    fractions = sorted(set(sub["labeled"]))
    colours = method_colours(methods, colours)
    index = 0 if metric == "dsc" else 1
    name_of_metric = "DSC" if metric == "dsc" else "sensitivity"
    axis_label = spread_label(name_of_metric, points_of["seeds"])

    def published(method: str, modality: str) -> list[tuple[float, float]]:
        """(labeled %, paper value) of a row that cites the paper, at the row's fractions."""
        row = rows_of.get(method)
        if row is None or row.paper is None or papers is None:
            return []
        table, name = papers[row.paper[0]], row.paper[1]
        return [(f * 100, table.get(paper_dataset, f, name)[modality][index])
                for f in grid.fractions(row) if modality in table.get(paper_dataset, f, name)]

    drew_paper = False
    single = len(fractions) == 1  # dot plot: one row per method, top to bottom in grid order
    size = (3.6 * len(modalities) + 1.8, 0.32 * len(methods) + 1.4) if single else (4.6 * len(modalities) + 1.8, 3.8)
    fig, axes = plt.subplots(1, len(modalities), figsize=size, squeeze=False, sharey=True)
    for ax, modality in zip(axes[0], modalities):
        for position, method in enumerate(methods):
            colour = colours[method]
            try:
                points = points_of.xs((method, modality), level=["method", "modality"]).sort_index()
            except KeyError:
                continue
            paper = published(method, modality)
            spread = points["std"].notna()  # one seed: no sample std, so no error bar
            if single:  # only the paper's value at the plotted fraction (a partial grid may have more)
                paper = [(f, v) for f, v in paper if math.isclose(f, fractions[0] * 100)]
                ax.plot(points["mean"], [position] * len(points), color=colour, marker="o", ms=5, ls="none",
                        label=method)
                if spread.any():
                    ax.errorbar(points["mean"][spread], [position] * int(spread.sum()), xerr=points["std"][spread],
                                color=colour, capsize=3, lw=1.4, ls="none")
                if paper:
                    ax.plot([v for _, v in paper], [position] * len(paper), color=colour, ls="none", marker="o",
                            mfc="none", ms=7)
            else:
                ax.plot(points.index * 100, points["mean"], color=colour, marker="o", ms=4, lw=1.4, label=method)
                if spread.any():
                    ax.errorbar(points.index[spread] * 100, points["mean"][spread], yerr=points["std"][spread],
                                color=colour, capsize=3, lw=1.4, ls="none")
                if paper:
                    ax.plot(*zip(*paper), color=colour, ls=":", marker="o", mfc="none", ms=6, lw=1.2)
            drew_paper = drew_paper or bool(paper)
        ax.set_title(_modality_header(modality))
        ax.grid(alpha=0.3)
        if single:
            ax.set_yticks(range(len(methods)), methods)
            ax.set_ylim(len(methods) - 0.5, -0.5)
            ax.set_xlim(0, 1)
            ax.set_xlabel(axis_label)
            continue
        if fractions[-1] / fractions[0] > 8:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g}" for f in fractions])
        ax.set_xlabel("labeled patients (%)")
        ax.set_ylim(0, 1)
    handles, labels = [], []
    if single:
        fig.suptitle(_with_stamp(f"{dataset}: {name_of_metric} at {fractions[0] * 100:g}% labeled", stamped))
        if drew_paper:
            handles, labels = [plt.Line2D([], [], color="grey", ls="none", marker="o", mfc="none")], \
                [f"{PAPER_LABEL} (open marker)"]
    else:
        axes[0, 0].set_ylabel(axis_label)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if drew_paper:
            handles.append(plt.Line2D([], [], color="grey", ls=":", marker="o", mfc="none"))
            labels.append(f"{PAPER_LABEL} (same colour)")
        fig.suptitle(_with_stamp(f"{dataset}: {name_of_metric} vs labeled fraction", stamped))
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def tabulate(report: GridReport) -> list[Path]:
    """Write ``per_patient.csv``, ``cells.csv``, ``tables.md``, ``tables.html``, ``claims.csv``
    (when the grid has claims) and one ``dsc_vs_labeled_<dataset>.png`` per dataset with results
    into ``report.out`` (layout: the module docstring)."""
    import matplotlib.pyplot as plt

    from workbench.viz.export import save_figure

    out, grid = report.out, report.grid
    files = []
    path = out / "per_patient.csv"
    report.rows.to_csv(path, index=False)
    files.append(path)
    status = pd.DataFrame([{"dataset": c.dataset.name, "method": c.method.label, "labeled": c.labeled,
                            "seed": c.seed, "run_dir": str(c.run_dir), "status": report.results[c.key].status,
                            "seconds": round(report.results[c.key].seconds, 1),
                            "error": report.results[c.key].error or ""} for c in report.cells])
    path = out / "cells.csv"
    status.to_csv(path, index=False)
    files.append(path)

    claims = report.claims if report.claims is not None else decide_claims(report.rows, grid)
    if grid.claims:
        path = out / "claims.csv"
        claims.to_csv(path, index=False)
        files.append(path)
    card = report.card

    counts = ", ".join(f"{n} {s}" for s, n in report.counts().items())
    citations = sorted({c for t in report.tables for c in t.paper_rows.values()})
    settings = ", ".join(f"{k} {v}" for k, v in grid.settings.items())
    values_text = ("Each value is the mean over seeds ± the sample std over seeds (ddof 1) of one run's mean "
                   "per-patient 3D metric on the test patients, and in brackets the 95% bootstrap CI (BCa) of the "
                   "mean over patients x seeds (one seed: mean and CI only).")
    head = [f"# {_with_stamp(grid.name, bool(card.stamp))}", ""] + ([grid.description, ""] if grid.description else [])
    head += [card.to_markdown(), "",
             f"Grid `{grid.path.name}`; shared settings: {settings or 'defaults'}; seeds {grid.seeds}. "
             f"Cells: {counts}. {values_text}"]
    if citations:
        head += ["", f"Rows marked *{PAPER_LABEL}* are published numbers on the real datasets, not runs of ours: "
                 + "; ".join(citations) + "."]
    md = head + [""] + [t.to_markdown() + "\n" for t in report.tables]
    html = [f"<h1>{_with_stamp(grid.name, bool(card.stamp))}</h1>", f"<p>{grid.description}</p>", card.to_html(),
            f"<p>Cells: {counts}. {values_text}</p>"]
    if citations:
        html.append(f"<p>Grey italic rows ({PAPER_LABEL}): {'; '.join(citations)}.</p>")
    html += [t.to_html() for t in report.tables]
    if grid.claims:
        md += [claims_markdown(claims) + "\n"]
        html.append(claims_html(claims))
    if report.failures:
        md += ["## Failed cells", ""] + [f"- `{c.key}`: {r.error}" for c, r in report.failures]
        html += ["<h2>Failed cells</h2><ul>"] + [f"<li><code>{c.key}</code>: {r.error}</li>"
                                               for c, r in report.failures] + ["</ul>"]
    path = out / "tables.md"
    path.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    files.append(path)
    path = out / "tables.html"
    style = ("<style>body{font-family:sans-serif} table{border-collapse:collapse;margin:1em 0} "
             "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right} caption{font-weight:bold}</style>")
    path.write_text(f"<html><head><meta charset='utf-8'>{style}</head><body>\n" + "\n".join(html)
                    + "\n</body></html>\n", encoding="utf-8")
    files.append(path)
    for dataset in grid.datasets:
        if (report.rows["dataset"] == dataset.name).any():
            fig = plot_dsc_vs_labeled(report.rows, dataset.name, grid)
            files.append(save_figure(fig, out / f"dsc_vs_labeled_{dataset.name}"))
            plt.close(fig)
    return files
