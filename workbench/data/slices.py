"""From loaded cases to 2D slice sets: preprocessing, patient split, labeled fraction.

Preprocessing follows the Semi-CML paper (section 4.1):
    * CT: clip to [-150, 150] HU, then scale to [0, 1].
    * PET: min-max normalisation of the volume to [0, 1].
    * MR (t1, t1ce, t2, flair and any other modality): z-score (zero mean, unit variance)
      computed inside the brain (voxels where any MR modality is non-zero, BraTS is
      skull-stripped); outside the brain is set to 0.
    * In-plane crop then optional resize. ``crop=int`` centre-crops (or zero-pads) every
      axial slice to ``crop x crop`` voxels about the grid centre, as the paper does
      (160 for BraTS, 144 for HECKTOR). ``crop=None`` (the built-in data's default) crops
      a square box around the patient's foreground (brain / body) with a 4-voxel margin.
      ``size`` then resizes to ``size x size`` (bilinear for images; the binary label is
      resized bilinearly and thresholded at 0.5). The in-plane spacing is scaled to match,
      so distances stay in mm.
    * Target: binary, ``label > 0`` (BraTS whole tumour; HECKTOR GTVp + GTVn).
    * Axial slices are taken along axis 2 of the RAS-oriented volume (the loaders
      reorient), stacked as ``(Z, M, H, W)`` with H = x, W = y.

Split: patients are split into three disjoint sets, deterministically per ``split_seed``
(:func:`split_patients`): test (``test_fraction``, 20% as in the paper's 80/20 split),
validation (``val_fraction``, 10% by default) and training, whose first
``labeled`` fraction (at least one patient) is labeled and the rest unlabeled. The paper
has no validation set; here the validation patients steer training (teacher pools, the
high-performance modality) so that the test patients only judge. With the defaults a
built-in cohort of 40 patients gives 8 test, 4 val and 28 training patients.

Slices for training:
    * labeled set: background-only slices are dropped (as in the paper; these patients'
      labels are known).
    * unlabeled set (``unlabeled_slices``): ``body`` (default, label-free) keeps the slices
      whose body / brain cross-section, computed from the images alone, is at least
      :data:`BODY_SLICE_FRACTION` of the patient's largest one; ``all`` keeps every slice;
      ``label`` drops background-only slices with the ground truth, as Semi-CML does, which
      uses label information on data a method should not have labels for (the protocol
      card names it).
Validation and test volumes keep every slice, so the 3D per-patient metrics see the false
positives outside the tumour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from workbench.data import benchmarks
from workbench.data.case import Case
from workbench.data.nifti import detect_format, load_dataset
from workbench.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_MODALITIES",
    "min_patients",
    "format_and_modalities",
    "SPLITS",
    "resolve_split",
    "shipped_split_patients",
    "PreprocessConfig",
    "Volume",
    "SliceSet",
    "DataSplits",
    "PatientSplit",
    "UNLABELED_SLICES",
    "BODY_SLICE_FRACTION",
    "modality_kind",
    "normalize_case",
    "preprocess_case",
    "check_split_fractions",
    "split_patients",
    "build_splits",
    "load_splits",
]

#: Modality pair used when none is given. The paper's BraTS tables use T2 / T1CE (and
#: other pairs in its Fig. 3); the built-in brain data is built so that T1 is the weak
#: and FLAIR the strong modality for whole tumour, which is the default here.
DEFAULT_MODALITIES: dict[str, tuple[str, ...]] = {
    "brats": ("t1", "flair"),
    "hecktor": ("ct", "pet"),
}


def format_and_modalities(root: Path, fmt: str, modalities: list[str] | None) -> tuple[str, list[str]]:
    """The folder's format (``fmt``, or detected when ``"auto"``) and the modalities to load:
    the given ones, or the format's default pair; a generic folder must name them."""
    if fmt == "auto":
        fmt = benchmarks.detect_benchmark(root) or detect_format(root)
    if fmt in benchmarks.BENCHMARKS:
        held = benchmarks.MODALITY[fmt]
        if modalities and list(modalities) != [held]:
            given = ",".join(modalities)
            raise ConfigError(f"{root}: a {fmt} folder holds one modality, {held!r}; got --modalities {given}")
        return fmt, [held]
    if modalities:
        return fmt, list(modalities)
    if fmt in DEFAULT_MODALITIES:
        return fmt, list(DEFAULT_MODALITIES[fmt])
    raise ConfigError(f"{root}: a {fmt} folder needs --modalities (e.g. --modalities t1,t2)")


