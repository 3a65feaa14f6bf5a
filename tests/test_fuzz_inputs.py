"""Malformed inputs through the real ``workbench`` entry point (issue 10).

Every case builds a small dataset (or a bad option) in a temporary folder and runs
``workbench.cli.main([...])`` in-process; a few also run the installed console script in a
subprocess. Each case declares what the right behaviour is:

* ``error``: exit status 2 and exactly one stderr line ``error: ...`` that names the file
  or value (``words``) and what is wrong;
* ``usage``: an argparse error (bad option value): exit status 2, one line naming the option;
* ``ok``: the input is unusual but usable; training runs to the end (exit 0), optionally
  with a logged warning (``warn``).

No case may print a traceback, and no exception may escape ``main()``. The ``why`` of each
case says why it is an error rather than a warning (or the other way round).
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from workbench.cli import COMMANDS, main
from workbench.data.slices import split_patients

SHAPE = (24, 24, 8)
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
CASE_IDS = ("BraTS-FZ-00000", "BraTS-FZ-00001", "BraTS-FZ-00002")
LABELED = 0.5
# with 3 patients and --labeled 0.5: one labeled, one validation and one test patient
SPLIT_TEST = split_patients(list(CASE_IDS), LABELED).test
TRAIN_ARGS = [
    "--labeled",
    str(LABELED),
    "--epochs",
    "1",
    "--steps-per-epoch",
    "1",
    "--batch-size",
    "2",
    "--base-channels",
    "4",
    "--size",
    "16",
    "--quiet",
]


# --------------------------------------------------------------------------- tiny datasets


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """Write ``data`` as NIfTI (gzip when the name ends in .gz), replacing what is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    nib.save(nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float)), str(path))
    return path


def phantom(index: int, shape: tuple[int, int, int] = SHAPE) -> dict[str, np.ndarray]:
    """One tiny patient: an ellipsoid 'brain' with a spherical tumour (labels 1 core, 2 edema)."""
    rng = np.random.default_rng(index)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    brain = (x / 0.9) ** 2 + (y / 0.8) ** 2 + (z / 1.2) ** 2 < 1
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    r2 = (x - cx) ** 2 + (y - cy) ** 2 + (z / 2) ** 2
    label = np.zeros(shape, dtype=np.uint8)
    label[(r2 < 0.16) & brain] = 2
    label[(r2 < 0.05) & brain] = 1
    noise = rng.normal(0, 5, shape)
    t1 = np.where(brain, 100 + noise - 30 * (label > 0), 0).astype(np.float32)
    flair = np.where(brain, 80 + noise + 90 * (label > 0), 0).astype(np.float32)
    return {"t1": t1, "flair": flair, "seg": label}


def brats_file(root: Path, index: int, tag: str) -> Path:
    case = CASE_IDS[index]
    return root / case / f"{case}_{tag}.nii.gz"


def make_brats(root: Path, n: int = 3, ids: tuple[str, ...] = CASE_IDS) -> Path:
    """``root/<case>/<case>_{t1,flair,seg}.nii.gz`` for ``n`` tiny patients."""
    for i, case in enumerate(ids[:n]):
        for tag, data in phantom(i).items():
            save(root / case / f"{case}_{tag}.nii.gz", data)
    return root


def make_hecktor(root: Path) -> Path:
    """HECKTOR 2022 layout; PET on a coarser grid (resampled onto the CT, no warning)."""
    pet_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for i in range(3):
        case = f"FZ-{i:03d}"
        p = phantom(i)
        ct = np.where(p["t1"] > 0, 40.0 + p["t1"] / 10, -1000.0).astype(np.float32)
        pet = np.ascontiguousarray((p["flair"] / 40)[::2, ::2])
        save(root / "imagesTr" / f"{case}__CT.nii.gz", ct)
        save(root / "imagesTr" / f"{case}__PT.nii.gz", pet, pet_affine)
        save(root / "labelsTr" / f"{case}.nii.gz", p["seg"])
    return root


