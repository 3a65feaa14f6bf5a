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
# # 08 · The methods side by side
#
# **Runtime** (defaults, measured on a 2-core CPU, fp32, no GPU): about 10 minutes the first time (mean teacher, cross-view, Semi-CML + PReL; the supervised run is notebook 03's), 17 s once they are cached; each further method of `methods` adds about 4 minutes. Section 6 adds one 3D run (cross-view, 75 steps on 32^3 patches; not timed yet).
#
# Every method of the workbench on the same data, the same split, the same network width and
# the same training budget, so that the only difference is the method. Each one is a module in
# `workbench/methods/` with its paper's equations in the docstring; here we only train and
# compare.
#
# | name | paper | what the unlabeled slices do |
# |---|---|---|
# | `supervised` | — | nothing: one U-Net per modality on the labeled slices (the baseline) |
# | `mean-teacher` | Tarvainen & Valpola 2017 | $\lVert f(x;\theta') - f(x;\theta)\rVert^2$ to an EMA teacher $\theta' \leftarrow a\theta' + (1-a)\theta$ |
# | `ua-mt` | Yu et al. 2019 | the same, counted only where the teacher's MC-dropout entropy $u < H(t)$ |
# | `cps` | Chen et al. 2021 | two networks, each trained on the other's hard pseudo-label $[\sigma(f) > 0.5]$ |
# | `cross-view` | Wu et al. 2024 | two subnets pushed apart by $1 + \cos(f_i, \bar f_{1-i})$, CutMix and heterogeneous pseudo-labels |
# | `meng-fusion` | Meng et al. | one dual-branch network with multi-stage fusion; MSE between the branches' predictions |
# | `semi-cml-prel` | Semi-CML + PReL | MSE and the ASC loss between the modalities, then re-learning from the BMA teacher |
# | `cmc` | Zhou et al. 2024 | modality-specific encoders + MIA fusion; channel-wise consistency (CSC) and anatomical contrast (CAC) |
# | `multi-condos` | Multi-ConDoS | nothing during fine-tuning: a DSGAN translating A <-> B is pre-trained first on the images of all training patients (never the validation or test patients), and its encoder and shared layers start the supervised U-Nets |
#
# The single-modality methods (`mean-teacher`, `ua-mt`, `cps`, `cross-view`) train one model per
# modality, each on its own channel, so every method reports one DSC per modality. Set a
# method's `input` option to `both` for its multi-modal variant (MM-MT, MM-CPS, ...), which
# reports `fused` and `<modality> only` rows instead.
#
# To compare the full 3-seed runs of the `methods-cpu` grid instead of training here, run it
# from a terminal (60 cells, hours on 2 cores; its `sup` and `PReL (BMA)` cells are those of
# `semi-cml-table3-cpu` in the same folder)
#
# ```bash
# workbench reproduce --grid methods-cpu --out runs/table3-cpu --jobs 2
# ```
#
# and set `grid_dir` to its `--out` folder: the notebook then reads that grid's finished cells of
# `kind` at `labeled` with `workbench.reproduce` (the grid's own cell layout) and trains nothing.
#
# Every run uses the same split: labeled and unlabeled training patients, validation patients
# (scored after every epoch; only those scores may steer a method, e.g. PReL's BMA teacher) and
# test patients, predicted once at the end for the table.

# %% tags=["parameters"]
# Parameters (papermill overrides this cell)
kind = "brats"          # built-in data: "brats" (T1, FLAIR) or "hecktor" (CT, PET); with grid_dir: a dataset name
patients = 20
labeled = 0.1
epochs = 12
steps_per_epoch = 15
base_channels = 16
size = 64
# the methods to train; all nine: ["supervised", "mean-teacher", "ua-mt", "cps", "cross-view", "meng-fusion",
# "cmc", "multi-condos", "semi-cml-prel"] (about 4 minutes each on 2 CPU cores, multi-condos twice that)
methods = ["supervised", "mean-teacher", "cross-view", "semi-cml-prel"]
pretrain_epochs = 10    # Multi-ConDoS pre-training (x steps_per_epoch steps); the paper: 200 full passes
seed = 0
volumetric_method = "cross-view"  # section 6 trains it in 3D (patches, sliding windows); "": skip section 6
volumetric_epochs = 5
patch = [32, 32, 32]    # 3D training patch (x, y, z); the papers: 96^3, LA 112 x 112 x 80
grid_dir = ""           # a `workbench reproduce --out` folder: tabulate its finished cells, train nothing
grid = "methods-cpu"    # with grid_dir: the grid that ran there (name or YAML); "": the folder's grid.yaml
out_dir = "runs/08_methods_side_by_side"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)

