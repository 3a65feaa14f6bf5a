"""The h5 benchmark layouts of the UA-MT / SSL4MIS line and their published splits.

The volumetric papers (cross-view mutual learning, and the UA-MT, MT, CPS rows they compare)
report numbers on preprocessed h5 copies of two datasets, split by published lists; the
numbers depend on those lists, so they ship with the workbench (``workbench/data/splits``):

* ``la`` (left atrium, 2018 Atrial Segmentation Challenge, as UA-MT prepared it):
  ``root/<case>/mri_norm2.h5`` (case folders may sit one level down, e.g. in
  ``2018LA_Seg_Training Set/``), each with datasets ``image`` (float, normalised) and
  ``label`` ({0, 1}), shape (X, Y, Z). Split: UA-MT's ``train.list`` (80 cases) and
  ``test.list`` (20), as ``la_train.list`` / ``la_test.list``. The h5 files carry no
  spacing; LA's is 0.625 mm isotropic (:data:`SPACING`).
* ``brats2019-h5`` (BraTS 2019, as SSL4MIS prepared it: FLAIR only, whole tumour):
  ``root/data/<case>.h5`` (or ``root/<case>.h5``) with ``image`` and ``label``; labels are
  binarised as ``label > 0``. Split: SSL4MIS's ``train.txt`` / ``val.txt`` / ``test.txt``
  (250 / 25 / 60), as ``brats2019_{train,val,test}.txt``; 1 mm isotropic.

Every reader turns a bad file into one :class:`~workbench.errors.DataError` naming the file
and what is wrong (not an h5 file, a missing ``image`` / ``label`` dataset, not 3D, shapes
that differ, label values outside the layout's); h5py's own exceptions never escape. The
cases come back as :class:`~workbench.data.case.Case` with the one modality the layout
holds (``mri`` for LA, ``flair`` for BraTS 2019) and an identity-scaled affine.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from workbench.data.case import Case
from workbench.errors import ConfigError, DataError

__all__ = [
    "BENCHMARKS",
    "MODALITY",
    "SPACING",
    "SPLIT_FILES",
    "detect_benchmark",
    "find_benchmark_cases",
    "load_benchmark_case",
    "load_benchmark_dataset",
    "shipped_split",
]

#: the h5 layouts read here
BENCHMARKS = ("la", "brats2019-h5")
#: the one modality each layout holds
MODALITY = {"la": "mri", "brats2019-h5": "flair"}
#: voxel size (mm) of each layout (its h5 files carry none)
SPACING = {"la": (0.625, 0.625, 0.625), "brats2019-h5": (1.0, 1.0, 1.0)}
#: the published split lists: layout -> part -> file in workbench/data/splits
SPLIT_FILES = {
    "la": {"train": "la_train.list", "test": "la_test.list"},
    "brats2019-h5": {"train": "brats2019_train.txt", "val": "brats2019_val.txt", "test": "brats2019_test.txt"},
}
#: the label values each layout may hold
LABEL_VALUES = {"la": frozenset({0, 1}), "brats2019-h5": frozenset({0, 1, 2, 3, 4})}

LA_FILE = "mri_norm2.h5"


def _check_layout(fmt: str) -> None:
    if fmt not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark layout {fmt!r}; choose one of: {', '.join(BENCHMARKS)}")


def shipped_split(fmt: str) -> dict[str, list[str]]:
    """The published split of a layout: part (``train``, ``val``, ``test``) -> case ids, in
    the files' order."""
    _check_layout(fmt)
    folder = resources.files("workbench.data") / "splits"
    split = {}
    for part, name in SPLIT_FILES[fmt].items():
        text = (folder / name).read_text(encoding="utf-8")
        split[part] = [line.strip() for line in text.splitlines() if line.strip()]
    return split


def _la_files(root: Path) -> list[Path]:
    """``<case>/mri_norm2.h5`` in ``root`` or one folder below it."""
    found = sorted(root.glob(f"*/{LA_FILE}"))
    return found or sorted(root.glob(f"*/*/{LA_FILE}"))