def train(data: Path, *extra: str, method: str = "supervised") -> list[str]:
    return ["train", "--method", method, "--data", str(data), *TRAIN_ARGS, "--out", str(data.parent / "run"), *extra]


# --------------------------------------------------------------------------- cases


@dataclass
class Expect:
    argv: list[str]
    outcome: str  # error | usage | ok | any (random damage: ok or error)
    words: tuple[str, ...] = ()  # must appear in the error line (file name, value, problem)
    warn: tuple[str, ...] = ()  # must appear in a logged warning (ok cases)
    why: str = ""


@dataclass
class Case:
    name: str
    build: Callable[[Path], Expect]
    also_subprocess: bool = False  # run the console script in a subprocess too
    marks: list = field(default_factory=list)


CASES: list[Case] = []


def case(name: str, *, also_subprocess: bool = False, marks: list | None = None) -> Callable:
    def register(build: Callable[[Path], Expect]) -> Callable[[Path], Expect]:
        CASES.append(Case(name, build, also_subprocess, marks or []))
        return build

    return register


# ----- missing, extra, duplicated files


@case("missing_modality_file")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    brats_file(data, 1, "flair").unlink()
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00001_flair.nii.gz", "missing flair image file"),
        why="a requested modality cannot be invented",
    )


@case("missing_label_file")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    brats_file(data, 2, "seg").unlink()
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00002_seg.nii.gz", "missing label file"),
        why="training and the test metrics need every patient's label",
    )


@case("extra_unknown_files_are_ignored")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    (data / "README.txt").write_text("dataset notes\n")
    (data / "BraTS-FZ-00001" / "notes.txt").write_text("radiologist notes\n")
    (data / "BraTS-FZ-00001" / "._BraTS-FZ-00001_t1.nii.gz").write_bytes(b"\x00\x05\x16\x07")  # macOS debris
    save(data / "BraTS-FZ-00001" / "BraTS-FZ-00001_flair_brainmask.nii.gz", phantom(1)["seg"])
    save(data / "BraTS-FZ-00002" / "BraTS-FZ-00002_t2.nii.gz", phantom(2)["t1"])  # not requested
    (data / "__MACOSX").mkdir()
    return Expect(
        train(data),
        "ok",
        why="documented in workbench.data.nifti: unknown files are skipped, the "
        "requested ones are all there (a misspelt modality file still gives 'missing ... file')",
    )


@case("case_folder_with_only_a_label")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d", n=3)
    brats_file(data, 2, "t1").unlink()
    brats_file(data, 2, "flair").unlink()
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00002_t1.nii.gz", "missing t1 image file"),
        why="a folder named like a case with its segmentation is a case whose images are missing, "
        "not a folder to skip silently",
    )


@case("empty_case_folder_is_skipped")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    (data / "BraTS-FZ-00009").mkdir()
    return Expect(train(data), "ok", why="an empty folder holds no file naming a case: it is not a case")


@case("no_case_folder_has_images")
def _(tmp: Path) -> Expect:
    data = tmp / "d"
    for name in CASE_IDS:
        (data / name).mkdir(parents=True)
        (data / name / "notes.txt").write_text("x")
    return Expect(train(data), "error", ("d: no cases found",), why="nothing to train on")


@case("duplicated_case_id")
def _(tmp: Path) -> Expect:
    data = tmp / "d"
    make_brats(data / "site-a")
    make_brats(data / "site-b", n=1)
    return Expect(
        train(data),
        "error",
        ("duplicate case id 'BraTS-FZ-00000'", "site-a"),
        why="two patients with one id would silently merge or leak between train and test",
    )


@case("too_few_patients")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d", n=2)
    return Expect(
        train(data), "error", ("2 cases found", "need at least 3 patients"), why="no train/val/test split possible"
    )


@case("data_folder_missing")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "nowhere"), "error", ("nowhere", "does not exist"))


