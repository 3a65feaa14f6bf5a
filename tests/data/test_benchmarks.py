import h5py
import numpy as np
import pytest

from workbench.data.benchmarks import (
    MODALITY,
    detect_benchmark,
    find_benchmark_cases,
    load_benchmark_case,
    shipped_split,
)
from workbench.errors import ConfigError, DataError


def _write(path, image=None, label=None, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        if image is not False:
            f["image"] = rng.normal(size=(8, 6, 4)).astype(np.float32) if image is None else image
        if label is not False:
            f["label"] = (rng.random((8, 6, 4)) > 0.7).astype(np.uint8) if label is None else label
        for key, value in extra.items():
            f[key] = value
    return path


def test_la_layout_one_folder_down(tmp_path):
    root = tmp_path / "LA"
    for case in ("CASEB", "CASEA"):
        _write(root / "2018LA_Seg_Training Set" / case / "mri_norm2.h5")
    assert detect_benchmark(root) == "la"
    cases = find_benchmark_cases(root, "la")
    assert list(cases) == ["CASEA", "CASEB"]
    case = load_benchmark_case(cases["CASEA"], "la")
    assert case.case_id == "CASEA" and list(case.images) == ["mri"] and case.images["mri"].dtype == np.float32
    assert case.label.dtype == np.uint8 and case.shape == (8, 6, 4) and case.spacing == (0.625, 0.625, 0.625)


def test_brats2019_h5_layout(tmp_path):
    root = tmp_path / "BraTS2019"
    label = np.zeros((8, 6, 4), dtype=np.uint8)
    label[2:4, 2:4, 1:3] = 2
    _write(root / "data" / "BraTS19_X_1.h5", label=label)
    assert detect_benchmark(root) == "brats2019-h5"
    case = load_benchmark_case(find_benchmark_cases(root, "brats2019-h5")["BraTS19_X_1"], "brats2019-h5")
    assert list(case.images) == [MODALITY["brats2019-h5"]] == ["flair"] and case.label.max() == 2


def test_nothing_to_detect(tmp_path):
    assert detect_benchmark(tmp_path) is None and detect_benchmark(tmp_path / "missing") is None
    with pytest.raises(DataError, match="no la cases found"):
        find_benchmark_cases(tmp_path, "la")
    with pytest.raises(ConfigError, match="unknown benchmark layout 'acdc'"):
        find_benchmark_cases(tmp_path, "acdc")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"label": False}, "no 'label' dataset (found: image)"),
        ({"image": np.zeros((8, 6), np.float32)}, "'image' must be a 3D array"),
        ({"label": np.zeros((8, 6, 5), np.uint8)}, "image shape (8, 6, 4) and label shape (8, 6, 5) differ"),
        ({"label": np.full((8, 6, 4), 2, np.uint8)}, "label values [2] are not la labels"),
        ({"label": np.full((8, 6, 4), 0.5, np.float32)}, "non-integer values"),
        ({"image": np.full((8, 6, 4), np.nan, np.float32)}, "non-finite"),
    ],
)
def test_bad_files_are_one_line(tmp_path, kwargs, words):
    file = _write(tmp_path / "C1" / "mri_norm2.h5", **kwargs)
    with pytest.raises(DataError) as err:
        load_benchmark_case(file, "la")
    message = str(err.value)
    assert message.startswith(str(file)) and words in message and "\n" not in message


def test_not_an_h5_file_is_one_line(tmp_path):
    file = tmp_path / "C1" / "mri_norm2.h5"
    file.parent.mkdir()
    file.write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable h5 file"):
        load_benchmark_case(file, "la")
    with pytest.raises(DataError, match="file does not exist"):
        load_benchmark_case(tmp_path / "nope.h5", "la")


def test_shipped_splits_have_the_published_sizes_and_are_disjoint():
    la = shipped_split("la")
    assert {k: len(v) for k, v in la.items()} == {"train": 80, "test": 20}
    brats = shipped_split("brats2019-h5")
    assert {k: len(v) for k, v in brats.items()} == {"train": 250, "val": 25, "test": 60}
    for split in (la, brats):
        ids = [i for part in split.values() for i in part]
        assert len(ids) == len(set(ids))  # no case in two parts, none twice
    assert la["test"][0] == "UPT6DX9IQY9JAZ7HJKA7" and brats["val"][0] == "BraTS19_CBICA_AAP_1"