def _brats_files(root: Path) -> list[Path]:
    """``data/<case>.h5`` or ``<case>.h5``."""
    return sorted((root / "data").glob("*.h5")) or sorted(root.glob("*.h5"))


def detect_benchmark(root: str | os.PathLike[str]) -> str | None:
    """``la``, ``brats2019-h5`` or None when ``root`` holds neither layout."""
    path = Path(root)
    if not path.is_dir():
        return None
    if _la_files(path):
        return "la"
    if _brats_files(path):
        return "brats2019-h5"
    return None


def find_benchmark_cases(root: str | os.PathLike[str], fmt: str) -> dict[str, Path]:
    """Case id -> h5 file of every case of a layout in ``root`` (sorted by case id)."""
    _check_layout(fmt)
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"{path}: dataset folder does not exist")
    files = _la_files(path) if fmt == "la" else _brats_files(path)
    if not files:
        expected = f"<case>/{LA_FILE}" if fmt == "la" else "data/<case>.h5"
        raise DataError(f"{path}: no {fmt} cases found (expected {expected})")
    cases: dict[str, Path] = {}
    for file in files:
        case_id = file.parent.name if fmt == "la" else file.stem
        if case_id in cases:
            raise DataError(f"{file}: duplicate case id {case_id!r} (also in {cases[case_id]})")
        cases[case_id] = file
    return dict(sorted(cases.items()))


def _dataset(handle, name: str, file: Path) -> np.ndarray:
    if name not in handle:
        raise DataError(f"{file}: no {name!r} dataset (found: {', '.join(sorted(handle)) or 'none'})")
    data = handle[name]
    if not hasattr(data, "shape") or len(data.shape) != 3:
        raise DataError(f"{file}: {name!r} must be a 3D array, got shape {getattr(data, 'shape', None)}")
    return np.asarray(data[()])


def load_benchmark_case(file: str | os.PathLike[str], fmt: str, case_id: str | None = None) -> Case:
    """One case of a layout: its image as the layout's modality and its label."""
    import h5py

    _check_layout(fmt)
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: file does not exist")
    try:
        with h5py.File(file, "r") as handle:
            image = _dataset(handle, "image", file)
            label = _dataset(handle, "label", file)
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{file}: not a readable h5 file ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if image.shape != label.shape:
        raise DataError(f"{file}: image shape {image.shape} and label shape {label.shape} differ")
    if not np.issubdtype(image.dtype, np.number) or not np.isfinite(image).all():
        raise DataError(f"{file}: the image holds non-numeric or non-finite values")
    if not np.array_equal(label, np.round(label)):
        raise DataError(f"{file}: the label holds non-integer values")
    values = {int(v) for v in np.unique(label)}
    if not values <= LABEL_VALUES[fmt]:
        bad = sorted(values - LABEL_VALUES[fmt])
        raise DataError(f"{file}: label values {bad} are not {fmt} labels ({sorted(LABEL_VALUES[fmt])})")
    spacing = SPACING[fmt]
    return Case(
        case_id=case_id or (file.parent.name if fmt == "la" else file.stem),
        images={MODALITY[fmt]: image.astype(np.float32)},
        label=label.astype(np.uint8),
        spacing=spacing,
        affine=np.diag([*spacing, 1.0]),
        paths={MODALITY[fmt]: file, "label": file},
    )


def load_benchmark_dataset(root: str | os.PathLike[str], fmt: str, progress: bool = True) -> list[Case]:
    """Every case of a layout in ``root``, sorted by case id, with a progress bar."""
    from tqdm import tqdm

    files = find_benchmark_cases(root, fmt)
    return [
        load_benchmark_case(file, fmt, case_id)
        for case_id, file in tqdm(files.items(), desc=f"loading {fmt} cases", unit="case", disable=not progress)
    ]