@case("data_path_is_a_file")
def _(tmp: Path) -> Expect:
    path = tmp / "d.nii.gz"
    save(path, phantom(0)["t1"])
    return Expect(train(path), "error", ("d.nii.gz", "not a directory"))


@case("generic_layout_needs_modalities")
def _(tmp: Path) -> Expect:
    data = tmp / "d"
    for i, name in enumerate(("p1", "p2", "p3")):
        p = phantom(i)
        save(data / name / "mra.nii.gz", p["t1"])
        save(data / name / "label.nii.gz", p["seg"])
    return Expect(train(data), "error", ("generic", "--modalities"), why="the modality names cannot be guessed")


# ----- grids: shapes, affines, spacings


@case("shape_mismatch_between_modalities_is_resampled")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    save(brats_file(data, 1, "flair"), phantom(1)["flair"][2:22])
    return Expect(
        train(data),
        "ok",
        warn=("BraTS-FZ-00001_flair.nii.gz", "grid differs"),
        why="DESIGN: the loader resamples through the affines; only what resampling cannot fix is an error",
    )


@case("spacing_mismatch_between_modalities_is_resampled")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    save(brats_file(data, 0, "flair"), phantom(0)["flair"][::2, ::2], np.diag([2.0, 2.0, 2.0, 1.0]))
    return Expect(
        train(data),
        "ok",
        warn=("BraTS-FZ-00000_flair.nii.gz", "grid differs"),
        why="same field of view on a coarser grid: resampled with a warning",
    )


@case("affine_mismatch_without_overlap")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    far = AFFINE.copy()
    far[:3, 3] = (400.0, 0.0, 0.0)
    save(brats_file(data, 1, "flair"), phantom(1)["flair"], far)
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00001_flair.nii.gz", "no physical overlap"),
        why="resampling cannot bring a volume that lies elsewhere onto the reference grid",
    )


@case("label_grid_without_overlap")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    far = AFFINE.copy()
    far[2, 3] = -300.0
    save(brats_file(data, 0, "seg"), phantom(0)["seg"], far)
    return Expect(train(data), "error", ("BraTS-FZ-00000_seg.nii.gz", "label grid", "no physical overlap"))


@case("singular_affine")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    path = brats_file(data, 1, "t1")
    img = nib.Nifti1Image(phantom(1)["t1"], None)
    img.set_sform(np.diag([1.0, 0.0, 2.0, 1.0]), code=1)
    path.unlink()
    nib.save(img, str(path))
    return Expect(train(data), "error", ("BraTS-FZ-00001_t1.nii.gz", "singular affine"))


@case("hecktor_pet_on_another_grid_is_resampled")
def _(tmp: Path) -> Expect:
    data = make_hecktor(tmp / "h")
    return Expect(train(data), "ok", why="HECKTOR PET comes on its own grid: resampled onto the CT, no warning")


@case("hecktor_pet_without_overlap")
def _(tmp: Path) -> Expect:
    data = make_hecktor(tmp / "h")
    far = np.diag([2.0, 2.0, 2.0, 1.0])
    far[:3, 3] = (0.0, 500.0, 0.0)
    save(data / "imagesTr" / "FZ-001__PT.nii.gz", phantom(1)["flair"][::2, ::2], far)
    return Expect(train(data), "error", ("FZ-001__PT.nii.gz", "pet image grid", "no physical overlap"))


@case("affine_axes_cannot_be_oriented")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    path = brats_file(data, 2, "flair")
    img = nib.Nifti1Image(phantom(2)["flair"], None)
    sheared = AFFINE.copy()
    sheared[1, 2] = 1e25  # invertible, but no axis is closest to S: nibabel's OrientationError before the fix
    img.set_sform(sheared, code=1)
    path.unlink()
    nib.save(img, str(path))
    return Expect(train(data), "error", ("BraTS-FZ-00002_flair.nii.gz", "degenerate affine"))


