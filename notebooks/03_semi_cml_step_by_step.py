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
# # 03 · Semi-CML, step by step
#
# **Runtime** (defaults, measured on a 2-core CPU, fp32, no GPU): about 7.5 minutes the first time (the supervised and Semi-CML runs that notebooks 04 and 06 reuse), 20 s once they are cached.
#
# Semi-CML (Zhang et al., *Medical Image Analysis* 2023) trains **one U-Net per modality** —
# $F$ for $x'$ and $G$ for $x''$ — and lets them teach each other on unlabeled pairs. Inference
# needs only one modality. In this lesson we push **one batch** through both networks, compute
# every term of the loss by hand, check it against the library, and then train for a short while
# next to the supervised baseline.
#
# The patients are split into labeled and unlabeled training patients, validation patients (scored
# after every epoch) and test patients (predicted once, at the end). The unlabeled slices are
# chosen **without their labels** (`unlabeled_slices="body"`: slices whose body cross-section is
# large enough); the paper's filter, which looks at the labels, is `unlabeled_slices="label"`.

# %% tags=["parameters"]
# Parameters (papermill overrides this cell)
kind = "brats"          # built-in dataset: brats (t1 weak, flair strong) or hecktor (ct weak, pet strong)
patients = 20
labeled = 0.1
epochs = 12
steps_per_epoch = 15
base_channels = 16      # paper: 32
size = 64
k_unlabeled = 4         # K: unlabeled pairs per step (paper: 4 BraTS, 26 HECKTOR)
w1 = 1.0                # MSE weight after ramp-up
w2 = 3.0                # ASC weight: the default, chosen on validation patients in the paper's range [2.5, 4] (docs/results.md 1c)
seed = 0
out_dir = "runs/03_semi_cml"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)

# %%
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from workbench.losses import asc_loss, dice_similarity_matrix, mse_consistency, supervised_loss
from workbench.methods import Batch, get_method
from workbench.cache import builtin_data, cached_run
from workbench.train import TrainConfig, load_splits
from workbench.viz import plot_training_curves
from workbench.viz.asc import colour_range
from workbench.viz.export import save_figure

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
data_dir = builtin_data(kind, patients, cache=cache_dir)  # generated once, shared by the notebooks
config = TrainConfig(method="semi-cml", data=str(data_dir), labeled=labeled, epochs=epochs,
                     steps_per_epoch=steps_per_epoch, base_channels=base_channels, size=size, seed=seed,
                     unlabeled_batch_size=k_unlabeled, options={"w1": w1, "w2": w2})
splits, fmt = load_splits(config, progress=False)
a, b = splits.modalities
print(f"x' = {a}, x'' = {b};", splits.info)
for name, ids in splits.split.as_dict().items():
    print(f"{name + ' patients:':<20}", ids)
print(f"unlabeled slices: {len(splits.train_unlabeled)}, chosen by the rule {splits.unlabeled_slices!r}")

# %% [markdown]
# ## 1. One batch: labeled pairs and unlabeled pairs
#
# Both modalities of a slice share **one** label $y$. A step draws a labeled batch
# $\{(x'_i, x''_i, y_i)\}$ and $K$ unlabeled pairs $\{(x'_j, x''_j)\}$.

# %%
torch.manual_seed(seed)
method = get_method("semi-cml")(splits.modalities, config)
idx_l = torch.randperm(len(splits.train_labeled))[: config.batch_size]
idx_u = torch.randperm(len(splits.train_unlabeled))[:k_unlabeled]
batch = Batch(splits.train_labeled.images[idx_l], splits.train_labeled.labels[idx_l],
              splits.train_unlabeled.images[idx_u])
fig, axes = plt.subplots(2, k_unlabeled, figsize=(2.2 * k_unlabeled, 4.6))
for j in range(k_unlabeled):
    for row, i in enumerate((0, 1)):
        axes[row, j].imshow(batch.x_u[j, i].T, cmap="gray", origin="lower")
        axes[row, j].set_title(f"unlabeled {j + 1}: {splits.modalities[i]}", fontsize=8)
        axes[row, j].axis("off")
fig.suptitle("K unlabeled pairs (same slice, two modalities)")
fig.tight_layout(); save_figure(fig, out / "unlabeled_pairs"); plt.show()

