"""Writes the lesson notebooks in notebooks/ (outputs stripped, stable cell ids).

    python tools/build_notebooks.py

The notebooks are generated from this file so that their text and code can be reviewed
as plain Python; edit here, run it, and commit both. Each notebook has exactly one cell
tagged ``parameters`` (papermill) and ends with asserts, so a papermill run is a test.
"""
import nbformat as nbf
from pathlib import Path

def md(s): return nbf.v4.new_markdown_cell(s.strip())
def code(s, tags=None):
    c = nbf.v4.new_code_cell(s.strip())
    if tags: c.metadata["tags"] = tags
    return c

def save(cells, path):
    nb = nbf.v4.new_notebook()
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating gives a clean diff
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (workbench)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, path)

NB = Path(__file__).resolve().parents[1] / "notebooks"

save([
md("""
# 01 · A tour of the built-in data

The workbench ships its own multi-modal datasets, generated on your machine in seconds, in
the **same NIfTI layouts as the real challenges** — so the same loader reads both:

* **Brain (BraTS-like)** — virtual patients built from the MNI152 template and tissue maps that
  ship with `nilearn`: elastic deformation, an implanted tumour (necrotic core, enhancing rim,
  edema), T1 / T1ce / T2 / FLAIR contrasts, bias field, Rician noise, slight misregistration.
* **Head and neck (HECKTOR-like)** — a CT with a *low-contrast* tumour and a blurred, noisy PET
  with a *hot* tumour, on a coarser PET grid that the loader resamples onto the CT grid.

In this notebook we generate both, load them through the real loaders, apply the paper's
preprocessing (CT clip to [-150, 150] HU, PET min-max, MR z-score in the brain) and look at
the slices and intensity histograms. The histograms tell us which modality is *hard*.
"""),
code("""
# Parameters (papermill overrides this cell)
patients = 8          # virtual patients per dataset
seed = 0              # generation seed: same seed, same data
size = 64             # slice size after crop/resize
out_dir = "runs/01_data_tour"
""", tags=["parameters"]),
code("""
from pathlib import Path
import matplotlib
import matplotlib.pyplot as plt

from workbench.data.synthetic import generate
from workbench.data.nifti import load_dataset
from workbench.data.slices import PreprocessConfig, preprocess_case, DEFAULT_MODALITIES
from workbench.viz import plot_modalities, plot_intensity_histograms
from workbench.viz.export import save_figure

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
"""),
md("""
## 1. Generate the two datasets

`generate(kind, folder, n_patients, seed)` writes NIfTI files (the CLI equivalent is
`workbench data make --kind brats --patients 8 --seed 0 --out DIR`).
"""),
code("""
for kind in ("brats", "hecktor"):
    folder = out / f"data-{kind}-p{patients}-s{seed}"
    if not folder.exists():
        generate(kind, folder, patients, seed)
    print(kind, "->", folder)
print(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.nii.gz"))[:4])
"""),
md("""
## 2. Load through the real loaders and preprocess

`load_dataset` detects the layout, reorients to RAS and (HECKTOR) resamples PET onto the CT
grid. `preprocess_case` normalises each modality as the paper does and crops/resizes the
axial slices.
"""),
code("""
volumes = {}
for kind in ("brats", "hecktor"):
    modalities = {"brats": ["t1", "t1ce", "t2", "flair"], "hecktor": ["ct", "pet"]}[kind]
    cases = load_dataset(out / f"data-{kind}-p{patients}-s{seed}", modalities=modalities, progress=False)
    pre = PreprocessConfig(size=size)
    volumes[kind] = (modalities, [preprocess_case(c, modalities, pre) for c in cases])
    c = cases[0]
    print(f"{kind}: {len(cases)} cases, grid {c.shape}, spacing {tuple(round(s, 2) for s in c.spacing)} mm,",
          f"label values {sorted(set(c.label.ravel().tolist()))}")
"""),
md("""
## 3. Each modality with the ground truth

The red outline is the binary target (BraTS: whole tumour = labels 1, 2, 4; HECKTOR: GTVp + GTVn).
"""),
code("""
for kind, (modalities, vols) in volumes.items():
    fig = plot_modalities(vols[:3], modalities, title=f"{kind}: largest-tumour slice per patient")
    save_figure(fig, out / f"slices_{kind}")
    plt.show()
"""),
md("""
One slice per patient hides how the tumour grows and shrinks through the volume. Scrub through
the slices instead (in JupyterLab): choose a dataset and a patient, move the `z` slider, and see
every modality of that axial slice side by side with the label outlined. The slider starts at
the patient's largest-tumour slice. A headless run shows the first picture, saved as
`slice_explorer.png`.
"""),
code("""
from functools import partial

from workbench.viz.slices import slice_explorer
from workbench.viz.widgets import switcher

explorer = switcher({kind: partial(slice_explorer, vols, modalities) for kind, (modalities, vols) in volumes.items()},
                    description="dataset")
save_figure(explorer.children[1].figure, out / "slice_explorer")
explorer
"""),
md("""
**What to look for:** the tumour is bright and obvious in FLAIR and PET, faint in T1 and
almost invisible in CT. That is the *performance gap* between modalities that Semi-CML's
mutual learning and PReL's re-learning try to close.

## 4. Intensity histograms: tumour vs. the rest of the foreground
"""),
code("""
for kind, (modalities, vols) in volumes.items():
    fig = plot_intensity_histograms(vols, modalities)
    fig.suptitle(kind, y=1.02)
    save_figure(fig, out / f"histograms_{kind}")
    plt.show()
"""),
md("""
**What to look for:** where the red (tumour) histogram overlaps the blue (tissue) one, a
pixel's intensity alone says little; the network must use shape and context. Strong overlap
in T1 and CT, clear separation in FLAIR and PET.
"""),
code("""
# A run of this notebook doubles as a smoke test.
for kind, (modalities, vols) in volumes.items():
    assert all(v.label.sum() > 0 for v in vols), f"{kind}: every patient has a tumour"
    assert vols[0].images.shape[-2:] == (size, size)
explorer.children[0].value = "hecktor"  # what choosing a dataset and moving the slider do
scrubber = explorer.children[1]
scrubber.slider.value = 0
assert scrubber.patient.value == volumes["hecktor"][1][0].case_id
assert "slice z = 0 of" in scrubber.figure.get_suptitle()
print("figures in", out)
"""),
], NB / "01_data_tour.ipynb")

