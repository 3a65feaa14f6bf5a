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
# # 06 · What the networks see: t-SNE of their features
#
# **Runtime** (defaults, measured on a 2-core CPU, fp32, no GPU): about 65 s after notebook 03 (t-SNE of 03's two runs; run on its own, it first trains them).
#
# Dice scores say *how well* a network segments; they do not say *what it has learned*. Here we
# take the features inside each modality's U-Net and draw them in 2D with **t-SNE**, which keeps
# neighbours together: points that the network represents alike land close.
#
# Two feature layers (see `workbench.nets.unet.UNet.forward_with_features`):
#
# * **bottleneck** — the deepest encoder block, $16b$ channels at $1/16$ resolution. Averaged over
#   the slice it gives **one vector per slice**: does the network separate slices with and without
#   tumour, labeled from unlabeled ones?
# * **decoder** — the last decoder block, $b$ channels at full resolution, the features the
#   $1\times1$ head turns into the prediction. Sampled at **pixels**: are tumour pixels apart from
#   background?
#
# We compare a supervised run (10% labels) with a Semi-CML run on the same split. Each panel is
# its own t-SNE map: compare *neighbourhoods*, not positions.

# %% tags=["parameters"]
# Parameters (papermill overrides this cell)
kind = "brats"
patients = 20
labeled = 0.1
epochs = 12
steps_per_epoch = 15
base_channels = 16
size = 64
sample = 300            # slices (or pixels) per modality: t-SNE time grows with the points
supervised_run = ""     # an existing run folder to reuse, or "" to train one here
semi_cml_run = ""
k_unlabeled = 4
w1 = 1.0
w2 = 3.0                # ASC weight: the default, chosen on validation patients (docs/results.md 1c)
seed = 0
out_dir = "runs/06_tsne_features"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)

# %%
from pathlib import Path

from workbench.cache import builtin_data, cached_run
from workbench.train import TrainConfig
from workbench.viz.export import save_figure
from workbench.viz.features import compare_runs_tsne, extract_features, tsne_scatter

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)

def train(method, given):
    # a given run folder, or the run of notebook 03 with the same defaults (trained once, cached)
    if given:
        return Path(given)
    config = TrainConfig(method=method, data=str(builtin_data(kind, patients, cache=cache_dir)), labeled=labeled,
                         epochs=epochs, steps_per_epoch=steps_per_epoch, base_channels=base_channels, size=size,
                         seed=seed, unlabeled_batch_size=k_unlabeled,
                         options={} if method == "supervised" else {"w1": w1, "w2": w2})
    return cached_run(config, cache_dir)

runs = {"supervised": train("supervised", supervised_run), "semi-cml": train("semi-cml", semi_cml_run)}

# %% [markdown]
# ## 1. One point per slice: the bottleneck
#
# `extract_features` draws up to `sample` slices per modality from the labeled and unlabeled
# training slices and from the test volumes (every test slice, with or without tumour), runs both
# networks on them, and averages the bottleneck over each slice.

# %%
features = extract_features(runs["semi-cml"], layer="bottleneck", level="slice", sample=sample, seed=seed)
print(features.features.shape, "feature vectors;", features.points.groupby(["modality", "source"]).size().to_dict())
points = features.embed(seed=seed)
for colour_by in ("source", "tumour"):
    fig = tsne_scatter(points, colour_by=colour_by)
    save_figure(fig, out / f"tsne_semi_cml_slices_by_{colour_by}")
    fig.show()

# %% [markdown]
# **What to look for:** the two networks form two islands — they are separate networks, so their
# channels have nothing in common, and that is not a finding. *Inside* an island: do test slices
# mix with the training slices (the network generalises) or sit apart (it memorised the two
# labeled patients)? Do slices without tumour gather in their own corner?

# %% [markdown]
# ## 2. Supervised vs Semi-CML, side by side
#
# Same slices, same colours; each panel has its own t-SNE. The supervised run has seen only the
# labeled slices; Semi-CML has also been pulled towards agreement between the modalities on the
# unlabeled ones.

# %%
fig = compare_runs_tsne(runs, colour_by="source", layer="bottleneck", level="slice", sample=sample, seed=seed)
save_figure(fig, out / "tsne_compare_slices")
fig.show()

# %% [markdown]
# ## 3. One point per pixel: the last decoder layer
#
# At pixel level the question is sharper: the $1\times1$ head draws a line (a hyperplane) through
# exactly this feature space to separate tumour from background. Well separated clusters here
# mean an easy job for the head.

# %%
fig = compare_runs_tsne(runs, colour_by="tumour", layer="decoder", level="pixel", sample=sample, seed=seed)
save_figure(fig, out / "tsne_compare_pixels")
fig.show()

# %% [markdown]
# **What to look for:** in the weak modality's island (T1 on BraTS, CT on HECKTOR), how much do
# tumour and background pixels overlap? That overlap is the weak modality's error, seen from
# inside the network; compare it between the two runs.

# %%
assert features.features.shape[0] == len(features.points) > 0
assert features.points["modality"].nunique() == 2 and features.points["source"].nunique() == 3
assert len(fig.data) > 0