def _la_folder(root, case_ids, shape=(16, 16, 4)):
    rng = np.random.default_rng(1)
    for case in case_ids:
        label = np.zeros(shape, dtype=np.uint8)
        label[5:11, 5:11, 1:3] = 1
        image = (rng.normal(size=shape) + 2.0 * label).astype(np.float32)
        _write(root / case / "mri_norm2.h5", image=image, label=label)
    return root


def test_la_folder_trains_on_the_published_split(tmp_path):
    from tests.conftest import tiny_config
    from workbench.data.slices import load_splits

    lists = shipped_split("la")
    root = _la_folder(tmp_path / "LA", lists["train"] + lists["test"] + ["EXTRA_CASE"])
    config = tiny_config(root, labeled=0.1, val_fraction=0.1, size=None, crop=16)
    splits, fmt = load_splits(config, progress=False)
    assert fmt == "la" and splits.modalities == ["mri"]
    split = splits.split
    # the papers' labeled cases: the first 8 of UA-MT's train.list; validation: its last 8
    assert split.labeled == sorted(lists["train"][:8]) and split.val == sorted(lists["train"][-8:])
    assert split.test == sorted(lists["test"]) and len(split.unlabeled) == 64
    assert "EXTRA_CASE" not in split.train + split.val + split.test
    seeded, _ = load_splits(tiny_config(root, labeled=0.1, size=None, crop=16, split="seeded"), progress=False)
    assert seeded.split.test != split.test and len(seeded.split.test) == round(0.2 * 101)


def test_shipped_split_names_the_missing_cases_and_other_mistakes(tmp_path):
    from tests.conftest import tiny_config
    from workbench.data.slices import load_splits, shipped_split_patients

    root = _la_folder(tmp_path / "LA", ["CASEA", "CASEB", "CASEC", "CASED", "CASEE"])
    with pytest.raises(DataError, match=r"lists 100 cases, 100 of them are not in the folder.*split='seeded'"):
        load_splits(tiny_config(root, size=None, crop=16), progress=False)
    splits, _ = load_splits(tiny_config(root, size=None, crop=16, split="seeded"), progress=False)
    assert len(splits.split.test) == 1
    with pytest.raises(ConfigError, match="holds one modality, 'mri'; got --modalities t1"):
        load_splits(tiny_config(root, modalities=["t1"], split="seeded"), progress=False)
    brats = shipped_split("brats2019-h5")
    split = shipped_split_patients("brats2019-h5", [c for part in brats.values() for c in part], 0.2, 0.1)
    assert split.labeled == sorted(brats["train"][:50]) and split.val == sorted(brats["val"])
    assert len(split.unlabeled) == 200 and split.test == sorted(brats["test"])


def test_shipped_split_only_for_benchmark_layouts(brats_dir):
    from tests.conftest import tiny_config
    from workbench.data.slices import load_splits

    with pytest.raises(ConfigError, match="a brats folder has no published split"):
        load_splits(tiny_config(brats_dir, split="shipped"), progress=False)
    with pytest.raises(ConfigError, match="unknown split 'paper'"):
        tiny_config(brats_dir, split="paper").validate()


def test_a_3d_run_on_an_la_folder(tmp_path):
    from tests.conftest import tiny_config
    from workbench.train import Trainer

    root = _la_folder(tmp_path / "LA", [f"CASE{i}" for i in range(6)], shape=(32, 32, 16))
    config = tiny_config(
        root, split="seeded", size=None, crop=32, epochs=1, spatial_dims=3, patch=[16, 16, 16], batch_size=2
    )
    trainer = Trainer(config, tmp_path / "run", quiet=True)
    result = trainer.fit()
    trainer.close()
    rows = result["per_patient"]
    assert {row["modality"] for row in rows} == {"mri"}
    assert {row["case_id"] for row in rows} == set(trainer.splits.split.test)
