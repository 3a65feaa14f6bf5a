"""Reading finished run folders: the one reader of a run's per-patient rows
(:func:`read_per_patient`, used by the grid's tables here and by :mod:`workbench.viz.compare`),
its protocol and seed, the tidy per-patient table of a grid's finished cells
(:func:`collect_rows`), and the per-run and per-patient views of that table that the tables
and plots share."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from workbench.errors import ConfigError, DataError
from workbench.reproduce.cells import Cell
from workbench.stats import TEST_FEEDBACK_STAMP, PairedResult, paired_test

__all__ = ["read_per_patient", "run_protocol", "run_seed", "collect_rows", "collect_val_rows", "collect_protocols"]

#: where a finished run keeps its per-patient rows: exact values (``metrics.json``, key
#: ``per_patient``) and the same rows as a table, values to 6 significant digits
RESULT_FILES = ("metrics.json", "per_patient.csv")
#: the table columns' metrics: (per-patient column, header)
TABLE_METRICS = (("dsc", "DSC"), ("sens", "Sens"))
#: the first columns of :func:`collect_rows`
ROW_KEYS = ["dataset", "method", "labeled", "seed", "modality", "case_id"]


# ------------------------------------------------------------------------------- one run folder
def read_per_patient(run_dir: str | Path, source: str = "metrics.json") -> pd.DataFrame:
    """The per-patient rows of a finished run: one row per test patient and result row, columns
    case_id, modality, dsc, sens, hd95, asd, biou (as the Trainer wrote them).

    Args:
        run_dir: a run folder (:class:`workbench.train.Trainer`, ``workbench train``, a grid cell).
        source: ``"metrics.json"`` (the exact values; what the grid's tables use) or
            ``"per_patient.csv"`` (the table, values to 6 significant digits; what
            :func:`workbench.viz.compare.collect_runs` uses).

    Raises:
        ConfigError: the run has no such file (it has not finished its test), or an unknown ``source``.
        DataError: metrics.json is unreadable or has no per-patient rows.
    """
    run_dir = Path(run_dir)
    if source not in RESULT_FILES:
        raise ConfigError(f"source {source!r}: choose one of: {', '.join(RESULT_FILES)}")
    path = run_dir / source
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {source} (has this run finished its test?)")
    if source == "per_patient.csv":
        return pd.read_csv(path)
    metrics = read_metrics(path)
    if "per_patient" not in metrics:
        raise DataError(f"{path}: unreadable metrics (KeyError)")
    return pd.DataFrame(metrics["per_patient"])


def read_metrics(path: Path) -> dict[str, Any]:
    """A run's ``metrics.json`` as a dict."""
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: unreadable metrics ({type(exc).__name__})") from exc


def run_protocol(run_dir: Path, metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's protocol dict: from metrics.json, else config.json; None for a run made before
    protocol cards."""
    protocol = metrics.get("protocol")
    if not protocol and (run_dir / "config.json").is_file():
        try:
            protocol = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("protocol")
        except (OSError, ValueError, AttributeError):
            protocol = None
    return dict(protocol) if isinstance(protocol, dict) and protocol else None


def run_seed(run_dir: Path) -> int:
    """The seed in the run's ``config.json`` (0 without one)."""
    config = run_dir / "config.json"
    saved = json.loads(config.read_text()) if config.is_file() else {}
    return saved.get("config", saved).get("seed", 0)


# ------------------------------------------------------------------------------- a grid's cells
def collect_rows(cells: Sequence[Cell]) -> pd.DataFrame:
    """The tidy per-patient table of the finished cells: one row per dataset, method, labeled
    fraction, seed, modality and test patient, with every metric of ``metrics.json`` and the
    run's ``selection`` (what steered training; None for a run made before protocol cards).
    Cells without ``metrics.json`` are left out."""
    frames = []
    for cell in cells:
        path = cell.run_dir / "metrics.json"
        if not path.is_file():
            continue
        frame = _with_cell_keys(read_per_patient(cell.run_dir), cell)
        protocol = run_protocol(cell.run_dir, read_metrics(path))
        frame["selection"] = protocol.get("selection") if protocol else None
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=ROW_KEYS + ["dsc", "sens", "selection"])
    return pd.concat(frames, ignore_index=True)


def _with_cell_keys(frame: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    """A run's per-patient rows led by the cell's dataset, method, labeled fraction and seed."""
    keys = {"dataset": cell.dataset.name, "method": cell.method.label, "labeled": cell.labeled, "seed": cell.seed}
    return pd.concat([pd.DataFrame(keys, index=frame.index), frame], axis=1)[
        ROW_KEYS + [c for c in frame.columns if c not in ROW_KEYS]
    ]


#: where :func:`collect_val_rows` keeps a finished run's validation scores
VAL_METRICS = "val_metrics.json"


def collect_val_rows(cells: Sequence[Cell], progress: bool = False) -> pd.DataFrame:
    """The tidy per-patient table of the finished cells on their **validation** patients
    (every slice), in :func:`collect_rows`' layout: what a choice made from a grid (a
    weight, a difficulty) may read, since the test rows only judge. The first call scores
    each run from its checkpoint and keeps the result in ``RUN/val_metrics.json``. A later
    call reads that file while it is newer than the run's metrics.json."""
    from workbench.inference import open_run
    from workbench.runs import atomic_write_text

    frames = []
    for cell in cells:
        metrics, cached = cell.run_dir / "metrics.json", cell.run_dir / VAL_METRICS
        if not metrics.is_file():
            continue
        if cached.is_file() and cached.stat().st_mtime >= metrics.stat().st_mtime:
            per_patient = json.loads(cached.read_text(encoding="utf-8"))["per_patient"]
        else:
            per_patient = open_run(cell.run_dir).evaluate(progress=progress, patients="val")["per_patient"]
            atomic_write_text(json.dumps({"per_patient": per_patient}, indent=2, default=float), cached)
        frames.append(_with_cell_keys(pd.DataFrame(per_patient), cell))
    if not frames:
        return pd.DataFrame(columns=ROW_KEYS + ["dsc", "sens"])
    return pd.concat(frames, ignore_index=True)


def collect_protocols(cells: Sequence[Cell]) -> list[dict[str, Any] | None]:
    """The ``protocol`` dict of each finished cell's metrics.json (None where it has none), for
    :func:`workbench.stats.protocol_card`."""
    protocols = []
    for cell in cells:
        path = cell.run_dir / "metrics.json"
        if path.is_file():
            protocols.append(run_protocol(cell.run_dir, read_metrics(path)))
    return protocols


# ------------------------------------------------------------------------ views of the rows
def _per_seed(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over patients per run: index (dataset, method, labeled, modality, seed)."""
    keys = ["dataset", "method", "labeled", "modality", "seed"]
    return rows.groupby(keys, sort=False)[[m for m, _ in TABLE_METRICS]].mean()


def _stamped(rows: pd.DataFrame) -> bool:
    """Whether any of these rows comes from a run steered by its test patients."""
    return "selection" in rows.columns and bool((rows["selection"] == "test").any())


def _with_stamp(title: str, stamped: bool) -> str:
    return f"{title} — {TEST_FEEDBACK_STAMP}" if stamped else title


def _modality_header(modality: str) -> str:
    return modality.upper() if re.fullmatch(r"[a-z0-9]+", modality) else modality


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

    def paired(self, dataset: str, a: str, b: str, labeled: float, modality: str, metric: str = "dsc") -> PairedResult:
        """:func:`~workbench.stats.paired_test` of row ``b`` against row ``a`` over their matched
        (case_id, seed) pairs."""
        both = pd.concat(
            [self.values(dataset, a, labeled, modality, metric), self.values(dataset, b, labeled, modality, metric)],
            axis=1,
            join="inner",
        ).dropna()
        return paired_test(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy())