save([
md(r"""
# 02 · The supervised baseline

Every table in the seed papers starts with the same row: a U-Net trained **only on the labeled
patients**, one network per modality. It is the bar a semi-supervised method has to clear
(with 1/5/10% labels) and, trained on 100% of the labels, the ceiling it tries to reach.

The loss is Semi-CML's supervised loss (eq. 3), for each modality network $F_m$:

$$\mathcal{L}_{sup}(\hat y, y) = \beta\,\mathcal{L}_{bce}(\hat y, y) + \gamma\,\mathcal{L}_{dice}(\hat y, y), \qquad \beta = 10,\ \gamma = 7.$$

We train it on the built-in brain data with a small fraction of labeled patients, watch the
curves, and read the per-patient table (DSC and sensitivity on the 3D volume, HD95 and ASD in
mm, Boundary IoU per slice).

**The protocol.** The patients are split four ways, disjoint: *labeled* and *unlabeled*
training patients (the supervised baseline ignores the unlabeled ones), *validation* patients,
whose DSC is computed after every epoch and is all that may steer training (here: nothing
reads it, but the semi-supervised methods' teachers do), and *test* patients, predicted once at
the end. Every results table comes with its **protocol card**: how its numbers were made.
"""),
code("""
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
""", tags=["parameters"]),
code("""
from pathlib import Path
import matplotlib.pyplot as plt
import pandas as pd

from workbench.data.synthetic import generate
from workbench.events import read_events
from workbench.train import TrainConfig, Trainer
from workbench.viz import plot_training_curves
from workbench.viz.export import save_figure

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
if not data_dir:
    data_dir = str(out / f"data-{kind}")
    if not Path(data_dir).exists():
        generate(kind, data_dir, patients, seed=0)
"""),
md("""
## 1. Configure and train

`TrainConfig` holds everything that defines a run; `Trainer` owns the loop (Adam, warm-up
multi-step learning rate, validation of every modality after each epoch, checkpoints, the
event log). The run folder gets `config.json` (with the split), `checkpoint.pt`,
`events.jsonl`, `metrics.json` (with the protocol card) and `per_patient.csv`.

`test_curve=True` also scores the **test** patients after every epoch, for the plot below only:
those scores are logged as `test_curve` events after the method has seen the epoch's validation
scores, and training is bit for bit the same with or without them. Never pick an epoch or a
setting from that curve.
"""),
code("""
config = TrainConfig(method="supervised", data=data_dir, labeled=labeled, epochs=epochs,
                     steps_per_epoch=steps_per_epoch, base_channels=base_channels, size=size, seed=seed,
                     test_curve=True)
trainer = Trainer(config, out / "run", overwrite=True)
split = trainer.splits.split
print("labeled patients:  ", split.labeled)
print("unlabeled patients:", split.unlabeled, "(not used by the supervised baseline)")
print("val patients:      ", split.val, "(scored every epoch: what may steer training)")
print("test patients:     ", split.test, "(predicted at the end)")
print(trainer.splits.info)
result = trainer.fit()
trainer.close()
"""),
md("""
## 2. Curves

Left: the supervised loss of each modality's network. Right: the mean per-patient DSC of each
modality after every epoch on the **validation** patients (solid: what steers training; the
legend title says so) and, dashed, on the **test** patients ("test (not used in training)",
logged because of `test_curve=True`).
"""),
code("""
fig = plot_training_curves(trainer.run_dir, title=f"supervised, {labeled:.0%} labeled")
save_figure(fig, out / "curves")
plt.show()
"""),
md("""
**What to look for:** the two losses fall at different speeds, and the DSC of the weak
modality stays well below the strong one. With few labels the curves are also noisy: a
handful of labeled patients cannot cover the variety of tumour shapes and places, and a
handful of validation patients cannot measure the result precisely: the solid and the dashed
lines differ because they score different patients, and a choice made on a few validation
patients need not carry over to new ones.

## 3. Per-patient results on the test patients

One row per test patient, then the summary per modality: the mean over the test patients and
its spread, `*_std` = the **sample std over patients** (ddof 1). Below it, the run's protocol
card (`metrics.json["protocol"]`, rendered by `workbench.cli.format_protocol`).
"""),
code("""
from workbench.cli import format_protocol

table = pd.DataFrame(result["per_patient"])
display(table.pivot(index="case_id", columns="modality", values=["dsc", "sens", "hd95"]).round(3))
summary = pd.DataFrame(result["summary"]).T[["dsc", "dsc_std", "sens", "sens_std", "hd95", "asd", "biou"]]
summary.columns = ["DSC", "± DSC (sample std over patients)", "Sens", "± Sens (sample std over patients)",
                   "HD95 mm", "ASD mm", "BIoU"]
display(summary.round(3))
card = format_protocol(result["protocol"])
print(card)
"""),
md("""
**What to look for:** the spread across patients (small tumours are hard), and HD95 in mm —
a few false-positive blobs far from the tumour make it large even when the DSC looks fine.
"""),
code("""
assert set(table["modality"]) == set(trainer.splits.modalities)
assert table["dsc"].between(0, 1).all()
assert set(table["case_id"]) == set(split.test) and not set(split.test) & set(split.val + split.train)
assert "steered training: validation patients" in card
assert len(read_events(trainer.run_dir, "test_curve")) == epochs
print(summary.round(3).to_string())
"""),
], NB / "02_supervised_baseline.ipynb")


