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
# # 04 · The ASC explorer
#
# **Runtime** (defaults, measured on a 2-core CPU, fp32, no GPU): about 30 s after notebook 03 (it reads 03's Semi-CML run; run on its own, it first trains that run).
#
# Semi-CML logs the Dice-similarity matrix $S$ of eq. 8 for the first unlabeled batch of every
# epoch. Here we scrub through the epochs with a slider (the paper's Fig. 5a shows the same
# picture on HECKTOR): the **positive pairs** — the same slice seen by the two modalities, on the
# off-diagonals at distance $K$ — should grow dark, the negatives light.
#
# $$l_{asc}(\hat y, \tilde y) = -\log\frac{\exp S(\hat y, \tilde y)}{\exp S(\hat y, \tilde y) + \sum_{h\in\Gamma^-}\exp S(\hat y, h)}$$

# %% tags=["parameters"]
# Parameters (papermill overrides this cell)
run_dir = ""            # an existing semi-cml / semi-cml-prel run; empty: train a short one here
kind = "brats"
patients = 20
labeled = 0.1
epochs = 12
steps_per_epoch = 15
base_channels = 16
size = 64
k_unlabeled = 4
w1 = 1.0
w2 = 3.0                # ASC weight: the default, chosen on validation patients (docs/results.md 1c)
seed = 0
out_dir = "runs/04_asc_explorer"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)

# %%
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import plotly.io as pio
from matplotlib.ticker import MaxNLocator

from workbench.cache import builtin_data, cached_run
from workbench.train import TrainConfig
from workbench.viz import plot_training_curves
from workbench.viz.export import save_figure
from workbench.viz.asc import (asc_explorer, asc_heatmap, asc_matrices, colour_range, epoch_title, positive_mask,
                               predicted_tumour, tumour_note)
from workbench.events import read_events

# JupyterLab draws the plotly mime type; an HTML export of the executed notebook draws the
# "notebook" copy, which carries plotly.js inside the notebook and so works offline.
pio.renderers.default = "plotly_mimetype+notebook"
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
if not run_dir:  # the Semi-CML run of notebook 03 with the same defaults (trained once, cached)
    config = TrainConfig(method="semi-cml", data=str(builtin_data(kind, patients, cache=cache_dir)),
                         labeled=labeled, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         base_channels=base_channels, size=size, seed=seed, unlabeled_batch_size=k_unlabeled,
                         options={"w1": w1, "w2": w2})
    run_dir = str(cached_run(config, cache_dir))
matrices = asc_matrices(run_dir)
foreground = predicted_tumour(run_dir)  # epoch -> predicted tumour pixels (p > 0.5) of each logged slice
modalities = tuple(read_events(run_dir, "run_start")[0]["modalities"])
print(f"{len(matrices)} matrices, epochs {min(matrices)}..{max(matrices)}, 2K = {next(iter(matrices.values())).shape[0]}")
for epoch in sorted(foreground):
    note = tumour_note(foreground[epoch]) or "every logged prediction holds some"
    print(f"epoch {epoch}: predicted tumour pixels (p > 0.5) per logged slice {foreground[epoch].tolist()}; {note}")
if not foreground:
    print("this run's log does not say what its logged predictions hold (logged before predicted_tumour_pixels)")

# %% [markdown]
# ## 1. Scrub through the epochs
#
# Move the slider (in JupyterLab). The run folder gets a PNG of the first epoch's picture,
# `asc_explorer.png`, and, after the last cell has moved the slider from Python, of the last,
# `asc_explorer_last_epoch.png`.

# %%
explorer = asc_explorer(run_dir)
save_figure(explorer.children[1], out / "asc_explorer")
explorer

# %% [markdown]
# ## 2. First vs. last epoch, side by side (static copies for the run folder)

# %%
first, last = min(matrices), max(matrices)
for epoch in (first, last):
    fig = asc_heatmap(matrices[epoch], modalities, epoch_title(epoch, foreground.get(epoch)), foreground.get(epoch))
    fig.show()
    save_figure(fig, out / f"asc_epoch_{epoch}")
blues = plt.get_cmap("Blues").copy()
blues.set_bad("lightgrey")  # the diagonal: an anchor against itself, not in the loss
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
for ax, epoch in zip(axes, (first, last)):
    m = matrices[epoch].copy(); np.fill_diagonal(m, np.nan)
    low, high = colour_range(m)  # each matrix's own range: a 0-1 scale leaves a CPU-scale matrix flat
    im = ax.imshow(m, cmap=blues, vmin=low, vmax=high)
    rows, cols = np.nonzero(positive_mask(m.shape[0]))
    ax.scatter(cols, rows, marker="s", s=120, facecolors="none", edgecolors="crimson", linewidths=1.5)
    empty = " (no tumour predicted)" if epoch in foreground and not foreground[epoch].any() else ""
    ax.set_title(f"epoch {epoch}{empty} (red: positive pairs)", fontsize=9)
    ax.set_xlabel("compared prediction"); ax.set_ylabel("anchor")
    fig.colorbar(im, ax=ax, label=f"S_dice (eq. 8)\nthis matrix: {low:.3f}-{high:.3f}")
save_figure(fig, out / "asc_first_last"); plt.show()

# %% [markdown]
# **What to look for:** at the start every entry is similar (uninformative maps). Later the red
# squares (positives) are darker than their rows: each modality's prediction of a slice matches
# the other modality's prediction of *the same* slice better than any other slice. The colours
# span each matrix's own range (the colour bars give it), so compare the shades *within* a
# matrix; between epochs, compare the ranges, or the curves below. When the title says the
# logged slices' predictions hold no tumour (no pixel with p > 0.5; counted from the
# predictions, not from the labels, which the unlabeled slices never show), every map is
# near-empty and the matrix compares faint background noise: it says little about the tumour.
#
# ## 3. Positive vs. negative similarity over training, and the loss curves

# %%
epochs_seen = sorted(matrices)
pos = [matrices[e][positive_mask(matrices[e].shape[0])].mean() for e in epochs_seen]
neg = [matrices[e][~positive_mask(matrices[e].shape[0]) & ~np.eye(matrices[e].shape[0], dtype=bool)].mean()
       for e in epochs_seen]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(epochs_seen, pos, marker="o", label="positives (same slice)")
ax.plot(epochs_seen, neg, marker="o", label="negatives")
ax.set_xlabel("epoch"); ax.set_ylabel("mean S_dice"); ax.set_ylim(0, 1); ax.legend()
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_title("ASC matrix: positive vs negative similarity")
fig.tight_layout(); save_figure(fig, out / "asc_pos_neg"); plt.show()
fig = plot_training_curves(run_dir); save_figure(fig, out / "curves"); plt.show()

# %% [markdown]
# **What to look for:** a widening gap between the two lines is the contrastive loss doing its job.

# %%
slider = explorer.children[0]
slider.value = last  # what moving the slider does
assert explorer.children[1].layout.title.text == epoch_title(last, foreground.get(last))
assert explorer.children[1].data[0].zmax == colour_range(matrices[last])[1]  # the colours follow the matrix
save_figure(explorer.children[1], out / "asc_explorer_last_epoch")
