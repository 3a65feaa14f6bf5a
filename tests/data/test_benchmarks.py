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
