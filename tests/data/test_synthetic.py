"""Tests for the built-in synthetic BraTS / HECKTOR datasets."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from workbench.data import synthetic
from workbench.errors import ConfigError

BRATS_FILES = ("t1", "t1ce", "t2", "flair", "seg")


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def _brats_case(root: Path, case: str) -> dict[str, np.ndarray]:
    return {name: _array(root / case / f"{case}_{name}.nii.gz") for name in BRATS_FILES}


def _hecktor_case(root: Path, case: str) -> dict[str, np.ndarray]:
    return {
        "CT": _array(root / "imagesTr" / f"{case}__CT.nii.gz"),
        "PT": _array(root / "imagesTr" / f"{case}__PT.nii.gz"),
        "label": _array(root / "labelsTr" / f"{case}.nii.gz"),
    }


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a
    )


def _cnr(image: np.ndarray, tumour: np.ndarray, ring: np.ndarray) -> float:
    """Contrast-to-noise ratio |mean(tumour) - mean(ring)| / std(ring)."""
    image = image.astype(np.float64)
    return abs(image[tumour].mean() - image[ring].mean()) / image[ring].std()


def _ring(tumour: np.ndarray, inside: np.ndarray, width: int = 3) -> np.ndarray:
    return ndi.binary_dilation(tumour, iterations=width) & ~tumour & inside


def _pet_on_ct(root: Path, case: str) -> tuple[np.ndarray, np.ndarray]:
    """CT array and the PET resampled (linear) onto the CT grid through the affines."""
    ct = nib.load(str(root / "imagesTr" / f"{case}__CT.nii.gz"))
    pet = nib.load(str(root / "imagesTr" / f"{case}__PT.nii.gz"))
    ct_to_pet = np.linalg.inv(pet.affine) @ ct.affine
    pet_data = np.asarray(pet.dataobj, dtype=np.float64)
    matrix, offset = ct_to_pet[:3, :3], ct_to_pet[:3, 3]
    pet_on_ct = ndi.affine_transform(pet_data, matrix, offset, output_shape=ct.shape, order=1)
    return np.asarray(ct.dataobj), pet_on_ct


@pytest.fixture(scope="module")
def brats3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("brats3")
    return root, synthetic.make_brats(root, 3, seed=0, difficulty="clear")


@pytest.fixture(scope="module")
def hecktor3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("hecktor3")
    return root, synthetic.make_hecktor(root, 3, seed=0, difficulty="clear")


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kind": "kits"}, "'kits'"),
        ({"n_patients": 0}, "n_patients"),
        ({"n_patients": 2.0}, "n_patients"),
        ({"seed": -1}, "seed"),
        ({"spacing_mm": 0.1}, "spacing_mm"),
    ],
)
def test_generate_rejects_bad_arguments(tmp_path: Path, kwargs: dict, fragment: str) -> None:
    args = {"kind": "hecktor", "out_dir": tmp_path, "n_patients": 1, "seed": 0} | kwargs
    with pytest.raises(ConfigError, match=fragment) as info:
        synthetic.generate(**args)
    assert "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())


def test_unknown_kind_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="brats.*hecktor"):
        synthetic.generate("kits", tmp_path, 1, 0)


def test_generate_dispatches(tmp_path: Path, hecktor3: tuple[Path, list[str]]) -> None:
    ids = synthetic.generate("hecktor", tmp_path, 1, 0, difficulty="clear")
    assert ids == ["SYN-000"]
    assert _same(_hecktor_case(tmp_path, ids[0]), _hecktor_case(hecktor3[0], ids[0]))


# ----------------------------------------------------------------------------- BraTS


def test_brats_layout(brats3: tuple[Path, list[str]]) -> None:
    root, ids = brats3
    assert ids == ["BraTS-SYN-00000", "BraTS-SYN-00001", "BraTS-SYN-00002"]
    assert sorted(p.name for p in root.iterdir()) == ids
    for case in ids:
        expected = sorted(f"{case}_{name}.nii.gz" for name in BRATS_FILES)
        assert sorted(p.name for p in (root / case).iterdir()) == expected


def test_brats_arrays(brats3: tuple[Path, list[str]]) -> None:
    root, ids = brats3
    for case in ids:
        seg_img = nib.load(str(root / case / f"{case}_seg.nii.gz"))
        seg = np.asanyarray(seg_img.dataobj)
        assert seg.dtype == np.uint8
        assert set(np.unique(seg)) <= {0, 1, 2, 4}
        assert (seg == 4).any() or (seg == 1).any(), "tumour core missing"
        assert (seg == 2).any(), "edema missing"
        assert np.allclose(seg_img.header.get_zooms()[:3], 2.5)
        assert 55 <= seg.shape[0] <= 75 and 70 <= seg.shape[1] <= 90 and 60 <= seg.shape[2] <= 80
        for name in synthetic.BRATS_MODALITIES:
            image = nib.load(str(root / case / f"{case}_{name}.nii.gz"))
            data = np.asanyarray(image.dataobj)
            assert data.shape == seg.shape
            assert np.allclose(image.affine, seg_img.affine)
            assert data.dtype == np.int16 and data.min() >= 0
            brain = data > 0
            assert 0.2 < brain.mean() < 0.8, "skull-stripped brain should fill part of the box"
            assert not brain[0].any() and not brain[:, :, -1].any(), "background must be zero"
            assert brain[seg > 0].mean() > 0.99, "tumour must lie inside the brain"


def test_brats_contrast_encodes_difficulty(brats3: tuple[Path, list[str]]) -> None:
    """Whole tumour: FLAIR is the easy modality, T1 the hard one."""
    root, ids = brats3
    for case in ids:
        arrays = _brats_case(root, case)
        tumour = arrays["seg"] > 0
        ring = _ring(tumour, arrays["t1"] > 0)
        cnr = {m: _cnr(arrays[m], tumour, ring) for m in synthetic.BRATS_MODALITIES}
        assert cnr["flair"] > 1.2, cnr
        assert cnr["flair"] > 2.0 * cnr["t1"], cnr  # measured on 12 patients (seed 7): ratio >= 2.6
        assert cnr["t2"] > cnr["t1"], cnr


def test_brats_modalities_differ_in_contrast(brats3: tuple[Path, list[str]]) -> None:
    """CSF (the brightest T2 voxels outside the tumour) is dark in T1 and FLAIR."""
    root, ids = brats3
    arrays = _brats_case(root, ids[0])
    t1, t2, flair = (arrays[m].astype(np.float64) for m in ("t1", "t2", "flair"))
    brain = (t1 > 0) & (arrays["seg"] == 0)
    csf = brain & (t2 > np.percentile(t2[brain], 95))
    assert t1[csf].mean() < np.percentile(t1[brain], 25)
    assert flair[csf].mean() < np.percentile(flair[brain], 25)


def test_brats_deterministic_and_prefix_stable(tmp_path: Path, brats3: tuple[Path, list[str]]) -> None:
    root3, _ = brats3
    ids = synthetic.make_brats(tmp_path / "two", 2, seed=0, difficulty="clear")
    for case in ids:
        assert _same(_brats_case(tmp_path / "two", case), _brats_case(root3, case))
    other = synthetic.make_brats(tmp_path / "seed1", 1, seed=1, difficulty="clear")
    a, b = _brats_case(tmp_path / "seed1", other[0]), _brats_case(root3, other[0])
    assert not np.array_equal(a["seg"], b["seg"])
    assert not np.array_equal(a["flair"], b["flair"])


def test_brats_patients_differ(brats3: tuple[Path, list[str]]) -> None:
    root, ids = brats3
    first, second = _brats_case(root, ids[0]), _brats_case(root, ids[1])
    assert not np.array_equal(first["seg"], second["seg"])


# ----------------------------------------------------------------------------- HECKTOR


def test_hecktor_layout(hecktor3: tuple[Path, list[str]]) -> None:
    root, ids = hecktor3
    assert ids == ["SYN-000", "SYN-001", "SYN-002"]
    assert sorted(p.name for p in root.iterdir()) == ["imagesTr", "labelsTr"]
    images = sorted(p.name for p in (root / "imagesTr").iterdir())
    assert images == sorted(f"{c}__{m}.nii.gz" for c in ids for m in ("CT", "PT"))
    assert sorted(p.name for p in (root / "labelsTr").iterdir()) == sorted(f"{c}.nii.gz" for c in ids)


def test_hecktor_arrays_and_grids(hecktor3: tuple[Path, list[str]]) -> None:
    root, ids = hecktor3
    for case in ids:
        ct = nib.load(str(root / "imagesTr" / f"{case}__CT.nii.gz"))
        pet = nib.load(str(root / "imagesTr" / f"{case}__PT.nii.gz"))
        label = nib.load(str(root / "labelsTr" / f"{case}.nii.gz"))
        seg = np.asanyarray(label.dataobj)
        ct_data, pet_data = np.asanyarray(ct.dataobj), np.asanyarray(pet.dataobj)
        assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 1, 2}
        assert (seg == 1).any(), "primary tumour missing"
        assert ct_data.dtype == np.int16 and ct_data.shape == seg.shape == (72, 72, 48)
        assert np.allclose(ct.affine, label.affine)
        assert np.allclose(ct.header.get_zooms()[:3], 2.0)
        assert ct_data.min() >= -1024 and ct_data.max() > 500, "air and bone expected in HU"
        assert -1100 < np.median(ct_data[0]) < -900, "corner of the FOV is air"
        assert pet_data.dtype == np.float32 and pet_data.min() >= 0
        assert pet_data.shape != ct_data.shape
        assert not np.allclose(pet.affine, ct.affine)
        assert all(p > c for p, c in zip(pet.header.get_zooms()[:3], ct.header.get_zooms()[:3]))
        _assert_pet_covers_ct(ct, pet)


def _assert_pet_covers_ct(ct: nib.Nifti1Image, pet: nib.Nifti1Image) -> None:
    last = np.asarray(ct.shape) - 1
    corners = np.array([[i, j, k, 1] for i in (0, last[0]) for j in (0, last[1]) for k in (0, last[2])], float)
    in_pet = (np.linalg.inv(pet.affine) @ ct.affine @ corners.T)[:3]
    assert (in_pet > -0.5).all() and (in_pet < np.asarray(pet.shape)[:, None] - 0.5).all()


def test_hecktor_contrast_encodes_difficulty(hecktor3: tuple[Path, list[str]]) -> None:
    """Whole tumour: PET is the easy modality, CT the hard one."""
    root, ids = hecktor3
    for case in ids:
        ct, pet = _pet_on_ct(root, case)
        tumour = _array(root / "labelsTr" / f"{case}.nii.gz") > 0
        ring = _ring(tumour, ct > -500)
        cnr_ct, cnr_pet = _cnr(ct, tumour, ring), _cnr(pet, tumour, ring)
        assert cnr_pet > 1.2, (cnr_ct, cnr_pet)  # measured on 12 patients (seed 7): >= 1.34
        assert cnr_pet > 2.0 * cnr_ct, (cnr_ct, cnr_pet)  # ratio >= 2.8
        assert pet[tumour].max() > 2.0, "tumour must be hot on PET (body background ~1 SUV)"


def test_hecktor_deterministic_and_prefix_stable(tmp_path: Path, hecktor3: tuple[Path, list[str]]) -> None:
    root3, _ = hecktor3
    ids = synthetic.make_hecktor(tmp_path / "two", 2, seed=0, difficulty="clear")
    for case in ids:
        assert _same(_hecktor_case(tmp_path / "two", case), _hecktor_case(root3, case))
        for name in ("CT", "PT"):
            a = nib.load(str(tmp_path / "two" / "imagesTr" / f"{case}__{name}.nii.gz")).affine
            assert np.array_equal(a, nib.load(str(root3 / "imagesTr" / f"{case}__{name}.nii.gz")).affine)
    other = synthetic.make_hecktor(tmp_path / "seed1", 1, seed=1, difficulty="clear")
    a, b = _hecktor_case(tmp_path / "seed1", other[0]), _hecktor_case(root3, other[0])
    assert not np.array_equal(a["label"], b["label"])
    assert not np.array_equal(a["PT"], b["PT"])


# ----------------------------------------------------------------------------- difficulty

#: SHA-256 over the NIfTI files of 3 brats and 3 hecktor patients (seed 0) in the `clear`
#: preset, as the generator wrote them before difficulties existed (the data of every run
#: in docs/results made on the built-in data before the `paper` preset).
CLEAR_SHA256 = "e7542da14cf4a5d0cb9138fe1810fcadd258a6ac767e57369b298f88ef624c43"


def test_the_clear_preset_is_the_data_of_the_earlier_runs(brats3, hecktor3) -> None:
    import hashlib

    lines = []
    for (root, _), prefix in ((brats3, "./b"), (hecktor3, "./h")):
        for path in sorted(root.rglob("*.nii.gz"), key=lambda p: f"{prefix}/{p.relative_to(root)}"):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            lines.append(f"{digest}  {prefix}/{path.relative_to(root)}\n")
    assert hashlib.sha256("".join(lines).encode()).hexdigest() == CLEAR_SHA256


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_a_difficulty_changes_intensities_not_anatomy_and_annotation_only_the_label(tmp_path: Path, kind: str) -> None:
    """The same patients under every difficulty that keeps the lesion size. Without the
    annotators' variability the labels are identical and the images differ. With it, only
    the label changes."""
    read = _brats_case if kind == "brats" else _hecktor_case
    label = "seg" if kind == "brats" else "label"
    settings = {
        "clear": "clear",
        "paper, exact label": {"preset": "paper", "annotation": 0.0},
        "paper": "paper",
    }
    cases = {}
    for i, (name, difficulty) in enumerate(settings.items()):
        ids = synthetic.generate(kind, tmp_path / str(i), 1, seed=0, difficulty=difficulty)
        cases[name] = read(tmp_path / str(i), ids[0])
    exact, paper = cases["paper, exact label"], cases["paper"]
    assert np.array_equal(cases["clear"][label], exact[label])
    images = [m for m in exact if m != label]
    assert any(not np.array_equal(cases["clear"][m], exact[m]) for m in images)
    assert all(np.array_equal(exact[m], paper[m]) for m in images)
    a, b = exact[label] > 0, paper[label] > 0
    assert 0.3 < 2 * (a & b).sum() / (a.sum() + b.sum()) < 0.98


def test_contrast_zero_hides_the_lesion_tumour_size_grows_it_and_blur_softens_its_edge(tmp_path: Path, brats3) -> None:
    root3, ids = brats3  # the clear preset; patient 0 is the same patient here
    visible = _brats_case(root3, ids[0])
    tumour = visible["seg"] > 0
    ring = _ring(tumour, visible["t1"] > 0)
    hidden = tmp_path / "hidden"
    synthetic.generate("brats", hidden, 1, seed=0, difficulty={"preset": "clear", "contrast": {"flair": 0.0}})
    flair = _brats_case(hidden, ids[0])["flair"]
    assert _cnr(flair, tumour, ring) < 0.3 * _cnr(visible["flair"], tumour, ring)
    big = tmp_path / "big"
    synthetic.generate("brats", big, 1, seed=0, difficulty={"preset": "clear", "tumour_size": 1.3})
    assert (_brats_case(big, ids[0])["seg"] > 0).sum() > 1.2 * tumour.sum()
    blurred = tmp_path / "blurred"
    synthetic.generate("brats", blurred, 1, seed=0, difficulty={"preset": "clear", "blur": {"flair": 8.0}})
    edge = ndi.binary_dilation(tumour, iterations=2) & ~ndi.binary_erosion(tumour, iterations=2)

    def edge_gradient(image: np.ndarray) -> float:
        return float(ndi.gaussian_gradient_magnitude(image.astype(np.float64), 1.0)[edge].mean())

    after = _brats_case(blurred, ids[0])
    assert edge_gradient(after["flair"]) < 0.85 * edge_gradient(visible["flair"])  # measured: 0.76
    assert np.array_equal(after["t1"], visible["t1"])  # only the modality it names


def test_the_paper_preset_hides_flair_and_pet_and_shows_ct(tmp_path: Path, brats3, hecktor3) -> None:
    """The calibration's direction: the strong modalities lose contrast-to-noise, CT gains it
    (Table 1's CT is far from blind). Same patients as the clear fixtures, so the label and
    ring are shared."""
    (root_b, ids_b), (root_h, ids_h) = brats3, hecktor3
    synthetic.generate("brats", tmp_path / "b", 1, seed=0, difficulty="paper")
    synthetic.generate("hecktor", tmp_path / "h", 1, seed=0, difficulty="paper")
    clear, paper = _brats_case(root_b, ids_b[0]), _brats_case(tmp_path / "b", ids_b[0])
    tumour = clear["seg"] > 0
    ring = _ring(tumour, clear["t1"] > 0)
    assert _cnr(paper["flair"], tumour, ring) < 0.8 * _cnr(clear["flair"], tumour, ring)
    ct_clear, pet_clear = _pet_on_ct(root_h, ids_h[0])
    ct_paper, pet_paper = _pet_on_ct(tmp_path / "h", ids_h[0])
    tumour = _array(root_h / "labelsTr" / f"{ids_h[0]}.nii.gz") > 0
    ring = _ring(tumour, ct_clear > -500)
    assert _cnr(pet_paper, tumour, ring) < 0.8 * _cnr(pet_clear, tumour, ring)
    assert _cnr(ct_paper, tumour, ring) > 1.2 * _cnr(ct_clear, tumour, ring)


def test_the_manifest_records_the_difficulty(tmp_path: Path) -> None:
    import json

    from workbench.data.fingerprint import BUILTIN_MANIFEST

    synthetic.generate("hecktor", tmp_path / "h", 1, seed=0)
    manifest = json.loads((tmp_path / "h" / BUILTIN_MANIFEST).read_text())
    assert manifest["difficulty"]["preset"] == synthetic.DEFAULT_DIFFICULTY == "paper"
    assert manifest["difficulty"]["contrast"] == dict(synthetic.DIFFICULTY_PRESETS["hecktor"]["paper"].contrast)


@pytest.mark.parametrize(
    ("difficulty", "fragment"),
    [
        ("hard", "difficulty 'hard' is unknown for brats; choose one of clear, paper"),
        ({"contrast": {"CT": 1.0}}, "difficulty.contrast: brats has no modality 'CT'"),
        ({"noise": {"t1": 0}}, "difficulty.noise.t1 must be > 0"),
        ({"contrast": {"t1": -1}}, "difficulty.contrast.t1 must be >= 0"),
        ({"tumour_size": "big"}, "difficulty.tumour_size must be a number"),
        ({"sharpness": 2}, "difficulty: unknown key(s) sharpness"),
        ({"contrast": {"t1:rim": 0.5}}, "difficulty.contrast: 't1:rim' is not a part of a brats modality"),
        ({"preset": "nope"}, "difficulty 'nope' is unknown"),
        (3, "difficulty must be a preset name or a mapping"),
    ],
)
def test_a_bad_difficulty_is_named_in_one_line(tmp_path: Path, difficulty, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        synthetic.generate("brats", tmp_path / "x", 1, seed=0, difficulty=difficulty)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_a_part_contrast_changes_that_part_of_that_modality(tmp_path: Path, brats3) -> None:
    root3, ids = brats3
    clear = _brats_case(root3, ids[0])
    synthetic.generate(
        "brats", tmp_path / "e", 1, seed=0, difficulty={"preset": "clear", "contrast": {"t1:edema": 0.0}}
    )
    hidden = _brats_case(tmp_path / "e", ids[0])
    assert all(np.array_equal(clear[m], hidden[m]) for m in ("t1ce", "t2", "flair", "seg"))
    edema, core = clear["seg"] == 2, np.isin(clear["seg"], (1, 4))
    # T1 edema is hypointense (white matter 0.85, edema shift -0.16): hidden, it is white matter again
    assert hidden["t1"][edema].mean() > 1.05 * clear["t1"][edema].mean()
    deep_core = ndi.binary_erosion(core, iterations=2)
    assert abs(hidden["t1"][deep_core].mean() - clear["t1"][deep_core].mean()) < 0.02 * clear["t1"][deep_core].mean()
    with pytest.raises(ConfigError, match="parts exist for brats only"):
        synthetic.resolve_difficulty("hecktor", {"contrast": {"CT:edema": 0.5}})


def test_dataset_folder_names() -> None:
    name = synthetic.dataset_folder_name
    assert name("brats", 40, 0) == "data-brats-p40-s0-paper"
    assert name("brats", 40, 0, "clear") == "data-brats-p40-s0"  # the earlier runs' folders
    custom = name("hecktor", 40, 1, {"contrast": {"CT": 2.0}})
    assert custom.startswith("data-hecktor-p40-s1-custom-") and custom == name(
        "hecktor", 40, 1, {"contrast": {"CT": 2}}
    )
    assert custom != name("hecktor", 40, 1, {"contrast": {"CT": 2.5}})


# ----------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_real_loader_reads_synthetic_data(
    kind: str, brats3: tuple[Path, list[str]], hecktor3: tuple[Path, list[str]]
) -> None:
    from workbench.data import nifti

    root, ids = brats3 if kind == "brats" else hecktor3
    assert nifti.detect_format(root) == kind
    cases = nifti.load_dataset(root, progress=False)
    assert [c.case_id for c in cases] == ids
    for case in cases:
        assert case.label is not None and (case.label > 0).any()
        assert all(image.shape == case.label.shape for image in case.images.values())
        assert all(np.isfinite(image).all() for image in case.images.values())


def test_generate_refuses_a_non_empty_folder_and_leaves_no_partial_dataset(tmp_path, monkeypatch):
    from workbench.data import synthetic
    from workbench.errors import ConfigError

    out = tmp_path / "brats"
    synthetic.generate("brats", out, 1, seed=0)
    with pytest.raises(ConfigError, match="already exists"):
        synthetic.generate("brats", out, 1, seed=0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "make_hecktor", crash)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate("hecktor", tmp_path / "hecktor", 2, seed=0)
    assert not (tmp_path / "hecktor").exists()  # an interrupted generation is never mistaken for a dataset
