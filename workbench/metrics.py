"""Segmentation metrics as defined in the Semi-CML paper (Zhang et al., MedIA).

All functions take one binary mask pair (``pred``, ``target``) of the same shape, given
as numpy arrays (bool or int) or torch tensors; any non-zero value is foreground.
Everything is computed in numpy (float64 for the overlap metrics).

Metrics
    * ``dice``: DSC = 2TP / (FP + 2TP + FN), on one volume of any number of dims.
    * ``sensitivity``: Sens = TP / (TP + FN), on one volume of any number of dims.
    * ``hd95``: symmetric 95th-percentile Hausdorff distance in mm, computed with
      :func:`monai.metrics.compute_hausdorff_distance` (``percentile=95``). As MONAI
      computes it, this is ``max(P95(d(pred->gt)), P95(d(gt->pred)))`` where each
      ``d(A->B)`` is the Euclidean distance (mm, anisotropic spacing) from every surface
      voxel of A to the nearest surface voxel of B, and P95 is the linearly interpolated
      95th percentile (``torch.quantile``). It is *not* the percentile of the pooled
      distances.
    * ``asd``: symmetric average surface distance in mm, computed with
      :func:`monai.metrics.compute_average_surface_distance` (``symmetric=True``): the
      mean of the pooled directed distances ``d(pred->gt) ∪ d(gt->pred)``.
      MONAI's surface voxels of a mask M are ``M & ~binary_erosion(M)`` with scipy's
      default (face-connected "cross") structuring element and zeros outside the array.
    * ``hd95_vox``, ``asd_vox``: the same two distances in voxels of the evaluated grid (unit
      spacing), the unit of the volumetric papers' tables (cross-view mutual learning, UA-MT,
      SS-Net). On an isotropic grid of spacing ``s`` they are the mm values divided by ``s``
      (exactly: Euclidean distances scale with the spacing); on any other grid they are
      computed again with spacing 1. The grid is the one the metrics see: after an in-plane
      resize (``size``) a voxel is a resized one.
    * ``boundary_iou``: Boundary IoU (Cheng et al. 2021) of one 2D slice,
      BIoU = |(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|.

Boundary region (used by Boundary IoU)
    The boundary band of a 2D mask M with width ``d`` (pixels) is ``M`` minus its
    erosion by a ``(2d+1) x (2d+1)`` square (3x3 square erosion iterated ``d`` times,
    as in Cheng et al.'s reference implementation), with pixels outside the image
    counted as background. Equivalently: the pixels ``p`` of M for which some
    background pixel ``q`` (inside or outside the image) has chessboard distance
    ``max_i |p_i - q_i| <= d``. With ``d = 1`` this is the 1-pixel-thick inner contour
    (8-neighbourhood). The paper uses ``d = 4`` for HECKTOR and ``d = 5`` for BraTS.

Empty-mask rule (applied by every function, and so by ``patient_metrics``)
    ============================  =====  ====  ====  ==========  ==========
    case                          DSC    Sens  BIoU  HD95        ASD
    ============================  =====  ====  ====  ==========  ==========
    pred empty, target empty      1      1     1     0           0
    pred non-empty, target empty  0      NaN   0     NaN         NaN
    pred empty, target non-empty  0      0     0     NaN         NaN
    ============================  =====  ====  ====  ==========  ==========

    Sens is undefined (NaN) when TP + FN = 0 unless the prediction is empty too ("no
    positives to miss"). NaN values are never silently dropped: :class:`MetricAccumulator`
    reports the mean/std over the finite values and, separately, ``<metric>_n_nan``.

Per-patient aggregation (``patient_metrics``)
    DSC, Sens, HD95 and ASD are computed on the whole 3D volume. BIoU is the mean of
    ``boundary_iou`` over the axial slices (axis 2) where pred or target is non-empty;
    slices where both are empty are skipped (they would all score 1 and inflate the
    mean). If no slice is non-empty in either mask the patient's BIoU is 1.0,
    consistent with the empty rule.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "EMPTY_MASK_RULE",
    "METRIC_NAMES",
    "MetricAccumulator",
    "asd",
    "boundary_iou",
    "boundary_iou_slices",
    "boundary_region",
    "dice",
    "hd95",
    "patient_metrics",
    "sensitivity",
]

#: The empty-mask rule of the module docstring in one line (for protocol cards).
EMPTY_MASK_RULE = (
    "both empty: DSC/Sens/BIoU 1, HD95/ASD 0; one empty: DSC/BIoU 0, HD95/ASD NaN "
    "(excluded from means, counted as <metric>_n_nan)"
)

#: Metric keys returned by :func:`patient_metrics`, in report order.
METRIC_NAMES: tuple[str, ...] = ("dsc", "sens", "hd95", "asd", "biou", "hd95_vox", "asd_vox")

MaskLike = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------- helpers


def _to_bool(mask: MaskLike | Any) -> np.ndarray:
    """Converts a numpy array / torch tensor / array-like to a numpy bool array (x != 0)."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask) != 0


