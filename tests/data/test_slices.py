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
    split = split_patients(ids, 0.1, split_seed=3)
    # 20 patients, defaults test 0.2 / val 0.1: 4 test, 2 val, 14 train, 10% of 14 -> 1 labeled
    assert split.sizes() == {"labeled": 1, "unlabeled": 13, "val": 2, "test": 4}
    sets = [set(v) for v in split.as_dict().values()]
    assert sum(len(s) for s in sets) == 20 and set().union(*sets) == set(ids)  # disjoint, complete
    assert split_patients(ids, 0.1, split_seed=3) == split
    assert split_patients(ids, 0.1, split_seed=4) != split
    assert len(split_patients(ids, 0.01).labeled) == 1  # at least one labeled patient
    full = split_patients(ids, 1.0)
    assert len(full.labeled) == 14 and full.unlabeled == []
    # the test patients of a seed do not depend on the validation or labeled fractions
    assert (
        split_patients(ids, 0.5, 3, val_fraction=0.0).test == split.test == split_patients(ids, 0.1, 3, 0.2, 0.3).test
    )
    assert split_patients(ids, 0.1, 3, val_fraction=0.0).val == []


def test_split_sizes_of_the_builtin_cohorts():
    forty = split_patients([f"p{i:02d}" for i in range(40)], 0.1)
    assert forty.sizes() == {"labeled": 3, "unlabeled": 25, "val": 4, "test": 8}
    six = split_patients([f"p{i}" for i in range(6)], 0.4)
    assert six.sizes() == {"labeled": 2, "unlabeled": 2, "val": 1, "test": 1}


@pytest.mark.parametrize("fraction", [-0.1, 0.0, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ConfigError, match="labeled fraction"):
        split_patients(["a", "b", "c"], fraction)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"val_fraction": -0.1}, "val_fraction=-0.1"),
        ({"val_fraction": 1.0}, "val_fraction=1.0"),
        ({"test_fraction": 0.0}, "test_fraction=0.0"),
        ({"test_fraction": 0.6, "val_fraction": 0.4}, "leave no training patients"),
    ],
)
def test_bad_split_fractions(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        split_patients([f"p{i}" for i in range(10)], 0.5, **kwargs)


def test_too_few_patients_for_the_split_names_the_count():
    with pytest.raises(
        DataError,
        match=r"^2 patients: test_fraction=0.2 \(1 test\) and val_fraction=0.1 \(1 val\) "
        r"leave no training patient",
    ):
        split_patients(["a", "b"], 0.5)


def test_build_splits_and_missing_modality():
    cases = [_case(f"p{i}", seed=i) for i in range(5)]
    splits = build_splits(cases, ["t1", "flair"], 0.5, PreprocessConfig(size=32))
    assert splits.train_labeled.images.shape[1:] == (2, 32, 32)
    assert len(splits.test) == 1 and splits.test[0].images.shape[0] == 6  # test keeps every slice
    assert len(splits.val) == 1 and splits.val[0].images.shape[0] == 6  # so does val
    assert [v.case_id for v in splits.labeled] == splits.labeled_cases
    assert torch.all(splits.train_labeled.labels.flatten(1).amax(1) > 0)
    with pytest.raises(DataError, match="modality 't2' not loaded"):
        build_splits(cases, ["t1", "t2"], 0.5, PreprocessConfig(size=32))


def test_unlabeled_slices_are_chosen_without_labels_by_default():
    cases = [_case(f"p{i}", seed=i) for i in range(8)]
    pre = PreprocessConfig(size=32)
    splits = build_splits(cases, ["t1", "flair"], 0.2, pre)
    paper = build_splits(cases, ["t1", "flair"], 0.2, pre, unlabeled_slices="label")
    assert splits.unlabeled_slices == "body"
    # the same cases with every tumour moved to other slices give the same unlabeled slices
    for case in cases:
        case.label = np.roll(case.label, 2, axis=2)
    moved = build_splits(cases, ["t1", "flair"], 0.2, pre)
    assert moved.split == splits.split
    assert torch.equal(moved.train_unlabeled.images, splits.train_unlabeled.images)
    assert moved.train_unlabeled.slice_index == splits.train_unlabeled.slice_index
    # the paper's filter reads the labels: it keeps the tumour slices only, so it follows them
    moved_paper = build_splits(cases, ["t1", "flair"], 0.2, pre, unlabeled_slices="label")
    assert torch.all(moved_paper.train_unlabeled.labels.flatten(1).amax(1) > 0)
    assert moved_paper.train_unlabeled.slice_index != paper.train_unlabeled.slice_index
    every = build_splits(cases, ["t1", "flair"], 0.2, pre, unlabeled_slices="all")
    assert len(every.train_unlabeled) == 6 * len(splits.unlabeled_cases) >= len(splits.train_unlabeled)
    with pytest.raises(ConfigError, match="unknown unlabeled_slices 'tumour'"):
        build_splits(cases, ["t1", "flair"], 0.2, pre, unlabeled_slices="tumour")


def test_body_rule_keeps_slices_with_a_large_enough_cross_section():
    vol = preprocess_case(_case("a"), ["t1", "flair"], PreprocessConfig(size=32))
    vol.body = torch.tensor([0.0, 0.05, 0.2, 0.4, 0.1, 0.3])
    assert vol.slices_to_keep("body").tolist() == [False, False, True, True, True, True]  # >= 0.25 * 0.4


def test_tumour_only_volume_keeps_the_tumour_slices():
    vol = preprocess_case(_case("a"), ["t1", "flair"], PreprocessConfig(size=32))
    only = vol.tumour_only()
    assert only.images.shape[0] == 2 and bool(only.tumour_slices.all())
    assert only.label.sum() == vol.label.sum()
