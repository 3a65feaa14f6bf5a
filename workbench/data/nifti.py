"""Loaders for multi-modal NIfTI datasets (BraTS, HECKTOR, generic case folders).

Every loader returns :class:`~workbench.data.case.Case` objects and turns every bad
input into one :class:`~workbench.errors.DataError` whose single-line message starts
with the offending file (or folder) and says what is wrong. Errors raised by numpy,
nibabel, gzip or the operating system never escape as tracebacks.

Supported layouts (file names are matched case-insensitively; ``.nii`` or ``.nii.gz``):

* ``brats``: ``root/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` (BraTS 2021, labels
  {0,1,2,4}) or ``root/<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (BraTS 2023, labels
  {0,1,2,3}; t1n/t1c/t2w/t2f are mapped to t1/t1ce/t2/flair). Case folders may sit up to
  three levels below ``root`` (e.g. the extracted archive's own top folder); the case id
  is the folder name, and a file named after another case (``<case>/<other>_t1.nii.gz``)
  is an error, not that case's T1. The reference grid is the first requested modality.
* ``hecktor``: the 2022 layout ``root/imagesTr/<case>__CT.nii.gz``,
  ``root/imagesTr/<case>__PT.nii.gz``, ``root/labelsTr/<case>.nii.gz``; the flat layout
  ``root/<case>__CT.nii.gz``, ``<case>__PT.nii.gz``, ``<case>__gtv.nii.gz``; and the older
  per-case folders ``root/<case>/<case>_ct.nii.gz``, ``<case>_pt.nii.gz``,
  ``<case>_ct_gtvt.nii.gz`` (as for BraTS, the files must carry the folder's case id).
  Labels {0,1,2}. Modalities ``ct`` and ``pet``; CT is the reference grid, PET is
  resampled onto it (linear) and the label (nearest).
* ``generic``: ``root/<case>/<modality>.nii.gz`` for each modality given by the caller plus
  ``root/<case>/label.nii.gz`` (or ``seg.nii.gz``). Labels: any integer in 0..255 unless
  ``label_values`` is given. The reference grid is the first modality.

Grid handling: every volume is first reoriented to the closest canonical RAS orientation
(so array axis 2 is axial, inferior to superior). A volume whose shape equals the
reference's and whose affine matches it within :data:`GRID_ATOL` (mm, entry-wise) is used
as is. Any other volume is resampled onto the reference grid through the affines
(voxel-to-voxel matrix ``inv(A_src) @ A_ref``; linear for images, nearest for labels,
zero outside the source field of view). That is expected for HECKTOR PET; for BraTS and
generic modalities (meant to share one grid) it is logged as a warning. It is an error
only when the grids do not overlap physically, or when nothing of the source volume
lands on the reference grid; and for a label, when its grid covers less than
:data:`LABEL_MIN_COVERAGE` of the reference grid's voxels (the rest would come back as
background that nobody labeled).

Unknown or extra files in the dataset folders are ignored, and so are hidden entries
(names starting with ``.``, e.g. macOS ``._*`` files) and ``__MACOSX`` folders. A BraTS
folder holding only its ``<case>_seg`` file is still a case (whose images are reported
missing), not a folder to skip. Folders of a folder-per-case layout that hold no case's
image (empty ones, say) are skipped and named: in a logged warning, or in the error when
fewer cases than needed remain (``min_cases`` of :func:`find_cases` and
:func:`load_dataset`). A label without any foreground voxel is kept (a patient
without tumour is scored by the metrics' empty-mask rule) and logged as a warning, since
it is more often a wrong file.

Arrays come back with positive strides, in C or Fortran memory order (NIfTI data is
stored Fortran-ordered and is not transposed in memory).

Why one long module: every layout's reader shares the same checks (file names, shapes,
grids, label coverage, orientation) and their one-line errors; split, each reader would
import the others' checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from scipy import ndimage
from tqdm import tqdm

from workbench.data.case import Case
from workbench.errors import ConfigError, DataError

__all__ = [
    "FORMATS",
    "BRATS_MODALITIES",
    "HECKTOR_MODALITIES",
    "BRATS_2021_LABELS",
    "BRATS_2023_LABELS",
    "HECKTOR_LABELS",
    "GRID_ATOL",
    "LABEL_MIN_COVERAGE",
    "CaseFiles",
    "detect_format",
    "find_cases",
    "load_case_files",
    "load_brats_case",
    "load_hecktor_case",
    "load_generic_case",
    "load_case",
    "load_dataset",
]

_LOG = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("auto", "brats", "hecktor", "generic")
BRATS_MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
HECKTOR_MODALITIES: tuple[str, ...] = ("ct", "pet")
BRATS_2021_LABELS: frozenset[int] = frozenset({0, 1, 2, 4})
BRATS_2023_LABELS: frozenset[int] = frozenset({0, 1, 2, 3})
HECKTOR_LABELS: frozenset[int] = frozenset({0, 1, 2})
GRID_ATOL: float = 1e-3
"""Largest entry-wise affine difference (mm) for two grids to count as the same grid."""
LABEL_MIN_COVERAGE: float = 0.995
"""Smallest fraction of the reference (image) grid's voxels a label on another grid must
cover. A voxel is covered when its centre falls inside the label grid's physical extent
(voxel edges), i.e. when nearest-neighbour resampling takes its value from the label
rather than filling in background. The 0.5% slack absorbs rounding at the borders (a
grid edge falling on a row of voxel centres: one row of a 240-voxel axis is 0.4%); a
label with fewer slices than the image, or placed over part of it, is refused, since its
missing voxels would become background that nobody labeled."""

_LABEL = "label"
_NII_RE = re.compile(r"^(?P<stem>.+?)\.nii(?:\.gz)?$", re.IGNORECASE)
_BRATS_RE = re.compile(
    r"^(?P<prefix>.+)[_-](?P<tag>t1|t1ce|t2|flair|t1n|t1c|t2w|t2f|seg)\.nii(?:\.gz)?$",
    re.IGNORECASE,
)
# tag -> (role, BraTS release whose naming uses it; None when shared)
_BRATS_TAGS: dict[str, tuple[str, int | None]] = {
    "t1": ("t1", 2021),
    "t1ce": ("t1ce", 2021),
    "t2": ("t2", 2021),
    "flair": ("flair", 2021),
    "t1n": ("t1", 2023),
    "t1c": ("t1ce", 2023),
    "t2w": ("t2", 2023),
    "t2f": ("flair", 2023),
    "seg": (_LABEL, None),
}
_BRATS_EXPECTED = {
    2021: {"t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "flair": "_flair", _LABEL: "_seg"},
    2023: {"t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "flair": "-t2f", _LABEL: "-seg"},
}
_BRATS_MAX_DEPTH = 3
_HECKTOR_FLAT_RE = re.compile(r"^(?P<prefix>.+)__(?P<tag>ct|pt|gtv)\.nii(?:\.gz)?$", re.I)
_HECKTOR_DIR_RE = re.compile(r"^(?P<prefix>.+)_(?P<tag>ct|pt|ct_gtvt)\.nii(?:\.gz)?$", re.I)
_HECKTOR_TAGS = {"ct": "ct", "pt": "pet", "gtv": _LABEL, "ct_gtvt": _LABEL}
_GENERIC_LABEL_STEMS = ("label", "seg")
_READ_ERRORS = (
    ImageFileError,
    HeaderDataError,
    OSError,
    EOFError,
    zlib.error,
    ValueError,
    TypeError,
    MemoryError,
)


# --------------------------------------------------------------------------- public types


@dataclass
class CaseFiles:
    """Where one case's files are (or are expected to be), before anything is read.

    Attributes:
        case_id: case identifier.
        images: modality -> file path, in the requested order. A path that does not exist
            is the expected location of a missing file (reported when loading).
        label: label file path (or its expected location).
        reference: the modality whose grid all volumes are brought onto.
        label_values: allowed raw label values, or None for any integer in 0..255.
        shared_grid: True when the modalities are meant to share one grid (BraTS,
            generic), so that resampling them is worth a warning.
    """

    case_id: str
    images: dict[str, Path]
    label: Path
    reference: str
    label_values: frozenset[int] | None
    shared_grid: bool = True


@dataclass
class _Volume:
    """A validated volume reoriented to RAS."""

    data: np.ndarray
    affine: np.ndarray
    path: Path

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


# --------------------------------------------------------------------------- messages


def _error(path: str | os.PathLike[str], problem: str) -> DataError:
    """Build a one-line DataError ``"<path>: <problem>"``."""
    text = f"{os.fspath(path)}: {problem}"
    return DataError(re.sub(r"\s*[\r\n]+\s*", " ", text).strip())


def _reason(exc: BaseException, path: Path | None = None) -> str:
    """Short one-line description of a low-level exception (the path shortened to its name)."""
    if isinstance(exc, OSError) and exc.strerror:
        detail = exc.strerror
    else:
        detail = str(exc) or type(exc).__name__
    if path is not None:
        detail = detail.replace(os.fspath(path), path.name)
    detail = " ".join(detail.split())
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return f"{type(exc).__name__}: {detail}"


def _short_list(values: Iterable[object], limit: int = 10) -> str:
    """Format at most ``limit`` values as ``[a, b, ...]``."""
    items = list(values)
    shown = ", ".join(str(v) for v in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


# --------------------------------------------------------------------------- file system


def _check_root(root: str | os.PathLike[str]) -> Path:
    """Return ``root`` as a Path after checking it is an accessible directory."""
    path = Path(root).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _error(path, "folder does not exist") from None
    except OSError as exc:
        raise _error(path, f"cannot access folder ({_reason(exc)})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _error(path, "is not a directory (expected a dataset or case folder)")
    return path


def _hidden(name: str) -> bool:
    """Hidden entries and archive debris (``.DS_Store``, ``._x.nii.gz``, ``__MACOSX``)."""
    return name.startswith(".") or name == "__MACOSX"


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    """List a folder's visible entries, sorted by name, as DataError on failure."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not _hidden(e.name)), key=lambda e: e.name)
    except OSError as exc:
        raise _error(folder, f"cannot list folder ({_reason(exc)})") from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _subdirs(folder: Path) -> list[Path]:
    return [Path(e.path) for e in _scan(folder) if _is_dir(e)]


