"""Loading a grid: :func:`load_grid` reads the YAML file (layout: :mod:`workbench.reproduce`) and
checks it block by block before anything runs: top-level keys, settings, labeled fractions,
seeds, paper table, each ``datasets`` entry (a built-in kind or a real folder, its patients,
modalities, settings and paper dataset), each ``methods`` entry (a registered method and its
options, its own fractions and settings, a Multi-ConDoS ``pretrain``, the paper row it cites),
settings by fraction, the merged settings of every cell, reference and claims. Each checker
returns its part of the grid and one problem line per problem, naming the key and the value;
:class:`~workbench.reproduce.grid.GridError` reports all of them at once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from workbench.config import TrainConfig
from workbench.data.synthetic import resolve_difficulty
from workbench.errors import ConfigError
from workbench.fields import field_types
from workbench.reproduce.grid import (
    BUILTIN_KINDS,
    DATASET_KEYS,
    FORMATS,
    GRID_KEYS,
    METHOD_KEYS,
    PLACEHOLDER,
    PRETRAIN_FROM_CELL,
    Grid,
    GridDataset,
    GridError,
    GridMethod,
    _fraction_problem,
    _settings_problems,
    _type_problem,
    _unknown_keys,
    grid_path,
    parse_claim,
)
from workbench.reproduce.paper import PaperTable, load_paper_values

__all__ = ["load_grid"]

#: a checker's result: the checked value and one problem line per problem
Checked = tuple[Any, list[str]]


def load_grid(path: str | Path, *, check_paths: bool = True, check_device: bool = True) -> Grid:
    """Read and validate a grid file (or a shipped grid's name).

    Args:
        path: a YAML file, or a name from :func:`shipped_grids`.
        check_paths: require real dataset folders to exist (off to tabulate finished runs only).
        check_device: require a CUDA GPU when a setting asks for ``device: cuda``.

    Raises:
        GridError: every problem, one line each, naming the key and the value.
    """
    file = grid_path(path)
    text, raw = _read_yaml(file)
    problems = _unknown_keys("", raw, GRID_KEYS)
    for key in ("datasets", "methods", "labeled", "seeds"):
        if not raw.get(key):
            problems.append(f"{key}: missing or empty")
    papers = load_paper_values()
    settings = raw.get("settings") or {}
    problems += _settings_problems("settings", settings, check_device)

    def checked(result: Checked) -> Any:
        problems.extend(result[1])
        return result[0]

    labeled = checked(_check_labeled(raw.get("labeled")))
    seeds = checked(_check_seeds(raw.get("seeds")))
    paper_table = checked(_check_paper_table(raw.get("paper_table"), papers))
    datasets = checked(_check_datasets(raw.get("datasets"), file, papers, check_paths, check_device))
    methods = checked(_check_methods(raw.get("methods"), paper_table, papers, check_device))
    by_labeled = checked(_check_settings_by_labeled(raw.get("settings_by_labeled"), labeled, methods, check_device))
    if not problems:  # the merged settings of every (dataset, method, fraction) as TrainConfig checks them
        problems += _cell_settings_problems(settings, datasets, methods, labeled, by_labeled, check_device)
    reference = checked(_check_reference(raw.get("reference"), methods))
    claims = checked(_check_claims(raw.get("claims"), methods, labeled))
    if problems:
        raise GridError(file, problems)
    return Grid(
        name=str(raw.get("name") or file.stem),
        path=file,
        datasets=datasets,
        methods=methods,
        labeled=labeled,
        seeds=seeds,
        settings=dict(settings),
        settings_by_labeled=by_labeled,
        paper_table=paper_table,
        description=str(raw.get("description") or "").strip(),
        text=text,
        reference=reference,
        claims=claims,
    )


def _read_yaml(file: Path) -> tuple[str, dict[str, Any]]:
    """The text of a grid file and its mapping; a :class:`GridError` when it is not a YAML mapping."""
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
    return text, raw


# ------------------------------------------------------------------------------- top-level values
def _check_labeled(value: Any) -> Checked:
    """The grid's ``labeled`` fractions."""
    labeled: list[float] = []
    problems = []
    for i, item in enumerate(value or []):
        problem = _fraction_problem(f"labeled[{i}]", item)
        if problem:
            problems.append(problem)
        else:
            labeled.append(float(item))
    if len(set(labeled)) != len(labeled):
        problems.append(f"labeled: {value!r} lists a fraction twice")
    return labeled, problems


def _check_seeds(value: Any) -> Checked:
    """The grid's ``seeds``."""
    seeds: list[int] = []
    problems = []
    for i, item in enumerate(value or []):
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            problems.append(f"seeds[{i}]: {item!r} is not a non-negative integer")
        else:
            seeds.append(item)
    if len(set(seeds)) != len(seeds):
        problems.append(f"seeds: {value!r} lists a seed twice")
    return seeds, problems


def _check_paper_table(value: Any, papers: Mapping[str, PaperTable]) -> Checked:
    """The grid's ``paper_table`` (None when unknown)."""
    if value is not None and value not in papers:
        return None, [f"paper_table: unknown table {value!r}; known: {', '.join(papers)}"]
    return value, []


# --------------------------------------------------------------------------------------- datasets
def _check_datasets(
    value: Any, file: Path, papers: Mapping[str, PaperTable], check_paths: bool, check_device: bool
) -> Checked:
    """The grid's ``datasets``; their names must differ."""
    datasets: list[GridDataset] = []
    problems = []
    for i, entry in enumerate(value or []):
        if not isinstance(entry, dict):
            problems.append(f"datasets[{i}]: expected a mapping (name, kind or path, ...), got {entry!r}")
            continue
        dataset, more = _check_dataset(f"datasets[{i}]", i, entry, file, papers, check_paths, check_device)
        datasets.append(dataset)
        problems += more
    names = [d.name for d in datasets]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"datasets: the name {name!r} is used twice (give each a distinct name:)")
    return datasets, problems