CT_WINDOW = (-150.0, 150.0)

#: How the unlabeled training slices are chosen (module docstring).
UNLABELED_SLICES = ("body", "all", "label")
#: ``unlabeled_slices="body"``: a slice is kept when its body / brain cross-section is at
#: least this fraction of the patient's largest one (drops the near-empty caps of a volume).
BODY_SLICE_FRACTION = 0.25


@dataclass(frozen=True)
class PreprocessConfig:
    """In-plane geometry of the slices. See the module docstring."""

    crop: int | None = None
    size: int | None = 64
    margin: int = 4

    def __post_init__(self) -> None:
        for name in ("crop", "size"):
            value = getattr(self, name)
            if value is not None and (value < 16 or value % 16):
                raise ConfigError(f"{name}={value}: must be a multiple of 16 (U-Net has 4 pools), >= 16")


@dataclass
class Volume:
    """One preprocessed patient: every axial slice, for 3D evaluation."""

    case_id: str
    images: Tensor  # (Z, M, H, W) float32
    label: Tensor  # (Z, 1, H, W) float32 in {0, 1}
    spacing: tuple[float, float, float]  # mm, in (Z, H, W) order
    #: (Z,) fraction of each slice's pixels inside the body / brain mask (from the images only)
    body: Tensor | None = None

    @property
    def tumour_slices(self) -> Tensor:
        """Boolean (Z,) mask of slices with any foreground."""
        return self.label.flatten(1).amax(dim=1) > 0

    def tumour_only(self) -> "Volume":
        """The stack of this patient's tumour slices only (the Semi-CML paper's test protocol,
        which removes background-only slices from the whole dataset). Distances are then
        computed as if the kept slices were contiguous."""
        keep = self.tumour_slices
        body = self.body[keep] if self.body is not None else None
        return Volume(self.case_id, self.images[keep], self.label[keep], self.spacing, body)

    def slices_to_keep(self, rule: str) -> Tensor:
        """Boolean (Z,) mask of the slices a training set keeps under ``rule``:
        ``label`` (tumour slices, from the ground truth), ``body`` (label-free: body
        cross-section >= :data:`BODY_SLICE_FRACTION` of the largest) or ``all``."""
        if rule == "label":
            return self.tumour_slices
        if rule == "all":
            return torch.ones(self.images.shape[0], dtype=torch.bool)
        if rule == "body":
            if self.body is None:
                raise ValueError(f"volume {self.case_id} has no body mask for unlabeled_slices='body'")
            return self.body >= BODY_SLICE_FRACTION * self.body.max().clamp_min(1e-12)
        raise ConfigError(f"unknown unlabeled_slices {rule!r}; choose one of: {', '.join(UNLABELED_SLICES)}")


@dataclass
class SliceSet:
    """2D slices pooled over patients, for training."""

    images: Tensor  # (N, M, H, W)
    labels: Tensor  # (N, 1, H, W)
    case_ids: list[str]  # per slice
    slice_index: list[int]  # per slice, index along the patient's axial axis

    def __len__(self) -> int:
        return self.images.shape[0]

    @classmethod
    def from_volumes(cls, volumes: list[Volume], keep: str = "label") -> "SliceSet":
        """The slices of ``volumes`` that :meth:`Volume.slices_to_keep` keeps under ``keep``."""
        images, labels, case_ids, slice_index = [], [], [], []
        for vol in volumes:
            idx = torch.nonzero(vol.slices_to_keep(keep)).flatten()
            images.append(vol.images[idx])
            labels.append(vol.label[idx])
            case_ids += [vol.case_id] * len(idx)
            slice_index += idx.tolist()
        if not images:
            return cls(torch.zeros(0), torch.zeros(0), [], [])
        return cls(torch.cat(images), torch.cat(labels), case_ids, slice_index)


