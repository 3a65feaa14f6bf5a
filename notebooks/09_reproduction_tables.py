# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (workbench)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · Reproduction tables
#
# **Runtime** (defaults, measured on a 2-core CPU, fp32, no GPU): about 11.5 minutes the first time (`quick-cpu`: 4 cells, 2 at a time), 16 s once its cells are finished (finished cells are skipped).
#
# `workbench reproduce` runs a **grid**: datasets x methods x labeled fractions x seeds, one
# training run (a run folder) per cell, and writes the results in the layout of the papers'
# tables: one table per dataset and labeled fraction, one row per method, DSC and sensitivity
# per modality, as mean ± sample std (ddof 1) over seeds, [95% bootstrap CI over patients x
# seeds]. Every table comes with its **protocol card** (how the numbers were made: data and its
# hash, patients per set, what steered training, how the unlabeled slices were chosen, the
# test-slice and empty-mask rules, seeds, the std and CI definitions), a **paired comparison**
# of every row against the grid's reference row, and the verdicts on the paper's **claimed
# orders**. Where the paper reports a number for a row, it is shown
# right below ours, in grey, marked **paper (real data)**: those are the published values on
# the real HECKTOR and BraTS data, not runs of ours, so they say where the method stood in the
# paper, not what our built-in data should give.
#
# A grid is a small YAML file; the shipped ones are in `workbench/grids/`:
#
# | grid | what |
# |---|---|
# | `quick-cpu` (default) | supervised vs Semi-CML + PReL on the built-in BraTS-like data, 5% and 10%, one seed (4 cells, minutes) |
# | `semi-cml-table1-cpu` | Table 1 at CPU scale on the built-in data: 9 methods x 5%, 10% x 3 seeds x 2 datasets (108 cells, hours on 2 cores) |
# | `semi-cml-table3-cpu` | Table 3 (Semi-CML ablations + PReL teachers) at 10% (60 cells) |
# | `semi-cml-table1-gpu`, `semi-cml-table3-gpu` | the paper's scale on your real folders (edit the `path:` keys) |
#
# The same run from a terminal (better for long grids; `--jobs` runs cells in parallel):
#
# ```bash
# workbench reproduce --grid semi-cml-table1-cpu --out runs/reproduce-semi-cml-table1-cpu --jobs 2
# ```
#
# Finished cells are never run twice, a killed cell resumes from its checkpoint, and a failed
# cell is listed with its error while the others go on. So this notebook can also just
# *tabulate* a grid that ran elsewhere: point `out_dir` at its output folder and set
# `only_finished = True`.

# %% tags=["parameters"]
# Parameters (papermill overrides this cell)
grid = "quick-cpu"             # a shipped grid's name or a grid YAML file (quick-cpu: 4 cells, minutes)
out_dir = "runs/reproduce-quick-cpu"
jobs = 2                       # cells in parallel (processes)
only_finished = False          # False: run the missing cells, then tabulate; True: tabulate the finished cells only

# %%
from pathlib import Path
import matplotlib.pyplot as plt
import pandas as pd

from IPython.display import Markdown

from workbench.reproduce import load_grid, plan_cells, plot_dsc_vs_labeled, reproduce
from workbench.viz.compare import plot_methods_dsc
from workbench.viz.export import save_figure

out = Path(out_dir)

# %% [markdown]
# ## 1. The grid
#
# `load_grid` checks the whole file before anything runs (unknown method or option, a fraction
# outside (0, 1], a typo in a key, a dataset folder that does not exist) and reports each
# problem in one line naming the key. Each cell gets a run folder
# `<dataset>-<method>-l<fraction>-s<seed>` in `out_dir`.

# %%
spec = load_grid(grid, check_paths=False, check_device=False)
cells = plan_cells(spec, out)
finished = sum((c.run_dir / "metrics.json").is_file() for c in cells)
print(f"{spec.name}: {len(cells)} cells, {finished} already finished in {out};",
      "tabulating those only (only_finished = True)" if only_finished else "running the missing ones")
print("settings:", spec.settings)
pd.DataFrame([{"label": m.label, "method": m.method, "options": m.options or "",
               "labeled": spec.fractions(m), "paper row": m.paper[1] if m.paper else ""} for m in spec.methods])

# %% [markdown]
# ## 2. Run (or tabulate)
#
# One progress bar over the cells. Each cell is a `Trainer` run, so its folder holds the full
# record: `config.json` (settings and versions), `events.jsonl`, `checkpoint.pt`, `metrics.json`.
# With `only_finished = True` nothing is trained: the tables hold the finished cells only, and
# the cell below says how many are missing.

