"""Tests for workbench.metrics: hand-computed cases, brute-force oracles, empty rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from workbench.metrics import (
    METRIC_NAMES,
    MetricAccumulator,
    asd,
    boundary_iou,
    boundary_iou_slices,
    boundary_region,
    dice,
    hd95,
    patient_metrics,
    sensitivity,
)

# --------------------------------------------------------------------------- oracles


def _surface_bruteforce(mask: np.ndarray) -> np.ndarray:
    """Surface voxels as MONAI defines them (mask XOR scipy binary_erosion with the
    default face-connected cross, zeros outside the array): a foreground voxel is on the
    surface iff one of its 2*ndim face neighbours is background or outside the array."""
    surf = np.zeros_like(mask, dtype=bool)
    for idx in zip(*np.nonzero(mask)):
        for ax in range(mask.ndim):
            for step in (-1, 1):
                nb = list(idx)
                nb[ax] += step
                if not 0 <= nb[ax] < mask.shape[ax] or not mask[tuple(nb)]:
                    surf[idx] = True
    return surf


def _directed(a_surf: np.ndarray, b_surf: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """For every surface voxel of A, the Euclidean distance (mm) to the nearest one of B."""
    sp = np.asarray(spacing, dtype=np.float64)
    a = np.argwhere(a_surf) * sp
    b = np.argwhere(b_surf) * sp
    pair = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return pair.min(axis=1)


def _hd95_asd_oracle(pred: np.ndarray, target: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, float]:
    """HD95 = max of the two directed 95th percentiles (linear interpolation, as
    monai's torch.quantile); ASD = mean of the pooled directed distances."""
    sp, st = _surface_bruteforce(pred), _surface_bruteforce(target)
    d_pt, d_tp = _directed(sp, st, spacing), _directed(st, sp, spacing)
    hd = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    return float(hd), float(np.concatenate([d_pt, d_tp]).mean())


def _band_bruteforce(mask: np.ndarray, d: int) -> np.ndarray:
    """Pixels of mask whose chessboard distance to the nearest contour (= background
    pixel, inside or outside the image) is <= d, by looping over all pixels."""
    h, w = mask.shape
    pad = d + 1
    padded = np.zeros((h + 2 * pad, w + 2 * pad), dtype=bool)
    padded[pad:-pad, pad:-pad] = mask
    bg = np.argwhere(~padded) - pad  # background coordinates in image frame
    band = np.zeros_like(mask, dtype=bool)
    for i in range(h):
        for j in range(w):
            if mask[i, j]:
                dist = np.abs(bg - np.array([i, j])).max(axis=1).min()
                band[i, j] = dist <= d
    return band


def _biou_oracle(pred: np.ndarray, target: np.ndarray, d: int) -> float:
    bp, bt = _band_bruteforce(pred, d), _band_bruteforce(target, d)
    return (bp & bt).sum() / (bp | bt).sum()


def _blob(rng: np.random.Generator, shape: tuple[int, ...], p: float = 0.5) -> np.ndarray:
    """A random lumpy mask: thresholded box-smoothed noise (non-empty)."""
    from scipy import ndimage

    noise = ndimage.uniform_filter(rng.random(shape), size=3)
    m = noise > np.quantile(noise, 1 - p)
    assert m.any()
    return m


# --------------------------------------------------------------------------- DSC / Sens


def test_dice_sens_2x2_hand():
    pred = np.array([[1, 1], [0, 0]])
    target = np.array([[1, 0], [1, 0]])
    # TP = (0,0); FP = (0,1); FN = (1,0)  -> TP=1, FP=1, FN=1
    assert dice(pred, target) == pytest.approx(2 * 1 / (1 + 2 * 1 + 1))  # 0.5
    assert sensitivity(pred, target) == pytest.approx(1 / (1 + 1))  # 0.5


def test_dice_sens_4x4_hand():
    pred = np.zeros((4, 4), dtype=bool)
    pred[0:2, 0:3] = True  # 6 px
    target = np.zeros((4, 4), dtype=bool)
    target[1:3, 0:2] = True  # 4 px
    # TP = row 1, cols 0-1 -> 2; FP = 6 - 2 = 4; FN = 4 - 2 = 2
    assert dice(pred, target) == pytest.approx(2 * 2 / (4 + 2 * 2 + 2))  # 0.4
    assert sensitivity(pred, target) == pytest.approx(2 / (2 + 2))  # 0.5
    assert dice(pred, pred) == 1.0 and sensitivity(pred, pred) == 1.0


def test_dice_any_dims_and_nonbinary_ints():
    rng = np.random.default_rng(0)
    a = rng.random((3, 4, 5, 2)) > 0.5
    b = rng.random((3, 4, 5, 2)) > 0.5
    tp, fp, fn = (a & b).sum(), (a & ~b).sum(), (~a & b).sum()
    assert dice(a, b) == pytest.approx(2 * tp / (fp + 2 * tp + fn))
    assert sensitivity(a, b) == pytest.approx(tp / (tp + fn))
    # non-zero ints count as foreground
    assert dice(a.astype(np.int64) * 7, b.astype(np.uint8)) == pytest.approx(dice(a, b))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


# --------------------------------------------------------------------------- empty rule

EMPTY = np.zeros((6, 6, 4), dtype=bool)
FULLISH = np.zeros((6, 6, 4), dtype=bool)
FULLISH[1:4, 2:5, 1:3] = True


@pytest.mark.parametrize(
    "pred,target,expected",
    [
        (EMPTY, EMPTY, dict(dsc=1.0, sens=1.0, hd95=0.0, asd=0.0, biou=1.0)),
        (FULLISH, EMPTY, dict(dsc=0.0, sens=math.nan, hd95=math.nan, asd=math.nan, biou=0.0)),
        (EMPTY, FULLISH, dict(dsc=0.0, sens=0.0, hd95=math.nan, asd=math.nan, biou=0.0)),
    ],
    ids=["both_empty", "target_empty", "pred_empty"],
)
def test_empty_rule(pred, target, expected):
    sp = (1.0, 1.0, 3.0)
    got = {
        "dsc": dice(pred, target),
        "sens": sensitivity(pred, target),
        "hd95": hd95(pred, target, sp),
        "asd": asd(pred, target, sp),
        "biou": boundary_iou(pred[:, :, 1], target[:, :, 1], d=1),
    }
    pm = patient_metrics(pred, target, sp, d=1)
    for k, v in expected.items():
        for value in (got[k], pm[k]):
            if math.isnan(v):
                assert math.isnan(value), k
            else:
                assert value == v, k
    # 2D distances follow the same rule
    h2 = hd95(pred[:, :, 1], target[:, :, 1], (1.0, 1.0))
    assert math.isnan(h2) if math.isnan(expected["hd95"]) else h2 == expected["hd95"]


# --------------------------------------------------------------------------- HD95 / ASD


def test_hd95_asd_two_voxels_hand():
    pred = np.zeros((3, 3, 4), dtype=bool)
    target = np.zeros((3, 3, 4), dtype=bool)
    pred[1, 1, 0] = True
    target[1, 1, 2] = True
    # single surface voxels 2 slices apart along z with 3 mm slices -> 6 mm both ways
    assert hd95(pred, target, (1.0, 1.0, 3.0)) == pytest.approx(6.0)
    assert asd(pred, target, (1.0, 1.0, 3.0)) == pytest.approx(6.0)
    # and along x with 0.5 mm pixels -> 0.5 mm
    target2 = np.zeros_like(target)
    target2[2, 1, 0] = True
    assert hd95(pred, target2, (0.5, 1.0, 3.0)) == pytest.approx(0.5)


def test_hd95_asd_identical_is_zero():
    rng = np.random.default_rng(1)
    m = _blob(rng, (7, 6, 5))
    assert hd95(m, m, (1.0, 1.0, 3.0)) == 0.0
    assert asd(m, m, (1.0, 1.0, 3.0)) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 3.0), (0.7, 1.3, 2.5)])