def _names(folder: Path) -> list[str]:
    """Names of the non-directory entries of a folder (broken links included)."""
    return [e.name for e in _scan(folder) if not _is_dir(e)]


def _check_file(path: Path, what: str) -> None:
    """Raise a DataError unless ``path`` is a readable, non-empty regular file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if os.path.lexists(path):
            raise _error(path, f"{what} file is a broken symbolic link") from None
        raise _error(path, f"missing {what} file") from None
    except OSError as exc:
        raise _error(path, f"cannot access {what} file ({_reason(exc)})") from None
    if not os.path.isfile(path):
        raise _error(path, f"{what} path is not a regular file")
    if st.st_size == 0:
        raise _error(path, f"{what} file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise _error(path, f"cannot read {what} file (permission denied)")


# --------------------------------------------------------------------------- reading


class _Collect(logging.Handler):
    """A logging handler that keeps the messages instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _nibabel_messages() -> Iterator[list[str]]:
    """Collect what nibabel's header checks log (it prints them to stderr itself)."""
    logger = nib.imageglobals.logger
    handlers, propagate = list(logger.handlers), logger.propagate
    collect = _Collect()
    for handler in handlers:
        logger.removeHandler(handler)
    logger.addHandler(collect)
    logger.propagate = False
    try:
        yield collect.messages
    finally:
        logger.removeHandler(collect)
        for handler in handlers:
            logger.addHandler(handler)
        logger.propagate = propagate