@dataclass(frozen=True)
class PatientSplit:
    """Case ids of the four disjoint patient sets (each sorted)."""

    labeled: list[str]
    unlabeled: list[str]
    val: list[str]
    test: list[str]

    @property
    def train(self) -> list[str]:
        return sorted(self.labeled + self.unlabeled)

    def as_dict(self) -> dict[str, list[str]]:
        """``{"labeled": [...], "unlabeled": [...], "val": [...], "test": [...]}`` (config.json)."""
        return {
            "labeled": list(self.labeled),
            "unlabeled": list(self.unlabeled),
            "val": list(self.val),
            "test": list(self.test),
        }

    def sizes(self) -> dict[str, int]:
        return {name: len(ids) for name, ids in self.as_dict().items()}


@dataclass
class DataSplits:
    """Everything a training run needs, built deterministically from the cases.

    ``labeled`` / ``val`` / ``test`` hold whole volumes (every slice) of those patients:
    ``val`` (or ``labeled``, for "training accuracy") steers training, ``test`` only judges."""

    modalities: list[str]
    train_labeled: SliceSet
    train_unlabeled: SliceSet
    labeled: list[Volume]
    val: list[Volume]
    test: list[Volume]
    split: PatientSplit
    unlabeled_slices: str = "body"
    info: dict = field(default_factory=dict)
    unlabeled: list[Volume] = field(default_factory=list)  # whole volumes of the unlabeled patients

    def training_images(self) -> Tensor:
        """Every non-blank axial slice ``(N, M, H, W)`` of the training patients, labeled and
        unlabeled, in case-id order; labels are not read. A slice is blank when any modality
        is one value throughout ("only discard medical images that are all black",
        Multi-ConDoS)."""
        volumes = sorted(self.labeled + self.unlabeled, key=lambda v: v.case_id)
        images = torch.cat([v.images for v in volumes])
        flat = images.flatten(2)
        blank = (flat.amax(dim=2) - flat.amin(dim=2) <= 1e-6).any(dim=1)
        return images[~blank].contiguous()

    @property
    def labeled_cases(self) -> list[str]:
        return self.split.labeled

    @property
    def unlabeled_cases(self) -> list[str]:
        return self.split.unlabeled

    @property
    def val_cases(self) -> list[str]:
        return self.split.val

    @property
    def test_cases(self) -> list[str]:
        return self.split.test


def modality_kind(name: str) -> str:
    """'ct', 'pet' or 'mr' from a modality name (case-insensitive)."""
    lowered = name.lower()
    if lowered == "ct":
        return "ct"
    if lowered in ("pet", "pt"):
        return "pet"
    return "mr"


def normalize_case(case: Case, modalities: list[str]) -> dict[str, np.ndarray]:
    """Intensity normalisation per modality (module docstring); returns float32 volumes."""
    missing = [m for m in modalities if m not in case.images]
    if missing:
        have = ", ".join(sorted(case.images))
        raise DataError(f"case {case.case_id}: modality {missing[0]!r} not loaded (have: {have})")
    mr = [m for m in modalities if modality_kind(m) == "mr"]
    brain = np.zeros(case.shape, dtype=bool)
    for m in mr:
        brain |= case.images[m] != 0
    out: dict[str, np.ndarray] = {}
    for m in modalities:
        x = case.images[m].astype(np.float64)
        kind = modality_kind(m)
        if kind == "ct":
            lo, hi = CT_WINDOW
            y = (np.clip(x, lo, hi) - lo) / (hi - lo)
        elif kind == "pet":
            span = x.max() - x.min()
            y = (x - x.min()) / span if span > 0 else np.zeros_like(x)
        else:
            inside = x[brain]
            std = inside.std() if inside.size else 0.0
            if std == 0:
                raise DataError(f"{case.paths.get(m, case.case_id)}: modality {m} is constant inside the brain")
            y = np.where(brain, (x - inside.mean()) / std, 0.0)
        out[m] = y.astype(np.float32)
    return out