def _check_dataset(
    where: str,
    i: int,
    entry: dict[str, Any],
    file: Path,
    papers: Mapping[str, PaperTable],
    check_paths: bool,
    check_device: bool,
) -> Checked:
    """One entry of ``datasets``: a built-in ``kind`` or a real folder ``path``."""
    problems = _unknown_keys(where, entry, DATASET_KEYS)
    name = entry.get("name") or entry.get("kind")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        problems.append(f"{where}.name: {name!r} must be a short name of letters, digits, . _ -")
        name = f"dataset{i}"
    kind, folder = entry.get("kind"), entry.get("path")
    fmt = entry.get("format", "auto")
    if (kind is None) == (folder is None):
        problems.append(
            f"{where}: give either kind ({' / '.join(BUILTIN_KINDS)}, built-in data) or path (a real folder)"
        )
    if kind is not None and kind not in BUILTIN_KINDS:
        problems.append(
            f"{where}.kind: unknown built-in dataset {kind!r}; choose one of: "
            f"{', '.join(BUILTIN_KINDS)} (or give path: for a real folder)"
        )
    if fmt not in FORMATS:
        problems.append(f"{where}.format: unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    path_value = None
    if folder is not None:
        path_value, more = _check_dataset_path(where, folder, fmt, file, check_paths)
        problems += more
    patients, data_seed = entry.get("patients", 20), entry.get("data_seed", 0)
    if isinstance(patients, bool) or not isinstance(patients, int) or patients < 3:
        problems.append(f"{where}.patients: {patients!r} must be an integer >= 3 (split by patient)")
    if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
        problems.append(f"{where}.data_seed: {data_seed!r} must be a non-negative integer")
    difficulty = entry.get("difficulty")
    if difficulty is not None:
        if kind is None:
            problems.append(f"{where}.difficulty: only built-in data (kind) has a difficulty")
        elif kind in BUILTIN_KINDS:
            try:
                resolve_difficulty(kind, difficulty)
            except ConfigError as exc:
                problems.append(f"{where}.{exc}" if str(exc).startswith("difficulty") else f"{where}.difficulty: {exc}")
                difficulty = None
    modalities = entry.get("modalities")
    if modalities is not None and (
        not isinstance(modalities, list) or not modalities or not all(isinstance(m, str) for m in modalities)
    ):
        problems.append(f"{where}.modalities: {modalities!r} must be a list of modality names, e.g. [t1, flair]")
        modalities = None
    ds_settings = entry.get("settings") or {}
    problems += _settings_problems(f"{where}.settings", ds_settings, check_device)
    paper = entry.get("paper", kind or (fmt if fmt in BUILTIN_KINDS else None))
    known_papers = sorted({d for t in papers.values() for d in t.values})
    if "paper" in entry and paper not in known_papers:
        problems.append(
            f"{where}.paper: {paper!r} is not a dataset of the paper tables; choose one of: {', '.join(known_papers)}"
        )
    dataset = GridDataset(
        name=name,
        kind=kind,
        path=path_value,
        fmt=fmt if kind is None else "auto",
        modalities=modalities,
        patients=patients,
        data_seed=data_seed,
        difficulty=difficulty,
        settings=dict(ds_settings) if isinstance(ds_settings, dict) else {},
        paper=paper,
    )
    return dataset, problems


def _check_dataset_path(where: str, folder: Any, fmt: str, file: Path, check_paths: bool) -> Checked:
    """A dataset's ``path`` (relative: to the grid file); with ``check_paths``, an existing folder."""
    path = Path(str(folder)).expanduser()
    if not path.is_absolute():
        path = file.parent / path
    if check_paths and str(folder).startswith(PLACEHOLDER):
        return path, [
            f"{where}.path: {folder!r} is a placeholder; copy {file.name} and set {where}.path "
            f"to your {fmt if fmt != 'auto' else 'dataset'} folder"
        ]
    if check_paths and not path.is_dir():
        return path, [f"{where}.path: {str(path)!r} does not exist or is not a folder (edit {where}.path)"]
    return path, []


# ---------------------------------------------------------------------------------------- methods
def _check_methods(
    value: Any, paper_table: str | None, papers: Mapping[str, PaperTable], check_device: bool
) -> Checked:
    """The grid's ``methods`` (the table rows); their run-folder names must differ."""
    methods: list[GridMethod] = []
    problems = []
    for i, entry in enumerate(value or []):
        if not isinstance(entry, dict):
            problems.append(f"methods[{i}]: expected a mapping (label, method, options, ...), got {entry!r}")
            continue
        method, more = _check_method(i, entry, paper_table, papers, check_device)
        methods.append(method)
        problems += more
    slugs = [m.slug for m in methods]
    for slug in sorted({s for s in slugs if slugs.count(s) > 1}):
        twins = [m.label for m in methods if m.slug == slug]
        problems.append(f"methods: labels {twins} give the same run-folder name {slug!r}; rename one")
    return methods, problems


def _check_method(
    i: int, entry: dict[str, Any], paper_table: str | None, papers: Mapping[str, PaperTable], check_device: bool
) -> Checked:
    """One entry of ``methods``: a registered method with options, its own fractions, settings,
    pre-training and paper row."""
    problems = _unknown_keys(f"methods[{i}]", entry, METHOD_KEYS)
    name = entry.get("method")
    label = str(entry.get("label", name))
    where = f"methods[{i}] ({label})"
    options, more = _check_options(where, name, entry.get("options") or {})
    problems += more
    pretrain = entry.get("pretrain")
    if pretrain is not None:
        pretrain, more = _check_pretrain(where, pretrain)
        problems += more
    fractions, more = _check_row_labeled(where, entry.get("labeled"))
    problems += more
    m_settings = entry.get("settings") or {}
    problems += _settings_problems(f"{where}.settings", m_settings, check_device)
    paper = entry.get("paper")
    paper_ref = None
    if paper is not None:
        paper_ref, problem = _check_paper_ref(where, paper, paper_table, papers)
        if problem:
            problems.append(problem)
    method = GridMethod(
        label=label,
        method=str(name),
        options=dict(options),
        pretrain=pretrain,
        labeled=fractions,
        settings=dict(m_settings) if isinstance(m_settings, dict) else {},
        paper=paper_ref,
    )
    return method, problems


def _check_options(where: str, name: Any, options: Any) -> Checked:
    """A row's ``method`` (registered) and its ``options`` (the method's option names and types)."""
    from workbench.methods import get_method
    from workbench.methods.options import parse_options

    problems = []
    cls = None
    try:
        cls = get_method(str(name))
    except ConfigError as exc:
        problems.append(f"{where}.method: {exc}")
    if not isinstance(options, dict):
        problems.append(f"{where}.options: expected a mapping of option: value, got {options!r}")
        return {}, problems
    if cls is not None:
        try:
            parse_options(cls.options_class, dict(options), cls.name)
        except ConfigError as exc:
            problems.append(f"{where}.options: {exc}")
    return options, problems


def _check_row_labeled(where: str, value: Any) -> Checked:
    """A row's own ``labeled`` fractions (None: the grid's)."""
    if value is None:
        return None, []
    if not isinstance(value, list) or not value:
        return None, [f"{where}.labeled: {value!r} must be a list of fractions, e.g. [1.0]"]
    fractions, problems = [], []
    for j, item in enumerate(value):
        problem = _fraction_problem(f"{where}.labeled[{j}]", item)
        if problem:
            problems.append(problem)
        else:
            fractions.append(float(item))
    return fractions, problems


def _check_pretrain(where: str, value: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """``pretrain: multi-condos`` or ``pretrain: {method: multi-condos, epochs: 10, ...}``: the
    TrainConfig fields of the pre-training run (the rest from :data:`PRETRAIN_DEFAULTS` and the
    cell; method options under ``options``)."""
    from workbench.methods.multi_condos import MultiConDoSOptions
    from workbench.methods.options import parse_options

    spec = {"method": value} if isinstance(value, str) else value
    if not isinstance(spec, dict):
        return None, [f"{where}.pretrain: expected a method name or a mapping, got {value!r}"]
    problems = []
    hints = field_types(TrainConfig)
    for key, item in spec.items():
        if key in PRETRAIN_FROM_CELL:
            problems.append(f"{where}.pretrain.{key}: taken from the cell's settings, not set here")
        elif key not in hints or key in ("init", "labeled"):
            allowed = [k for k in hints if k not in PRETRAIN_FROM_CELL and k not in ("init", "labeled")]
            problems.append(f"{where}.pretrain.{key}: unknown key; known keys: {', '.join(allowed)}")
        else:
            problem = _type_problem(f"{where}.pretrain.{key}", item, hints[key])
            if problem:
                problems.append(problem)
    if spec.get("method", "multi-condos") != "multi-condos":
        problems.append(
            f"{where}.pretrain.method: unknown pre-training method {spec['method']!r}; choose one of: multi-condos"
        )
    if isinstance(spec.get("options"), dict):
        try:
            parse_options(MultiConDoSOptions, dict(spec["options"]), "multi-condos")
        except ConfigError as exc:
            problems.append(f"{where}.pretrain.options: {exc}")
    return dict(spec), problems


def _check_paper_ref(
    where: str, value: Any, default_table: str | None, papers: Mapping[str, PaperTable]
) -> tuple[tuple[str, str] | None, str | None]:
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


# ---------------------------------------------------------------------------------- the other blocks
def _check_settings_by_labeled(
    value: Any, labeled: Sequence[float], methods: Sequence[GridMethod], check_device: bool
) -> Checked:
    """``settings_by_labeled``: fraction -> settings, for fractions of the grid."""
    by_labeled: dict[float, dict[str, Any]] = {}
    raw = value or {}
    if not isinstance(raw, dict):
        return by_labeled, [f"settings_by_labeled: expected a mapping fraction -> settings, got {raw!r}"]
    problems = []
    every_fraction = set(labeled) | {f for m in methods for f in (m.labeled or [])}
    for key, values in raw.items():
        problem = _fraction_problem(f"settings_by_labeled.{key}", key)
        if problem:
            problems.append(problem)
            continue
        if float(key) not in every_fraction:
            problems.append(
                f"settings_by_labeled.{key}: not one of the grid's labeled fractions {sorted(every_fraction)}"
            )
        problems += _settings_problems(f"settings_by_labeled.{key}", values, check_device)
        by_labeled[float(key)] = dict(values) if isinstance(values, dict) else {}
    return by_labeled, problems


def _cell_settings_problems(
    settings: Mapping[str, Any],
    datasets: Sequence[GridDataset],
    methods: Sequence[GridMethod],
    labeled: Sequence[float],
    by_labeled: Mapping[float, Mapping[str, Any]],
    check_device: bool,
) -> list[str]:
    """The merged settings of every (dataset, method, fraction) as TrainConfig checks them (each
    distinct problem once)."""
    from workbench.train import TrainConfig

    problems: list[str] = []
    seen: set[str] = set()
    for dataset in datasets:
        for method in methods:
            for fraction in method.labeled or labeled:
                values = {**settings, **dataset.settings, **by_labeled.get(fraction, {}), **method.settings}
                if not check_device and values.get("device") == "cuda":
                    values["device"] = "cpu"
                try:
                    TrainConfig(
                        **values, method=method.method, data="grid", labeled=fraction, options=dict(method.options)
                    ).validate()
                except ConfigError as exc:
                    line = f"settings of {dataset.name} / {method.label} / labeled {fraction:g}: {exc}"
                    if str(exc) not in seen:
                        seen.add(str(exc))
                        problems.append(line)
    return problems


def _check_reference(value: Any, methods: Sequence[GridMethod]) -> Checked:
    """``reference``: a method label of the grid (None: the first method)."""
    if value is None:
        return None, []
    labels = [m.label for m in methods]
    if str(value) not in labels:
        return str(value), [f"reference: {value!r} is not a method label of the grid; labels: {', '.join(labels)}"]
    return str(value), []


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
                problems.append(
                    f"{where}: {left!r} and {right!r} share no labeled fraction, so they are never compared"
                )
        claims.append(text)
    return claims, problems