def _open_nifti(path: Path, what: str) -> nib.Nifti1Image:
    """Open a NIfTI header (data not read yet). A header nibabel rejects is a DataError
    (its log line is dropped: the error says the same); one it repairs is a warning."""
    with _nibabel_messages() as notes:
        try:
            img = nib.load(path, mmap=False)
        except _READ_ERRORS as exc:
            reason = _reason(exc, path)
            raise _error(path, f"{what} file is not a readable NIfTI file ({reason})") from None
    for note in notes:
        _LOG.warning("%s: %s header: %s", path, what, " ".join(note.split()))
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise _error(path, f"{what} file is not a NIfTI file ({type(img).__name__})")
    return img


def _spatial_shape(img: nib.Nifti1Image, path: Path, what: str) -> tuple[int, int, int]:
    """The 3D shape, accepting trailing singleton dimensions (e.g. X, Y, Z, 1)."""
    shape = tuple(int(s) for s in img.shape)
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) != 3:
        raise _error(path, f"{what} is {len(shape)}D with shape {shape}; expected a 3D volume")
    if min(dims) < 1:
        raise _error(path, f"{what} has an empty grid (shape {shape})")
    return dims[0], dims[1], dims[2]


def _check_dtype(img: nib.Nifti1Image, path: Path, what: str) -> None:
    """Reject complex, boolean, RGB and other non-real voxel types."""
    dtype = img.get_data_dtype()
    if dtype.kind not in "iuf":
        raise _error(
            path,
            f"{what} has unsupported voxel data type {dtype} (expected integer or real floating point)",
        )


def _read_data(img: nib.Nifti1Image, path: Path, what: str) -> np.ndarray:
    """Read (and decompress) all voxels; truncated or corrupt files become DataError."""
    try:
        data = np.asarray(img.dataobj)
    except _READ_ERRORS as exc:
        reason = _reason(exc, path)
        raise _error(path, f"{what} data is truncated or corrupt ({reason})") from None
    if data.dtype.kind not in "iuf":
        raise _error(path, f"{what} has unsupported voxel data type {data.dtype}")
    return data


