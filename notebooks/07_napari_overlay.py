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
# # 07 · Both modalities and their predictions, in napari
#
# **Runtime** (defaults, measured on a 2-core CPU, fp32, no GPU): about 20 s after notebook 05 (it views 05's BMA run; run on its own, it first trains that run).
#
# Numbers hide *where* a network fails. [napari](https://napari.org) shows the 3D volumes slice
# by slice with the ground truth and each modality's prediction on top, at the true voxel spacing
# (mm). `workbench view RUN` opens the same viewer from the command line.
#
# * one panel per modality (side by side), its image in grey;
# * the **ground truth** as a yellow outline;
# * each modality's **prediction** as a filled label layer (cyan, magenta);
# * optional layers, hidden until ticked: **FP / FN** error maps per modality, and for a PReL run
#   the **teacher's soft pseudo-label** on the high-performance image.
#
# napari needs a screen. In JupyterLab on your desktop run `%gui qt` and set `open_viewer = True`
# below; on a headless machine (CI, a server) the notebook draws the same layers with matplotlib
# and, when an X server is available (`xvfb-run`), saves a napari screenshot.

# %% tags=["parameters"]
# Parameters (papermill overrides this cell)
kind = "brats"
patients = 20
labeled = 0.1
epochs = 16
steps_per_epoch = 15
base_channels = 16
size = 64
run_dir = ""            # an existing run folder to view, or "" for notebook 05's Semi-CML + PReL run
patient = ""            # a test patient's id, or "" for the first test patient
open_viewer = False     # True: open an interactive napari window (needs %gui qt and a screen)
k_unlabeled = 4
w2 = 3.0                # ASC weight: the default, chosen on validation patients (docs/results.md 1c)
m = 6
p = 2
L1 = 11
seed = 0
out_dir = "runs/07_napari_overlay"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from workbench.cache import builtin_data, cached_run
from workbench.train import TrainConfig
from workbench.viz.export import save_figure
from workbench.viz.napari_view import overlay_layers
from workbench.viz.slices import overlay_explorer, plot_overlay_slice

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
if not run_dir:  # notebook 05's PReL run with the same defaults (trained once, cached)
    config = TrainConfig(method="semi-cml-prel", data=str(builtin_data(kind, patients, cache=cache_dir)),
                         labeled=labeled, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         base_channels=base_channels, size=size, seed=seed, unlabeled_batch_size=k_unlabeled,
                         options={"w2": w2, "m": m, "p": p, "L1": L1}, test_curve=True)
    run_dir = cached_run(config, cache_dir)

# %% [markdown]
# ## 1. The layers
#
# `overlay_layers` builds napari's layer data without opening a window: `(data, options, kind)`
# per layer, with `scale` = the voxel spacing in mm, so napari draws the volume at its real size.

# %%
prel = (Path(run_dir) / "events.jsonl").read_text().count('"high_modality"') > 0
layers = overlay_layers(run_dir, patient or None, errors=True, pseudo_labels=prel)
for data, options, kind_ in layers:
    print(f"{options['name']:<34} {kind_:<7} shape {tuple(data.shape)}  scale (mm) {tuple(round(s, 2) for s in options['scale'])}")

# %% [markdown]
# ## 2. The largest-tumour slice, drawn with matplotlib
#
# The same layers, one axial slice: each modality with its prediction filled and the ground truth
# outlined, then the error maps (red: false positive, blue: false negative).

# %%
named = {options["name"]: data for data, options, _ in layers}
truth = named["ground truth"]
modalities = [options["metadata"]["modality"] for _, options, _ in layers if options["metadata"]["kind"] == "image"]
fig = plot_overlay_slice(layers)  # default: the slice with the largest tumour area
save_figure(fig, out / "overlay_slice"); plt.show()

# %% [markdown]
# **What to look for:** the weak modality's errors are not spread evenly: they sit at the tumour
# border or in tissue that looks like tumour in that contrast.
#
# ## 3. Scrub through the slices
#
# The same drawing for every slice and every test patient (in JupyterLab): move the `z` slider,
# or choose another test patient (it is predicted when first chosen). Is a modality's 3D DSC lost
# in a few slices at the top and bottom of the tumour, or everywhere? A headless run shows the
# first picture, saved as `overlay_explorer.png`.

# %%
explorer = overlay_explorer(run_dir, patient or None, errors=True, layers=layers)
save_figure(explorer.figure, out / "overlay_explorer")
explorer

# %% [markdown]
# ## 4. napari
#
# With a display (your desktop, or `xvfb-run` on a server) this saves a napari screenshot of the
# same view; with `open_viewer = True` it opens the interactive viewer (run `%gui qt` first).

# %%
has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
if has_display:
    from workbench.viz.napari_view import screenshot, show_run

    shot = screenshot(run_dir, out / "napari_overlay.png", patient or None)
    plt.figure(figsize=(10, 5.2)); plt.imshow(shot); plt.axis("off"); plt.title("napari screenshot"); plt.show()
    if open_viewer:
        viewer = show_run(run_dir, patient or None, errors=True, pseudo_labels=prel)
else:
    print("no display: skipped the napari screenshot (run under xvfb-run, or on a desktop)")

# %%
assert truth.sum() > 0 and len(modalities) == 2
assert all(set(np.unique(named[f"{m} prediction"])) <= {0, 1} for m in modalities)
explorer.slider.value = 0  # what moving the slider does
assert explorer.figure.get_suptitle().startswith(f"{explorer.patient.value}, slice z = 0 of")