save([
md(r"""
# 03 · Semi-CML, step by step

Semi-CML (Zhang et al., *Medical Image Analysis* 2023) trains **one U-Net per modality** —
$F$ for $x'$ and $G$ for $x''$ — and lets them teach each other on unlabeled pairs. Inference
needs only one modality. In this lesson we push **one batch** through both networks, compute
every term of the loss by hand, check it against the library, and then train for a short while
next to the supervised baseline.

The patients are split into labeled and unlabeled training patients, validation patients (scored
after every epoch) and test patients (predicted once, at the end). The unlabeled slices are
chosen **without their labels** (`unlabeled_slices="body"`: slices whose body cross-section is
large enough); the paper's filter, which looks at the labels, is `unlabeled_slices="label"`.
"""),
code("""
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
w2 = 0.5                # ASC weight (paper searched 2.5-4; see the note on the strong modality below)
seed = 0
out_dir = "runs/03_semi_cml"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)
""", tags=["parameters"]),
code("""
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from workbench.losses import asc_loss, dice_similarity_matrix, mse_consistency, supervised_loss
from workbench.methods import Batch, get_method
from workbench.runs import builtin_data, cached_run
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
"""),
md(r"""
## 1. One batch: labeled pairs and unlabeled pairs

Both modalities of a slice share **one** label $y$. A step draws a labeled batch
$\{(x'_i, x''_i, y_i)\}$ and $K$ unlabeled pairs $\{(x'_j, x''_j)\}$.
"""),
code("""
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
"""),
md(r"""
## 2. The supervised loss (eqs. 3-4)

$$\mathcal{L}_{sup}(\hat y, y) = \beta\,\mathcal{L}_{bce}(\hat y, y) + \gamma\,\mathcal{L}_{dice}(\hat y, y),\quad \beta=10,\ \gamma=7,
\qquad \mathcal{L}^{Total}_{sup} = \mathcal{L}'_{sup}(F(x'), y) + \mathcal{L}''_{sup}(G(x''), y).$$

Each network sees the labeled slices and the unlabeled slices in **two separate forward
passes**, as the library does (`SemiCML`, option `joint_forward=False`, the default). In
training mode BatchNorm normalises a pass with the statistics of that pass's own batch, so the
labeled and the unlabeled slices get separate BatchNorm batches instead of one mixed set of
statistics. That choice is measured, not cosmetic: on the built-in HECKTOR data (seed 0), one
joint pass alone, with every unsupervised weight at 0, dropped the test DSC from CT 0.112 /
PET 0.635 (two passes) to 0.035 / 0.348 (`docs/results.md`, section E7; the docstring of
`workbench/methods/semi_cml.py`). The cell runs in training mode, as the loop does (dropout
on), and fixes the random seed so that it draws the dropout masks the library draws in
section 5.
"""),
code("""
assert not method.opts.joint_forward  # the library default that this cell reproduces
method.train()  # as in training: dropout on, BatchNorm uses the statistics of each pass's batch
torch.manual_seed(seed + 1)  # section 5 reseeds the same way: the same dropout masks there
logits, probs_u = {}, {}
for i, m in enumerate(splits.modalities):  # per network, in the library's order:
    logits[m] = method.nets[m](batch.x_l[:, i : i + 1])  # pass 1: the labeled slices
    probs_u[m] = torch.sigmoid(method.nets[m](batch.x_u[:, i : i + 1]))  # pass 2: the unlabeled
sup = {m: supervised_loss(logits[m], batch.y_l) for m in logits}
print({m: round(float(v), 4) for m, v in sup.items()})
"""),
md(r"""
## 3. Cross-modal MSE (eq. 5) — simple mutual learning

$$\mathcal{L}_{mse}(F, G) = \mathbb{E}_{x', x''}\left[\lVert F(x') - G(x'')\rVert^2\right]$$

It pulls paired predictions together but says nothing about *unpaired* slices.
"""),
code("""
mse = mse_consistency(probs_u[a], probs_u[b])
print("MSE:", float(mse))
"""),
md(r"""
## 4. The ASC loss (eqs. 6-10) — contrastive mutual learning with Dice similarity

Stack the $2K$ unlabeled predictions $[F(x'_1),\dots,F(x'_K), G(x''_1),\dots,G(x''_K)]$ and compare
every pair with the Dice similarity

$$S_{dice}(y_1, y_2) = \frac{2\sum y_1 y_2}{\sum (y_1 + y_2)} \qquad (8)$$

For an anchor, the positive is its pair in the other modality ($\Gamma^+$, eq. 6), the negatives
are the other $2K-2$ maps ($\Gamma^-$, eq. 7):

$$l_{asc}(\hat y, \tilde y) = -\log\frac{\exp S(\hat y, \tilde y)}{\exp S(\hat y, \tilde y) + \sum_{h\in\Gamma^-}\exp S(\hat y, h)} \quad (9),
\qquad \mathcal{L}_{ASC} = \frac{1}{2K}\sum_{\Gamma^+}\big(l_{asc}(F', G'') + l_{asc}(G'', F')\big) \quad (10)$$

All $S$ values are **one matrix product**.
"""),
code("""
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
"""),
md(r"""
**What to look for:** an untrained network predicts near-uniform maps, so every pair looks alike
and $\mathcal{L}_{ASC}\approx\log(2K-1)$; the colours span only this matrix's own (narrow) range,
given on the colour bar. Training should darken the red squares and lighten the rest.

## 5. The Semi-CML objective (eq. 11)

$$\mathcal{L}_{CML} = \mathcal{L}^{Total}_{sup} + w_1(t)\,\mathcal{L}_{mse} + w_2\,\mathcal{L}_{ASC},\qquad
w_1(t) = w_1\,e^{-5(1 - t/T)^2}\ (t<T)$$
"""),
code("""
step = 0
total_by_hand = sup[a] + sup[b] + method.w1(step) * mse + w2 * asc_lib
torch.manual_seed(seed + 1)  # the dropout masks of the hand computation (section 2)
library = method.training_step(batch, step)
print(f"w1(t=0) = {method.w1(step):.4f}")
print(f"L_CML by hand {float(total_by_hand):.5f}   library {float(library['loss']):.5f}")
assert torch.allclose(total_by_hand, library["loss"], atol=1e-4)
"""),
md("""
## 6. Train Semi-CML next to the supervised baseline

Same data, split, seed, steps and network width; the only difference is the unlabeled terms.
`cached_run` trains a configuration once and keeps the run under `cache_dir` (keyed by the
full config and the data's content): notebooks 04 and 06 reuse these two runs.
"""),
code("""
import json

results, runs = {}, {}
for name, method_name in (("supervised", "supervised"), ("semi-cml", "semi-cml")):
    cfg = TrainConfig(**{**config.__dict__, "method": method_name,
                         "options": {} if method_name == "supervised" else config.options})
    runs[name] = cached_run(cfg, cache_dir)
    results[name] = json.loads((runs[name] / "metrics.json").read_text())
fig = plot_training_curves(runs["semi-cml"], title="Semi-CML (sup + w1 MSE + w2 ASC)")
save_figure(fig, out / "curves_semi_cml"); plt.show()
"""),
md("""
The two runs on the test patients: the mean over the test patients, and `dsc_std`, the
**sample std over patients** (ddof 1; one seed, so no spread over seeds). Both runs share one
protocol card (same data, split and selection), printed below the table.
"""),
code("""
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
"""),
md("""
**What to look for:** the weak modality is where mutual learning can help — it learns from
the strong modality's predictions on slices nobody labeled. Watch the strong modality too: the
same pull towards the other modality's predictions can drag it down while every training loss
looks healthy. `docs/results.md` (section 1) measured this on the built-in BraTS data over 3
seeds: sup+mse+ASC lifts T1 from 0.21 to 0.42 but not FLAIR (0.84 against 0.85, not decided),
and PReL's re-learning (notebook 05) leaves FLAIR 0.05-0.07 below the supervised baseline. That
is why both modalities are validated every epoch.
"""),
code("""
assert set(table["modality"]) == {a, b}
assert table["dsc"].between(0, 1).all()
assert set(table["case_id"]) == set(splits.split.test)
assert "steered training: validation patients" in card
"""),
], NB / "03_semi_cml_step_by_step.ipynb")

save([
md(r"""
# 04 · The ASC explorer

Semi-CML logs the Dice-similarity matrix $S$ of eq. 8 for the first unlabeled batch of every
epoch. Here we scrub through the epochs with a slider (the paper's Fig. 5a shows the same
picture on HECKTOR): the **positive pairs** — the same slice seen by the two modalities, on the
off-diagonals at distance $K$ — should grow dark, the negatives light.

$$l_{asc}(\hat y, \tilde y) = -\log\frac{\exp S(\hat y, \tilde y)}{\exp S(\hat y, \tilde y) + \sum_{h\in\Gamma^-}\exp S(\hat y, h)}$$
"""),
code("""
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
w2 = 0.5
seed = 0
out_dir = "runs/04_asc_explorer"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)
""", tags=["parameters"]),
code("""
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import plotly.io as pio
from matplotlib.ticker import MaxNLocator

from workbench.runs import builtin_data, cached_run
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
"""),
md("""
## 1. Scrub through the epochs

Move the slider (in JupyterLab). The run folder gets a PNG of the first epoch's picture,
`asc_explorer.png`, and, after the last cell has moved the slider from Python, of the last,
`asc_explorer_last_epoch.png`.
"""),
code("""
explorer = asc_explorer(run_dir)
save_figure(explorer.children[1], out / "asc_explorer")
explorer
"""),
md("""
## 2. First vs. last epoch, side by side (static copies for the run folder)
"""),
code("""
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
    fig.colorbar(im, ax=ax, label=f"S_dice (eq. 8)\\nthis matrix: {low:.3f}-{high:.3f}")
save_figure(fig, out / "asc_first_last"); plt.show()
"""),
md("""
**What to look for:** at the start every entry is similar (uninformative maps). Later the red
squares (positives) are darker than their rows: each modality's prediction of a slice matches
the other modality's prediction of *the same* slice better than any other slice. The colours
span each matrix's own range (the colour bars give it), so compare the shades *within* a
matrix; between epochs, compare the ranges, or the curves below. When the title says the
logged slices' predictions hold no tumour (no pixel with p > 0.5; counted from the
predictions, not from the labels, which the unlabeled slices never show), every map is
near-empty and the matrix compares faint background noise: it says little about the tumour.

## 3. Positive vs. negative similarity over training, and the loss curves
"""),
code("""
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
"""),
md("""
**What to look for:** a widening gap between the two lines is the contrastive loss doing its job.
"""),
code("""
slider = explorer.children[0]
slider.value = last  # what moving the slider does
assert explorer.children[1].layout.title.text == epoch_title(last, foreground.get(last))
assert explorer.children[1].data[0].zmax == colour_range(matrices[last])[1]  # the colours follow the matrix
save_figure(explorer.children[1], out / "asc_explorer_last_epoch")
"""),
], NB / "04_asc_explorer.ipynb")