@case("header_vox_offset_too_low", also_subprocess=True)
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    gz = brats_file(data, 0, "t1")
    plain = gz.with_suffix("")
    gz.unlink()
    save(plain, phantom(0)["t1"])
    raw = bytearray(plain.read_bytes())
    raw[108:112] = struct.pack("<f", 200.0)  # nibabel logs this to stderr itself, then raises
    plain.write_bytes(bytes(raw))
    return Expect(train(data), "error", ("BraTS-FZ-00000_t1.nii", "vox offset 200 too low"))


# ----- voxel values


@case("nan_voxels")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    t1 = phantom(1)["t1"]
    t1[3, 4, 2:5] = np.nan
    save(brats_file(data, 1, "t1"), t1)
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00001_t1.nii.gz", "3 non-finite voxels"),
        why="NaN would poison the z-score of the whole volume",
    )


@case("inf_voxels")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    flair = phantom(0)["flair"].astype(np.float64)
    flair[5, 5, 5] = -np.inf
    save(brats_file(data, 0, "flair"), flair)
    return Expect(train(data), "error", ("BraTS-FZ-00000_flair.nii.gz", "1 non-finite voxels"))


@case("all_zero_image")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    save(brats_file(data, 2, "flair"), np.zeros(SHAPE, dtype=np.int16))
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00002_flair.nii.gz", "all zeros"),
        why="an empty acquisition is a broken file, not a patient",
    )


@case("constant_image_inside_the_brain")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    save(brats_file(data, 1, "t1"), (phantom(1)["t1"] > 0).astype(np.float32) * 7)
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00001_t1.nii.gz", "constant inside the brain"),
        why="the z-score would divide by zero",
    )


@case("label_value_outside_the_set")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    seg = phantom(1)["seg"]
    seg[seg == 1] = 7
    save(brats_file(data, 1, "seg"), seg)
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00001_seg.nii.gz", "unexpected values [7]", "[0, 1, 2, 4]"),
        why="an unknown class usually means a wrong file or another label convention",
    )


@case("negative_label_value")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    seg = phantom(0)["seg"].astype(np.int16)
    seg[0, 0, 0] = -1
    save(brats_file(data, 0, "seg"), seg)
    return Expect(train(data), "error", ("BraTS-FZ-00000_seg.nii.gz", "[-1]", "outside the range"))


@case("fractional_label_values")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    seg = phantom(2)["seg"].astype(np.float32)
    seg[seg == 2] = 0.5
    save(brats_file(data, 2, "seg"), seg)
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00002_seg.nii.gz", "non-integer voxels", "0.5"),
        why="a probability map or an interpolated label is not a segmentation",
    )


@case("empty_label_everywhere")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    for i in range(3):
        save(brats_file(data, i, "seg"), np.zeros(SHAPE, dtype=np.uint8))
    return Expect(
        train(data),
        "error",
        ("_seg.nii.gz", "no tumour voxels", "nothing to train on"),
        why="no labeled slice to train on",
    )


@case("empty_label_of_one_test_patient")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    index = CASE_IDS.index(SPLIT_TEST[0])
    save(brats_file(data, index, "seg"), np.zeros(SHAPE, dtype=np.uint8))
    return Expect(
        train(data),
        "ok",
        warn=(f"{SPLIT_TEST[0]}_seg.nii.gz", "no foreground"),
        why="a patient without tumour is possible; the metrics' empty-mask rule scores it; warned because "
        "in BraTS / HECKTOR an empty segmentation is more often a wrong file",
    )


@case("unusual_but_valid_dtypes")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    p = phantom(1)
    save(brats_file(data, 1, "t1"), p["t1"].astype(np.float64))
    save(brats_file(data, 1, "flair"), p["flair"].astype(np.int16))
    save(brats_file(data, 1, "seg"), p["seg"].astype(np.float32))
    return Expect(train(data), "ok", why="float64 / int16 images and an integer-valued float label are fine")


# ----- file formats