# %% [markdown]
# ## 2. The supervised loss (eqs. 3-4)
#
# $$\mathcal{L}_{sup}(\hat y, y) = \beta\,\mathcal{L}_{bce}(\hat y, y) + \gamma\,\mathcal{L}_{dice}(\hat y, y),\quad \beta=10,\ \gamma=7,
# \qquad \mathcal{L}^{Total}_{sup} = \mathcal{L}'_{sup}(F(x'), y) + \mathcal{L}''_{sup}(G(x''), y).$$
#
# Each network sees the labeled slices and the unlabeled slices in **two separate forward
# passes**, as the library does (`SemiCML`, option `joint_forward=False`, the default). In
# training mode BatchNorm normalises a pass with the statistics of that pass's own batch, so the
# labeled and the unlabeled slices get separate BatchNorm batches instead of one mixed set of
# statistics. That choice is measured, not cosmetic: on the built-in HECKTOR data (seed 0), one
# joint pass alone, with every unsupervised weight at 0, dropped the test DSC from CT 0.112 /
# PET 0.635 (two passes) to 0.035 / 0.348 (`docs/results.md`, section E7; the docstring of
# `workbench/methods/semi_cml.py`). The cell runs in training mode, as the loop does (dropout
# on), and fixes the random seed so that it draws the dropout masks the library draws in
# section 5.

# %%
assert not method.opts.joint_forward  # the library default that this cell reproduces
method.train()  # as in training: dropout on, BatchNorm uses the statistics of each pass's batch
torch.manual_seed(seed + 1)  # section 5 reseeds the same way: the same dropout masks there
logits, probs_u = {}, {}
for i, m in enumerate(splits.modalities):  # per network, in the library's order:
    logits[m] = method.nets[m](batch.x_l[:, i : i + 1])  # pass 1: the labeled slices
    probs_u[m] = torch.sigmoid(method.nets[m](batch.x_u[:, i : i + 1]))  # pass 2: the unlabeled
sup = {m: supervised_loss(logits[m], batch.y_l) for m in logits}
print({m: round(float(v), 4) for m, v in sup.items()})

# %% [markdown]
# ## 3. Cross-modal MSE (eq. 5) — simple mutual learning
#
# $$\mathcal{L}_{mse}(F, G) = \mathbb{E}_{x', x''}\left[\lVert F(x') - G(x'')\rVert^2\right]$$
#
# It pulls paired predictions together but says nothing about *unpaired* slices.

# %%
mse = mse_consistency(probs_u[a], probs_u[b])
print("MSE:", float(mse))

# %% [markdown]
# ## 4. The ASC loss (eqs. 6-10) — contrastive mutual learning with Dice similarity
#
# Stack the $2K$ unlabeled predictions $[F(x'_1),\dots,F(x'_K), G(x''_1),\dots,G(x''_K)]$ and compare
# every pair with the Dice similarity
#
# $$S_{dice}(y_1, y_2) = \frac{2\sum y_1 y_2}{\sum (y_1 + y_2)} \qquad (8)$$
#
# For an anchor, the positive is its pair in the other modality ($\Gamma^+$, eq. 6), the negatives
# are the other $2K-2$ maps ($\Gamma^-$, eq. 7):
#
# $$l_{asc}(\hat y, \tilde y) = -\log\frac{\exp S(\hat y, \tilde y)}{\exp S(\hat y, \tilde y) + \sum_{h\in\Gamma^-}\exp S(\hat y, h)} \quad (9),
# \qquad \mathcal{L}_{ASC} = \frac{1}{2K}\sum_{\Gamma^+}\big(l_{asc}(F', G'') + l_{asc}(G'', F')\big) \quad (10)$$
#
# All $S$ values are **one matrix product**.

# %%
S = dice_similarity_matrix(torch.cat([probs_u[a], probs_u[b]])).detach()
K = k_unlabeled
by_hand = []
for anchor in range(2 * K):
    positive = (anchor + K) % (2 * K)
    others = [h for h in range(2 * K) if h != anchor]
    by_hand.append(-(S[anchor, positive] - torch.logsumexp(S[anchor, others], dim=0)))
asc_by_hand = torch.stack(by_hand).mean()
asc_lib = asc_loss(probs_u[a], probs_u[b])
print(f"ASC by hand {float(asc_by_hand):.5f}   library {float(asc_lib):.5f}")
fig, ax = plt.subplots(figsize=(4.2, 3.6))
low, high = colour_range(S.numpy())  # this matrix's off-diagonal range: on 0-1 it would look flat
im = ax.imshow(S.numpy(), cmap="Blues", vmin=low, vmax=high)
for i in range(2 * K):
    ax.add_patch(plt.Rectangle(((i + K) % (2 * K) - 0.5, i - 0.5), 1, 1, fill=False, color="crimson", lw=2))