save([
md(r"""
# 05 · PReL and the BMA teacher

Semi-CML narrows the gap between modalities but does not close it. **PReL** (soft pseudo-label
re-learning) takes the *high-performance* modality's model $G$, builds a teacher $T$ from its best
epochs (the **BMA** teacher), and in stage 2 re-trains the weak model on the teacher's soft
pseudo-labels.

**Stage 1** (epochs $t < L_1$), Algorithm 1: the best-model pool $\mathbb{R}_{pool}$ (capacity $p$)
is filled at epochs $m+1..m+p$, the teacher is initialised at $m+p+1$, then whenever
$Acc_t > Acc_{min} = \min \mathbb{R}_{pool}$:

$$\alpha = \min\Big(1 - \frac{Acc_t - Acc_{min}}{Acc_t},\ \alpha_0\Big)\ (12),\qquad \theta_t = \alpha\,\theta_{t-1} + (1-\alpha)\,\theta''_t\ (13)$$

**Whose accuracy is $Acc_t$?** Everything Algorithm 1 reads — $Acc_t$, the pool, $Acc_{min}$ and
the choice of the high modality below — is the mean per-patient DSC on the **validation**
patients after each epoch (`selection="val"`, the default), never on the test patients, which are
predicted once, at the end. The paper has no validation set: it used its *test* set as
"validation" for these decisions. That protocol is available as `TrainConfig(selection="test")`;
the run's metrics, its protocol card and every table it reaches are then stamped
**"test feedback (paper protocol)"**, because its test scores are no longer held-out numbers.

Which modality is "high"? The paper names it from its stage-1 results. The workbench does the
same from the data: during stage 1 it keeps a pool and a teacher for **both** modalities, and at
the end of epoch $L_1 - 1$ the modality with the higher mean validation DSC over epochs
$m+1..L_1-1$ becomes "high" (event `high_modality`). Deciding earlier is a trap: in an early run
on the built-in BraTS data (made, as in the paper, with the test patients as "validation"), T1
led FLAIR 0.29 to 0.15 after two epochs, yet FLAIR ended stage 1 at 0.88 against 0.48, and a T1
teacher then dragged FLAIR down in stage 2.

This run also sets `test_curve=True`: after every epoch, *after* the method has seen the
validation scores, the test patients are scored too and logged as `test_curve` events, "test
(not used in training)". Training is bit for bit the same without it; we use it only to show,
in section 3, how the gains look on patients the method never saw.
"""),
code("""
# Parameters (papermill overrides this cell)
kind = "brats"
patients = 20
labeled = 0.1
epochs = 16
steps_per_epoch = 15
base_channels = 16
size = 64
k_unlabeled = 4
w2 = 0.5
m = 6                   # BMA starts after epoch m (teacher initialised at m + p + 1)
p = 2                   # pool capacity
L1 = 11                 # first stage-2 epoch
teachers = ["bma", "ema", "base"]  # section 5 (Table 3): the same run with each teacher; ["bma"]: no extra runs
seed = 0
out_dir = "runs/05_prel_bma"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)
""", tags=["parameters"]),
code("""
from pathlib import Path
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import json

from workbench.events import events_frame, read_events
from workbench.cli import format_summary
from workbench.runs import builtin_data, cached_run
from workbench.teachers import mc_dropout_pseudo_labels
from workbench.train import TrainConfig, Trainer
from workbench.viz.bma import plot_bma_timeline
from workbench.viz.curves import TEST_CURVE_LABEL, steering_label
from workbench.viz.export import save_figure

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
data_dir = builtin_data(kind, patients, cache=cache_dir)  # generated once, shared by the notebooks
config = TrainConfig(method="semi-cml-prel", data=str(data_dir), labeled=labeled, epochs=epochs,
                     steps_per_epoch=steps_per_epoch, base_channels=base_channels, size=size, seed=seed,
                     unlabeled_batch_size=k_unlabeled, options={"w2": w2, "m": m, "p": p, "L1": L1},
                     test_curve=True)
run_dir = cached_run(config, cache_dir)  # trained once; notebook 07 views the same run
result = json.loads((run_dir / "metrics.json").read_text())
trainer = Trainer.resume(run_dir, quiet=True, read_only=True)  # the finished run: its splits and weights
for name, ids in trainer.splits.split.as_dict().items():
    print(f"{name + ' patients:':<20}", ids)
print("Acc_t, the pool and the high modality read:", steering_label(trainer.run_dir))
"""),
md(r"""
## 1. Every BMA decision, as a table

Each stage-1 epoch writes one `bma` event per modality: the accuracy $Acc_t$ (`acc`: that
modality's mean DSC on the validation patients), the pool before and after, $\alpha$, which
entry was replaced and whether the teacher moved. Below: the decision about "high", then the
pool of the modality that won it. The timeline's top panel shows the same validation scores.
"""),
code("""
print(read_events(trainer.run_dir, "high_modality")[0])
bma = events_frame(trainer.run_dir, "bma")
bma = bma[bma["modality"] == trainer.method.high]
bma[["epoch", "acc", "action", "pool_before", "pool_after", "acc_min", "alpha", "replaced_index", "teacher_updated"]]
"""),
code("""
fig = plot_bma_timeline(trainer.run_dir)
save_figure(fig, out / "bma_timeline"); plt.show()
"""),
md("""
The same decisions one epoch at a time: move the slider to see the pool after each epoch
(bars), that epoch's $Acc_t$ (dashed) and what Algorithm 1 did.
"""),
code("""
from workbench.viz.bma import bma_explorer

explorer = bma_explorer(trainer.run_dir)
display(explorer)
slider, pool_figure = explorer.children
slider.value = slider.options[-1]  # last stage-1 epoch
save_figure(pool_figure, out / "bma_pool_last_epoch")
"""),
md(r"""
**What to look for:** the teacher moves only on epochs that beat the pool's worst entry, and it
moves more ($\alpha$ small) the bigger the improvement. Dips in accuracy never reach the teacher —
unlike an EMA teacher, which averages every step.

## 2. Soft pseudo-labels (eq. 14)

$$P_s = \frac{1}{D}\sum_{i=1}^{D} T(x'' + \xi_i)$$

$D$ passes of the teacher with dropout on and Gaussian input noise $\xi_i$, averaged.
"""),
code("""
method = trainer.method
high, low = method.high, method.low
unl = trainer.splits.train_unlabeled
# for the picture only: the 4 unlabeled slices with the most tumour (their labels never reach training)
order = torch.argsort(unl.labels.flatten(1).sum(1), descending=True)[:4]
x = unl.images[order]
hi = trainer.splits.modalities.index(high)
torch.manual_seed(0)
pseudo = mc_dropout_pseudo_labels(method.teacher, x[:, hi : hi + 1], passes=method.opts.mc_passes,
                                  noise_std=method.opts.noise_std)
fig, axes = plt.subplots(3, 4, figsize=(9, 7))
for j in range(4):
    axes[0, j].imshow(x[j, hi].T, cmap="gray", origin="lower"); axes[0, j].set_title(f"{high} (teacher input)", fontsize=8)
    axes[1, j].imshow(pseudo[j, 0].T, cmap="magma", vmin=0, vmax=1, origin="lower"); axes[1, j].set_title("soft pseudo-label P_s", fontsize=8)
    axes[2, j].imshow(unl.labels[order[j], 0].T, cmap="Reds", vmin=0, vmax=1, origin="lower"); axes[2, j].set_title("ground truth (never used)", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout(); save_figure(fig, out / "pseudo_labels"); plt.show()
"""),
md(r"""
**What to look for:** $P_s$ is soft at the boundary (the MC-dropout passes disagree there) and
close to the ground truth inside the tumour — the weak model gets a much better target than its own
prediction.

## 3. Stage 2: re-learning (eqs. 15-17)

$$\mathcal{L}'_{ReL}(F) = \alpha_1\,\mathcal{L}^{ReL}_{ASC}(F(x'), P_s) + (1-\alpha_1)\,\mathcal{L}'_{sup}(F(x'), P_s)$$

and the same for $G$ with $\alpha_2$ after epoch $L_2 = (t_{max} - L_1)\,r + L_1$. The gain per
modality is the DSC at the end minus the DSC at the last stage-1 epoch, read twice:

* on the **validation** patients (`val` events): the scores that steered training;
* on the **test** patients (`test_curve` events, logged because of `test_curve=True`): "test
  (not used in training)" — no decision of the method saw them, so they show whether the gain
  carries over to new patients. Outside this lesson, judge a method on its final test metrics
  (section 4), not on a per-epoch test curve.
"""),
code("""
val = events_frame(trainer.run_dir, "val").set_index("epoch")
test_curve = events_frame(trainer.run_dir, "test_curve").set_index("epoch")
stage2 = read_events(trainer.run_dir, "stage")[0]
last_stage1, end = stage2["epoch"] - 1, val.index.max()
scored_on = {"validation (steers training)": val, TEST_CURVE_LABEL: test_curve}
gain = pd.DataFrame([{"modality": mod, "scored on": where,
                      "end of stage 1": frame.at[last_stage1, f"dsc.{mod}"],
                      "end of stage 2": frame.at[end, f"dsc.{mod}"]}
                     for mod in trainer.splits.modalities for where, frame in scored_on.items()])
gain = gain.set_index(["modality", "scored on"])
gain["gain"] = gain["end of stage 2"] - gain["end of stage 1"]
display(gain.round(3))
fig, ax = plt.subplots(figsize=(9, 3.4))
for mod in trainer.splits.modalities:
    line, = ax.plot(val.index, val[f"dsc.{mod}"], marker=".", label=f"{mod}: validation (steers training)")
    ax.plot(test_curve.index, test_curve[f"dsc.{mod}"], ls="--", color=line.get_color(),
            label=f"{mod}: {TEST_CURVE_LABEL}")
ax.axvline(stage2["epoch"] - 0.5, color="goldenrod", ls="--", label="L1: stage 2")
ax.axvline(stage2["L2"] + 0.5, color="grey", ls=":", label="L2: high model joins")
ax.set_xlabel("epoch"); ax.set_ylabel("mean per-patient DSC"); ax.set_ylim(0, 1)
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
ax.set_title(f"PReL: {low} (low) re-learns from the BMA teacher of {high} (high)")
fig.tight_layout(); save_figure(fig, out / "stage2_gain"); plt.show()
"""),
md("""
**What to look for:** the low-performance modality should rise after $L_1$. If it does not on a
short CPU run, look at the pseudo-labels above: the re-learning target is only as good as the teacher.
With a few validation patients the solid lines are noisy, and the dashed (test) lines score other
patients: a gain on validation need not carry over, which is why the method never sees the test curve.

## 4. The test patients, once, at the end

The run's final metrics (`metrics.json`): per modality the mean over the test patients ±
the **sample std over patients** (ddof 1), each patient's DSC, then the run's protocol card.
"""),
code("""
text = format_summary(result)
print(text)
"""),
md("""
## 5. Which teacher? BMA vs EMA vs Base (the paper's Table 3)

The same configuration trained once per teacher (`teacher` option; each extra teacher is one
more cached run, `teachers = ["bma"]` skips them):

* **BMA**: the pool of section 1; the teacher moves only on epochs that beat the pool's worst;
* **EMA**: a copy of $G$ at epoch $m+p+1$, then $\\theta \\leftarrow a\\,\\theta + (1-a)\\,\\theta''$ after
  every optimiser step until $L_1$ (`ema_decay` $a$), dips included;
* **Base**: $G$ as it is at the end of stage 1, frozen.

The table: each run's test DSC per modality (mean over the test patients, once, at the end; one
seed, so differences of a few hundredths are noise). The figure: the per-epoch validation DSC of
the three runs, the scores that steered them. With this notebook's short schedule the three
teachers are built from the same few epochs (initialised at $m+p+1$, frozen at $L_1$), so expect
small differences; the `semi-cml-table3-cpu` grid (notebook 09) compares them with 3 seeds and
decides the paper's order "PReL (Base) < PReL (EMA) < PReL (BMA)".
"""),
code("""
import dataclasses

from workbench.viz.bma import plot_teacher_curves, teacher_explorer, teacher_table

names = {"bma": "BMA", "ema": "EMA", "base": "Base"}
teacher_runs = {names[t]: run_dir if t == "bma" else
                cached_run(dataclasses.replace(config, options={**config.options, "teacher": t}), cache_dir)
                for t in teachers}
teachers_table = teacher_table(teacher_runs)
display(teachers_table.round(3))
fig = plot_teacher_curves(teacher_runs)
save_figure(fig, out / "teacher_curves"); plt.show()
"""),
md("""
Each run one at a time: choose a teacher. A BMA run shows its pool epoch by epoch (as in
section 1); an EMA or Base run has no pool, so it shows its curves, where its teacher got its
weights (star) and stage 2 (shaded).
"""),
code("""
explorer = teacher_explorer(teacher_runs)
explorer
"""),
md("""
**What to look for:** up to $L_1$ the three curves are one: in stage 1 the teacher only
watches (same seed, same batches, nobody learns from it). They part in stage 2, where the low
modality re-learns from its teacher. Then: does the BMA row beat the EMA and Base rows on the low
modality (the paper's Table 3)? An EMA teacher averages every step, the bad ones too; a Base
teacher is whatever $G$ happened to be at $L_1$.
"""),
code("""
assert len(bma) > 0 and (bma["action"] == "init").sum() == 1
assert gain.shape[0] == 4 and set(test_curve.index) == set(val.index)
assert result["protocol"]["selection"] == "val" and result["protocol"]["stamp"] is None
assert "steered training: validation patients" in text
assert (bma["epoch"] <= last_stage1).all()
assert list(teachers_table.index) == [names[t] for t in teachers]
assert teachers_table[list(trainer.splits.modalities)].stack().between(0, 1).all()
explorer.children[0].value = names[teachers[-1]]  # what choosing a teacher does
assert explorer.children[1] is explorer.views[names[teachers[-1]]]
"""),
], NB / "05_prel_bma.ipynb")

