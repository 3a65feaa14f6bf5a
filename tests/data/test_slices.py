import numpy as np
import pytest
import torch

from workbench.data.case import Case
from workbench.data.slices import (
    PreprocessConfig,
    SliceSet,
    build_splits,
    normalize_case,
    preprocess_case,
    split_patients,
)
from workbench.errors import ConfigError, DataError


def _case(cid: str, modalities=("t1", "flair"), shape=(20, 24, 6), tumour=True, seed=0) -> Case:
    rng = np.random.default_rng(seed)
    images = {}
    brain = np.zeros(shape, bool)
    brain[2:18, 3:21] = True
    for m in modalities:
        if m == "ct":
            x = np.full(shape, -1000.0)
            x[brain] = rng.normal(40, 20, brain.sum())
        elif m == "pet":
            x = rng.random(shape) * 3
        else:
            x = np.where(brain, rng.normal(100, 10, shape), 0.0)
        images[m] = x.astype(np.float32)
    label = np.zeros(shape, np.uint8)
    if tumour:
        label[8:12, 10:14, 2:4] = 2
        label[9:11, 11:13, 2] = 4
    return Case(cid, images, label, (1.0, 1.0, 3.0), np.diag([1.0, 1.0, 3.0, 1.0]))


def test_mr_zscore_inside_brain_zero_outside():
    case = _case("a")
    out = normalize_case(case, ["t1"])
    brain = case.images["t1"] != 0
    assert out["t1"][brain].mean() == pytest.approx(0, abs=1e-5)
    assert out["t1"][brain].std() == pytest.approx(1, abs=1e-4)
    assert (out["t1"][~brain] == 0).all()


def test_ct_clip_and_pet_minmax():
    case = _case("a", modalities=("ct", "pet"))
    case.images["ct"][0, 0, 0] = 3000  # bone-like outlier is clipped at +150
    out = normalize_case(case, ["ct", "pet"])
    assert out["ct"].min() == 0.0 and out["ct"].max() == 1.0
    assert out["ct"][1, 0, 0] == 0.0  # air -1000 -> clipped -150 -> 0
    assert out["pet"].min() == pytest.approx(0) and out["pet"].max() == pytest.approx(1)


def test_preprocess_crop_resize_spacing():
    case = _case("a")
    vol = preprocess_case(case, ["t1", "flair"], PreprocessConfig(crop=None, size=32))
    assert vol.images.shape == (6, 2, 32, 32) and vol.label.shape == (6, 1, 32, 32)
    side = max(16, 18) + 2 * 4  # brain box + 2 * margin
    assert vol.spacing == pytest.approx((3.0, side / 32, side / 32))
    assert set(vol.label.unique().tolist()) == {0.0, 1.0}  # binary whole tumour
    assert vol.tumour_slices.tolist() == [False, False, True, True, False, False]
    centred = preprocess_case(case, ["t1"], PreprocessConfig(crop=32, size=None))
    assert centred.images.shape == (6, 1, 32, 32) and centred.spacing == pytest.approx((3.0, 1.0, 1.0))
    assert centred.label.sum() == (case.label > 0).sum()  # zero padding keeps every tumour voxel


def test_training_slices_drop_background_only_slices():
    vol = preprocess_case(_case("a"), ["t1", "flair"], PreprocessConfig(size=32))
    slices = SliceSet.from_volumes([vol])
    assert len(slices) == 2 and slices.slice_index == [2, 3] and slices.case_ids == ["a", "a"]


def test_split_by_patient_is_deterministic_and_disjoint():
    ids = [f"p{i:02d}" for i in range(20)]
    labeled, unlabeled, test = split_patients(ids, 0.1, split_seed=3)
    assert len(test) == 4 and len(labeled) == 2 and len(unlabeled) == 14  # 80/20, 10% of 16 -> 2
    assert not set(labeled) & set(unlabeled) and not set(test) & set(labeled + unlabeled)
    assert split_patients(ids, 0.1, split_seed=3) == (labeled, unlabeled, test)
    assert split_patients(ids, 0.1, split_seed=4) != (labeled, unlabeled, test)
    assert len(split_patients(ids, 0.01)[0]) == 1  # at least one labeled patient
    full = split_patients(ids, 1.0)
    assert len(full[0]) == 16 and full[1] == []


@pytest.mark.parametrize("fraction", [-0.1, 0.0, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ConfigError, match="labeled fraction"):
        split_patients(["a", "b", "c"], fraction)


def test_build_splits_and_missing_modality():
    cases = [_case(f"p{i}", seed=i) for i in range(5)]
    splits = build_splits(cases, ["t1", "flair"], 0.5, PreprocessConfig(size=32))
    assert splits.train_labeled.images.shape[1:] == (2, 32, 32)
    assert len(splits.test) == 1 and splits.test[0].images.shape[0] == 6  # test keeps every slice
    assert torch.all(splits.train_labeled.labels.flatten(1).amax(1) > 0)
    with pytest.raises(DataError, match="modality 't2' not loaded"):
        build_splits(cases, ["t1", "t2"], 0.5, PreprocessConfig(size=32))


def test_tumour_only_volume_keeps_the_tumour_slices():
    vol = preprocess_case(_case("a"), ["t1", "flair"], PreprocessConfig(size=32))
    only = vol.tumour_only()
    assert only.images.shape[0] == 2 and bool(only.tumour_slices.all())
    assert only.label.sum() == vol.label.sum()