def test_hd95_asd_vs_bruteforce_3d(seed, spacing):
    rng = np.random.default_rng(seed)
    shape = (9, 8, 6)  # blobs touch the array border on purpose
    pred, target = _blob(rng, shape, 0.35), _blob(rng, shape, 0.35)
    hd_ref, asd_ref = _hd95_asd_oracle(pred, target, spacing)
    assert hd95(pred, target, spacing) == pytest.approx(hd_ref, rel=1e-5, abs=1e-5)
    assert asd(pred, target, spacing) == pytest.approx(asd_ref, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("spacing", [(0.625, 0.625, 0.625), (0.7, 1.3, 2.5)])
def test_distances_in_voxels_are_the_unit_spacing_ones(spacing):
    """``hd95_vox`` / ``asd_vox`` (the volumetric papers' unit) against the brute-force oracle at
    spacing 1, on an isotropic grid (mm / spacing) and an anisotropic one (computed again)."""
    rng = np.random.default_rng(5)
    pred, target = _blob(rng, (9, 8, 6), 0.35), _blob(rng, (9, 8, 6), 0.35)
    row = patient_metrics(pred, target, spacing, d=1)
    hd_ref, asd_ref = _hd95_asd_oracle(pred, target, (1.0, 1.0, 1.0))
    assert row["hd95_vox"] == pytest.approx(hd_ref, rel=1e-5) and row["asd_vox"] == pytest.approx(asd_ref, rel=1e-5)
    assert row["hd95"] == pytest.approx(_hd95_asd_oracle(pred, target, spacing)[0], rel=1e-5)


def test_hd95_asd_vs_bruteforce_2d():
    rng = np.random.default_rng(7)
    pred, target = _blob(rng, (12, 10), 0.4), _blob(rng, (12, 10), 0.4)
    hd_ref, asd_ref = _hd95_asd_oracle(pred, target, (0.8, 1.5))
    assert hd95(pred, target, (0.8, 1.5)) == pytest.approx(hd_ref, rel=1e-5, abs=1e-5)
    assert asd(pred, target, (0.8, 1.5)) == pytest.approx(asd_ref, rel=1e-5, abs=1e-5)


def test_hd95_is_not_pooled_percentile():
    # MONAI's HD95 is max(P95(pred->gt), P95(gt->pred)), not P95 of the pooled
    # distances; for this seed the two differ (3.0 vs ~2.83 mm), pinning the definition.
    rng = np.random.default_rng(4)
    pred, target = _blob(rng, (9, 8, 6), 0.35), _blob(rng, (9, 8, 6), 0.35)
    sp = (1.0, 1.0, 3.0)
    hd_ref, _ = _hd95_asd_oracle(pred, target, sp)
    s_p, s_t = _surface_bruteforce(pred), _surface_bruteforce(target)
    pooled = np.percentile(np.concatenate([_directed(s_p, s_t, sp), _directed(s_t, s_p, sp)]), 95)
    assert not np.isclose(hd_ref, pooled)
    assert hd95(pred, target, sp) == pytest.approx(hd_ref, rel=1e-5)


def test_spacing_validation():
    m = np.ones((2, 2, 2), dtype=bool)
    with pytest.raises(ValueError):
        hd95(m, m, (1.0, 1.0))
    with pytest.raises(ValueError):
        asd(m, m, (1.0, 0.0, 1.0))


# --------------------------------------------------------------------------- Boundary IoU


def test_boundary_region_hand_4x4():
    full = np.ones((4, 4), dtype=bool)
    # d=1: erosion by 3x3 (outside counts as background) keeps the 2x2 centre
    band = boundary_region(full, 1)
    assert band.sum() == 12 and not band[1:3, 1:3].any()
    # d=2: erosion by 5x5 removes everything -> whole mask is boundary
    assert boundary_region(full, 2).sum() == 16


def test_boundary_iou_hand_4x4():
    pred = np.ones((4, 4), dtype=bool)  # band (d=1): the 12 border pixels
    target = np.zeros((4, 4), dtype=bool)
    target[0:3, 0:3] = True  # band (d=1): 3x3 block minus its centre (1,1) -> 8 px
    # intersection: target band pixels on the image border (0,0),(0,1),(0,2),(1,0),(2,0) = 5
    # union: 12 + 8 - 5 = 15
    assert boundary_iou(pred, target, 1) == pytest.approx(5 / 15)
    assert boundary_iou(pred, pred, 3) == 1.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("d", [1, 2, 4, 5])
def test_boundary_iou_vs_bruteforce(seed, d):
    rng = np.random.default_rng(100 + seed)
    pred, target = _blob(rng, (14, 13), 0.45), _blob(rng, (14, 13), 0.45)
    np.testing.assert_array_equal(boundary_region(pred, d), _band_bruteforce(pred, d))
    assert boundary_iou(pred, target, d) == pytest.approx(_biou_oracle(pred, target, d))


def test_boundary_iou_slices_axis():
    rng = np.random.default_rng(5)
    pred, target = _blob(rng, (6, 7, 5)), _blob(rng, (6, 7, 5))
    pred[:, :, 0] = False
    target[:, :, 0] = False
    vals = boundary_iou_slices(pred, target, 2)
    assert len(vals) == 5 and vals[0] == 1.0  # both-empty slice scores 1 here
    for k in range(1, 5):
        assert vals[k] == pytest.approx(_biou_oracle(pred[:, :, k], target[:, :, k], 2))
    vals0 = boundary_iou_slices(pred, target, 2, axis=0)
    assert len(vals0) == 6
    assert vals0[3] == pytest.approx(_biou_oracle(pred[3], target[3], 2))


def test_patient_biou_skips_both_empty_slices():
    pred = np.zeros((8, 8, 5), dtype=bool)
    target = np.zeros((8, 8, 5), dtype=bool)
    pred[:4, :4, 1] = True
    target[:3, :3, 1] = True
    target[2:6, 2:6, 3] = True  # pred empty on slice 3 -> 0
    expected = (boundary_iou(pred[:, :, 1], target[:, :, 1], 1) + 0.0) / 2  # slices 0,2,4 skipped
    assert patient_metrics(pred, target, (1.0, 1.0, 1.0), d=1)["biou"] == pytest.approx(expected)


# --------------------------------------------------------------------------- torch inputs


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(11)
    pred, target = _blob(rng, (9, 8, 6), 0.4), _blob(rng, (9, 8, 6), 0.4)
    sp = (1.0, 1.0, 3.0)
    ref = patient_metrics(pred, target, sp, d=2)
    converters = (
        torch.from_numpy,  # bool tensor
        lambda a: torch.from_numpy(a.astype(np.int64)),
        lambda a: torch.from_numpy(a).float(),
    )
    for conv in converters:
        got = patient_metrics(conv(pred), conv(target), sp, d=2)
        assert got == pytest.approx(ref)
    assert dice(torch.from_numpy(pred), target) == pytest.approx(ref["dsc"])
    assert boundary_iou_slices(torch.from_numpy(pred), torch.from_numpy(target), 2) == pytest.approx(
        boundary_iou_slices(pred, target, 2)
    )


# --------------------------------------------------------------------------- accumulator


def test_accumulator_aggregate_with_nan():
    sp = (1.0, 1.0, 2.0)
    a = np.zeros((6, 6, 4), dtype=bool)
    a[1:4, 1:4, 1:3] = True
    b = np.zeros_like(a)
    b[2:5, 1:4, 1:3] = True
    acc = MetricAccumulator()
    acc.update("c1", "CT", a, a, sp, 1)  # perfect
    acc.update("c2", "CT", a, b, sp, 1)  # partial overlap
    acc.update("c3", "CT", a, np.zeros_like(a), sp, 1)  # target empty: sens/hd95/asd NaN
    acc.update("c1", "PET", b, a, sp, 1)
    rows = acc.rows()
    assert len(rows) == 4 == len(acc)
    assert set(rows[0]) == {"case_id", "modality", *METRIC_NAMES}
    assert rows[2]["case_id"] == "c3" and math.isnan(rows[2]["hd95"])

    agg = acc.aggregate()
    assert list(agg) == ["CT", "PET"]
    ct = agg["CT"]
    assert ct["n_cases"] == 3
    dsc_vals = [1.0, dice(a, b), 0.0]
    assert ct["dsc"] == pytest.approx(np.mean(dsc_vals)) and ct["dsc_n_nan"] == 0
    assert ct["dsc_std"] == pytest.approx(np.std(dsc_vals, ddof=1))  # sample std
    for name in ("sens", "hd95", "asd"):
        finite = [rows[0][name], rows[1][name]]
        assert ct[f"{name}_n_nan"] == 1
        assert ct[name] == pytest.approx(np.mean(finite))
        assert ct[f"{name}_std"] == pytest.approx(np.std(finite, ddof=1))
    assert ct["biou_n_nan"] == 0 and ct["biou"] == pytest.approx(np.mean([1.0, rows[1]["biou"], 0.0]))
    assert agg["PET"]["n_cases"] == 1 and math.isnan(agg["PET"]["hd95_std"])  # one case: no sample std

    acc.reset()
    assert acc.rows() == [] and acc.aggregate() == {}


def test_accumulator_all_nan_metric():
    acc = MetricAccumulator()
    m = np.zeros((4, 4, 2), dtype=bool)
    m[1, 1, 0] = True
    acc.update("c1", "T1", m, np.zeros_like(m), (1.0, 1.0, 1.0), 1)
    agg = acc.aggregate()["T1"]
    assert math.isnan(agg["hd95"]) and math.isnan(agg["hd95_std"]) and agg["hd95_n_nan"] == 1
    assert agg["dsc"] == 0.0 and agg["dsc_n_nan"] == 0


def test_every_branch_is_float():
    for p, t in itertools.product([EMPTY, FULLISH], repeat=2):
        assert all(isinstance(v, float) for v in patient_metrics(p, t, (1.0, 1.0, 1.0), 2).values())
