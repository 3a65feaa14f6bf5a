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
# # 02 · The supervised baseline
#
# **Runtime** (defaults, measured on a 2-core CPU, fp32, no GPU): about 4.5 minutes the first time (it trains the supervised baseline into `cache_dir`), 16 s once that run is cached.
#
# Every table in the seed papers starts with the same row: a U-Net trained **only on the labeled
# patients**, one network per modality. It is the bar a semi-supervised method has to clear
# (with 1/5/10% labels) and, trained on 100% of the labels, the ceiling it tries to reach.
#
# The loss is Semi-CML's supervised loss (eq. 3), for each modality network $F_m$:
#
# $$\mathcal{L}_{sup}(\hat y, y) = \beta\,\mathcal{L}_{bce}(\hat y, y) + \gamma\,\mathcal{L}_{dice}(\hat y, y), \qquad \beta = 10,\ \gamma = 7.$$
#
# We train it on the built-in brain data with a small fraction of labeled patients, watch the
# curves, and read the per-patient table (DSC and sensitivity on the 3D volume, HD95 and ASD in
# mm, Boundary IoU per slice).
#
# **The protocol.** The patients are split four ways, disjoint: *labeled* and *unlabeled*
# training patients (the supervised baseline ignores the unlabeled ones), *validation* patients,
# whose DSC is computed after every epoch and is all that may steer training (here: nothing
# reads it, but the semi-supervised methods' teachers do), and *test* patients, predicted once at
# the end. Every results table comes with its **protocol card**: how its numbers were made.

# %% tags=["parameters"]
# Parameters (papermill overrides this cell)
kind = "brats"          # built-in dataset: brats or hecktor
data_dir = ""           # a real dataset folder; empty: generate the built-in one
patients = 20
labeled = 0.1           # fraction of training patients with labels
epochs = 15
steps_per_epoch = 15
base_channels = 16      # paper: 32 (use 32 on a GPU)
size = 64
seed = 0
out_dir = "runs/02_supervised"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)

# %%
import json
from pathlib import Path
import matplotlib.pyplot as plt
import pandas as pd

from workbench.cache import builtin_data, cached_run
from workbench.events import read_events
from workbench.inference import open_run
from workbench.train import TrainConfig
from workbench.viz import plot_training_curves
from workbench.viz.export import save_figure

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
if not data_dir:
    data_dir = str(builtin_data(kind, patients, cache=cache_dir))

# %% [markdown]
# ## 1. Configure and train
#
# `TrainConfig` holds everything that defines a run; `Trainer` owns the loop (Adam, warm-up
# multi-step learning rate, validation of every modality after each epoch, checkpoints, the
# event log). The run folder gets `config.json` (with the split), `checkpoint.pt`,
# `events.jsonl`, `metrics.json` (with the protocol card) and `per_patient.csv`.
#
# `cached_run(config, cache_dir)` is `Trainer(config, folder).fit()` the first time, into a
# folder of `cache_dir` named by a hash of the whole config; run the notebook again and it
# returns the finished folder at once (delete `cache_dir` to train again). `open_run` then
# opens a run folder without training: its config, its trained networks and its split.
#
# `test_curve=True` also scores the **test** patients after every epoch, for the plot below only:
# those scores are logged as `test_curve` events after the method has seen the epoch's validation
# scores, and training is bit for bit the same with or without them. Never pick an epoch or a
# setting from that curve.

# %%
config = TrainConfig(method="supervised", data=data_dir, labeled=labeled, epochs=epochs,
                     steps_per_epoch=steps_per_epoch, base_channels=base_channels, size=size, seed=seed,
                     test_curve=True)
run_dir = cached_run(config, cache_dir)
run = open_run(run_dir)
split = run.splits.split
print("labeled patients:  ", split.labeled)
print("unlabeled patients:", split.unlabeled, "(not used by the supervised baseline)")
print("val patients:      ", split.val, "(scored every epoch: what may steer training)")
print("test patients:     ", split.test, "(predicted at the end)")
print(run.splits.info)
result = json.loads((run_dir / "metrics.json").read_text())

# %% [markdown]
# ## 2. Curves
#
# Left: the supervised loss of each modality's network. Right: the mean per-patient DSC of each
# modality after every epoch on the **validation** patients (solid: what steers training; the
# legend title says so) and, dashed, on the **test** patients ("test (not used in training)",
# logged because of `test_curve=True`).

# %%
fig = plot_training_curves(run_dir, title=f"supervised, {labeled:.0%} labeled")
save_figure(fig, out / "curves")
plt.show()

# %% [markdown]
# **What to look for:** the two losses fall at different speeds, and the DSC of the weak
# modality stays well below the strong one. With few labels the curves are also noisy: a
# handful of labeled patients cannot cover the variety of tumour shapes and places, and a
# handful of validation patients cannot measure the result precisely: the solid and the dashed
# lines differ because they score different patients, and a choice made on a few validation
# patients need not carry over to new ones.
#
# ## 3. Per-patient results on the test patients
#
# One row per test patient, then the summary per modality: the mean over the test patients and
# its spread, `*_std` = the **sample std over patients** (ddof 1). Below it, the run's protocol
# card (`metrics.json["protocol"]`, rendered by `workbench.cli.format_protocol`).

# %%
from workbench.cli import format_protocol

table = pd.DataFrame(result["per_patient"])
display(table.pivot(index="case_id", columns="modality", values=["dsc", "sens", "hd95"]).round(3))
summary = pd.DataFrame(result["summary"]).T[["dsc", "dsc_std", "sens", "sens_std", "hd95", "asd", "biou"]]
summary.columns = ["DSC", "± DSC (sample std over patients)", "Sens", "± Sens (sample std over patients)",
                   "HD95 mm", "ASD mm", "BIoU"]
display(summary.round(3))
card = format_protocol(result["protocol"])
print(card)

# %% [markdown]
# **What to look for:** the spread across patients (small tumours are hard), and HD95 in mm —
# a few false-positive blobs far from the tumour make it large even when the DSC looks fine.

# %%
assert set(table["modality"]) == set(run.splits.modalities)
assert table["dsc"].between(0, 1).all()
assert set(table["case_id"]) == set(split.test) and not set(split.test) & set(split.val + split.train)
assert "steered training: validation patients" in card
assert len(read_events(run_dir, "test_curve")) == epochs
print(summary.round(3).to_string())