@case("four_d_image")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    save(brats_file(data, 1, "t1"), np.stack([phantom(1)["t1"]] * 3, axis=-1))
    return Expect(
        train(data),
        "error",
        ("BraTS-FZ-00001_t1.nii.gz", "4D", "expected a 3D volume"),
        why="which of the frames? (a trailing singleton dimension is accepted)",
    )


@case("complex_dtype")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    save(brats_file(data, 0, "flair"), phantom(0)["flair"].astype(np.complex64))
    return Expect(train(data), "error", ("BraTS-FZ-00000_flair.nii.gz", "unsupported voxel data type complex64"))


@case("rgb_dtype")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    save(brats_file(data, 0, "t1"), rgb)
    return Expect(train(data), "error", ("BraTS-FZ-00000_t1.nii.gz", "unsupported voxel data type"))


@case("truncated_gzip", also_subprocess=True)
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    path = brats_file(data, 1, "flair")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    return Expect(train(data), "error", ("BraTS-FZ-00001_flair.nii.gz", "truncated or corrupt"))


@case("zero_byte_file")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    brats_file(data, 2, "t1").write_bytes(b"")
    return Expect(train(data), "error", ("BraTS-FZ-00002_t1.nii.gz", "empty (0 bytes)"))


@case("text_file_named_nii_gz")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    brats_file(data, 0, "seg").write_text("<html>404 Not Found</html>\n")
    return Expect(train(data), "error", ("BraTS-FZ-00000_seg.nii.gz", "not a readable NIfTI"))


@case("gzipped_text_named_nii_gz")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    brats_file(data, 1, "t1").write_bytes(gzip.compress(b"patient notes\n" * 100))
    return Expect(train(data), "error", ("BraTS-FZ-00001_t1.nii.gz", "not a readable NIfTI"))


@case("symlink_loop")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    path = brats_file(data, 1, "t1")
    path.unlink()
    other = path.with_name("loop.nii.gz")
    os.symlink(other, path)
    os.symlink(path, other)
    return Expect(train(data), "error", ("BraTS-FZ-00001_t1.nii.gz", "cannot access t1 image file"))


@case("broken_symlink")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    path = brats_file(data, 2, "seg")
    path.unlink()
    os.symlink(tmp / "gone.nii.gz", path)
    return Expect(train(data), "error", ("BraTS-FZ-00002_seg.nii.gz", "broken symbolic link"))


@case("directory_named_like_a_file")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    path = brats_file(data, 0, "flair")
    path.unlink()
    path.mkdir()
    return Expect(train(data), "error", ("BraTS-FZ-00000_flair.nii.gz", "not a regular file"))


@case(
    "unreadable_file",
    marks=[
        pytest.mark.skipif(
            os.geteuid() == 0, reason="root reads files whatever chmod says; see unreadable_file_simulated"
        )
    ],
)
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    brats_file(data, 1, "flair").chmod(0)
    return Expect(train(data), "error", ("BraTS-FZ-00001_flair.nii.gz", "permission denied"))


@case(
    "unreadable_case_folder",
    marks=[pytest.mark.skipif(os.geteuid() == 0, reason="root lists folders whatever chmod says")],
)
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    (data / CASE_IDS[1]).chmod(0)
    return Expect(train(data), "error", ("BraTS-FZ-00001", "cannot list folder"))


@case("unicode_paths_work")
def _(tmp: Path) -> Expect:
    ids = ("Patiënt-ü-00000", "患者-00001", "Пациент-00002")
    data = make_brats(tmp / "données ü 数据", ids=ids)
    return Expect(train(data), "ok", why="non-ASCII folder and case names are ordinary paths")


# ----- options


@case("unknown_method", also_subprocess=True)
def _(tmp: Path) -> Expect:
    return Expect(["train", "--method", "nope", "--data", str(tmp)], "usage", ("--method", "invalid choice: 'nope'"))