def _check_affine(img: nib.Nifti1Image, path: Path, what: str) -> np.ndarray:
    """The voxel-to-world affine, checked to be finite and invertible."""
    affine = np.asarray(img.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise _error(path, f"{what} has a non-finite affine")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise _error(path, f"{what} has a singular affine (zero voxel size or degenerate axes)")
    if np.isnan(nib.orientations.io_orientation(affine)).any():
        sizes = ", ".join(f"{v:.3g}" for v in _spacing(affine))
        raise _error(
            path, f"{what} has a degenerate affine (voxel sizes {sizes} mm): its axes cannot be matched to the RAS axes"
        )
    return affine


def _to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorient a volume to the closest canonical (RAS) orientation."""
    ornt = nib.orientations.io_orientation(affine)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return data, affine
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    return nib.orientations.apply_orientation(data, ornt), new_affine


def _positive_strides(data: np.ndarray) -> np.ndarray:
    """Copy flipped/transposed views into their own memory (C or Fortran order kept).

    NIfTI data arrives in Fortran order; keeping it avoids a costly transpose, while a
    copy removes the negative strides of reoriented views (which torch cannot wrap).
    """
    if data.flags.c_contiguous or data.flags.f_contiguous:
        return data
    return data.copy(order="K")


def _read_volume(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NIfTI volume with all format checks; returns raw data and affine."""
    _check_file(path, what)
    img = _open_nifti(path, what)
    shape = _spatial_shape(img, path, what)
    _check_dtype(img, path, what)
    affine = _check_affine(img, path, what)
    data = _read_data(img, path, what)
    return data.reshape(shape), affine


def _load_image(path: Path, modality: str) -> _Volume:
    """Read one image modality as a finite, not all-zero float32 RAS volume."""
    what = f"{modality} image"
    raw, affine = _read_volume(path, what)
    with np.errstate(over="ignore", invalid="ignore"):
        data = raw.astype(np.float32)
    n_bad = 0 if raw.dtype.kind in "iu" else data.size - int(np.count_nonzero(np.isfinite(data)))
    if n_bad:
        raise _error(
            path,
            f"{what} contains {n_bad} non-finite voxels (NaN/Inf, or beyond float32 range)",
        )
    if not np.any(data):
        raise _error(path, f"{what} is all zeros (no signal in the {modality} volume)")
    data, affine = _to_ras(data, affine)
    return _Volume(_positive_strides(data), affine, path)


def _label_values_ok(raw: np.ndarray, path: Path) -> np.ndarray:
    """Check a raw label is finite and integer-valued; return it as int64 or uint8."""
    if raw.dtype.kind == "f":
        n_bad = raw.size - int(np.count_nonzero(np.isfinite(raw)))
        if n_bad:
            raise _error(path, f"label contains {n_bad} non-finite voxels (NaN/Inf)")
        rounded = np.rint(raw)
        off = np.abs(raw - rounded) > 1e-3
        if np.any(off):
            examples = np.unique(raw[off])[:5]
            shown = _short_list(f"{v:g}" for v in examples)
            raise _error(path, f"label has {int(off.sum())} non-integer voxels, e.g. {shown}")
        raw = rounded
    return raw


def _load_label(path: Path, allowed: frozenset[int] | None) -> _Volume:
    """Read a label volume as uint8 RAS, checking its values against ``allowed``."""
    raw, affine = _read_volume(path, "label")
    raw = _label_values_ok(raw, path)
    lo, hi = float(raw.min()), float(raw.max())
    if lo < 0 or hi > 255:
        values = np.unique(raw).astype(np.int64)
        bad = [int(v) for v in values if v < 0 or v > 255]
        raise _error(path, f"label has values {_short_list(bad)} outside the range 0..255")
    label = raw.astype(np.uint8, copy=False)
    if allowed is not None:
        ok = np.zeros(256, dtype=bool)
        ok[[v for v in allowed if 0 <= v <= 255]] = True
        outside = ~ok[label]
        if np.any(outside):
            bad = [int(v) for v in np.unique(label[outside])]
            raise _error(
                path,
                f"label has unexpected values {_short_list(bad)} (allowed: {_short_list(sorted(allowed))})",
            )
    if not np.any(label):
        _LOG.warning("%s: label has no foreground voxels (an empty segmentation); the case is kept", path)
    label, affine = _to_ras(label, affine)
    return _Volume(_positive_strides(label), affine, path)


# --------------------------------------------------------------------------- grids


def _same_grid(vol: _Volume, ref: _Volume) -> bool:
    return vol.shape == ref.shape and np.allclose(vol.affine, ref.affine, rtol=0, atol=GRID_ATOL)


def _world_bounds(shape: Sequence[int], affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounding box of a grid (voxel edges, not centres)."""
    corners = np.array(
        [[i, j, k] for i in (-0.5, shape[0] - 0.5) for j in (-0.5, shape[1] - 0.5) for k in (-0.5, shape[2] - 0.5)]
    )
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    return world.min(axis=0), world.max(axis=0)


def _overlaps(vol: _Volume, ref: _Volume) -> bool:
    lo_a, hi_a = _world_bounds(vol.shape, vol.affine)
    lo_b, hi_b = _world_bounds(ref.shape, ref.affine)
    return bool(np.all(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b) > 0))


def _maps_inside(vox: np.ndarray, ref_shape: Sequence[int], src_shape: Sequence[int]) -> bool:
    """Whether every reference voxel centre maps inside the source's voxel-centre box."""
    corners = np.array(
        [[i, j, k] for i in (0, ref_shape[0] - 1) for j in (0, ref_shape[1] - 1) for k in (0, ref_shape[2] - 1)],
        dtype=np.float64,
    )
    src = corners @ vox[:3, :3].T + vox[:3, 3]
    return bool(np.all(src >= -1e-6) and np.all(src <= np.asarray(src_shape) - 1 + 1e-6))


def _coverage(vol: _Volume, ref: _Volume) -> float:
    """Fraction of the reference grid's voxels whose centre lies inside ``vol``'s grid
    (voxel edges, index -0.5 .. n-0.5): those that nearest-neighbour resampling takes from
    ``vol`` rather than filling with 0."""
    vox = np.linalg.solve(vol.affine, ref.affine)  # ref voxel -> vol voxel
    if _maps_inside(vox, ref.shape, vol.shape):
        return 1.0
    matrix, offset = vox[:3, :3], vox[:3, 3]
    if np.allclose(matrix, np.diag(np.diag(matrix)), atol=1e-9):
        matrix = np.diag(matrix)
    ones = np.ones(vol.shape, dtype=np.uint8)
    inside = ndimage.affine_transform(
        ones, matrix, offset=offset, output_shape=ref.shape, order=0, mode="grid-constant", prefilter=False
    )
    return int(np.count_nonzero(inside)) / inside.size


def _resample(
    data: np.ndarray, src_affine: np.ndarray, ref_affine: np.ndarray, ref_shape: tuple[int, ...], order: int
) -> np.ndarray:
    """Resample ``data`` onto a reference grid through the affines.

    Reference voxels whose centre falls inside the physical extent of the source grid
    (voxel edges, i.e. index -0.5 .. n-0.5) get a value: nearest source voxel for
    ``order=0``; linear interpolation with edge values held constant over the outer half
    voxel for ``order=1``. Everything outside the source field of view is 0.
    """
    vox = np.linalg.solve(src_affine, ref_affine)  # ref voxel -> source voxel
    matrix, offset = vox[:3, :3], vox[:3, 3]
    if np.allclose(matrix, np.diag(np.diag(matrix)), atol=1e-9):
        matrix = np.diag(matrix)  # axis-aligned: scipy's faster separable path
    common = {"offset": offset, "output_shape": tuple(ref_shape), "prefilter": False}
    if order == 0:
        return ndimage.affine_transform(data, matrix, order=0, mode="grid-constant", **common)
    out = ndimage.affine_transform(data, matrix, order=order, mode="nearest", **common)
    if not _maps_inside(vox, ref_shape, data.shape):
        ones = np.ones(data.shape, dtype=np.uint8)
        out *= ndimage.affine_transform(ones, matrix, order=0, mode="grid-constant", **common)
    return out


def _onto_reference(
    vol: _Volume, ref: _Volume, what: str, order: int, warn: bool, min_coverage: float | None = None
) -> np.ndarray:
    """Bring a volume onto the reference grid, resampling only when needed.

    With ``min_coverage`` (labels: :data:`LABEL_MIN_COVERAGE`), a volume on another grid
    that covers a smaller fraction of the reference voxels (see :func:`_coverage`) is a
    DataError naming the covered and uncovered percentages.
    """
    if _same_grid(vol, ref):
        return vol.data
    if not _overlaps(vol, ref):
        raise _error(
            vol.path,
            f"{what} grid has no physical overlap with the reference grid of {ref.path.name}; cannot resample it",
        )
    if min_coverage is not None:
        covered = _coverage(vol, ref)
        if covered < min_coverage:
            missing = max(round(100 * (1 - covered), 1), 0.1)
            raise _error(
                vol.path,
                f"{what} covers {100 - missing:.1f}% of the image grid of {ref.path.name} "
                f"({missing:.1f}% of voxels unlabeled); a {what} must cover the whole image "
                f"(at least {100 * min_coverage:g}% of its voxels)",
            )
    if warn:
        _LOG.warning("%s: %s grid differs from %s; resampling it onto that grid", vol.path, what, ref.path.name)
    out = _resample(vol.data, vol.affine, ref.affine, ref.shape, order)
    if not np.any(out) and np.any(vol.data):
        raise _error(
            vol.path,
            f"{what} has no non-zero voxels inside the reference grid of {ref.path.name} "
            "after resampling (grids do not overlap where the data is)",
        )
    return out


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    return float(norms[0]), float(norms[1]), float(norms[2])


# --------------------------------------------------------------------------- loading


def load_case_files(files: CaseFiles, require_label: bool = True) -> Case:
    """Read, validate and align the files of one case.

    Args:
        files: where the case's files are (from :func:`find_cases`).
        require_label: if True a missing label file is an error; if False the case gets
            ``label=None`` when its label file is absent (a present label is still read).

    Returns:
        The loaded :class:`Case` on the reference modality's RAS grid.

    Raises:
        DataError: a file is missing, unreadable, malformed or cannot be aligned, or the
            label's grid covers too little of the image grid (:data:`LABEL_MIN_COVERAGE`).
    """
    vols = {m: _load_image(p, m) for m, p in files.images.items()}
    ref = vols[files.reference]
    images = {
        m: _onto_reference(v, ref, f"{m} image", order=1, warn=files.shared_grid).astype(np.float32, copy=False)
        for m, v in vols.items()
    }
    paths: dict[str, Path] = dict(files.images)
    label = None
    if require_label or os.path.lexists(files.label):
        lab = _load_label(files.label, files.label_values)
        label = _onto_reference(lab, ref, "label", order=0, warn=True, min_coverage=LABEL_MIN_COVERAGE).astype(
            np.uint8, copy=False
        )
        paths[_LABEL] = files.label
    return Case(
        case_id=files.case_id,
        images=images,
        label=label,
        spacing=_spacing(ref.affine),
        affine=ref.affine.copy(),
        paths=paths,
    )


# --------------------------------------------------------------------------- modalities


def _resolve_modalities(fmt: str, modalities: Sequence[str] | str | None) -> tuple[str, ...]:
    """Validate the requested modalities for a (concrete) format."""
    defaults = {"brats": BRATS_MODALITIES, "hecktor": HECKTOR_MODALITIES}
    if modalities is None:
        if fmt == "generic":
            raise ConfigError(
                "modalities: required for the generic layout "
                "(e.g. modalities=('t1', 't2') for <case>/t1.nii.gz, <case>/t2.nii.gz)"
            )
        return defaults[fmt]
    mods = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    if not mods:
        raise ConfigError("modalities: must name at least one modality")
    if len(set(mods)) != len(mods):
        raise ConfigError(f"modalities: duplicated names in {list(mods)}")
    for m in mods:
        if not isinstance(m, str) or not m:
            raise ConfigError(f"modalities: {m!r} is not a modality name")
        if fmt in defaults and m not in defaults[fmt]:
            raise ConfigError(f"modalities: unknown {fmt} modality {m!r}; choices: {', '.join(defaults[fmt])}")
        if fmt == "generic" and (m.lower() in _GENERIC_LABEL_STEMS or re.search(r"[\\/]", m)):
            raise ConfigError(f"modalities: {m!r} cannot be a generic modality file name")
    return mods


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"fmt: unknown dataset format {fmt!r}; choices: {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- discovery


def _pick(candidates: list[tuple[str, Path]], case_id: str, what: str, expected: Path) -> Path:
    """Choose one file for a role from ``(prefix, path)`` candidates; ``expected`` when none.

    Among several, the one prefixed by the case id wins. The chosen file must carry the
    case id (compared case-insensitively): a case folder holding another case's file
    (``BraTS2021_00001/BraTS2021_99999_t1.nii.gz``) is a DataError, not that file used as
    this case's.
    """
    if not candidates:
        return expected
    own = [c for c in candidates if c[0].casefold() == case_id.casefold()]
    if len(candidates) > 1:
        if len(own) != 1:
            a, b = candidates[0][1], candidates[1][1]
            raise _error(a, f"duplicate case id {case_id!r}: two {what} files (also {b.name})")
        candidates = own
    prefix, path = candidates[0]
    if not own:
        raise _error(
            path,
            f"{what} file of case {prefix!r} in the folder of case {case_id!r} (expected {expected.name})",
        )
    return path


def _match_folder(
    folder: Path, names: list[str], pattern: re.Pattern[str], tags: dict[str, str]
) -> dict[str, list[tuple[str, Path]]]:
    """Group a folder's NIfTI files by role: role -> [(prefix, path)]."""
    groups: dict[str, list[tuple[str, Path]]] = {}
    for name in names:
        m = pattern.match(name)
        if m:
            role = tags[m["tag"].lower()]
            groups.setdefault(role, []).append((m["prefix"], folder / name))
    return groups


def _brats_is_case(names: list[str], folder_name: str | None = None) -> bool:
    """Whether a folder's file names make it a BraTS case folder: it holds a BraTS image
    file, or (given ``folder_name``) any BraTS file named after the folder, e.g. only
    ``<case>/<case>_seg.nii.gz`` (a case whose images are missing, reported when loading)."""
    for name in names:
        m = _BRATS_RE.match(name)
        if m and (_BRATS_TAGS[m["tag"].lower()][0] != _LABEL or m["prefix"] == folder_name):
            return True
    return False


def _brats_year(names: list[str]) -> int:
    for name in names:
        m = _BRATS_RE.match(name)
        if m and _BRATS_TAGS[m["tag"].lower()][1] == 2023:
            return 2023
    return 2021


def _brats_case_files(folder: Path, names: list[str], modalities: tuple[str, ...]) -> CaseFiles:
    """Locate one BraTS case's files (2021 or 2023 naming) in its folder."""
    case_id = folder.name
    year = _brats_year(names)
    role_tags = {tag: role for tag, (role, _) in _BRATS_TAGS.items()}
    groups = _match_folder(folder, names, _BRATS_RE, role_tags)
    expected = _BRATS_EXPECTED[year]

    def locate(role: str) -> Path:
        return _pick(groups.get(role, []), case_id, role, folder / f"{case_id}{expected[role]}.nii.gz")

    return CaseFiles(
        case_id=case_id,
        images={m: locate(m) for m in modalities},
        label=locate(_LABEL),
        reference=modalities[0],
        label_values=BRATS_2023_LABELS if year == 2023 else BRATS_2021_LABELS,
    )


def _walk_brats(
    root: Path,
    depth: int,
    seen: set[str],
    out: list[tuple[Path, list[str]]],
    first_only: bool = False,
    skipped: list[Path] | None = None,
) -> None:
    """Collect BraTS case folders (folder, file names) below ``root``.

    A non-case folder below which (within reach) neither a case nor another skipped
    folder turns up, e.g. an empty case folder, is added to ``skipped``.
    """
    if depth > _BRATS_MAX_DEPTH or (first_only and out):
        return
    real = os.path.realpath(root)
    if real in seen:
        return
    seen.add(real)
    for sub in _subdirs(root):
        names = _names(sub)
        if _brats_is_case(names, sub.name):
            out.append((sub, names))
            if first_only:
                return
        elif os.path.realpath(sub) not in seen:  # a link to a folder already walked is no news
            before = (len(out), len(skipped) if skipped is not None else 0)
            _walk_brats(sub, depth + 1, seen, out, first_only, skipped)
            if skipped is not None and (len(out), len(skipped)) == before:
                skipped.append(sub)


def _discover_brats(root: Path, modalities: tuple[str, ...], skipped: list[Path]) -> list[CaseFiles]:
    found: list[tuple[Path, list[str]]] = []
    _walk_brats(root, 1, set(), found, skipped=skipped)
    return [_brats_case_files(folder, names, modalities) for folder, names in found]


def _hecktor_layout(root: Path) -> str | None:
    """Which HECKTOR layout ``root`` uses: "2022", "flat", "folders" or None."""
    images_dir = root / "imagesTr"
    if images_dir.is_dir() and any(_HECKTOR_FLAT_RE.match(n) for n in _names(images_dir)):
        return "2022"
    if any(_HECKTOR_FLAT_RE.match(n) for n in _names(root)):
        return "flat"
    for sub in _subdirs(root):
        if any(_HECKTOR_DIR_RE.match(n) for n in _names(sub)):
            return "folders"
    return None


def _group_flat(folder: Path) -> dict[str, dict[str, list[tuple[str, Path]]]]:
    """``<case>__CT/__PT/__gtv`` files of a folder: case -> role -> [(case, path)]."""
    cases: dict[str, dict[str, list[tuple[str, Path]]]] = {}
    for name in _names(folder):
        m = _HECKTOR_FLAT_RE.match(name)
        if m:
            role = _HECKTOR_TAGS[m["tag"].lower()]
            cases.setdefault(m["prefix"], {}).setdefault(role, []).append((m["prefix"], folder / name))
    return cases


def _labels_2022(labels_dir: Path) -> dict[str, list[tuple[str, Path]]]:
    """``labelsTr/<case>.nii.gz`` files: case -> [(case, path)]."""
    if not labels_dir.is_dir():
        return {}
    out: dict[str, list[tuple[str, Path]]] = {}
    for name in _names(labels_dir):
        m = _NII_RE.match(name)
        if m:
            out.setdefault(m["stem"], []).append((m["stem"], labels_dir / name))
    return out


def _hecktor_files(
    case_id: str, groups: dict[str, list[tuple[str, Path]]], expected: dict[str, Path], modalities: tuple[str, ...]
) -> CaseFiles:
    """Build a HECKTOR CaseFiles from grouped candidates and expected locations."""

    def locate(role: str) -> Path:
        return _pick(groups.get(role, []), case_id, role, expected[role])

    return CaseFiles(
        case_id=case_id,
        images={m: locate(m) for m in modalities},
        label=locate(_LABEL),
        reference="ct" if "ct" in modalities else modalities[0],
        label_values=HECKTOR_LABELS,
        shared_grid=False,
    )


def _discover_hecktor(root: Path, modalities: tuple[str, ...], skipped: list[Path]) -> list[CaseFiles]:
    layout = _hecktor_layout(root)
    if layout == "folders":
        return _discover_hecktor_folders(root, modalities, skipped)
    if layout is None:
        return []
    images_dir = root / "imagesTr" if layout == "2022" else root
    cases = _group_flat(images_dir)
    labels = _labels_2022(root / "labelsTr") if layout == "2022" else {}
    out = []
    for case_id in sorted(cases):
        groups = dict(cases[case_id])
        if layout == "2022":
            groups[_LABEL] = labels.get(case_id, [])
            label_path = root / "labelsTr" / f"{case_id}.nii.gz"
        else:
            label_path = root / f"{case_id}__gtv.nii.gz"
        expected = {
            "ct": images_dir / f"{case_id}__CT.nii.gz",
            "pet": images_dir / f"{case_id}__PT.nii.gz",
            _LABEL: label_path,
        }
        if "ct" in groups or "pet" in groups:
            out.append(_hecktor_files(case_id, groups, expected, modalities))
    return out


def _discover_hecktor_folders(root: Path, modalities: tuple[str, ...], skipped: list[Path]) -> list[CaseFiles]:
    out = []
    for sub in _subdirs(root):
        groups = _match_folder(sub, _names(sub), _HECKTOR_DIR_RE, _HECKTOR_TAGS)
        if "ct" not in groups and "pet" not in groups:
            skipped.append(sub)
            continue
        cid = sub.name
        expected = {
            "ct": sub / f"{cid}_ct.nii.gz",
            "pet": sub / f"{cid}_pt.nii.gz",
            _LABEL: sub / f"{cid}_ct_gtvt.nii.gz",
        }
        out.append(_hecktor_files(cid, groups, expected, modalities))
    return out


def _stem_candidates(folder: Path, names: list[str], stems: Iterable[str]) -> list[Path]:
    wanted = {s.lower() for s in stems}
    out = []
    for name in names:
        m = _NII_RE.match(name)
        if m and m["stem"].lower() in wanted:
            out.append(folder / name)
    return out


def _generic_case_files(
    folder: Path, names: list[str], modalities: tuple[str, ...], label_values: frozenset[int] | None
) -> CaseFiles:
    """Locate a generic case's ``<modality>.nii.gz`` and ``label``/``seg`` files."""
    case_id = folder.name

    def locate(stems: tuple[str, ...], what: str) -> Path:
        found = _stem_candidates(folder, names, stems)
        if len(found) > 1:
            raise _error(found[0], f"two {what} files for case {case_id!r} (also {found[1].name})")
        return found[0] if found else folder / f"{stems[0]}.nii.gz"

    return CaseFiles(
        case_id=case_id,
        images={m: locate((m,), f"{m} image") for m in modalities},
        label=locate(_GENERIC_LABEL_STEMS, "label"),
        reference=modalities[0],
        label_values=label_values,
    )


def _discover_generic(
    root: Path, modalities: tuple[str, ...], label_values: frozenset[int] | None, skipped: list[Path]
) -> list[CaseFiles]:
    out = []
    stems = (*modalities, *_GENERIC_LABEL_STEMS)
    for sub in _subdirs(root):
        names = _names(sub)
        if _stem_candidates(sub, names, stems):
            out.append(_generic_case_files(sub, names, modalities, label_values))
        else:
            skipped.append(sub)
    return out


def _check_unique(cases: list[CaseFiles]) -> None:
    """Duplicated case ids are an error naming both locations."""
    seen: dict[str, CaseFiles] = {}
    for case in cases:
        if case.case_id in seen:
            first = next(iter(seen[case.case_id].images.values())).parent
            here = next(iter(case.images.values())).parent
            raise _error(here, f"duplicate case id {case.case_id!r} (also in {first})")
        seen[case.case_id] = case


# --------------------------------------------------------------------------- public API


def detect_format(root: str | os.PathLike[str]) -> str:
    """Guess the layout of a dataset folder.

    Checked in this order: HECKTOR (``imagesTr/*__CT``, ``*__CT`` files in ``root`` or
    ``<case>/<case>_ct`` folders), BraTS (case folders with ``_t1``/``_flair``/... or
    ``-t1n``/``-t2f``/... files, up to three levels deep), generic (case folders holding
    ``.nii``/``.nii.gz`` files).

    Args:
        root: dataset folder.

    Returns:
        ``"brats"``, ``"hecktor"`` or ``"generic"``.

    Raises:
        DataError: ``root`` is missing or not a folder, or matches no layout.
    """
    path = _check_root(root)
    if _hecktor_layout(path) is not None:
        return "hecktor"
    found: list[tuple[Path, list[str]]] = []
    _walk_brats(path, 1, set(), found, first_only=True)
    if found:
        return "brats"
    for sub in _subdirs(path):
        if any(_NII_RE.match(n) for n in _names(sub)):
            return "generic"
    raise _error(
        path,
        "no cases found: the folder matches no known layout (brats: <case>/<case>_t1.nii.gz; "
        "hecktor: imagesTr/<case>__CT.nii.gz or <case>__CT.nii.gz; "
        "generic: <case>/<modality>.nii.gz)",
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _skipped_note(root: Path, skipped: list[Path]) -> str:
    """``"skipped 2 folders without images: a, b"`` (paths relative to ``root``)."""
    names = []
    for folder in skipped:
        try:
            names.append(folder.relative_to(root).as_posix())
        except ValueError:
            names.append(os.fspath(folder))
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    return f"skipped {_plural(len(names), 'folder')} without images: {shown}"


def _locate(
    path: Path, fmt: str, modalities: Sequence[str] | str | None, label_values: Iterable[int] | None
) -> tuple[list[CaseFiles], list[Path]]:
    """The cases of a checked dataset folder, sorted by case id, and the skipped folders.

    Raises the DataError of :func:`find_cases` for no cases or duplicated case ids (and
    those of the discovery: duplicated files, another case's file in a case folder).
    """
    concrete = detect_format(path) if fmt == "auto" else fmt
    mods = _resolve_modalities(concrete, modalities)
    skipped: list[Path] = []
    if concrete == "brats":
        cases = _discover_brats(path, mods, skipped)
    elif concrete == "hecktor":
        cases = _discover_hecktor(path, mods, skipped)
    else:
        allowed = None if label_values is None else frozenset(int(v) for v in label_values)
        cases = _discover_generic(path, mods, allowed, skipped)
    if not cases:
        note = f"; {_skipped_note(path, skipped)}" if skipped else ""
        raise _error(path, f"no {concrete} cases found in the dataset folder{note}")
    _check_unique(cases)
    return sorted(cases, key=lambda c: c.case_id), skipped


def find_cases(
    root: str | os.PathLike[str],
    fmt: str = "auto",
    modalities: Sequence[str] | str | None = None,
    *,
    label_values: Iterable[int] | None = None,
    min_cases: int = 1,
) -> list[CaseFiles]:
    """Locate the cases of a dataset folder without reading any voxel.

    Folders of a folder-per-case layout that hold no case's image (e.g. an empty case
    folder) are skipped; they are named in a logged warning, or in the error when fewer
    than ``min_cases`` cases remain.

    Args:
        root: dataset folder.
        fmt: one of :data:`FORMATS`; ``"auto"`` uses :func:`detect_format`.
        modalities: modalities to load (default: all four for BraTS, ``("ct", "pet")`` for
            HECKTOR; required for generic).
        label_values: allowed label values for the generic layout (default: any 0..255).
        min_cases: fewest cases the caller can work with (e.g. 3 for a train / val / test
            split by patient).

    Returns:
        The cases sorted by case id. Missing files keep their expected path and are
        reported when loaded.

    Raises:
        ConfigError: unknown ``fmt`` or bad ``modalities``.
        DataError: bad ``root``, no cases or fewer than ``min_cases`` (naming the skipped
            folders), duplicated case ids, duplicated files, or a case folder holding
            another case's file.
    """
    _check_fmt(fmt)
    path = _check_root(root)
    cases, skipped = _locate(path, fmt, modalities, label_values)
    if len(cases) < min_cases:
        note = f"; {_skipped_note(path, skipped)}" if skipped else ""
        raise _error(path, f"{_plural(len(cases), 'case')} found: need at least {min_cases} patients{note}")
    if skipped:
        _LOG.warning("%s: %s", path, _skipped_note(path, skipped))
    return cases


def load_brats_case(
    case_dir: str | os.PathLike[str],
    modalities: Sequence[str] | str | None = None,
    require_label: bool = True,
) -> Case:
    """Load one BraTS case folder (2021 ``_t1`` or 2023 ``-t1n`` naming).

    Args:
        case_dir: the case folder, e.g. ``root/BraTS2021_00000``.
        modalities: subset of :data:`BRATS_MODALITIES` (default: all four, in that order).
        require_label: whether a missing ``seg`` file is an error.

    Returns:
        The loaded case on the first modality's RAS grid.

    Raises:
        ConfigError: bad ``modalities``.
        DataError: any missing, malformed or misaligned file.
    """
    folder = _check_root(case_dir)
    mods = _resolve_modalities("brats", modalities)
    names = _names(folder)
    if not _brats_is_case(names):
        raise _error(folder, "no BraTS image files (<case>_t1.nii.gz or <case>-t1n.nii.gz)")
    return load_case_files(_brats_case_files(folder, names, mods), require_label)


def load_hecktor_case(
    root: str | os.PathLike[str],
    case_id: str,
    modalities: Sequence[str] | str | None = None,
    require_label: bool = True,
) -> Case:
    """Load one HECKTOR case from a dataset folder in any supported HECKTOR layout.

    Args:
        root: dataset folder (holding ``imagesTr``/``labelsTr``, flat ``__CT`` files or
            per-case folders).
        case_id: the case, e.g. ``"CHUM-001"``.
        modalities: subset of :data:`HECKTOR_MODALITIES` (default both).
        require_label: whether a missing label file is an error.

    Returns:
        The loaded case on the CT grid (PET and label resampled onto it).

    Raises:
        ConfigError: bad ``modalities``.
        DataError: unknown case or any missing, malformed or non-overlapping file.
    """
    return load_case(root, case_id, fmt="hecktor", modalities=modalities, require_label=require_label)


def load_generic_case(
    case_dir: str | os.PathLike[str],
    modalities: Sequence[str] | str,
    require_label: bool = True,
    *,
    label_values: Iterable[int] | None = None,
) -> Case:
    """Load one generic case folder ``<case>/<modality>.nii.gz`` + ``label``/``seg``.

    Args:
        case_dir: the case folder.
        modalities: file stems of the modalities; the first one is the reference grid.
        require_label: whether a missing label file is an error.
        label_values: allowed label values (default: any integer 0..255).

    Returns:
        The loaded case on the first modality's RAS grid.

    Raises:
        ConfigError: bad ``modalities``.
        DataError: any missing, malformed or misaligned file.
    """
    folder = _check_root(case_dir)
    mods = _resolve_modalities("generic", modalities)
    allowed = None if label_values is None else frozenset(int(v) for v in label_values)
    files = _generic_case_files(folder, _names(folder), mods, allowed)
    return load_case_files(files, require_label)


def load_case(
    root: str | os.PathLike[str],
    case_id: str,
    fmt: str = "auto",
    modalities: Sequence[str] | str | None = None,
    require_label: bool = True,
    *,
    label_values: Iterable[int] | None = None,
) -> Case:
    """Load one case of a dataset folder by id (any format).

    Args:
        root: dataset folder.
        case_id: the case to load.
        fmt: one of :data:`FORMATS`.
        modalities: see :func:`find_cases`.
        require_label: whether a missing label file is an error.
        label_values: allowed label values for the generic layout.

    Returns:
        The loaded case.

    Raises:
        ConfigError: unknown ``fmt`` or bad ``modalities``.
        DataError: unknown case id or any bad file of that case.
    """
    _check_fmt(fmt)
    cases, _ = _locate(_check_root(root), fmt, modalities, label_values)
    for files in cases:
        if files.case_id == case_id:
            return load_case_files(files, require_label)
    ids = _short_list(c.case_id for c in cases)
    raise _error(root, f"no case {case_id!r} in the dataset (found {len(cases)}: {ids})")


def _precheck(cases: list[CaseFiles], require_label: bool) -> None:
    """Fail fast on missing/empty/inaccessible files before reading any voxel."""
    for files in cases:
        for modality, path in files.images.items():
            _check_file(path, f"{modality} image")
        if require_label or os.path.lexists(files.label):
            _check_file(files.label, "label")


def load_dataset(
    root: str | os.PathLike[str],
    fmt: str = "auto",
    modalities: Sequence[str] | str | None = None,
    require_label: bool = True,
    progress: bool = True,
    *,
    label_values: Iterable[int] | None = None,
    min_cases: int = 1,
) -> list[Case]:
    """Load every case of a dataset folder.

    Folders holding no case's image (e.g. an empty case folder) are skipped and named: in
    a logged warning, or in the error when fewer than ``min_cases`` cases remain.

    Args:
        root: dataset folder.
        fmt: ``"auto"`` (detect from the layout), ``"brats"``, ``"hecktor"`` or
            ``"generic"``.
        modalities: modalities to load (default: all four for BraTS, ``("ct", "pet")`` for
            HECKTOR; required for generic).
        require_label: whether a case without a label file is an error (if False such
            cases get ``label=None``).
        progress: show a tqdm progress bar.
        label_values: allowed label values for the generic layout (default: any 0..255).
        min_cases: fewest cases the caller can work with (e.g. 3 for a train / val / test
            split by patient); fewer is a DataError naming the skipped folders.

    Returns:
        The loaded cases, sorted by case id.

    Raises:
        ConfigError: unknown ``fmt`` or bad ``modalities``.
        DataError: bad ``root``, no cases or fewer than ``min_cases``, duplicated case
            ids, or any bad file (the message is one line naming the file and the problem).
    """
    cases = find_cases(root, fmt, modalities, label_values=label_values, min_cases=min_cases)
    _precheck(cases, require_label)
    out = []
    with tqdm(cases, desc="loading cases", unit="case", disable=not progress) as bar:
        for files in bar:
            out.append(load_case_files(files, require_label))
    return out
