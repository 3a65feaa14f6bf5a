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
# # 01 · A tour of the built-in data
#
# **Runtime** (defaults, measured on a 2-core CPU, fp32, no GPU): about 35 s (it generates both built-in datasets), 25 s when they exist.
#
# The workbench ships its own multi-modal datasets, generated on your machine in seconds, in
# the **same NIfTI layouts as the real challenges** — so the same loader reads both:
#
# * **Brain (BraTS-like)** — virtual patients built from the MNI152 template and tissue maps that
#   ship with `nilearn`: elastic deformation, an implanted tumour (necrotic core, enhancing rim,
#   edema), T1 / T1ce / T2 / FLAIR contrasts, bias field, Rician noise, slight misregistration.
# * **Head and neck (HECKTOR-like)** — a CT with a *low-contrast* tumour and a blurred, noisy PET
#   with a *hot* tumour, on a coarser PET grid that the loader resamples onto the CT grid.
#
# In this notebook we generate both, load them through the real loaders, apply the paper's
# preprocessing (CT clip to [-150, 150] HU, PET min-max, MR z-score in the brain) and look at
# the slices and intensity histograms. The histograms tell us which modality is *hard*.

# %% tags=["parameters"]
# Parameters (papermill overrides this cell)
patients = 8          # virtual patients per dataset
seed = 0              # generation seed: same seed, same data
difficulty = "paper"  # paper: calibrated to Table 1's supervised levels | clear: the lesion plainly visible
size = 64             # slice size after crop/resize
out_dir = "runs/01_data_tour"

# %%
from pathlib import Path
import matplotlib
import matplotlib.pyplot as plt

from workbench.data.synthetic import DIFFICULTY_PRESETS, dataset_folder_name, generate
from workbench.data.nifti import load_dataset
from workbench.data.slices import PreprocessConfig, preprocess_case, DEFAULT_MODALITIES
from workbench.viz import plot_modalities, plot_intensity_histograms
from workbench.viz.export import save_figure

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Generate the two datasets
#
# `generate(kind, folder, n_patients, seed, difficulty=...)` writes NIfTI files (the CLI
# equivalent is `workbench data make --kind brats --patients 8 --seed 0 --out DIR`).
#
# How hard the data is comes from a **difficulty preset**. Each preset is a set of factors on the
# lesion's contrast and the noise of each modality, plus the misregistration, the tumour size,
# the texture, and how far the annotators' outline strays from the lesion. A preset never
# changes the anatomy: patient 3 is the same patient under every preset.
#
# * `paper` (the default) is calibrated so that a supervised U-Net lands near the supervised
#   rows of Semi-CML's Table 1 (FLAIR about 0.43 with 10% labels, T1 0.27, PET 0.51, CT 0.29).
#   There, neither modality is near its ceiling, and semi-supervised learning has room to help.
# * `clear` shows the lesion plainly in FLAIR and PET, and barely in CT. The earlier results in
#   docs/results.md were made on it.

# %%
print({kind: {name: preset.as_dict() for name, preset in presets.items()} for kind, presets in DIFFICULTY_PRESETS.items()})
for kind in ("brats", "hecktor"):
    folder = out / dataset_folder_name(kind, patients, seed, difficulty)
    if not folder.exists():
        generate(kind, folder, patients, seed, difficulty=difficulty)
    print(kind, "->", folder)
print(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.nii.gz"))[:4])

# %% [markdown]
# ## 2. Load through the real loaders and preprocess
#
# `load_dataset` detects the layout, reorients to RAS and (HECKTOR) resamples PET onto the CT
# grid. `preprocess_case` normalises each modality as the paper does and crops/resizes the
# axial slices.

# %%
volumes = {}
for kind in ("brats", "hecktor"):
    modalities = {"brats": ["t1", "t1ce", "t2", "flair"], "hecktor": ["ct", "pet"]}[kind]
    cases = load_dataset(out / dataset_folder_name(kind, patients, seed, difficulty), modalities=modalities, progress=False)
    pre = PreprocessConfig(size=size)
    volumes[kind] = (modalities, [preprocess_case(c, modalities, pre) for c in cases])
    c = cases[0]
    print(f"{kind}: {len(cases)} cases, grid {c.shape}, spacing {tuple(round(s, 2) for s in c.spacing)} mm,",
          f"label values {sorted(set(c.label.ravel().tolist()))}")

# %% [markdown]
# ## 3. Each modality with the ground truth
#
# The red outline is the binary target (BraTS: whole tumour = labels 1, 2, 4; HECKTOR: GTVp + GTVn).

# %%
for kind, (modalities, vols) in volumes.items():
    fig = plot_modalities(vols[:3], modalities, title=f"{kind}: largest-tumour slice per patient")
    save_figure(fig, out / f"slices_{kind}")
    plt.show()

# %% [markdown]
# One slice per patient hides how the tumour grows and shrinks through the volume. Scrub through
# the slices instead (in JupyterLab): choose a dataset and a patient, move the `z` slider, and see
# every modality of that axial slice side by side with the label outlined. The slider starts at
# the patient's largest-tumour slice. A headless run shows the first picture, saved as
# `slice_explorer.png`.

# %%
from functools import partial

from workbench.viz.slices import slice_explorer
from workbench.viz.widgets import switcher

explorer = switcher({kind: partial(slice_explorer, vols, modalities) for kind, (modalities, vols) in volumes.items()},
                    description="dataset")
save_figure(explorer.children[1].figure, out / "slice_explorer")
explorer

# %% [markdown]
# **What to look for:** the tumour is bright and obvious in FLAIR and PET, faint in T1 and
# almost invisible in CT. That is the *performance gap* between modalities that Semi-CML's
# mutual learning and PReL's re-learning try to close.
#
# ## 4. Intensity histograms: tumour vs. the rest of the foreground

# %%
for kind, (modalities, vols) in volumes.items():
    fig = plot_intensity_histograms(vols, modalities)
    fig.suptitle(kind, y=1.02)
    save_figure(fig, out / f"histograms_{kind}")
    plt.show()

# %% [markdown]
# **What to look for:** where the red (tumour) histogram overlaps the blue (tissue) one, a
# pixel's intensity alone says little; the network must use shape and context. Strong overlap
# in T1 and CT, clear separation in FLAIR and PET.

# %%
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