@case("negative_labeled_fraction")
def _(tmp: Path) -> Expect:
    return Expect(
        ["train", "--method", "supervised", "--data", str(tmp), "--labeled", "-0.1"],
        "usage",
        ("--labeled", "-0.1 must be in (0, 1]"),
    )


@case("labeled_fraction_over_one")
def _(tmp: Path) -> Expect:
    return Expect(
        ["train", "--method", "supervised", "--data", str(tmp), "--labeled", "1.5"],
        "usage",
        ("--labeled", "1.5 must be in (0, 1]"),
    )


@case("labeled_fraction_not_a_number")
def _(tmp: Path) -> Expect:
    return Expect(
        ["train", "--method", "supervised", "--data", str(tmp), "--labeled", "ten%"],
        "usage",
        ("--labeled", "'ten%' is not a number"),
    )


@case("labeled_fraction_set_to_zero")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "labeled=0"), "error", ("labeled fraction 0",))


@case("set_without_equals")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "epochs"), "error", ("--set 'epochs'", "KEY=VALUE"))


@case("set_unknown_key")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "epoch=3"), "error", ("unknown config key 'epoch'",))


@case("set_value_of_wrong_type", also_subprocess=True)
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "epochs=abc"), "error", ("epochs", "'abc'", "integer"))


@case("set_float_seed")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "seed=1.5"), "error", ("seed", "1.5", "integer"))


@case("set_bool_for_a_number")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "batch_size=true"), "error", ("batch_size", "True", "integer"))


@case("set_milestones_not_a_list")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "milestones=5"), "error", ("milestones", "5", "list"))


@case("set_modalities_as_a_string")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "modalities=t1"), "error", ("modalities", "'t1'", "list"))


@case("set_negative_lr")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--set", "lr=-1"), "error", ("lr=-1", "> 0"))


@case("set_unknown_method_option")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    return Expect(train(data, "--set", "options.nope=1"), "error", ("no option 'nope'",))


@case("set_method_option_of_wrong_type")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    return Expect(
        train(data, "--set", "options.alpha1=high", method="semi-cml-prel"),
        "error",
        ("alpha1='high'", "expected a number"),
    )


@case("size_not_a_multiple_of_16")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--size", "40"), "error", ("size=40", "multiple of 16"))


@case("zero_epochs")
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--epochs", "0"), "error", ("epochs=0", ">= 1"))


@case("unknown_modality")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    return Expect(train(data, "--modalities", "t1,pd"), "error", ("unknown brats modality 'pd'", "flair"))


@case("semi_supervised_method_without_unlabeled_patients")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    argv = train(data, "--labeled", "1", method="semi-cml")
    return Expect(argv, "error", ("semi-cml", "needs unlabeled data"))