# %%
import json
import math
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from workbench.cache import builtin_data, cached_run
from workbench.methods.multi_condos import PRETRAIN_DEFAULTS
from workbench.train import TrainConfig
from workbench.reproduce import collect_protocols, collect_rows, load_grid, plan_cells
from workbench.viz.compare import collect_runs, methods_table, plot_methods_dsc, plot_val_curves
from workbench.viz.export import save_figure
from workbench.viz.translation import plot_translations

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Train each method
#
# One run per method, same `seed` (same split, same batch order where the methods draw the
# same batches), trained once into `cache_dir` (`cached_run`: a second run of this notebook reads
# the finished runs). The wall time is measured on this machine and printed with the scores. With
# `grid_dir` set, this cell trains nothing: it lists the grid's finished cells of `kind` at
# `labeled` (one run folder per row and seed), the grid's reference row first.

# %%
runs, seconds, cells = {}, {}, []
if grid_dir:  # a `workbench reproduce` output folder: the cells of the grid, where the grid put them
    spec = load_grid(grid or Path(grid_dir) / "grid.yaml", check_paths=False, check_device=False)
    cells = [c for c in plan_cells(spec, grid_dir) if c.dataset.name == kind and math.isclose(c.labeled, labeled)
             and (c.run_dir / "metrics.json").is_file()]
    if not cells:
        raise ValueError(f"{grid_dir}: no finished cell of grid {spec.name} for dataset {kind!r} at labeled "
                         f"{labeled:g} (datasets: {[d.name for d in spec.datasets]}, labeled: {spec.all_fractions()})")
    cells.sort(key=lambda c: c.method.label != spec.reference_label)  # the reference first: the dashed line
    for cell in cells:
        runs.setdefault(cell.method.label, []).append(cell.run_dir)
    print(f"{len(cells)} finished cells of {len(runs)} rows of grid {spec.name} in {grid_dir}")
else:
    data_dir = builtin_data(kind, patients, cache=cache_dir)
    pretrain_dir = None
    for method in tqdm(methods, desc="methods"):
        start = time.perf_counter()
        init = None
        if method == "multi-condos":  # pre-train the DSGAN (method multi-condos), then fine-tune U-Nets from it
            pretraining = TrainConfig(**{**PRETRAIN_DEFAULTS, "data": str(data_dir), "size": size, "seed": seed,
                                         "base_channels": base_channels, "epochs": pretrain_epochs,
                                         "steps_per_epoch": steps_per_epoch})
            pretrain_dir = init = str(cached_run(pretraining, cache_dir, quiet=True))
        config = TrainConfig(method="supervised" if init else method, data=str(data_dir), labeled=labeled,
                             epochs=epochs, steps_per_epoch=steps_per_epoch, base_channels=base_channels,
                             size=size, seed=seed, init=init)
        run_dir = cached_run(config, cache_dir, quiet=True)
        result = json.loads((run_dir / "metrics.json").read_text())
        seconds[method] = time.perf_counter() - start
        runs[method] = [run_dir]
        print(f"{method:<14} {seconds[method]:6.1f} s  DSC",
              {m: round(s["dsc"], 3) for m, s in result["summary"].items()})

# %% [markdown]
# ## 2. One table
#
# Mean per-patient DSC, sensitivity and HD95 (mm) on the test patients, per method and per
# modality; with several seeds, the mean over seeds ± the **sample std over seeds** (ddof 1,
# `*_std`; empty with one seed). Below it, the protocol card of the runs in the table, built
# from each run's `metrics.json["protocol"]` (`workbench.stats.protocol_card`).

# %%
import json
from IPython.display import Markdown
from workbench.stats import protocol_card

rows = collect_rows(cells) if grid_dir else collect_runs(runs)
table = methods_table(rows)
table.to_csv(out / "methods_table.csv")
display(table.round(3))
protocols = collect_protocols(cells) if grid_dir else [
    json.loads((Path(d) / "metrics.json").read_text()).get("protocol") for dirs in runs.values() for d in dirs]
card = protocol_card(protocols, n_seeds=int(table["seeds"].max()))
(out / "protocol_card.md").write_text(card.to_markdown() + "\n")
display(Markdown(card.to_markdown()))

