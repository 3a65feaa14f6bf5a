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

The package, one job per module: :mod:`~workbench.reproduce.grid` (the grid, its files, the
checks of single values), :mod:`~workbench.reproduce.load` (reading and checking a grid file),
:mod:`~workbench.reproduce.paper` (published values), :mod:`~workbench.reproduce.cells` (the
cells and their run folders), :mod:`~workbench.reproduce.runner` (running them),
:mod:`~workbench.reproduce.results` (reading finished run folders, also for
:mod:`workbench.viz.compare`), :mod:`~workbench.reproduce.tables` (tables, claims and the
files in OUT) and :mod:`~workbench.reproduce.plots` (DSC against the labeled fraction).
"""

# every name other code imports from here, and the constants the docstrings name (as in the former single module)
from workbench.reproduce.cells import Cell, CellResult, plan_cells
from workbench.reproduce.grid import (
    BUILTIN_KINDS,
    FORMATS,
    Grid,
    GridDataset,
    GridError,
    GridMethod,
    grid_path,
    parse_claim,
    shipped_grids,
    slugify,
)
from workbench.reproduce.load import load_grid
from workbench.reproduce.paper import PAPER_LABEL, PaperTable, load_paper_values
from workbench.reproduce.plots import plot_dsc_vs_labeled
from workbench.reproduce.results import TABLE_METRICS, collect_protocols, collect_rows, read_per_patient
from workbench.reproduce.runner import GridReport, reproduce
from workbench.reproduce.tables import (
    CLAIM_COLUMNS,
    COMPARISON_FIELDS,
    ResultTable,
    claims_html,
    claims_markdown,
    decide_claims,
    results_tables,
    tabulate,
)

__all__ = [
    "GridError",
    "Grid",
    "GridDataset",
    "GridMethod",
    "Cell",
    "CellResult",
    "GridReport",
    "ResultTable",
    "PaperTable",
    "grid_path",
    "shipped_grids",
    "load_grid",
    "plan_cells",
    "reproduce",
    "tabulate",
    "collect_rows",
    "collect_protocols",
    "results_tables",
    "decide_claims",
    "claims_markdown",
    "claims_html",
    "parse_claim",
    "plot_dsc_vs_labeled",
    "load_paper_values",
    "slugify",
    "read_per_patient",
]