@case("cuda_without_a_gpu", marks=[pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")])
def _(tmp: Path) -> Expect:
    return Expect(train(tmp / "d", "--device", "cuda"), "error", ("'cuda'", "no CUDA GPU"))


@case("init_from_a_missing_run")
def _(tmp: Path) -> Expect:
    data = make_brats(tmp / "d")
    return Expect(train(data, "--init", str(tmp / "no-pretraining")), "error", ("no-pretraining",))


@case("resume_a_folder_without_checkpoint")
def _(tmp: Path) -> Expect:
    (tmp / "run").mkdir()
    return Expect(["train", "--resume", str(tmp / "run")], "error", ("checkpoint.pt", "no checkpoint"))


@case("resume_a_garbage_checkpoint")
def _(tmp: Path) -> Expect:
    (tmp / "run").mkdir()
    (tmp / "run" / "checkpoint.pt").write_bytes(os.urandom(256))
    return Expect(["train", "--resume", str(tmp / "run")], "error", ("checkpoint.pt", "unreadable checkpoint"))


@case("eval_a_missing_run")
def _(tmp: Path) -> Expect:
    return Expect(["eval", str(tmp / "no-run")], "error", ("no-run", "does not exist"))


@case("data_make_too_few_patients")
def _(tmp: Path) -> Expect:
    return Expect(
        ["data", "make", "--kind", "brats", "--patients", "2", "--out", str(tmp / "d")],
        "error",
        ("--patients 2", "at least 3"),
    )


@case("data_make_into_a_non_empty_folder")
def _(tmp: Path) -> Expect:
    (tmp / "d").mkdir()
    (tmp / "d" / "keep.txt").write_text("mine")
    return Expect(
        ["data", "make", "--kind", "brats", "--patients", "3", "--out", str(tmp / "d")],
        "error",
        (str(tmp / "d"), "not an empty folder"),
    )


_NO_GRID = [pytest.mark.skipif("reproduce" not in COMMANDS, reason="no `workbench reproduce` grid command")]


def _grid(tmp: Path, content: bytes) -> Expect:
    path = tmp / "grid.yaml"
    path.write_bytes(content)
    return Expect(["reproduce", "--grid", str(path), "--out", str(tmp / "out")], "error", ("grid.yaml",))


@case("grid_yaml_syntax_error", marks=_NO_GRID)
def _(tmp: Path) -> Expect:
    expect = _grid(tmp, b"datasets: [brats\nmethods: [supervised]\n")
    expect.words += ("not valid YAML", "line 2")
    return expect


@case("grid_yaml_not_a_mapping", marks=_NO_GRID)
def _(tmp: Path) -> Expect:
    expect = _grid(tmp, b"- supervised\n- semi-cml\n")
    expect.words += ("expected a mapping",)
    return expect


@case("grid_yaml_empty_file", marks=_NO_GRID)
def _(tmp: Path) -> Expect:
    return _grid(tmp, b"")


@case("grid_yaml_missing_file", marks=_NO_GRID)
def _(tmp: Path) -> Expect:
    return Expect(["reproduce", "--grid", str(tmp / "nogrid.yaml")], "error", ("nogrid.yaml", "no such grid file"))


@case("grid_yaml_not_utf8", marks=_NO_GRID)
def _(tmp: Path) -> Expect:
    expect = _grid(tmp, b"\xff\xfe\x00datasets")
    expect.words += ("not a UTF-8 text file",)
    return expect


@case("grid_yaml_is_a_folder", marks=_NO_GRID)
def _(tmp: Path) -> Expect:
    return Expect(
        ["reproduce", "--grid", str(tmp)],
        "error",
        ("is a folder, not a grid YAML file",),
        why="a folder where a file is expected: say so, not 'no such file'",
    )


@case("set_options_whole_dict")
def _(tmp: Path) -> Expect:
    return Expect(
        ["train", "--method", "semi-cml", "--data", str(tmp), "--set", "options=3"],
        "error",
        ("set one option at a time",),
        why="--set options=3 would replace the options mapping by a number",
    )


# ----- random header corruption: every change ends in a clean run or one clear line naming the file

HEADER_SEEDS = range(24)  # seeds 2, 18 and 20 once escaped as nibabel OrientationError tracebacks
# bytes of the NIfTI-1 header that matter: dim, datatype, bitpix, pixdim, vox_offset, scl_slope/inter,
# qform/sform codes, quaternion and offsets, srow_x/y/z, magic
HEADER_FIELDS = [*range(40, 56), *range(70, 74), *range(76, 120), *range(252, 328), *range(344, 348)]


def _header_fuzz(seed: int) -> Callable[[Path], Expect]:
    def build(tmp: Path) -> Expect:
        data = make_brats(tmp / "d")
        gz = brats_file(data, 1, "t1")
        plain = gz.with_suffix("")  # .nii: the header bytes are on disk as they are
        gz.unlink()
        save(plain, phantom(1)["t1"])
        raw = bytearray(plain.read_bytes())
        rng = np.random.default_rng(seed)
        for pos in rng.choice(HEADER_FIELDS, size=2, replace=False):
            raw[pos] = int(rng.integers(0, 256))
        plain.write_bytes(bytes(raw))
        return Expect(
            train(data),
            "any",
            ("BraTS-FZ-00001_",),
            why="random damage: usable headers train, others give one line naming a file of that case",
        )

    return build


for _seed in HEADER_SEEDS:
    case(f"random_header_bytes_{_seed}")(_header_fuzz(_seed))


# --------------------------------------------------------------------------- running


def _run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"{type(exc).__name__} escaped workbench.cli.main (a traceback for the user): {exc}")
    out, err = capsys.readouterr()
    return code, out, err


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("workbench")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from workbench.cli import main; sys.exit(main())"]


def _run_subprocess(argv: list[str]) -> tuple[int, str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*_console_script(), *argv], capture_output=True, text=True, timeout=300, env=env)
    return result.returncode, result.stdout, result.stderr