def _pair(pred: MaskLike, target: MaskLike) -> tuple[np.ndarray, np.ndarray]:
    """Converts a (pred, target) pair to bool arrays and checks that the shapes match."""
    p, t = _to_bool(pred), _to_bool(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}")
    return p, t


def _confusion(p: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """Returns (TP, FP, FN) voxel counts of two bool arrays as floats."""
    tp = float(np.count_nonzero(p & t))
    fp = float(np.count_nonzero(p & ~t))
    fn = float(np.count_nonzero(~p & t))
    return tp, fp, fn


def _empty_rule(p: np.ndarray, t: np.ndarray, both: float, pred_only: float, target_only: float) -> float | None:
    """Value of a metric under the empty-mask rule, or None if both masks are non-empty.

    Args:
        p: bool prediction.
        t: bool target.
        both: value when both are empty.
        pred_only: value when only the prediction is non-empty (target empty).
        target_only: value when only the target is non-empty (prediction empty).
    """
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return both
    if not t_any:
        return pred_only
    if not p_any:
        return target_only
    return None


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    """Validates a per-axis spacing and returns it as a tuple of Python floats."""
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        raise ValueError(f"spacing {sp} has {len(sp)} entries, the mask has {ndim} dims")
    if not all(s > 0 and math.isfinite(s) for s in sp):
        raise ValueError(f"spacing must be positive and finite, got {sp}")
    return sp


@contextmanager
def _quiet_monai() -> Iterator[None]:
    """Hides MONAI 1.6's internal ``always_return_as_numpy`` FutureWarning.

    MONAI passes that deprecated argument to itself. Empty masks never reach MONAI (the
    empty rule is applied first), so its empty-mask warnings cannot occur either.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        yield


def _onehot_fg(mask: np.ndarray) -> np.ndarray:
    """Adds batch and channel axes: (*spatial) bool -> (1, 1, *spatial) float32."""
    return mask[None, None].astype(np.float32)


# --------------------------------------------------------------------------- overlap


def dice(pred: MaskLike, target: MaskLike) -> float:
    """Dice similarity coefficient DSC = 2TP / (FP + 2TP + FN).

    Args:
        pred: binary prediction, any shape.
        target: binary ground truth, same shape.

    Returns:
        DSC in [0, 1]; 1.0 if both masks are empty, 0.0 if exactly one is empty.
    """
    p, t = _pair(pred, target)
    special = _empty_rule(p, t, both=1.0, pred_only=0.0, target_only=0.0)
    if special is not None:
        return special
    tp, fp, fn = _confusion(p, t)
    return 2.0 * tp / (fp + 2.0 * tp + fn)


def sensitivity(pred: MaskLike, target: MaskLike) -> float:
    """Sensitivity (recall) Sens = TP / (TP + FN).

    Args:
        pred: binary prediction, any shape.
        target: binary ground truth, same shape.

    Returns:
        Sens in [0, 1]; 1.0 if both masks are empty, NaN if only the target is empty
        (TP + FN = 0), 0.0 if only the prediction is empty.
    """
    p, t = _pair(pred, target)
    special = _empty_rule(p, t, both=1.0, pred_only=math.nan, target_only=0.0)
    if special is not None:
        return special
    tp, _, fn = _confusion(p, t)
    return tp / (tp + fn)


# --------------------------------------------------------------------------- surface distances


def _surface_distance(pred: MaskLike, target: MaskLike, spacing: Sequence[float], monai_fn: str, **kwargs) -> float:
    """A MONAI surface-distance metric (``monai.metrics.<monai_fn>``) of one foreground
    channel, after the empty-mask rule (both empty: 0; one empty: NaN)."""
    p, t = _pair(pred, target)
    sp = _check_spacing(spacing, p.ndim)
    special = _empty_rule(p, t, both=0.0, pred_only=math.nan, target_only=math.nan)
    if special is not None:
        return special
    import monai.metrics  # heavy import, deferred

    with _quiet_monai():
        out = getattr(monai.metrics, monai_fn)(
            _onehot_fg(p), _onehot_fg(t), include_background=True, spacing=sp, **kwargs
        )
    return float(out.reshape(-1)[0])


def hd95(pred: MaskLike, target: MaskLike, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (MONAI).

    ``max(P95(d(pred->gt)), P95(d(gt->pred)))`` over surface voxels; see the module
    docstring for the surface definition.

    Args:
        pred: binary prediction of shape (X, Y, Z) or (X, Y).
        target: binary ground truth, same shape.
        spacing: voxel size in mm per array axis, e.g. (sx, sy, sz).

    Returns:
        HD95 in mm; 0.0 if both masks are empty, NaN if exactly one is empty.
    """
    return _surface_distance(pred, target, spacing, "compute_hausdorff_distance", percentile=95)


def asd(pred: MaskLike, target: MaskLike, spacing: Sequence[float]) -> float:
    """Symmetric average surface distance in mm (MONAI, ``symmetric=True``).

    Mean of the pooled directed surface distances ``d(pred->gt) ∪ d(gt->pred)``.

    Args:
        pred: binary prediction of shape (X, Y, Z) or (X, Y).
        target: binary ground truth, same shape.
        spacing: voxel size in mm per array axis, e.g. (sx, sy, sz).

    Returns:
        ASD in mm; 0.0 if both masks are empty, NaN if exactly one is empty.
    """
    return _surface_distance(pred, target, spacing, "compute_average_surface_distance", symmetric=True)


# --------------------------------------------------------------------------- boundary IoU


def boundary_region(mask: MaskLike, d: int) -> np.ndarray:
    """Inner boundary band of width ``d`` of a 2D mask (Cheng et al. 2021).

    ``mask & ~erode(mask, (2d+1)x(2d+1) square)`` with background outside the image:
    the mask pixels within chessboard distance ``d`` of a background pixel.

    Args:
        mask: binary mask of shape (H, W).
        d: band width in pixels, >= 1.

    Returns:
        Bool array (H, W).
    """
    m = _to_bool(mask)
    if m.ndim != 2:
        raise ValueError(f"boundary_region expects a 2D mask, got shape {m.shape}")
    if int(d) != d or d < 1:
        raise ValueError(f"boundary width d must be a positive integer, got {d}")
    if not m.any():
        return m.copy()
    square = np.ones((3, 3), dtype=bool)
    eroded = ndimage.binary_erosion(m, structure=square, iterations=int(d), border_value=0)
    return m & ~eroded


def boundary_iou(pred: MaskLike, target: MaskLike, d: int) -> float:
    """Boundary IoU of one 2D slice.

    BIoU = |(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|, with the bands from
    :func:`boundary_region`.

    Args:
        pred: binary prediction of shape (H, W).
        target: binary ground truth of shape (H, W).
        d: band width in pixels (4 for HECKTOR, 5 for BraTS).

    Returns:
        BIoU in [0, 1]; 1.0 if both masks are empty, 0.0 if exactly one is empty.
    """
    p, t = _pair(pred, target)
    if p.ndim != 2:
        raise ValueError(f"boundary_iou expects 2D slices, got shape {p.shape}")
    special = _empty_rule(p, t, both=1.0, pred_only=0.0, target_only=0.0)
    if special is not None:
        return special
    bp, bt = boundary_region(p, d), boundary_region(t, d)
    inter = np.count_nonzero(bp & bt)
    union = np.count_nonzero(bp | bt)  # > 0: a non-empty mask has a non-empty band
    return float(inter) / float(union)


def boundary_iou_slices(pred3d: MaskLike, target3d: MaskLike, d: int, axis: int = 2) -> list[float]:
    """Boundary IoU of every 2D slice of a volume along ``axis``.

    Args:
        pred3d: binary prediction of shape (X, Y, Z).
        target3d: binary ground truth, same shape.
        d: band width in pixels.
        axis: slicing axis (2 = axial for the workbench's RAS volumes).

    Returns:
        One BIoU per slice (length ``shape[axis]``), including slices where both masks
        are empty (which score 1.0 under the empty rule).
    """
    p, t = _pair(pred3d, target3d)
    if p.ndim != 3:
        raise ValueError(f"boundary_iou_slices expects 3D volumes, got shape {p.shape}")
    return [boundary_iou(np.take(p, i, axis=axis), np.take(t, i, axis=axis), d) for i in range(p.shape[axis])]


def _mean_biou_nonempty(p: np.ndarray, t: np.ndarray, d: int, axis: int = 2) -> float:
    """Mean slice BIoU over slices where pred or target is non-empty (1.0 if none)."""
    other = tuple(a for a in range(p.ndim) if a != axis % p.ndim)
    keep = np.flatnonzero(p.any(axis=other) | t.any(axis=other))
    if keep.size == 0:
        return 1.0
    vals = [boundary_iou(np.take(p, i, axis=axis), np.take(t, i, axis=axis), d) for i in keep]
    return float(np.mean(vals))


# --------------------------------------------------------------------------- per patient


def patient_metrics(pred: MaskLike, target: MaskLike, spacing: Sequence[float], d: int) -> dict[str, float]:
    """All paper metrics of one patient's binary 3D volume.

    Args:
        pred: binary prediction of shape (X, Y, Z), axis 2 axial.
        target: binary ground truth, same shape.
        spacing: voxel size in mm per array axis.
        d: Boundary-IoU band width in pixels.

    Returns:
        ``{"dsc", "sens", "hd95", "asd", "biou", "hd95_vox", "asd_vox"}`` -> float (may be
        NaN per the empty rule). ``biou`` is the mean over axial slices where pred or target
        is non-empty; ``*_vox`` are the distances in voxels (module docstring).
    """
    p, t = _pair(pred, target)
    if p.ndim != 3:
        raise ValueError(f"patient_metrics expects 3D volumes, got shape {p.shape}")
    row = {
        "dsc": dice(p, t),
        "sens": sensitivity(p, t),
        "hd95": hd95(p, t, spacing),
        "asd": asd(p, t, spacing),
        "biou": _mean_biou_nonempty(p, t, d, axis=2),
    }
    sizes = _check_spacing(spacing, p.ndim)
    if max(sizes) - min(sizes) <= 1e-9 * max(sizes):  # isotropic: distances scale with the spacing
        row["hd95_vox"], row["asd_vox"] = row["hd95"] / sizes[0], row["asd"] / sizes[0]
    else:
        unit = (1.0,) * p.ndim
        row["hd95_vox"], row["asd_vox"] = hd95(p, t, unit), asd(p, t, unit)
    return row


def _summarize(values: Sequence[float]) -> tuple[float, float, int]:
    """Returns (mean, sample std (ddof 1), number of non-finite) of a list of floats.

    Mean and std are over the finite values only (NaN if there are none; the std is NaN
    for a single value).
    """
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    n_nan = int(arr.size - finite.size)
    if finite.size == 0:
        return math.nan, math.nan, n_nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return float(finite.mean()), std, n_nan


class MetricAccumulator:
    """Collects per-patient metrics and aggregates them per modality.

    Example:
        >>> acc = MetricAccumulator()
        >>> acc.update("case_001", "CT", pred, target, spacing=(1.0, 1.0, 3.0), d=4)
        >>> acc.aggregate()["CT"]["dsc"]
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []

    def update(
        self,
        case_id: str,
        modality: str,
        pred: MaskLike,
        target: MaskLike,
        spacing: Sequence[float],
        d: int,
    ) -> dict[str, Any]:
        """Computes :func:`patient_metrics` for one case and stores it as a row.

        Args:
            case_id: patient identifier.
            modality: modality (or model branch) the prediction comes from.
            pred: binary prediction (X, Y, Z).
            target: binary ground truth (X, Y, Z).
            spacing: voxel size in mm per array axis.
            d: Boundary-IoU band width in pixels.

        Returns:
            The stored row (a copy).
        """
        row: dict[str, Any] = {"case_id": str(case_id), "modality": str(modality)}
        row.update(patient_metrics(pred, target, spacing, d))
        self._rows.append(row)
        return dict(row)

    def rows(self) -> list[dict[str, Any]]:
        """Stored rows (copies), in insertion order.

        Returns:
            List of dicts with keys case_id, modality, dsc, sens, hd95, asd, biou, hd95_vox, asd_vox.
        """
        return [dict(r) for r in self._rows]

    def aggregate(self) -> dict[str, dict[str, float]]:
        """Per-modality summary of the stored rows.

        Returns:
            ``{modality: {metric: mean, metric_std: std, metric_n_nan: count, "n_cases": n}}``
            for each metric in :data:`METRIC_NAMES`. Mean and sample (ddof=1) std
            are over the finite values only; ``<metric>_n_nan`` counts the cases whose
            value is NaN (non-finite), which are excluded from mean and std. Modalities
            appear in first-seen order.
        """
        by_mod: dict[str, list[dict[str, Any]]] = {}
        for r in self._rows:
            by_mod.setdefault(r["modality"], []).append(r)
        out: dict[str, dict[str, float]] = {}
        for mod, rows in by_mod.items():
            summary: dict[str, float] = {"n_cases": len(rows)}
            for name in METRIC_NAMES:
                mean, std, n_nan = _summarize([r[name] for r in rows])
                summary[name] = mean
                summary[f"{name}_std"] = std
                summary[f"{name}_n_nan"] = n_nan
            out[mod] = summary
        return out

    def reset(self) -> None:
        """Drops all stored rows."""
        self._rows.clear()

    def __len__(self) -> int:
        return len(self._rows)