save([
md(r"""
# 06 · What the networks see: t-SNE of their features

Dice scores say *how well* a network segments; they do not say *what it has learned*. Here we
take the features inside each modality's U-Net and draw them in 2D with **t-SNE**, which keeps
neighbours together: points that the network represents alike land close.

Two feature layers (see `workbench.nets.unet.UNet.forward_with_features`):

* **bottleneck** — the deepest encoder block, $16b$ channels at $1/16$ resolution. Averaged over
  the slice it gives **one vector per slice**: does the network separate slices with and without
  tumour, labeled from unlabeled ones?
* **decoder** — the last decoder block, $b$ channels at full resolution, the features the
  $1\times1$ head turns into the prediction. Sampled at **pixels**: are tumour pixels apart from
  background?

We compare a supervised run (10% labels) with a Semi-CML run on the same split. Each panel is
its own t-SNE map: compare *neighbourhoods*, not positions.
"""),
code("""
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
w2 = 0.5
seed = 0
out_dir = "runs/06_tsne_features"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)
""", tags=["parameters"]),
code("""
from pathlib import Path

from workbench.runs import builtin_data, cached_run
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
"""),
md("""
## 1. One point per slice: the bottleneck

`extract_features` draws up to `sample` slices per modality from the labeled and unlabeled
training slices and from the test volumes (every test slice, with or without tumour), runs both
networks on them, and averages the bottleneck over each slice.
"""),
code("""
features = extract_features(runs["semi-cml"], layer="bottleneck", level="slice", sample=sample, seed=seed)
print(features.features.shape, "feature vectors;", features.points.groupby(["modality", "source"]).size().to_dict())
points = features.embed(seed=seed)
for colour_by in ("source", "tumour"):
    fig = tsne_scatter(points, colour_by=colour_by)
    save_figure(fig, out / f"tsne_semi_cml_slices_by_{colour_by}")
    fig.show()
"""),
md("""
**What to look for:** the two networks form two islands — they are separate networks, so their
channels have nothing in common, and that is not a finding. *Inside* an island: do test slices
mix with the training slices (the network generalises) or sit apart (it memorised the two
labeled patients)? Do slices without tumour gather in their own corner?
"""),
md("""
## 2. Supervised vs Semi-CML, side by side

Same slices, same colours; each panel has its own t-SNE. The supervised run has seen only the
labeled slices; Semi-CML has also been pulled towards agreement between the modalities on the
unlabeled ones.
"""),
code("""
fig = compare_runs_tsne(runs, colour_by="source", layer="bottleneck", level="slice", sample=sample, seed=seed)
save_figure(fig, out / "tsne_compare_slices")
fig.show()
"""),
md(r"""
## 3. One point per pixel: the last decoder layer

At pixel level the question is sharper: the $1\times1$ head draws a line (a hyperplane) through
exactly this feature space to separate tumour from background. Well separated clusters here
mean an easy job for the head.
"""),
code("""
fig = compare_runs_tsne(runs, colour_by="tumour", layer="decoder", level="pixel", sample=sample, seed=seed)
save_figure(fig, out / "tsne_compare_pixels")
fig.show()
"""),
md("""
**What to look for:** in the weak modality's island (T1 on BraTS, CT on HECKTOR), how much do
tumour and background pixels overlap? That overlap is the weak modality's error, seen from
inside the network; compare it between the two runs.
"""),
code("""
assert features.features.shape[0] == len(features.points) > 0
assert features.points["modality"].nunique() == 2 and features.points["source"].nunique() == 3
assert len(fig.data) > 0
"""),
], NB / "06_tsne_features.ipynb")