def _foreground(case: Case, modalities: list[str]) -> np.ndarray:
    """Brain (MR non-zero) or body (CT > -500 HU, else PET above its minimum) mask."""
    mask = np.zeros(case.shape, dtype=bool)
    kinds = {m: modality_kind(m) for m in modalities}
    if "ct" in kinds.values():
        for m, k in kinds.items():
            if k == "ct":
                mask |= case.images[m] > -500
    else:
        for m, k in kinds.items():
            mask |= case.images[m] > case.images[m].min() if k == "pet" else case.images[m] != 0
    return mask


def _crop_box(case: Case, modalities: list[str], pre: PreprocessConfig) -> tuple[int, int, int]:
    """(x0, y0, side) of the square in-plane window; may extend outside the grid (zero pad)."""
    nx, ny, _ = case.shape
    if pre.crop is not None:
        side = pre.crop
        return (nx - side) // 2, (ny - side) // 2, side
    fg = _foreground(case, modalities)
    if not fg.any():
        side = max(nx, ny)
        return (nx - side) // 2, (ny - side) // 2, side
    xs = np.nonzero(fg.any(axis=(1, 2)))[0]
    ys = np.nonzero(fg.any(axis=(0, 2)))[0]
    side = int(max(xs[-1] - xs[0], ys[-1] - ys[0]) + 1 + 2 * pre.margin)
    cx, cy = (xs[0] + xs[-1] + 1) // 2, (ys[0] + ys[-1] + 1) // 2
    return int(cx - side // 2), int(cy - side // 2), side


def _window(vol: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """vol[x0:x0+side, y0:y0+side, :] with zero padding where the window leaves the grid."""
    nx, ny, nz = vol.shape
    out = np.zeros((side, side, nz), dtype=vol.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, nx), min(y0 + side, ny)
    if sx1 > sx0 and sy1 > sy0:
        out[sx0 - x0 : sx1 - x0, sy0 - y0 : sy1 - y0] = vol[sx0:sx1, sy0:sy1]
    return out


def _to_slices(vol: np.ndarray, size: int | None, binary: bool) -> Tensor:
    """(X, Y, Z) -> (Z, 1, H, W), resized to size x size when size is given."""
    t = torch.from_numpy(np.ascontiguousarray(vol.transpose(2, 0, 1)))[:, None].float()
    if size is not None and t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        if binary:
            t = (t > 0.5).float()
    return t


def preprocess_case(case: Case, modalities: list[str], pre: PreprocessConfig) -> Volume:
    """Normalise, crop, resize one case into a :class:`Volume` (module docstring)."""
    if case.label is None:
        raise DataError(f"case {case.case_id}: no label loaded")
    normalized = normalize_case(case, modalities)
    x0, y0, side = _crop_box(case, modalities, pre)
    images = torch.cat([_to_slices(_window(normalized[m], x0, y0, side), pre.size, False) for m in modalities], dim=1)
    target = (case.label > 0).astype(np.float32)
    label = _to_slices(_window(target, x0, y0, side), pre.size, True)
    body_mask = _to_slices(_window(_foreground(case, modalities).astype(np.float32), x0, y0, side), pre.size, True)
    scale = side / pre.size if pre.size is not None else 1.0
    sx, sy, sz = case.spacing
    return Volume(
        case.case_id,
        images,
        label,
        (float(sz), float(sx) * scale, float(sy) * scale),
        body=body_mask.flatten(1).mean(dim=1),
    )


def check_split_fractions(test_fraction: float, val_fraction: float) -> None:
    """ConfigError (one line, naming the value) for fractions that leave a set impossible."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction={test_fraction}: must be in (0, 1)")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction}: must be in [0, 1)")
    if test_fraction + val_fraction >= 1.0:
        raise ConfigError(f"test_fraction={test_fraction} + val_fraction={val_fraction} leave no training patients")


def min_patients(val_fraction: float) -> int:
    """The fewest patients a split can have: one test, one training and (with ``val_fraction
    > 0``) one validation patient."""
    return 2 + (val_fraction > 0)


def split_patients(
    case_ids: list[str],
    labeled_fraction: float,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
) -> PatientSplit:
    """The labeled / unlabeled / val / test patients; disjoint, deterministic per seed.

    One permutation of the sorted ids (``numpy.random.default_rng(split_seed)``): its first
    ``n_test = max(1, round(test_fraction * n))`` ids are the test patients, the next
    ``n_val = max(1, round(val_fraction * n))`` (0 when ``val_fraction == 0``) the
    validation patients, the rest the training patients, of which the first
    ``max(1, round(labeled_fraction * n_train))`` are labeled. With ``labeled_fraction == 1``
    every training patient is labeled. The test set of a seed does not depend on
    ``val_fraction`` or ``labeled_fraction``.
    """
    if not 0.0 < labeled_fraction <= 1.0:
        raise ConfigError(f"labeled fraction {labeled_fraction}: must be in (0, 1], e.g. 0.1 for 10%")
    check_split_fractions(test_fraction, val_fraction)
    n = len(case_ids)
    n_test = max(1, round(test_fraction * n))
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n - n_test - n_val < 1:
        raise DataError(
            f"{n} patients: test_fraction={test_fraction} ({n_test} test) and val_fraction="
            f"{val_fraction} ({n_val} val) leave no training patient; need at least "
            f"{n_test + n_val + 1} patients or smaller fractions"
        )
    ids = sorted(case_ids)
    rng = np.random.default_rng(split_seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    n_labeled = min(max(1, round(labeled_fraction * len(train))), len(train))
    return PatientSplit(sorted(train[:n_labeled]), sorted(train[n_labeled:]), sorted(val), sorted(test))


#: how a run's patients are split: ``auto`` (the published split for a benchmark layout, seeded
#: otherwise), ``seeded`` (:func:`split_patients`) or ``shipped`` (:func:`shipped_split_patients`)
SPLITS = ("auto", "seeded", "shipped")


def resolve_split(split: str, fmt: str) -> str:
    """``seeded`` or ``shipped`` for a run's ``split`` on a folder of format ``fmt``."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if split == "auto":
        return "shipped" if fmt in benchmarks.BENCHMARKS else "seeded"
    if split == "shipped" and fmt not in benchmarks.BENCHMARKS:
        raise ConfigError(
            f"split='shipped': a {fmt} folder has no published split (only {', '.join(benchmarks.BENCHMARKS)})"
        )
    return split


def shipped_split_patients(
    fmt: str, case_ids: list[str], labeled_fraction: float, val_fraction: float, root: Path | str = "."
) -> PatientSplit:
    """The published split of a benchmark layout (:func:`~workbench.data.benchmarks.shipped_split`).

    Labeled: the first ``max(1, round(labeled_fraction * n_train))`` cases of the training
    list in the file's order, the ``labeled_num`` convention of UA-MT / SSL4MIS (LA 5% = 4,
    10% = 8 of 80; BraTS 2019 10% = 25, 20% = 50 of 250), so the papers' labeled cases. Test:
    the published test list. Validation: the published validation list (BraTS 2019's 25); LA
    publishes none (its papers pick checkpoints on the test cases), so the last
    ``round(val_fraction * n_train)`` cases of its training list are held out as validation
    patients, never labeled ones: at ``val_fraction=0.1`` LA trains on 8 labeled and 64 (not
    72) unlabeled cases. Every listed case must be in the folder (a DataError names the
    missing ones); cases in the folder that no list names are left out.
    """
    lists = benchmarks.shipped_split(fmt)
    present = set(case_ids)
    missing = [c for part in lists.values() for c in part if c not in present]
    if missing:
        listed = sum(len(part) for part in lists.values())
        raise DataError(
            f"{root}: the published {fmt} split lists {listed} cases, {len(missing)} of them are not in the folder "
            f"(e.g. {', '.join(missing[:3])}); use split='seeded' for a partial copy"
        )
    train = list(lists["train"])
    val = list(lists.get("val", []))
    if not val and val_fraction > 0:
        n_val = max(1, round(val_fraction * len(train)))
        train, val = train[:-n_val], train[-n_val:]
    n_labeled = min(max(1, round(labeled_fraction * len(lists["train"]))), len(train))
    return PatientSplit(sorted(train[:n_labeled]), sorted(train[n_labeled:]), sorted(val), sorted(lists["test"]))


def build_splits(
    cases: list[Case],
    modalities: list[str],
    labeled_fraction: float,
    pre: PreprocessConfig,
    split_seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    unlabeled_slices: str = "body",
    split: PatientSplit | None = None,
) -> DataSplits:
    """Preprocess every case and assemble labeled / unlabeled slice sets and the whole
    volumes of the labeled, validation and test patients (module docstring); ``split``, when
    given (a published split, :func:`shipped_split_patients`), replaces the seeded one."""
    if unlabeled_slices not in UNLABELED_SLICES:
        raise ConfigError(
            f"unknown unlabeled_slices {unlabeled_slices!r}; choose one of: {', '.join(UNLABELED_SLICES)}"
        )
    by_id = {c.case_id: c for c in cases}
    if split is None:
        split = split_patients(list(by_id), labeled_fraction, split_seed, test_fraction, val_fraction)
    used = sorted(split.train + split.val + split.test)
    volumes = {cid: preprocess_case(by_id[cid], modalities, pre) for cid in used}
    train_labeled = SliceSet.from_volumes([volumes[c] for c in split.labeled], keep="label")
    train_unlabeled = SliceSet.from_volumes([volumes[c] for c in split.unlabeled], keep=unlabeled_slices)
    if len(train_labeled) == 0:
        where = by_id[split.labeled[0]].paths.get("label", split.labeled[0])
        raise DataError(
            f"labeled patients {split.labeled} have no tumour voxels in their labels after preprocessing "
            f"(e.g. {where}): nothing to train on"
        )
    sizes = {tuple(v.images.shape[-2:]) for v in volumes.values()}
    if len(sizes) > 1:
        raise DataError(f"slices come out in several sizes {sorted(sizes)}: set a fixed --size")
    info = {
        "n_cases": len(cases),
        "n_labeled_slices": len(train_labeled),
        "n_unlabeled_slices": len(train_unlabeled),
        "n_val_slices": int(sum(volumes[c].images.shape[0] for c in split.val)),
        "n_test_slices": int(sum(volumes[c].images.shape[0] for c in split.test)),
        "slice_size": list(next(iter(sizes))),
    }
    return DataSplits(
        modalities=list(modalities),
        train_labeled=train_labeled,
        train_unlabeled=train_unlabeled,
        labeled=[volumes[c] for c in split.labeled],
        val=[volumes[c] for c in split.val],
        test=[volumes[c] for c in split.test],
        split=split,
        unlabeled_slices=unlabeled_slices,
        info=info,
        unlabeled=[volumes[c] for c in split.unlabeled],
    )


def load_splits(config: Any, progress: bool = True) -> tuple[DataSplits, str]:
    """Load a run's data folder (a :class:`~workbench.config.TrainConfig`'s ``data``, ``fmt``,
    ``modalities``) and build its deterministic splits; returns (splits, format)."""
    root = Path(config.data)
    fmt, modalities = format_and_modalities(root, config.fmt, config.modalities)
    if len(modalities) < 1:
        raise ConfigError("--modalities: give at least one modality")
    if fmt in benchmarks.BENCHMARKS:
        cases = benchmarks.load_benchmark_dataset(root, fmt, progress=progress)
    else:
        cases = load_dataset(
            root,
            fmt=fmt,
            modalities=modalities,
            require_label=True,
            progress=progress,
            min_cases=min_patients(config.val_fraction),
        )
    split = None
    if resolve_split(config.split, fmt) == "shipped":
        split = shipped_split_patients(fmt, [c.case_id for c in cases], config.labeled, config.val_fraction, root)
    pre = PreprocessConfig(crop=config.crop, size=config.size)
    splits = build_splits(
        cases,
        modalities,
        config.labeled,
        pre,
        config.split_seed,
        config.test_fraction,
        config.val_fraction,
        config.unlabeled_slices,
        split=split,
    )
    return splits, fmt
