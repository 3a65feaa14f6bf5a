"""Tests for workbench.data.nifti: layouts, reorientation, resampling and bad inputs."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from workbench.data import nifti
from workbench.data.case import Case
from workbench.data.nifti import (
    detect_format,
    find_cases,
    load_brats_case,
    load_case,
    load_dataset,
    load_generic_case,
    load_hecktor_case,
)
from workbench.errors import ConfigError, DataError

SHAPE = (8, 8, 6)
RAS = np.diag([1.0, 1.0, 2.0, 1.0])
BRATS_ID = "BraTS2021_00001"
BRATS23_ID = "BraTS-GLI-00001-000"
HECKTOR_ID = "CHUM-001"


# --------------------------------------------------------------------------- helpers


def save(path: Path, data: np.ndarray, affine: np.ndarray = RAS) -> Path:
    """Write ``data`` as a NIfTI file (gzip if the name ends in .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=float)), str(path))
    return path


def ramp(offset: float = 0.0, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """A volume whose every voxel differs (1-based so it is never all zero)."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1 + offset


def brats_label(values: tuple[int, ...] = (1, 2, 4)) -> np.ndarray:
    label = np.zeros(SHAPE, dtype=np.uint8)
    for i, v in enumerate(values):
        label[2 + i, 3, 1 : 3 + i] = v
    return label


def make_brats(
    root: Path, case: str = BRATS_ID, year: int = 2021, affine: np.ndarray = RAS, label: np.ndarray | None = None
) -> dict[str, Path]:
    """Write one BraTS case; returns role -> path."""
    tags = {2021: ("_t1", "_t1ce", "_t2", "_flair", "_seg"), 2023: ("-t1n", "-t1c", "-t2w", "-t2f", "-seg")}[year]
    roles = ("t1", "t1ce", "t2", "flair", "label")
    if label is None:
        label = brats_label((1, 2, 4) if year == 2021 else (1, 2, 3))
    out = {}
    for i, (role, tag) in enumerate(zip(roles, tags)):
        data = label if role == "label" else ramp(1000 * i).astype(np.int16)
        out[role] = save(root / case / f"{case}{tag}.nii.gz", data, affine)
    return out


def hecktor_label() -> np.ndarray:
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[2:4, 2:4, 1:3] = 1
    label[5, 5, 4] = 2
    return label


CT_AFFINE = np.diag([1.0, 1.0, 3.0, 1.0])
PET_SPACING = (2.0, 2.0, 3.0)
PET_ORIGIN = (2.5, 0.5, 0.0)


def pet_volume() -> tuple[np.ndarray, np.ndarray]:
    """PET on a 2x2x3 mm grid with a shifted origin; value = 1 + x + 10 y + 100 z (mm)."""
    affine = np.diag([*PET_SPACING, 1.0])
    affine[:3, 3] = PET_ORIGIN
    idx = np.indices((4, 5, 6)).astype(np.float64)
    world = [PET_ORIGIN[a] + PET_SPACING[a] * idx[a] for a in range(3)]
    return (1 + world[0] + 10 * world[1] + 100 * world[2]).astype(np.float32), affine


def make_hecktor_2022(root: Path, case: str = HECKTOR_ID) -> dict[str, Path]:
    pet, pet_affine = pet_volume()
    return {
        "ct": save(root / "imagesTr" / f"{case}__CT.nii.gz", ramp(-1000).astype(np.int16), CT_AFFINE),
        "pet": save(root / "imagesTr" / f"{case}__PT.nii.gz", pet, pet_affine),
        "label": save(root / "labelsTr" / f"{case}.nii.gz", hecktor_label(), CT_AFFINE),
    }


def make_generic(root: Path, case: str = "case01", label_name: str = "label") -> dict[str, Path]:
    return {
        "t1": save(root / case / "t1.nii.gz", ramp()),
        "t2": save(root / case / "t2.nii.gz", ramp(500)),
        "label": save(root / case / f"{label_name}.nii.gz", hecktor_label()),
    }


def world_of(affine: np.ndarray, ijk: tuple[int, int, int]) -> np.ndarray:
    return affine[:3, :3] @ np.asarray(ijk, dtype=float) + affine[:3, 3]


# --------------------------------------------------------------------------- BraTS


def test_brats_2021_loads_values_shape_spacing(tmp_path: Path) -> None:
    paths = make_brats(tmp_path)
    (case,) = load_dataset(tmp_path, progress=False)
    assert isinstance(case, Case)
    assert case.case_id == BRATS_ID
    assert list(case.images) == ["t1", "t1ce", "t2", "flair"]
    assert case.shape == SHAPE
    for i, m in enumerate(("t1", "t1ce", "t2", "flair")):
        assert case.images[m].dtype == np.float32
        np.testing.assert_array_equal(case.images[m], ramp(1000 * i))
    assert case.label is not None and case.label.dtype == np.uint8
    np.testing.assert_array_equal(case.label, brats_label())
    assert case.spacing == (1.0, 1.0, 2.0)
    np.testing.assert_allclose(case.affine, RAS)
    assert case.paths == {
        "t1": paths["t1"],
        "t1ce": paths["t1ce"],
        "t2": paths["t2"],
        "flair": paths["flair"],
        "label": paths["label"],
    }


def test_brats_lps_volume_is_reoriented_to_ras(tmp_path: Path) -> None:
    lps = np.diag([-0.9, -0.9, 2.5, 1.0])
    lps[:3, 3] = (100.0, 120.0, -50.0)
    make_brats(tmp_path, affine=lps)
    case = load_brats_case(tmp_path / BRATS_ID)
    # x and y flipped, z kept: the first voxel on disk is now the last along x and y
    np.testing.assert_array_equal(case.images["t1"], ramp()[::-1, ::-1, :])
    np.testing.assert_array_equal(case.label, brats_label()[::-1, ::-1, :])
    assert case.spacing == pytest.approx((0.9, 0.9, 2.5))
    assert np.all(np.diag(case.affine)[:3] > 0)
    # the same physical point keeps its value
    src, dst = (0, 0, 0), (SHAPE[0] - 1, SHAPE[1] - 1, 0)
    np.testing.assert_allclose(world_of(case.affine, dst), world_of(lps, src))
    assert case.images["t1"][dst] == ramp()[src]


def test_brats_mixed_orientation_modalities_share_grid(tmp_path: Path) -> None:
    """A modality stored LPS while the others are RAS lands on the same voxels."""
    make_brats(tmp_path)
    lps = np.diag([-1.0, -1.0, 2.0, 1.0])
    lps[:3, 3] = (SHAPE[0] - 1, SHAPE[1] - 1, 0)  # same physical grid, flipped storage
    save(tmp_path / BRATS_ID / f"{BRATS_ID}_t2.nii.gz", ramp(2000)[::-1, ::-1, :], lps)
    case = load_brats_case(tmp_path / BRATS_ID)
    np.testing.assert_allclose(case.images["t2"], ramp(2000))


def test_brats_2023_naming_and_labels(tmp_path: Path) -> None:
    make_brats(tmp_path, case=BRATS23_ID, year=2023)
    assert detect_format(tmp_path) == "brats"
    (case,) = load_dataset(tmp_path, progress=False)
    assert case.case_id == BRATS23_ID
    assert list(case.images) == ["t1", "t1ce", "t2", "flair"]
    np.testing.assert_array_equal(case.images["flair"], ramp(3000))
    assert set(np.unique(case.label)) == {0, 1, 2, 3}


def test_brats_nested_root_extra_files_and_modality_subset(tmp_path: Path) -> None:
    top = tmp_path / "BraTS2021_Training_Data"
    make_brats(top, case="BraTS2021_00002")
    make_brats(top, case="BraTS2021_00001")
    (top / "README.txt").write_text("not data")
    make_brats(tmp_path / "__MACOSX" / "BraTS2021_Training_Data")  # zip debris
    (top / "BraTS2021_00001" / "._BraTS2021_00001_t1.nii.gz").write_bytes(b"\0\5\26")
    (top / "BraTS2021_00001" / "notes.txt").write_text("ignored")
    save(top / "BraTS2021_00001" / "BraTS2021_00001_brainmask.nii.gz", ramp())
    cases = load_dataset(tmp_path, modalities=("flair", "t1"), progress=False)
    assert [c.case_id for c in cases] == ["BraTS2021_00001", "BraTS2021_00002"]
    assert list(cases[0].images) == ["flair", "t1"]


def test_resampled_modality_when_grids_differ(tmp_path: Path) -> None:
    """A modality shifted by one voxel is resampled onto the reference grid."""
    make_generic(tmp_path)
    shifted = RAS.copy()
    shifted[0, 3] = 1.0  # voxel i of t2 sits where voxel i+1 of t1 is
    save(tmp_path / "case01" / "t2.nii.gz", ramp(500), shifted)
    case = load_generic_case(tmp_path / "case01", ("t1", "t2"))
    np.testing.assert_allclose(case.images["t2"][1:], ramp(500)[:-1])
    assert np.all(case.images["t2"][0] == 0)  # outside the t2 field of view


def test_tiny_affine_mismatch_keeps_edge_values(tmp_path: Path) -> None:
    """A 0.01 mm offset is resampled without zeroing the border slices."""
    make_generic(tmp_path)
    nudged = RAS.copy()
    nudged[:3, 3] = 0.01
    save(tmp_path / "case01" / "t2.nii.gz", ramp(500), nudged)
    case = load_generic_case(tmp_path / "case01", ("t1", "t2"))
    assert np.all(case.images["t2"] > 0)
    np.testing.assert_allclose(case.images["t2"], ramp(500), atol=1.0)  # 0.01 mm of a ramp


def test_reoriented_arrays_have_positive_strides(tmp_path: Path) -> None:
    lps = np.diag([-1.0, -1.0, 2.0, 1.0])
    make_brats(tmp_path, affine=lps)
    case = load_brats_case(tmp_path / BRATS_ID)
    for array in (*case.images.values(), case.label):
        assert all(s > 0 for s in array.strides)


# --------------------------------------------------------------------------- HECKTOR


def test_hecktor_2022_pet_resampled_onto_ct(tmp_path: Path) -> None:
    paths = make_hecktor_2022(tmp_path)
    assert detect_format(tmp_path) == "hecktor"
    (case,) = load_dataset(tmp_path, progress=False)
    assert case.case_id == HECKTOR_ID
    assert list(case.images) == ["ct", "pet"]
    assert case.shape == SHAPE and case.images["pet"].shape == SHAPE
    assert case.spacing == (1.0, 1.0, 3.0)
    np.testing.assert_allclose(case.affine, CT_AFFINE)
    np.testing.assert_array_equal(case.images["ct"], ramp(-1000))
    # inside the PET field of view linear interpolation reproduces the linear field
    for ijk in [(3, 4, 2), (5, 2, 0), (7, 7, 5)]:
        x, y, z = world_of(CT_AFFINE, ijk)
        assert case.images["pet"][ijk] == pytest.approx(1 + x + 10 * y + 100 * z, rel=1e-5)
    assert np.all(case.images["pet"][0] == 0)  # x = 0 mm lies outside the PET grid
    np.testing.assert_array_equal(case.label, hecktor_label())
    assert case.paths["label"] == paths["label"]


def test_hecktor_flat_layout_label_on_other_grid(tmp_path: Path) -> None:
    ct = save(tmp_path / f"{HECKTOR_ID}__CT.nii.gz", ramp(-1000), CT_AFFINE)
    pet, pet_affine = pet_volume()
    save(tmp_path / f"{HECKTOR_ID}__PT.nii.gz", pet, pet_affine)
    coarse = np.zeros((4, 4, 6), dtype=np.uint8)
    coarse[1, 2, 3] = 2  # covers CT voxels x in {2,3}, y in {4,5} at z index 3
    label_affine = np.diag([2.0, 2.0, 3.0, 1.0])
    label_affine[:3, 3] = (0.5, 0.5, 0.0)
    save(tmp_path / f"{HECKTOR_ID}__gtv.nii.gz", coarse, label_affine)
    (tmp_path / "clinical.csv").write_text("id,age\n")
    assert detect_format(tmp_path) == "hecktor"
    case = load_hecktor_case(tmp_path, HECKTOR_ID)
    assert case.paths["ct"] == ct
    expected = np.zeros(SHAPE, dtype=np.uint8)
    expected[2:4, 4:6, 3] = 2
    np.testing.assert_array_equal(case.label, expected)


def test_hecktor_per_case_folders(tmp_path: Path) -> None:
    folder = tmp_path / HECKTOR_ID
    save(folder / f"{HECKTOR_ID}_ct.nii.gz", ramp(), CT_AFFINE)
    pet, pet_affine = pet_volume()
    save(folder / f"{HECKTOR_ID}_pt.nii.gz", pet, pet_affine)
    save(folder / f"{HECKTOR_ID}_ct_gtvt.nii.gz", hecktor_label(), CT_AFFINE)
    assert detect_format(tmp_path) == "hecktor"
    case = load_case(tmp_path, HECKTOR_ID)
    assert set(case.images) == {"ct", "pet"}
    np.testing.assert_array_equal(case.label, hecktor_label())


def test_hecktor_unlabeled_when_label_not_required(tmp_path: Path) -> None:
    make_hecktor_2022(tmp_path)
    (tmp_path / "labelsTr" / f"{HECKTOR_ID}.nii.gz").unlink()
    (case,) = load_dataset(tmp_path, require_label=False, progress=False)
    assert case.label is None and "label" not in case.paths


# --------------------------------------------------------------------------- generic


def test_generic_layout_with_seg_name(tmp_path: Path) -> None:
    make_generic(tmp_path, "case02", label_name="seg")
    make_generic(tmp_path, "case01")
    assert detect_format(tmp_path) == "generic"
    cases = load_dataset(tmp_path, modalities=["t1", "t2"], progress=False)
    assert [c.case_id for c in cases] == ["case01", "case02"]
    np.testing.assert_array_equal(cases[1].images["t2"], ramp(500))
    np.testing.assert_array_equal(cases[1].label, hecktor_label())
    assert cases[1].paths["label"].name == "seg.nii.gz"


def test_generic_squeezes_trailing_singleton_and_reads_plain_nii(tmp_path: Path) -> None:
    make_generic(tmp_path)
    (tmp_path / "case01" / "t2.nii.gz").unlink()
    save(tmp_path / "case01" / "t2.nii", ramp(500)[..., None])
    case = load_generic_case(tmp_path / "case01", ["t1", "t2"])
    assert case.images["t2"].shape == SHAPE


def test_generic_requires_modalities(tmp_path: Path) -> None:
    make_generic(tmp_path)
    with pytest.raises(ConfigError, match="modalities"):
        load_dataset(tmp_path, progress=False)


def test_find_cases_does_not_read_voxels(tmp_path: Path) -> None:
    make_brats(tmp_path)
    (files,) = find_cases(tmp_path)
    assert files.case_id == BRATS_ID and files.reference == "t1"
    assert files.label_values == nifti.BRATS_2021_LABELS


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_brats(tmp_path)
    load_dataset(tmp_path, progress=True)
    assert "1/1" in capsys.readouterr().err


# --------------------------------------------------------------------------- config / root


def test_unknown_format_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_dataset(tmp_path, fmt="nnunet")
    assert all(f in str(err.value) for f in ("auto", "brats", "hecktor", "generic"))


def test_unknown_modality_lists_choices(tmp_path: Path) -> None:
    make_brats(tmp_path)
    with pytest.raises(ConfigError, match="t1ce"):
        load_dataset(tmp_path, modalities=("t1", "dwi"), progress=False)


@pytest.mark.parametrize(
    ("make_root", "word"),
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: save(p / "file.nii.gz", ramp()), "not a directory"),
        (lambda p: p, "no cases found"),
        (lambda p: (p / "case01").mkdir() or p, "no cases found"),
    ],
    ids=["missing", "file", "empty", "no-nifti"],
)
def test_bad_root(tmp_path: Path, make_root: Callable[[Path], Path], word: str) -> None:
    root = make_root(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset(root, progress=False)
    msg = str(err.value)
    assert str(root) in msg and word in msg and "\n" not in msg


def test_unknown_case_id(tmp_path: Path) -> None:
    make_brats(tmp_path)
    with pytest.raises(DataError, match="no case 'X'.*BraTS2021_00001"):
        load_case(tmp_path, "X")


# --------------------------------------------------------------------------- bad inputs


def _brats(root: Path) -> dict[str, Path]:
    return make_brats(root)


def _overwrite(path: Path, data: np.ndarray, affine: np.ndarray = RAS) -> Path:
    path.unlink()
    return save(path, data, affine)


def _missing_modality(root: Path) -> Path:
    _brats(root)["t2"].unlink()
    return root / BRATS_ID / f"{BRATS_ID}_t2.nii.gz"


def _missing_label(root: Path) -> Path:
    path = _brats(root)["label"]
    path.unlink()
    return path


def _zero_bytes(root: Path) -> Path:
    path = _brats(root)["t1"]
    path.write_bytes(b"")
    return path


def _text_as_niigz(root: Path) -> Path:
    path = _brats(root)["flair"]
    path.write_text("this is not an image\n")
    return path


def _text_as_nii(root: Path) -> Path:
    _brats(root)["flair"].unlink()
    path = root / BRATS_ID / f"{BRATS_ID}_flair.nii"
    path.write_text("patient notes\n" * 40)
    return path


def _truncated_gzip(root: Path) -> Path:
    path = _brats(root)["t1ce"]
    rng = np.random.default_rng(0)
    _overwrite(path, rng.normal(size=(16, 16, 12)).astype(np.float32))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _four_d(root: Path) -> Path:
    path = _brats(root)["t2"]
    return _overwrite(path, ramp(shape=(*SHAPE, 2)))


def _two_d(root: Path) -> Path:
    return _overwrite(_brats(root)["t2"], ramp(shape=(8, 8)))


def _nan_image(root: Path) -> Path:
    data = ramp()
    data[0, 0, :3] = np.nan
    return _overwrite(_brats(root)["t1"], data)


def _inf_image(root: Path) -> Path:
    data = ramp()
    data[1, 1, 1] = np.inf
    return _overwrite(_brats(root)["flair"], data)


def _nan_label(root: Path) -> Path:
    label = brats_label().astype(np.float32)
    label[0, 0, 0] = np.nan
    return _overwrite(_brats(root)["label"], label)


def _fractional_label(root: Path) -> Path:
    label = brats_label().astype(np.float32)
    label[0, 0, 0] = 0.5
    return _overwrite(_brats(root)["label"], label)


def _label_value_3_in_2021(root: Path) -> Path:
    return _overwrite(_brats(root)["label"], brats_label((1, 3, 7)))


def _label_value_4_in_2023(root: Path) -> Path:
    paths = make_brats(root, case=BRATS23_ID, year=2023)
    return _overwrite(paths["label"], brats_label((1, 2, 4)))


def _negative_generic_label(root: Path) -> Path:
    label = hecktor_label().astype(np.int16)
    label[0, 0, 0] = -1
    return _overwrite(make_generic(root)["label"], label)


def _label_far_away(root: Path) -> Path:
    affine = RAS.copy()
    affine[:3, 3] = 1000.0
    return _overwrite(_brats(root)["label"], brats_label(), affine)


def _pet_far_away(root: Path) -> Path:
    pet, affine = pet_volume()
    affine[2, 3] = 500.0
    return _overwrite(make_hecktor_2022(root)["pet"], pet, affine)


def _all_zero_image(root: Path) -> Path:
    return _overwrite(_brats(root)["flair"], np.zeros(SHAPE, dtype=np.int16))


def _complex_image(root: Path) -> Path:
    return _overwrite(_brats(root)["t1"], ramp().astype(np.complex64))


def _rgb_image(root: Path) -> Path:
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return _overwrite(_brats(root)["t1"], rgb)


def _singular_affine(root: Path) -> Path:
    path = _brats(root)["t2"]
    img = nib.Nifti1Image(ramp(), None)
    img.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)  # the constructor would refuse
    nib.save(img, str(path))
    return path


def _symlink_loop(root: Path) -> Path:
    path = _brats(root)["t1"]
    path.unlink()
    other = path.with_name("loop.nii.gz")
    os.symlink(other, path)
    os.symlink(path, other)
    return path


def _broken_symlink(root: Path) -> Path:
    path = _brats(root)["t1"]
    path.unlink()
    os.symlink(root / "gone.nii.gz", path)
    return path


def _directory_as_file(root: Path) -> Path:
    path = _brats(root)["t1"]
    path.unlink()
    path.mkdir()
    return path


def _label_fewer_slices(root: Path) -> Path:
    """A label with 4 of the image's 6 slices: resampling would invent 2 background slices."""
    return _overwrite(_brats(root)["label"], brats_label()[:, :, :4])


def _label_over_part_of_image(root: Path) -> Path:
    """Same shape, but the affine places it 3 voxels to the right: 3 of 8 x-rows unlabeled."""
    shifted = RAS.copy()
    shifted[0, 3] = 3.0
    return _overwrite(_brats(root)["label"], brats_label(), shifted)


def _hecktor_label_over_part_of_ct(root: Path) -> Path:
    return _overwrite(make_hecktor_2022(root)["label"], hecktor_label()[:6], CT_AFFINE)


def _other_cases_image_in_folder(root: Path) -> Path:
    path = _brats(root)["t1"]
    return path.rename(path.with_name("BraTS2021_99999_t1.nii.gz"))


def _other_cases_label_in_folder(root: Path) -> Path:
    path = _brats(root)["label"]
    return path.rename(path.with_name("BraTS2021_99999_seg.nii.gz"))


def _other_cases_pet_in_hecktor_folder(root: Path) -> Path:
    folder = root / HECKTOR_ID
    save(folder / f"{HECKTOR_ID}_ct.nii.gz", ramp(), CT_AFFINE)
    pet, pet_affine = pet_volume()
    save(folder / f"{HECKTOR_ID}_ct_gtvt.nii.gz", hecktor_label(), CT_AFFINE)
    return save(folder / "CHUM-002_pt.nii.gz", pet, pet_affine)


def _duplicate_case_id(root: Path) -> Path:
    make_brats(root / "train")
    make_brats(root / "extra")
    return root / "train" / BRATS_ID


def _duplicate_hecktor_file(root: Path) -> Path:
    make_hecktor_2022(root)
    return save(root / "imagesTr" / f"{HECKTOR_ID}__CT.nii", ramp(), CT_AFFINE)


def _label_and_seg(root: Path) -> Path:
    make_generic(root)
    return save(root / "case01" / "seg.nii.gz", hecktor_label())


BAD_INPUTS = [
    # (builder, modalities for load_dataset, words expected in the message)
    (_missing_modality, None, ["missing t2 image"]),
    (_missing_label, None, ["missing label"]),
    (_zero_bytes, None, ["t1 image", "empty (0 bytes)"]),
    (_text_as_niigz, None, ["flair image", "not a readable NIfTI"]),
    (_text_as_nii, None, ["not a readable NIfTI"]),
    (_truncated_gzip, None, ["t1ce image", "truncated or corrupt"]),
    (_four_d, None, ["4D", "expected a 3D volume"]),
    (_two_d, None, ["2D", "expected a 3D volume"]),
    (_nan_image, None, ["t1 image", "3 non-finite voxels"]),
    (_inf_image, None, ["flair image", "1 non-finite voxels"]),
    (_nan_label, None, ["label", "1 non-finite voxels"]),
    (_fractional_label, None, ["non-integer", "0.5"]),
    (_label_value_3_in_2021, None, ["unexpected values [3, 7]", "[0, 1, 2, 4]"]),
    (_label_value_4_in_2023, None, ["unexpected values [4]", "[0, 1, 2, 3]"]),
    (_negative_generic_label, ("t1", "t2"), ["values [-1]", "outside the range"]),
    (_label_far_away, None, ["label grid", "no physical overlap"]),
    (
        _label_fewer_slices,
        None,
        [
            "label covers 66.7% of the image grid of BraTS2021_00001_t1.nii.gz",
            "33.3% of voxels unlabeled",
            "must cover the whole image",
        ],
    ),
    (_label_over_part_of_image, None, ["covers 62.5%", "37.5% of voxels unlabeled"]),
    (_hecktor_label_over_part_of_ct, None, ["covers 75.0% of the image grid of CHUM-001__CT.nii.gz"]),
    (
        _other_cases_image_in_folder,
        None,
        ["t1 file of case 'BraTS2021_99999'", "folder of case 'BraTS2021_00001'", "expected BraTS2021_00001_t1.nii.gz"],
    ),
    (
        _other_cases_label_in_folder,
        None,
        ["label file of case 'BraTS2021_99999'", "expected BraTS2021_00001_seg.nii.gz"],
    ),
    (
        _other_cases_pet_in_hecktor_folder,
        None,
        ["pet file of case 'CHUM-002'", "folder of case 'CHUM-001'", "expected CHUM-001_pt.nii.gz"],
    ),
    (_pet_far_away, None, ["pet image grid", "no physical overlap"]),
    (_all_zero_image, None, ["flair", "all zeros"]),
    (_complex_image, None, ["unsupported voxel data type complex64"]),
    (_rgb_image, None, ["unsupported voxel data type"]),
    (_singular_affine, None, ["singular affine"]),
    (_symlink_loop, None, ["cannot access t1 image", "symbolic links"]),
    (_broken_symlink, None, ["broken symbolic link"]),
    (_directory_as_file, None, ["not a regular file"]),
    (_duplicate_case_id, None, ["duplicate case id 'BraTS2021_00001'"]),
    (_duplicate_hecktor_file, None, ["duplicate case id 'CHUM-001'", "ct files"]),
    (_label_and_seg, ("t1", "t2"), ["two label files"]),
]


@pytest.mark.parametrize(("build", "modalities", "words"), BAD_INPUTS, ids=[b[0].__name__[1:] for b in BAD_INPUTS])
def test_bad_input_is_one_line_data_error(
    tmp_path: Path,
    build: Callable[[Path], Path],
    modalities: tuple[str, ...] | None,
    words: list[str],
) -> None:
    bad_path = build(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, modalities=modalities, progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    assert bad_path.name in msg
    for word in words:
        assert word in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without permission")
def test_unreadable_file(tmp_path: Path) -> None:
    path = make_brats(tmp_path)["t1"]
    path.chmod(0)
    try:
        with pytest.raises(DataError, match="permission denied"):
            load_dataset(tmp_path, progress=False)
    finally:
        path.chmod(0o644)


def test_no_read_permission_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same check as above, simulated so that it also runs as root."""
    path = make_brats(tmp_path)["t1"]
    real_access = os.access
    monkeypatch.setattr(nifti.os, "access", lambda p, mode: Path(p) != path and real_access(p, mode))
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, progress=False)
    msg = str(err.value)
    assert path.name in msg and "permission denied" in msg and "\n" not in msg


def test_os_error_while_opening_becomes_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_brats(tmp_path)["t1"]

    def deny(filename: object, **_: object) -> None:
        raise PermissionError(13, "Permission denied", str(filename))

    monkeypatch.setattr(nifti.nib, "load", deny)
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, progress=False)
    msg = str(err.value)
    assert path.name in msg and "Permission denied" in msg and "\n" not in msg


# --------------------------------------------------------------------------- label coverage


def test_label_on_other_grid_covering_the_image_is_resampled(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A coarser label whose grid spans the whole image is resampled, not refused."""
    make_brats(tmp_path)
    coarse = np.zeros((4, 4, 3), dtype=np.uint8)
    coarse[1, 2, 1] = 2  # covers image voxels x in {2, 3}, y in {4, 5}, z in {2, 3}
    affine = np.diag([2.0, 2.0, 4.0, 1.0])
    affine[:3, 3] = (0.5, 0.5, 1.0)
    path = save(tmp_path / BRATS_ID / f"{BRATS_ID}_seg.nii.gz", coarse, affine)
    with caplog.at_level(logging.WARNING, logger="workbench.data.nifti"):
        case = load_brats_case(tmp_path / BRATS_ID)
    expected = np.zeros(SHAPE, dtype=np.uint8)
    expected[2:4, 4:6, 2:4] = 2
    np.testing.assert_array_equal(case.label, expected)
    assert any(str(path) in m and "resampling" in m for m in caplog.messages)


@pytest.mark.parametrize(("shift", "ok"), [(1, True), (2, False)], ids=["0.4%-off", "0.8%-off"])
def test_label_coverage_tolerance(tmp_path: Path, shift: int, ok: bool) -> None:
    """LABEL_MIN_COVERAGE (99.5%): one of 250 rows uncovered is rounding, two are not."""
    assert nifti.LABEL_MIN_COVERAGE == 0.995
    shape = (250, 2, 2)
    save(tmp_path / "case01" / "t1.nii.gz", ramp(shape=shape))
    label = np.zeros(shape, dtype=np.uint8)
    label[100, 1, 1] = 1
    shifted = RAS.copy()
    shifted[0, 3] = float(shift)
    path = save(tmp_path / "case01" / "label.nii.gz", label, shifted)
    if ok:
        case = load_generic_case(tmp_path / "case01", ("t1",))
        assert case.label is not None and case.label[101, 1, 1] == 1 and not case.label[0].any()
    else:
        with pytest.raises(DataError) as err:
            load_generic_case(tmp_path / "case01", ("t1",))
        msg = str(err.value)
        assert msg.startswith(f"{path}: label covers 99.2% of the image grid of t1.nii.gz")
        assert "(0.8% of voxels unlabeled)" in msg and "\n" not in msg


# --------------------------------------------------------------------------- case ids


def test_case_folder_with_another_cases_file_names_folder_and_both_ids(tmp_path: Path) -> None:
    stray = _other_cases_image_in_folder(tmp_path)
    with pytest.raises(DataError) as err:
        load_brats_case(tmp_path / BRATS_ID)
    msg = str(err.value)
    assert msg == (
        f"{tmp_path / BRATS_ID / stray.name}: t1 file of case 'BraTS2021_99999' in the "
        f"folder of case '{BRATS_ID}' (expected {BRATS_ID}_t1.nii.gz)"
    )


def test_case_id_check_keeps_accepted_names(tmp_path: Path) -> None:
    """Case-insensitive ids, 2023 naming, and another case's file next to the case's own."""
    make_brats(tmp_path, case=BRATS23_ID, year=2023)
    folder = tmp_path / BRATS_ID
    for role, path in make_brats(tmp_path).items():
        path.rename(folder / path.name.replace("BraTS", "BRATS"))  # BRATS2021_00001_t1.nii.gz
        if role == "t2":
            save(folder / "BraTS2021_99999_t2.nii.gz", ramp(9000))  # the case's own t2 wins
    cases = load_dataset(tmp_path, progress=False)
    assert [c.case_id for c in cases] == [BRATS23_ID, BRATS_ID]
    assert cases[1].paths["t1"].name == "BRATS2021_00001_t1.nii.gz"
    np.testing.assert_array_equal(cases[1].images["t2"], ramp(2000))


# --------------------------------------------------------------------------- skipped folders


def test_too_few_cases_error_names_skipped_folders(tmp_path: Path) -> None:
    make_brats(tmp_path, case="BraTS2021_00001")
    make_brats(tmp_path, case="BraTS2021_00002")
    (tmp_path / "BraTS2021_00003").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, progress=False, min_cases=3)
    assert str(err.value) == (
        f"{tmp_path}: 2 cases found: need at least 3 patients; skipped 1 folder without images: BraTS2021_00003"
    )


def test_no_cases_error_names_skipped_folders(tmp_path: Path) -> None:
    (tmp_path / "BraTS2021_00001").mkdir()
    (tmp_path / "BraTS2021_00002").mkdir()
    (tmp_path / "BraTS2021_00002" / "notes.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path, fmt="brats", progress=False)
    assert str(err.value) == (
        f"{tmp_path}: no brats cases found in the dataset folder; skipped 2 "
        "folders without images: BraTS2021_00001, BraTS2021_00002"
    )


@pytest.mark.parametrize("layout", ["brats-nested", "hecktor-folders", "generic"])
def test_skipped_folders_are_warned_when_enough_cases_remain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, layout: str
) -> None:
    modalities = None
    if layout == "brats-nested":
        top = tmp_path / "BraTS2021_Training_Data"
        make_brats(top)
        (top / "BraTS2021_00003").mkdir()
        save(top / "BraTS2021_00004" / "BraTS2021_00004_brainmask.nii.gz", ramp())
        skipped = "BraTS2021_Training_Data/BraTS2021_00003, BraTS2021_Training_Data/BraTS2021_00004"
    elif layout == "hecktor-folders":
        stray = _other_cases_pet_in_hecktor_folder(tmp_path)
        stray.rename(stray.with_name(f"{HECKTOR_ID}_pt.nii.gz"))
        (tmp_path / "CHUM-003").mkdir()
        save(tmp_path / "CHUM-004" / "CHUM-004_ct_gtvt.nii.gz", hecktor_label(), CT_AFFINE)
        skipped = "CHUM-003, CHUM-004"
    else:
        make_generic(tmp_path)
        (tmp_path / "case02").mkdir()
        save(tmp_path / "case03" / "t1_old.nii.gz", ramp())
        skipped, modalities = "case02, case03", ("t1", "t2")
    with caplog.at_level(logging.WARNING, logger="workbench.data.nifti"):
        (case,) = load_dataset(tmp_path, modalities=modalities, progress=False)
    assert case.label is not None
    assert f"{tmp_path}: skipped 2 folders without images: {skipped}" in caplog.messages


def test_no_skipped_folder_warning_for_a_clean_dataset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_brats(tmp_path / "BraTS2021_Training_Data")
    make_brats(tmp_path / "__MACOSX" / "BraTS2021_Training_Data")  # hidden: not a skipped folder
    with caplog.at_level(logging.WARNING, logger="workbench.data.nifti"):
        load_dataset(tmp_path, progress=False)
    assert not [m for m in caplog.messages if "skipped" in m]