# %% [markdown]
# ## 3. One plot
#
# Each bar is a method's mean DSC for one modality, each dot one test patient (one dot per seed
# and patient). The dashed line is the first method's mean: the supervised baseline by default.

# %%
reference = next(iter(runs))
fig = plot_methods_dsc(rows, title=f"{kind}: per-patient DSC, {labeled:.0%} labeled (dashed: {reference})")
save_figure(fig, out / "methods_dsc")

# %% [markdown]
# **What to look for:** the weak modality (T1 on BraTS, CT on HECKTOR) is where the unlabeled
# data helps most. On the `clear` preset, the strong modality is near its ceiling with two
# labeled patients already. On the default `paper` data, both modalities have room. A method
# that lifts the weak modality's *mean* but spreads its dots wider is not more reliable. With one
# seed, differences of a few hundredths are within the seed-to-seed spread (see
# `docs/results.md` for 3 seeds).
#
# Fewer methods at a time are easier to read. Choose some below (in JupyterLab: ctrl- or
# shift-click): the table and the plot are redrawn for them, the first chosen the dashed
# reference. This only picks among the results above; the `methods` parameter decides what is
# trained.

# %%
from workbench.viz.widgets import methods_explorer

picker = methods_explorer(rows, title=f"{kind}: per-patient DSC, {labeled:.0%} labeled" + " (dashed: {reference})")
picker

# %% [markdown]
# ## 4. How they got there
#
# The DSC on the **validation** patients after every epoch (what steered training; the axis says
# so), one line per method, in the method's colour of the plot above. These are not the test
# patients of the table above. A grid run with
# `val_scores: if_used` scored the validation patients only for the methods that read them
# (PReL), so the other methods have no line there.

# %%
fig = plot_val_curves({label: dirs[0] for label, dirs in runs.items()})
save_figure(fig, out / "methods_curves")

# %% [markdown]
# **What to look for:** methods with a pre-training or teacher stage (`cross-view`, `semi-cml-prel`)
# change slope where their second stage starts; a method whose curve is still rising at the end
# is under-trained at this budget, not beaten.

# %% [markdown]
# ## 5. Inside Multi-ConDoS: what the pre-training learned
#
# Multi-ConDoS never sees a label before fine-tuning. Its DSGAN learns to translate one modality
# into the other and back (eqs. 5-6: translation and reconstruction L1, plus the GAN and the
# contrastive terms); the features that make this possible start the segmentation U-Nets. Each
# row is one pre-training epoch; the slice is one of the training slices the run saved.

# %%
pretrain_dirs = [c.pretrain_dir for c in cells if c.pretrain_dir is not None] if grid_dir else \
    [pretrain_dir] * ("multi-condos" in methods)
if pretrain_dirs:
    fig = plot_translations(pretrain_dirs[0])
    save_figure(fig, out / "multi_condos_translations")
else:
    print("no Multi-ConDoS pre-training in this comparison")

# %% [markdown]
# **What to look for:** in the first epoch the translations are noise around the mean intensity;
# later the anatomy (skull, ventricles, the tumour) appears in the other modality's contrast. The
# round trip (third and sixth columns) should look like the input: that is the reconstruction
# term. A translation that reproduces the anatomy but not the tumour's contrast is what one
# expects when the tumour looks different in the two modalities (T1 vs FLAIR).

# %% [markdown]
# ## 6. One method in 3D: patches in, whole volumes out
#
# Three of the seed papers are volumetric (cross-view mutual learning, Meng et al., CMC), and so
# are the MT, UA-MT and CPS rows they compare. With `spatial_dims=3` the loop trains on random
# 3D patches of the training volumes (`patch`, cut on the device by
# `workbench.data.patches.PatchSampler`) and predicts every validation and test volume with
# overlapping sliding windows (`sw_overlap` 0.5, Gaussian blending; MONAI's
# `sliding_window_inference`). The papers' own networks are a V-Net on 96^3 patches
# (`backbone="vnet"`, `workbench methods` marks the methods that build it); here the U-Net in 3D
# at CPU scale. The run is cached like the others.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from workbench.data.patches import PatchSampler
from workbench.inference import open_run, predict_volume