save([
md(r"""
# 07 · Both modalities and their predictions, in napari

Numbers hide *where* a network fails. [napari](https://napari.org) shows the 3D volumes slice
by slice with the ground truth and each modality's prediction on top, at the true voxel spacing
(mm). `workbench view RUN` opens the same viewer from the command line.

* one panel per modality (side by side), its image in grey;
* the **ground truth** as a yellow outline;
* each modality's **prediction** as a filled label layer (cyan, magenta);
* optional layers, hidden until ticked: **FP / FN** error maps per modality, and for a PReL run
  the **teacher's soft pseudo-label** on the high-performance image.

napari needs a screen. In JupyterLab on your desktop run `%gui qt` and set `open_viewer = True`
below; on a headless machine (CI, a server) the notebook draws the same layers with matplotlib
and, when an X server is available (`xvfb-run`), saves a napari screenshot.
"""),
code("""
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
w2 = 0.5
m = 6
p = 2
L1 = 11
seed = 0
out_dir = "runs/07_napari_overlay"
cache_dir = "runs/cache"  # finished runs and built-in data shared by the notebooks (delete it to retrain)
""", tags=["parameters"]),
code("""
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from workbench.runs import builtin_data, cached_run
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
"""),
md("""
## 1. The layers

`overlay_layers` builds napari's layer data without opening a window: `(data, options, kind)`
per layer, with `scale` = the voxel spacing in mm, so napari draws the volume at its real size.
"""),
code("""
prel = (Path(run_dir) / "events.jsonl").read_text().count('"high_modality"') > 0
layers = overlay_layers(run_dir, patient or None, errors=True, pseudo_labels=prel)
for data, options, kind_ in layers:
    print(f"{options['name']:<34} {kind_:<7} shape {tuple(data.shape)}  scale (mm) {tuple(round(s, 2) for s in options['scale'])}")
"""),
md("""
## 2. The largest-tumour slice, drawn with matplotlib

The same layers, one axial slice: each modality with its prediction filled and the ground truth
outlined, then the error maps (red: false positive, blue: false negative).
"""),
code("""
named = {options["name"]: data for data, options, _ in layers}
truth = named["ground truth"]
modalities = [options["metadata"]["modality"] for _, options, _ in layers if options["metadata"]["kind"] == "image"]
fig = plot_overlay_slice(layers)  # default: the slice with the largest tumour area
save_figure(fig, out / "overlay_slice"); plt.show()
"""),
md("""
**What to look for:** the weak modality's errors are not spread evenly: they sit at the tumour
border or in tissue that looks like tumour in that contrast.

## 3. Scrub through the slices

The same drawing for every slice and every test patient (in JupyterLab): move the `z` slider,
or choose another test patient (it is predicted when first chosen). Is a modality's 3D DSC lost
in a few slices at the top and bottom of the tumour, or everywhere? A headless run shows the
first picture, saved as `overlay_explorer.png`.
"""),
code("""
explorer = overlay_explorer(run_dir, patient or None, errors=True, layers=layers)
save_figure(explorer.figure, out / "overlay_explorer")
explorer
"""),
md("""
## 4. napari

With a display (your desktop, or `xvfb-run` on a server) this saves a napari screenshot of the
same view; with `open_viewer = True` it opens the interactive viewer (run `%gui qt` first).
"""),
code("""
has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
if has_display:
    from workbench.viz.napari_view import screenshot, show_run

    shot = screenshot(run_dir, out / "napari_overlay.png", patient or None)
    plt.figure(figsize=(10, 5.2)); plt.imshow(shot); plt.axis("off"); plt.title("napari screenshot"); plt.show()
    if open_viewer:
        viewer = show_run(run_dir, patient or None, errors=True, pseudo_labels=prel)
else:
    print("no display: skipped the napari screenshot (run under xvfb-run, or on a desktop)")
"""),
code("""
assert truth.sum() > 0 and len(modalities) == 2
assert all(set(np.unique(named[f"{m} prediction"])) <= {0, 1} for m in modalities)
explorer.slider.value = 0  # what moving the slider does
assert explorer.figure.get_suptitle().startswith(f"{explorer.patient.value}, slice z = 0 of")
"""),
], NB / "07_napari_overlay.ipynb")
save([
md(r"""
# 08 · The methods side by side

Every method of the workbench on the same data, the same split, the same network width and
the same training budget, so that the only difference is the method. Each one is a module in
`workbench/methods/` with its paper's equations in the docstring; here we only train and
compare.

| name | paper | what the unlabeled slices do |
|---|---|---|
| `supervised` | — | nothing: one U-Net per modality on the labeled slices (the baseline) |
| `mean-teacher` | Tarvainen & Valpola 2017 | $\lVert f(x;\theta') - f(x;\theta)\rVert^2$ to an EMA teacher $\theta' \leftarrow a\theta' + (1-a)\theta$ |
| `ua-mt` | Yu et al. 2019 | the same, counted only where the teacher's MC-dropout entropy $u < H(t)$ |
| `cps` | Chen et al. 2021 | two networks, each trained on the other's hard pseudo-label $[\sigma(f) > 0.5]$ |
| `cross-view` | Wu et al. 2024 | two subnets pushed apart by $1 + \cos(f_i, \bar f_{1-i})$, CutMix and heterogeneous pseudo-labels |
| `meng-fusion` | Meng et al. | one dual-branch network with multi-stage fusion; MSE between the branches' predictions |
| `semi-cml-prel` | Semi-CML + PReL | MSE and the ASC loss between the modalities, then re-learning from the BMA teacher |
| `cmc` | Zhou et al. 2024 | modality-specific encoders + MIA fusion; channel-wise consistency (CSC) and anatomical contrast (CAC) |
| `multi-condos` | Multi-ConDoS | nothing during fine-tuning: a DSGAN translating A <-> B is pre-trained first on the images of all training patients (never the validation or test patients), and its encoder and shared layers start the supervised U-Nets |

The single-modality methods (`mean-teacher`, `ua-mt`, `cps`, `cross-view`) train one model per
modality, each on its own channel, so every method reports one DSC per modality. Set a
method's `input` option to `both` for its multi-modal variant (MM-MT, MM-CPS, ...), which
reports `fused` and `<modality> only` rows instead.

To compare the full 3-seed runs of the `methods-cpu` grid instead of training here, run it
from a terminal (60 cells, hours on 2 cores; its `sup` and `PReL (BMA)` cells are those of
`semi-cml-table3-cpu` in the same folder)

```bash
workbench reproduce --grid methods-cpu --out runs/table3-cpu --jobs 2
```

and set `grid_dir` to its `--out` folder: the notebook then reads that grid's finished cells of
`kind` at `labeled` with `workbench.reproduce` (the grid's own cell layout) and trains nothing.

Every run uses the same split: labeled and unlabeled training patients, validation patients
(scored after every epoch; only those scores may steer a method, e.g. PReL's BMA teacher) and
test patients, predicted once at the end for the table.
"""),
code("""
# Parameters (papermill overrides this cell)
kind = "brats"          # built-in data: "brats" (T1, FLAIR) or "hecktor" (CT, PET); with grid_dir: a dataset name
patients = 20
labeled = 0.1
epochs = 12
steps_per_epoch = 15
base_channels = 16
size = 64
methods = ["supervised", "mean-teacher", "ua-mt", "cps", "cross-view", "meng-fusion", "cmc", "multi-condos",
           "semi-cml-prel"]
pretrain_epochs = 10    # Multi-ConDoS pre-training (x steps_per_epoch steps); the paper: 200 full passes
seed = 0
grid_dir = ""           # a `workbench reproduce --out` folder: tabulate its finished cells, train nothing
grid = "methods-cpu"    # with grid_dir: the grid that ran there (name or YAML); "": the folder's grid.yaml
out_dir = "runs/08_methods_side_by_side"
""", tags=["parameters"]),
code("""
import math
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from workbench.data.synthetic import generate
from workbench.train import TrainConfig, Trainer
from workbench.methods.multi_condos import PretrainConfig, Pretrainer
from workbench.reproduce import collect_protocols, collect_rows, load_grid, plan_cells
from workbench.viz.compare import collect_runs, methods_table, plot_methods_dsc, plot_val_curves
from workbench.viz.export import save_figure
from workbench.viz.translation import plot_translations

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
"""),
md("""
## 1. Train each method

One `Trainer` per method, same `seed` (same split, same batch order where the methods draw the
same batches). The wall time is measured on this machine and printed with the scores. With
`grid_dir` set, this cell trains nothing: it lists the grid's finished cells of `kind` at
`labeled` (one run folder per row and seed), the grid's reference row first.
"""),
code("""
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
    data_dir = out / f"data-{kind}"
    if not data_dir.exists():
        generate(kind, data_dir, patients, seed=0)
    for method in tqdm(methods, desc="methods"):
        start = time.perf_counter()
        init = None
        if method == "multi-condos":  # pre-train the DSGAN, then fine-tune supervised U-Nets from it
            pretrainer = Pretrainer(PretrainConfig(data=str(data_dir), size=size, base_channels=base_channels,
                                                   seed=seed, epochs=pretrain_epochs, steps_per_epoch=steps_per_epoch),
                                    out / "multi-condos-pretrain", overwrite=True, quiet=True)
            pretrainer.fit()
            pretrainer.close()
            init = str(pretrainer.run_dir)
        config = TrainConfig(method="supervised" if init else method, data=str(data_dir), labeled=labeled,
                             epochs=epochs, steps_per_epoch=steps_per_epoch, base_channels=base_channels,
                             size=size, seed=seed, init=init)
        trainer = Trainer(config, out / method, overwrite=True, quiet=True)
        result = trainer.fit()
        trainer.close()
        seconds[method] = time.perf_counter() - start
        runs[method] = [trainer.run_dir]
        print(f"{method:<14} {seconds[method]:6.1f} s  DSC",
              {m: round(s["dsc"], 3) for m, s in result["summary"].items()})
"""),
md("""
## 2. One table

Mean per-patient DSC, sensitivity and HD95 (mm) on the test patients, per method and per
modality; with several seeds, the mean over seeds ± the **sample std over seeds** (ddof 1,
`*_std`; empty with one seed). Below it, the protocol card of the runs in the table, built
from each run's `metrics.json["protocol"]` (`workbench.stats.protocol_card`).
"""),
code("""
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
(out / "protocol_card.md").write_text(card.to_markdown() + "\\n")
display(Markdown(card.to_markdown()))
"""),
md("""
## 3. One plot

Each bar is a method's mean DSC for one modality, each dot one test patient (one dot per seed
and patient). The dashed line is the first method's mean: the supervised baseline by default.
"""),
code("""
reference = next(iter(runs))
fig = plot_methods_dsc(rows, title=f"{kind}: per-patient DSC, {labeled:.0%} labeled (dashed: {reference})")
save_figure(fig, out / "methods_dsc")
"""),
md("""
**What to look for:** the weak modality (T1 on BraTS, CT on HECKTOR) is where the unlabeled
data can help: the strong one is near its ceiling with two labeled patients already. A method
that lifts the weak modality's *mean* but spreads its dots wider is not more reliable. With one
seed, differences of a few hundredths are within the seed-to-seed spread (see
`docs/results.md` for 3 seeds).

Fewer methods at a time are easier to read. Choose some below (in JupyterLab: ctrl- or
shift-click): the table and the plot are redrawn for them, the first chosen the dashed
reference. This only picks among the results above; the `methods` parameter decides what is
trained.
"""),
code("""
from workbench.viz.widgets import methods_explorer

picker = methods_explorer(rows, title=f"{kind}: per-patient DSC, {labeled:.0%} labeled" + " (dashed: {reference})")
picker
"""),
md("""
## 4. How they got there

The DSC on the **validation** patients after every epoch (what steered training; the axis says
so), one line per method, in the method's colour of the plot above. These are not the test
patients of the table above. A grid run with
`val_scores: if_used` scored the validation patients only for the methods that read them
(PReL), so the other methods have no line there.
"""),
code("""
fig = plot_val_curves({label: dirs[0] for label, dirs in runs.items()})
save_figure(fig, out / "methods_curves")
"""),
md("""
**What to look for:** methods with a pre-training or teacher stage (`cross-view`, `semi-cml-prel`)
change slope where their second stage starts; a method whose curve is still rising at the end
is under-trained at this budget, not beaten.
"""),
md("""
## 5. Inside Multi-ConDoS: what the pre-training learned

Multi-ConDoS never sees a label before fine-tuning. Its DSGAN learns to translate one modality
into the other and back (eqs. 5-6: translation and reconstruction L1, plus the GAN and the
contrastive terms); the features that make this possible start the segmentation U-Nets. Each
row is one pre-training epoch; the slice is one of the training slices the run saved.
"""),
code("""
pretrain_dirs = [c.pretrain_dir for c in cells if c.pretrain_dir is not None] if grid_dir else \\
    [out / "multi-condos-pretrain"] * ("multi-condos" in methods)
if pretrain_dirs:
    fig = plot_translations(pretrain_dirs[0])
    save_figure(fig, out / "multi_condos_translations")
else:
    print("no Multi-ConDoS pre-training in this comparison")
"""),
md("""
**What to look for:** in the first epoch the translations are noise around the mean intensity;
later the anatomy (skull, ventricles, the tumour) appears in the other modality's contrast. The
round trip (third and sixth columns) should look like the input: that is the reconstruction
term. A translation that reproduces the anatomy but not the tumour's contrast is what one
expects when the tumour looks different in the two modalities (T1 vs FLAIR).
"""),
code("""
assert set(table.index.get_level_values("method")) == set(runs)
assert table["dsc"].between(0, 1).all()
assert "validation patients" in dict(card.entries)["what steered training"]
picker.select.value = tuple(runs)[-2:]  # what choosing two methods does
assert list(picker.table.index.get_level_values("method").unique()) == list(runs)[-2:]
if seconds:
    print(pd.Series(seconds, name="seconds").round(1).to_string())
"""),
], NB / "08_methods_side_by_side.ipynb")
save([
md(r"""
# 09 · Reproduction tables

`workbench reproduce` runs a **grid**: datasets x methods x labeled fractions x seeds, one
training run (a run folder) per cell, and writes the results in the layout of the papers'
tables: one table per dataset and labeled fraction, one row per method, DSC and sensitivity
per modality, as mean ± sample std (ddof 1) over seeds, [95% bootstrap CI over patients x
seeds]. Every table comes with its **protocol card** (how the numbers were made: data and its
hash, patients per set, what steered training, how the unlabeled slices were chosen, the
test-slice and empty-mask rules, seeds, the std and CI definitions), a **paired comparison**
of every row against the grid's reference row, and the verdicts on the paper's **claimed
orders**. Where the paper reports a number for a row, it is shown
right below ours, in grey, marked **paper (real data)**: those are the published values on
the real HECKTOR and BraTS data, not runs of ours, so they say where the method stood in the
paper, not what our built-in data should give.

A grid is a small YAML file; the shipped ones are in `workbench/grids/`:

| grid | what |
|---|---|
| `quick-cpu` (default) | supervised vs Semi-CML + PReL on the built-in BraTS-like data, 5% and 10%, one seed (4 cells, minutes) |
| `semi-cml-table1-cpu` | Table 1 at CPU scale on the built-in data: 9 methods x 5%, 10% x 3 seeds x 2 datasets (108 cells, hours on 2 cores) |
| `semi-cml-table3-cpu` | Table 3 (Semi-CML ablations + PReL teachers) at 10% (60 cells) |
| `semi-cml-table1-gpu`, `semi-cml-table3-gpu` | the paper's scale on your real folders (edit the `path:` keys) |

The same run from a terminal (better for long grids; `--jobs` runs cells in parallel):

```bash
workbench reproduce --grid semi-cml-table1-cpu --out runs/reproduce-semi-cml-table1-cpu --jobs 2
```

Finished cells are never run twice, a killed cell resumes from its checkpoint, and a failed
cell is listed with its error while the others go on. So this notebook can also just
*tabulate* a grid that ran elsewhere: point `out_dir` at its output folder and set
`only_finished = True`.
"""),
code("""
# Parameters (papermill overrides this cell)
grid = "quick-cpu"             # a shipped grid's name or a grid YAML file (quick-cpu: 4 cells, minutes)
out_dir = "runs/reproduce-quick-cpu"
jobs = 2                       # cells in parallel (processes)
only_finished = False          # False: run the missing cells, then tabulate; True: tabulate the finished cells only
""", tags=["parameters"]),
code("""
from pathlib import Path
import matplotlib.pyplot as plt
import pandas as pd

from IPython.display import Markdown

from workbench.reproduce import load_grid, plan_cells, plot_dsc_vs_labeled, reproduce
from workbench.viz.compare import plot_methods_dsc
from workbench.viz.export import save_figure

out = Path(out_dir)
"""),
md("""
## 1. The grid

`load_grid` checks the whole file before anything runs (unknown method or option, a fraction
outside (0, 1], a typo in a key, a dataset folder that does not exist) and reports each
problem in one line naming the key. Each cell gets a run folder
`<dataset>-<method>-l<fraction>-s<seed>` in `out_dir`.
"""),
code("""
spec = load_grid(grid, check_paths=False, check_device=False)
cells = plan_cells(spec, out)
finished = sum((c.run_dir / "metrics.json").is_file() for c in cells)
print(f"{spec.name}: {len(cells)} cells, {finished} already finished in {out};",
      "tabulating those only (only_finished = True)" if only_finished else "running the missing ones")
print("settings:", spec.settings)
pd.DataFrame([{"label": m.label, "method": m.method, "options": m.options or "",
               "labeled": spec.fractions(m), "paper row": m.paper[1] if m.paper else ""} for m in spec.methods])
"""),
md("""
## 2. Run (or tabulate)

One progress bar over the cells. Each cell is a `Trainer` run, so its folder holds the full
record: `config.json` (settings and versions), `events.jsonl`, `checkpoint.pt`, `metrics.json`.
With `only_finished = True` nothing is trained: the tables hold the finished cells only, and
the cell below says how many are missing.
"""),
code("""
report = reproduce(spec if only_finished else load_grid(grid), out, jobs=jobs, only_finished=only_finished)
print(report.summary())
missing = report.counts().get("not run", 0)
if missing:
    print(f"{missing} of {len(cells)} cells are missing (not run): the tables below leave them out;",
          "set only_finished = False to run them")
pd.read_csv(out / "cells.csv", keep_default_na=False)[["dataset", "method", "labeled", "seed", "status",
                                                      "seconds", "error"]]
"""),
md("""
## 3. The tables

First the protocol card of the finished cells (`report.card`). If any run was steered by its
test patients (`selection: test`, the paper's own protocol), the card, the tables and the
claims are stamped "test feedback (paper protocol)".
"""),
code("""
card = report.card
display(Markdown(card.to_markdown()))
"""),
md("""
The layout of Semi-CML's Table 1: rows are methods, columns are modality x (DSC, Sens). Each
run is scored by its mean over its test patients; a cell is the mean of those over seeds ±
the sample std (ddof 1) over seeds (no ± with one seed), then in brackets the 95% bootstrap CI
(BCa) of the mean over the per-(patient, seed) scores. Below each table, every other row of
ours against the reference row (the grid's `reference`, else its first method): the paired
DSC difference over matched test patient x seed pairs, the Wilcoxon verdict on "row >
reference" (holds / reversed / not decided (p)), and MDD, the smallest difference this cohort
could detect. The same tables are in `tables.md` and `tables.html` in the output folder, and
every patient's metrics in `per_patient.csv`.
"""),
code("""
for table in report.tables:
    display(table.styler())
    comparison = table.comparison_styler()
    if comparison is not None:
        display(comparison)
"""),
md("""
### The claimed orders

Each order the grid claims (its `claims`, e.g. "Sup < Semi-CML + PReL"), per adjacent pair,
dataset, labeled fraction and modality, decided on our runs with the same paired test:
`n` matched (test patient, seed) pairs, `diff` = left − right, `verdict` holds / reversed / not
decided (p), `mdd` the minimal detectable difference. Also in `claims.csv` in the output folder.
"""),
code("""
claims = report.claims
if claims is not None and len(claims):
    shown = claims.assign(pair=claims["left"] + " " + claims["op"] + " " + claims["right"])
    display(shown[["dataset", "labeled", "claim", "pair", "modality", "n", "diff", "p", "verdict", "mdd",
                   "stamp"]].round(3))
else:
    print(f"grid {spec.name} claims no order (add `claims:` to the grid file to decide one)")
"""),
md("""
**What to look for:** whether the *order* of the rows matches the paper's (semi-supervised
above supervised, PReL above Semi-CML), not the values: the built-in data is smaller and
easier in one modality and harder in the other than the real data, and a CPU-scale run is
far shorter than the paper's 81 epochs. Read the order from the verdicts, not from the means:
"not decided" means this cohort and these seeds cannot tell the rows apart (a Δ below the MDD),
and a CI that overlaps the reference row's says the same.

## 4. DSC against the labeled fraction

One panel per modality and one line per method (error bars: sample std over seeds, ddof 1, only
where a point has more than one seed; the axis label says how many seeds); the paper's values,
where there are any, are dotted with open markers in the same colour. A method has the same
colour here and in the per-patient plot below.
"""),
code("""
datasets = list(dict.fromkeys(report.rows["dataset"]))
for name in datasets:
    fig = plot_dsc_vs_labeled(report.rows, name, spec)
    save_figure(fig, out / f"dsc_vs_labeled_{name}")
    plt.show()
"""),
md("""
## 5. Every patient

A table of means hides how the patients spread. At the largest labeled fraction, each bar is
a method's mean DSC and each dot one test patient of one seed.
"""),
code("""
for name in datasets:
    sub = report.rows[report.rows["dataset"] == name]
    sub = sub[sub["labeled"] == sub["labeled"].max()]
    fig = plot_methods_dsc(sub, title=f"{name}, {sub['labeled'].max():.0%} labeled: per-patient DSC")
    save_figure(fig, out / f"methods_dsc_{name}")
    plt.show()
"""),
code("""
assert report.tables, "no finished cell to tabulate"
assert report.rows["dsc"].between(0, 1).all()
assert dict(card.entries)["seeds"] == str(len(spec.seeds)) and "CI" in dict(card.entries)
assert claims is None or len(claims) == 0 or claims["verdict"].str.match("holds|reversed|not decided|no pairs").all()
assert not report.failures, [f"{c.key}: {r.error}" for c, r in report.failures]
print(f"{len(report.tables)} tables, {len(report.rows)} per-patient rows in", out)
"""),
], NB / "09_reproduction_tables.ipynb")
print("notebooks written to", NB)