# %%
report = reproduce(spec if only_finished else load_grid(grid), out, jobs=jobs, only_finished=only_finished)
print(report.summary())
missing = report.counts().get("not run", 0)
if missing:
    print(f"{missing} of {len(cells)} cells are missing (not run): the tables below leave them out;",
          "set only_finished = False to run them")
pd.read_csv(out / "cells.csv", keep_default_na=False)[["dataset", "method", "labeled", "seed", "status",
                                                      "seconds", "error"]]

# %% [markdown]
# ## 3. The tables
#
# First the protocol card of the finished cells (`report.card`). If any run was steered by its
# test patients (`selection: test`, the paper's own protocol), the card, the tables and the
# claims are stamped "test feedback (paper protocol)".

# %%
card = report.card
display(Markdown(card.to_markdown()))

# %% [markdown]
# The layout of Semi-CML's Table 1: rows are methods, columns are modality x (DSC, Sens). Each
# run is scored by its mean over its test patients; a cell is the mean of those over seeds ±
# the sample std (ddof 1) over seeds (no ± with one seed), then in brackets the 95% bootstrap CI
# (BCa) of the mean over the per-(patient, seed) scores. Below each table, every other row of
# ours against the reference row (the grid's `reference`, else its first method): the paired
# DSC difference over matched test patient x seed pairs, the Wilcoxon verdict on "row >
# reference" (holds / reversed / not decided (p)), and MDD, the smallest difference this cohort
# could detect. The same tables are in `tables.md` and `tables.html` in the output folder, and
# every patient's metrics in `per_patient.csv`.

# %%
for table in report.tables:
    display(table.styler())
    comparison = table.comparison_styler()
    if comparison is not None:
        display(comparison)

# %% [markdown]
# ### The claimed orders
#
# Each order the grid claims (its `claims`, e.g. "Sup < Semi-CML + PReL"), per adjacent pair,
# dataset, labeled fraction and modality, decided on our runs with the same paired test:
# `n` matched (test patient, seed) pairs, `diff` = left − right, `verdict` holds / reversed / not
# decided (p), `mdd` the minimal detectable difference. Also in `claims.csv` in the output folder.

# %%
claims = report.claims
if claims is not None and len(claims):
    shown = claims.assign(pair=claims["left"] + " " + claims["op"] + " " + claims["right"])
    display(shown[["dataset", "labeled", "claim", "pair", "modality", "n", "diff", "p", "verdict", "mdd",
                   "stamp"]].round(3))
else:
    print(f"grid {spec.name} claims no order (add `claims:` to the grid file to decide one)")

# %% [markdown]
# **What to look for:** whether the *order* of the rows matches the paper's (semi-supervised
# above supervised, PReL above Semi-CML), not the values: the built-in data is smaller and
# easier in one modality and harder in the other than the real data, and a CPU-scale run is
# far shorter than the paper's 81 epochs. Read the order from the verdicts, not from the means:
# "not decided" means this cohort and these seeds cannot tell the rows apart (a Δ below the MDD),
# and a CI that overlaps the reference row's says the same.
#
# ## 4. DSC against the labeled fraction
#
# One panel per modality and one line per method (error bars: sample std over seeds, ddof 1, only
# where a point has more than one seed; the axis label says how many seeds); the paper's values,
# where there are any, are dotted with open markers in the same colour. A method has the same
# colour here and in the per-patient plot below.

# %%
datasets = list(dict.fromkeys(report.rows["dataset"]))
for name in datasets:
    fig = plot_dsc_vs_labeled(report.rows, name, spec)
    save_figure(fig, out / f"dsc_vs_labeled_{name}")
    plt.show()

# %% [markdown]
# ## 5. Every patient
#
# A table of means hides how the patients spread. At the largest labeled fraction, each bar is
# a method's mean DSC and each dot one test patient of one seed.

# %%
for name in datasets:
    sub = report.rows[report.rows["dataset"] == name]
    sub = sub[sub["labeled"] == sub["labeled"].max()]
    fig = plot_methods_dsc(sub, title=f"{name}, {sub['labeled'].max():.0%} labeled: per-patient DSC")
    save_figure(fig, out / f"methods_dsc_{name}")
    plt.show()

# %%
assert report.tables, "no finished cell to tabulate"
assert report.rows["dsc"].between(0, 1).all()
assert dict(card.entries)["seeds"] == str(len(spec.seeds)) and "CI" in dict(card.entries)
assert claims is None or len(claims) == 0 or claims["verdict"].str.match("holds|reversed|not decided|no pairs").all()
assert not report.failures, [f"{c.key}: {r.error}" for c, r in report.failures]
print(f"{len(report.tables)} tables, {len(report.rows)} per-patient rows in", out)