def _check(expect: Expect, code: int, err: str, warnings: list[str]) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    outcome = expect.outcome
    if outcome == "any":  # random corruption: either a clean run or a clear error naming the file
        outcome = "ok" if code == 0 else "error"
    if outcome == "ok":
        assert code == 0, f"expected a successful run, got exit {code}: {err[-2000:]}"
        for word in expect.warn:
            assert any(word in w for w in warnings), f"no warning with {word!r} in {warnings}"
        return
    assert code == 2, f"exit status {code}, stderr: {err[-2000:]}"
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("error: "), lines[0]
    for word in expect.words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


def _params():
    out = []
    for c in CASES:
        out.append(pytest.param(c, "in-process", id=c.name, marks=c.marks))
        if c.also_subprocess:
            out.append(pytest.param(c, "subprocess", id=f"{c.name}-subprocess", marks=c.marks))
    return out


def test_the_fuzz_suite_has_at_least_20_cases():
    assert len(CASES) >= 20
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("fuzz", "how"), _params())
def test_bad_input_gives_one_clear_line(fuzz: Case, how: str, tmp_path: Path, capsys, caplog) -> None:
    expect = fuzz.build(tmp_path)
    try:
        if how == "subprocess":
            code, _, err = _run_subprocess(expect.argv)
            warnings = err.splitlines()  # logged warnings reach stderr as plain lines
        else:
            caplog.set_level(logging.WARNING)
            code, _, err = _run_in_process(expect.argv, capsys)
            warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        _check(expect, code, err, warnings)
    finally:
        for path in tmp_path.rglob("*"):  # undo chmod 0 so that pytest can clean up
            if not path.is_symlink():
                path.chmod(0o755)


def test_unreadable_file_simulated(tmp_path: Path, capsys, monkeypatch) -> None:
    """The permission case above, simulated so that it also runs as root."""
    from workbench.data import nifti

    data = make_brats(tmp_path / "d")
    bad = brats_file(data, 1, "flair")
    real_access = os.access
    monkeypatch.setattr(nifti.os, "access", lambda p, mode: Path(p) != bad and real_access(p, mode))
    code, _, err = _run_in_process(train(data), capsys)
    _check(Expect([], "error", ("BraTS-FZ-00001_flair.nii.gz", "permission denied")), code, err, [])


def test_debug_shows_the_traceback(tmp_path: Path, capsys) -> None:
    """``workbench --debug ...`` re-raises the WorkbenchError (Python prints its traceback)."""
    from workbench.errors import DataError

    data = make_brats(tmp_path / "d")
    brats_file(data, 1, "flair").unlink()
    with pytest.raises(DataError, match="missing flair image file"):
        main(["--debug", *train(data)])
    code = "import sys; from workbench.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", code, "--debug", *train(data)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "workbench.errors.DataError" in result.stderr and "missing flair image file" in result.stderr


def test_usage_errors_are_one_line_with_a_help_hint(capsys) -> None:
    code, _, err = _run_in_process([], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "workbench --help" in err
    code, _, err = _run_in_process(["train", "--epochs", "many"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--epochs" in err and "'many'" in err and "workbench train --help" in err