run3d = None
if volumetric_method and not grid_dir:
    start = time.perf_counter()
    config3d = TrainConfig(method=volumetric_method, data=str(builtin_data(kind, patients, cache=cache_dir)),
                           labeled=labeled, epochs=volumetric_epochs, steps_per_epoch=steps_per_epoch,
                           base_channels=max(4, base_channels // 2), size=size, seed=seed, spatial_dims=3,
                           patch=patch, batch_size=2, unlabeled_batch_size=2, val_scores="if_used")
    run3d = cached_run(config3d, cache_dir, quiet=True)
    seconds[f"{volumetric_method} (3D)"] = time.perf_counter() - start
    result3d = json.loads((run3d / "metrics.json").read_text())
    print(f"{volumetric_method} in 3D, {seconds[f'{volumetric_method} (3D)']:.0f} s: test DSC",
          {m: round(v["dsc"], 3) for m, v in result3d["summary"].items()})
    opened = open_run(run3d)  # the finished run, read only: its data, split and weights
    a3d = opened.splits.modalities[0]
    labeled_volume = opened.splits.labeled[0]
    to_xyz = lambda t: t.permute(1, 2, 3, 0)  # a Volume's (Z, C, H, W) -> (C, X, Y, Z)
    sampler = PatchSampler([to_xyz(labeled_volume.images)], [to_xyz(labeled_volume.label)], patch, 1.0, seed)
    x_patch, y_patch = sampler.sample([0], step=0, positions=[0])  # one patch centred on the tumour
    volume = opened.test_volumes[0]
    probs = predict_volume(opened.method, volume, opened.device)  # sliding windows over the whole volume
    z = int(volume.label[:, 0].flatten(1).sum(1).argmax())  # the test volume's largest-tumour slice

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    centre = [s // 2 for s in patch]
    views = [x_patch[0, 0, :, :, centre[2]], x_patch[0, 0, :, centre[1], :], x_patch[0, 0, centre[0], :, :]]
    masks = [y_patch[0, 0, :, :, centre[2]], y_patch[0, 0, :, centre[1], :], y_patch[0, 0, centre[0], :, :]]
    for ax, view, mask, name in zip(axes, views, masks, ("axial (x, y)", "coronal (x, z)", "sagittal (y, z)")):
        ax.imshow(view.T, cmap="gray", origin="lower")
        ax.contour(mask.T.numpy(), levels=[0.5], colors="yellow", linewidths=1)
        ax.set_title(f"training patch {'x'.join(map(str, patch))}\n{name}", fontsize=9)
        ax.axis("off")
    axes[3].imshow(volume.images[z, 0], cmap="gray")
    axes[3].contour(volume.label[z, 0].numpy(), levels=[0.5], colors="yellow", linewidths=1)
    axes[3].contour((probs[a3d][z, 0] > 0.5).numpy(), levels=[0.5], colors="cyan", linewidths=1)
    axes[3].set_title(f"test {volume.case_id}, axial slice {z}\ntruth (yellow), sliding-window {a3d} (cyan)", fontsize=9)
    axes[3].axis("off")
    save_figure(fig, out / "volumetric_patch_and_prediction")
else:
    print("section 6 skipped (volumetric_method is empty, or grid_dir is set)")

# %% [markdown]
# The same test volume in napari: both modalities side by side, the ground truth and each
# modality's sliding-window prediction as label layers (with a display: your desktop, or
# `xvfb-run` on a server; notebook 07 explains the layers).

# %%
import os

if run3d is not None and os.environ.get("DISPLAY"):
    from workbench.viz.napari_view import screenshot

    shot = screenshot(run3d, out / "volumetric_napari.png", volume.case_id)
    plt.figure(figsize=(10, 5.2)); plt.imshow(shot); plt.axis("off"); plt.title("napari: 3D run, test volume"); plt.show()
else:
    print("no display (or no 3D run): skipped the napari screenshot (run under xvfb-run, or on a desktop)")

# %% [markdown]
# **What to look for:** the patch is a small cube of the volume, so the network never sees a
# whole brain while it trains; at test time the overlapping windows cover the volume and their
# Gaussian-weighted average gives one prediction per voxel, without seams at the window borders.
# At this CPU scale (a few dozen steps on 32^3 patches) the 3D run is not comparable with the 2D
# ones above; the `volumetric-cpu` grid (`workbench reproduce --grid volumetric-cpu`) trains every
# 3D method at the CPU grids' budget, next to the supervised 3D U-Net.

# %%
assert set(table.index.get_level_values("method")) == set(runs)
assert table["dsc"].between(0, 1).all()
assert "validation patients" in dict(card.entries)["what steered training"]
picker.select.value = tuple(runs)[-2:]  # what choosing two methods does
assert list(picker.table.index.get_level_values("method").unique()) == list(runs)[-2:]
if seconds:
    print(pd.Series(seconds, name="seconds").round(1).to_string())