ax.set_title("S_dice before training (red: positives)")
ax.set_xlabel("compared map"); ax.set_ylabel("anchor")
fig.colorbar(im, label=f"S_dice, {low:.3f}-{high:.3f} (diagonal: off the scale)")
fig.tight_layout(); save_figure(fig, out / "asc_matrix_untrained"); plt.show()

# %% [markdown]
# **What to look for:** an untrained network predicts near-uniform maps, so every pair looks alike
# and $\mathcal{L}_{ASC}\approx\log(2K-1)$; the colours span only this matrix's own (narrow) range,
# given on the colour bar. Training should darken the red squares and lighten the rest.
#
# ## 5. The Semi-CML objective (eq. 11)
#
# $$\mathcal{L}_{CML} = \mathcal{L}^{Total}_{sup} + w_1(t)\,\mathcal{L}_{mse} + w_2\,\mathcal{L}_{ASC},\qquad
# w_1(t) = w_1\,e^{-5(1 - t/T)^2}\ (t<T)$$

# %%
step = 0
total_by_hand = sup[a] + sup[b] + method.w1(step) * mse + w2 * asc_lib
torch.manual_seed(seed + 1)  # the dropout masks of the hand computation (section 2)
library = method.training_step(batch, step)
print(f"w1(t=0) = {method.w1(step):.4f}")
print(f"L_CML by hand {float(total_by_hand):.5f}   library {float(library['loss']):.5f}")
assert torch.allclose(total_by_hand, library["loss"], atol=1e-4)

# %% [markdown]
# ## 6. Train Semi-CML next to the supervised baseline
#
# Same data, split, seed, steps and network width; the only difference is the unlabeled terms.
# `cached_run` trains a configuration once and keeps the run under `cache_dir` (keyed by the
# full config and the data's content): notebooks 04 and 06 reuse these two runs.

# %%
import json

results, runs = {}, {}
for name, method_name in (("supervised", "supervised"), ("semi-cml", "semi-cml")):
    cfg = TrainConfig(**{**config.__dict__, "method": method_name,
                         "options": {} if method_name == "supervised" else config.options})
    runs[name] = cached_run(cfg, cache_dir)
    results[name] = json.loads((runs[name] / "metrics.json").read_text())
fig = plot_training_curves(runs["semi-cml"], title="Semi-CML (sup + w1 MSE + w2 ASC)")
save_figure(fig, out / "curves_semi_cml"); plt.show()

# %% [markdown]
# The two runs on the test patients: the mean over the test patients, and `dsc_std`, the
# **sample std over patients** (ddof 1; one seed, so no spread over seeds). Both runs share one
# protocol card (same data, split and selection), printed below the table.

# %%
from workbench.cli import format_protocol

rows = []
for name, result in results.items():
    for row in result["per_patient"]:
        rows.append({"method": name, **row})
table = pd.DataFrame(rows)
grouped = table.groupby(["method", "modality"], sort=False)
summary = grouped[["dsc", "sens", "hd95"]].mean()
summary.insert(1, "dsc_std", grouped["dsc"].std(ddof=1))  # sample std over patients
summary = summary.unstack("modality").round(3)
summary.to_csv(out / "summary.csv")
display(summary)
protocols = {name: result["protocol"] for name, result in results.items()}
assert protocols["supervised"] == protocols["semi-cml"], "same data, split and selection"
card = format_protocol(protocols["semi-cml"])
print(card)

# %% [markdown]
# **What to look for:** the weak modality is where mutual learning can help — it learns from
# the strong modality's predictions on slices nobody labeled. Watch the strong modality too: the
# same pull towards the other modality's predictions can drag it down while every training loss
# looks healthy. `docs/results.md` (section 1) measured this over 3 seeds on the built-in BraTS
# data in its `clear` preset, where FLAIR is near its ceiling: sup+mse+ASC lifts T1 from 0.21 to
# 0.42 but not FLAIR (0.84 against 0.85, not decided). PReL's re-learning (notebook 05) leaves
# FLAIR 0.05-0.07 below the supervised baseline. That is why both modalities are validated every
# epoch. This notebook trains on the default `paper` preset, where neither modality starts near
# its ceiling (notebook 01).

# %%
assert set(table["modality"]) == {a, b}
assert table["dsc"].between(0, 1).all()
assert set(table["case_id"]) == set(splits.split.test)
assert "steered training: validation patients" in card
