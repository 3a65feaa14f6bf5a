"""Finished runs opened for prediction, whole volumes predicted and their test metrics:
shared by training, ``workbench eval``, the viewers and the notebooks.

:func:`open_run` opens a run folder without a training loop: its config, its method with the
checkpoint's weights and its data splits; nothing is written. :func:`checkpoint_config` is
the config a checkpoint was trained with, with the overrides that change where and how it
runs, never what was trained (also what :meth:`Trainer.resume <workbench.train.Trainer.resume>` uses).

A volume is predicted slice by slice (2D networks) in batches of ``batch_size``, in the run's
precision, and returned per modality as probabilities on the CPU. :func:`evaluate_volumes`
thresholds them at 0.5 and scores each test patient's 3D volume: DSC, sensitivity, HD95,
ASD (mm, at the volume's spacing) and Boundary IoU (:mod:`workbench.metrics`).

:class:`Perturbation` (``workbench eval --shift / --drop``) misaligns or removes one modality
of the scored volumes at test time, the labels and the other modalities untouched: CMC's
robustness-to-misalignment test, and a modality-dropout test for any method.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from tqdm.auto import tqdm

from workbench.augment import plain_tensor
from workbench.config import (
    BLEND_MODES,
    EARLIER_PROTOCOL,
    TrainConfig,
    autocast_context,
    resolve_device,
    resolve_precision,
)
from workbench.data.fingerprint import dataset_fingerprint
from workbench.data.slices import DataSplits, Volume, load_splits
from workbench.errors import ConfigError, DataError
from workbench.methods import Method, get_method
from workbench.metrics import MetricAccumulator, dice
from workbench.runs import EVAL_OVERRIDES, RESUME_OVERRIDES, RUN_MARKER, absolute_path, load_checkpoint

__all__ = [
    "BOUNDARY_WIDTH",
    "boundary_width",
    "scored_test_volumes",
    "predict_volume",
    "score_volumes",
    "evaluate_volumes",
    "checkpoint_config",
    "open_run",
    "OpenRun",
    "Perturbation",
    "sliding_window_probabilities",
    "BLEND_MODES",
]


BOUNDARY_WIDTH = {"brats": 5, "hecktor": 4}  # Boundary IoU d (Semi-CML section 4.6.1); 4 elsewhere


def boundary_width(fmt: str) -> int:
    """Boundary IoU's d for a data format (:data:`BOUNDARY_WIDTH`, 4 for any other)."""
    return BOUNDARY_WIDTH.get(fmt, 4)


def scored_test_volumes(splits: DataSplits, test_slices: str) -> list[Volume]:
    """The test volumes as a run scores them: every slice (``"all"``), or the tumour slices
    only (``"tumour"``, the Semi-CML paper's protocol)."""
    return splits.test if test_slices == "all" else [v.tumour_only() for v in splits.test]


@torch.no_grad()
def predict_volume(
    method: Method,
    volume: Volume,
    device: torch.device,
    batch_size: int = 64,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, torch.Tensor]:
    """Per-modality probabilities ``(Z, 1, H, W)`` on CPU for every slice of a volume. A 3D
    method (``spatial_dims == 3``) sees the whole volume ``(1, M, X, Y, Z)`` through sliding
    windows of its run's ``patch`` (:func:`sliding_window_probabilities`, ``sw_overlap``,
    ``sw_blend``)."""
    if getattr(method, "spatial_dims", 2) == 3:
        cfg = method.config
        x = volume.images.permute(1, 2, 3, 0)[None].to(device)  # (Z, M, H, W) -> (1, M, X, Y, Z)
        probs = sliding_window_probabilities(method, x, tuple(cfg.patch), cfg.sw_overlap, cfg.sw_blend, 4, autocast)
        return {m: p[0].permute(3, 0, 1, 2).cpu() for m, p in probs.items()}  # -> (Z, 1, X, Y)
    was_training = method.training
    method.eval()
    outputs: dict[str, list[torch.Tensor]] = {}
    try:
        for start in range(0, volume.images.shape[0], batch_size):
            x = volume.images[start : start + batch_size].to(device)
            with autocast or contextlib.nullcontext():
                probs = method.predict(x)
            for m, p in probs.items():
                outputs.setdefault(m, []).append(p.float().cpu())
    finally:
        method.train(was_training)
    return {m: torch.cat(ps) for m, ps in outputs.items()}


@torch.no_grad()
def sliding_window_probabilities(
    method: Method,
    images: torch.Tensor,
    roi_size: tuple[int, ...],
    overlap: float = 0.5,
    blend: str = "gaussian",
    sw_batch_size: int = 4,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, torch.Tensor]:
    """Per-modality probabilities of whole volumes ``(B, M, X, Y, Z)`` from windows of
    ``roi_size`` (MONAI ``sliding_window_inference``): ``overlap`` between neighbouring
    windows, blended ``constant`` (mean) or ``gaussian`` (centre-weighted); the volume is
    zero-padded where it is smaller than a window. Returns ``(B, 1, X, Y, Z)`` per key of
    ``method.predict``, on the input's device, in float32."""
    from monai.inferers import sliding_window_inference

    if blend not in BLEND_MODES:
        raise ConfigError(f"unknown blend {blend!r}; choose one of: {', '.join(BLEND_MODES)}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap={overlap}: must be in [0, 1)")

    def predictor(x: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast or contextlib.nullcontext():
            return {k: v.float() for k, v in method.predict(x).items()}

    was_training = method.training
    method.eval()
    try:
        out = sliding_window_inference(
            images, roi_size, sw_batch_size, predictor, overlap=overlap, mode=blend, padding_mode="constant"
        )
    finally:
        method.train(was_training)
    return {k: plain_tensor(v) for k, v in out.items()}


def score_volumes(
    method: Method,
    volumes: Iterable[Volume],
    device: torch.device,
    batch_size: int = 64,
    autocast: contextlib.AbstractContextManager | None = None,
) -> dict[str, list[float]]:
    """Each modality's 3D DSC on each volume (the per-epoch validation score)."""
    per_modality: dict[str, list[float]] = {}
    for volume in volumes:
        for m, p in predict_volume(method, volume, device, batch_size, autocast).items():
            per_modality.setdefault(m, []).append(dice(p > 0.5, volume.label > 0.5))
    return per_modality


def evaluate_volumes(
    method: Method,
    volumes: list[Volume],
    device: torch.device,
    boundary_width: int,
    batch_size: int = 64,
    autocast: contextlib.AbstractContextManager | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Full per-patient metrics (DSC, Sens, HD95, ASD, BIoU) of every modality:
    ``{"per_patient": rows, "summary": per-modality aggregates}``."""
    acc = MetricAccumulator()
    for volume in tqdm(volumes, desc="evaluate", unit="patient", disable=not progress, leave=False):
        probs = predict_volume(method, volume, device, batch_size, autocast)
        # metrics want (H, W, Z) with the axial axis last, spacing in the same order
        target = (volume.label[:, 0] > 0.5).numpy().transpose(1, 2, 0)
        sz, sh, sw = volume.spacing
        for m, p in probs.items():
            pred = (p[:, 0] > 0.5).numpy().transpose(1, 2, 0)
            acc.update(volume.case_id, m, pred, target, (sh, sw, sz), boundary_width)
    return {"per_patient": acc.rows(), "summary": acc.aggregate()}


@dataclass(frozen=True)
class Perturbation:
    """Test-time changes to named modalities of a volume; the label and every other modality
    stay as they are.

    ``shifts``: modality -> ``(dx, dy, degrees)``. The modality's every slice is moved by
    ``dx`` voxels along the slice's first axis (rows, H) and ``dy`` along its second (W) and
    rotated by ``degrees`` about the slice centre (positive: clockwise with rows drawn
    downwards), bilinear, zeros coming in at the border (the background value of the
    preprocessed slices); MONAI's ``Affine``. Integer shifts move voxels exactly.
    ``drops``: modalities whose channel is set to 0 (as :mod:`workbench.methods.mm_supervised`
    does for its single-modality predictions).
    """

    shifts: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    drops: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.shifts or self.drops)

    @classmethod
    def parse(cls, shifts: Iterable[str] = (), drops: Iterable[str] = ()) -> "Perturbation":
        """From ``MODALITY=DX,DY[,ROT]`` strings and modality names (one-line ConfigError)."""
        parsed: dict[str, tuple[float, float, float]] = {}
        for item in shifts:
            name, sep, numbers = item.partition("=")
            try:
                values = [float(v) for v in numbers.split(",")] if sep else []
            except ValueError:
                values = []
            if not name or len(values) not in (2, 3) or not all(math.isfinite(v) for v in values):
                raise ConfigError(f"--shift {item!r}: expected MODALITY=DX,DY or MODALITY=DX,DY,ROT (numbers)")
            parsed[name] = (values[0], values[1], values[2] if len(values) == 3 else 0.0)
        return cls(parsed, tuple(drops))

    def check(self, modalities: list[str]) -> None:
        """ConfigError naming a modality the run does not have."""
        for name in [*self.shifts, *self.drops]:
            if name not in modalities:
                raise ConfigError(f"modality {name!r} is not one of the run's: {', '.join(modalities)}")

    def describe(self) -> str:
        """``shift PET by (2, 0) voxels, 5 degrees; drop CT`` (empty when nothing changes)."""
        parts = [f"shift {m} by ({dx:g}, {dy:g}) voxels, {r:g} degrees" for m, (dx, dy, r) in self.shifts.items()]
        parts += [f"drop {m}" for m in self.drops]
        return "; ".join(parts)

    def apply(self, volume: Volume, modalities: list[str]) -> Volume:
        """The volume with the named modalities changed (a new Volume; ``volume`` is untouched)."""
        if not self:
            return volume
        from monai.transforms import Affine

        self.check(modalities)
        images = volume.images.clone()
        for name, (dx, dy, degrees) in self.shifts.items():
            c = modalities.index(name)
            # MONAI's Affine samples the input at A x: moving the content by +d translates by -d
            move = Affine(
                rotate_params=math.radians(degrees),
                translate_params=(-dx, -dy),
                padding_mode="zeros",
                mode="bilinear",
                image_only=True,
            )
            moved = move(images[:, c])  # the Z slices as channels: every slice moved alike
            images[:, c] = plain_tensor(moved)
        for name in self.drops:
            images[:, modalities.index(name)] = 0
        return dataclasses.replace(volume, images=images)


def _check_same_data(run_dir: Path, data: str) -> None:
    """A moved data folder must hold the data the run was trained on: its SHA-256 against the
    one in the run's config.json (runs made before the protocol card have none to check)."""
    try:
        recorded = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["protocol"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if not Path(data).is_dir():
        raise DataError(f"--data {data}: folder does not exist")
    found = dataset_fingerprint(data, recorded.get("format", "auto"))
    if recorded.get("sha256") and found.get("sha256") != recorded["sha256"]:
        raise DataError(
            f"--data {data} holds other data than {run_dir} was trained on "
            f"(sha256 {found.get('sha256', '?')[:12]}, the run's {recorded['sha256'][:12]})"
        )


def checkpoint_config(
    run_dir: Path, state: dict[str, Any], overrides: dict[str, Any] | None = None, evaluating: bool = False
) -> TrainConfig:
    """The TrainConfig the checkpoint ``state`` of ``run_dir`` was trained with.

    ``overrides`` changes where and how, never what, was trained: ``data`` (the data folder
    moved; it must hold the same data, checked against the run's SHA-256) and ``device``
    always; ``test_slices`` and ``eval_batch_size`` only when ``evaluating``. A checkpoint
    made before the validation split keeps what it did (:data:`~workbench.config.EARLIER_PROTOCOL`)."""
    if state.get("kind") == "multi-condos-pretrain":
        raise ConfigError(
            f"{run_dir}: a pre-training made by the earlier pre-training loop, which the training "
            "loop replaced; it cannot be resumed or opened (start it again with `workbench pretrain`); "
            "a finished one still serves --init"
        )
    if not isinstance(state.get("config"), dict):
        raise DataError(f"{run_dir / RUN_MARKER}: not a training checkpoint (no config)")
    values = dict(state["config"])
    if "selection" not in values:  # made before the validation split: keep what it did, stamped
        values.update(EARLIER_PROTOCOL)
    overrides = dict(overrides or {})
    allowed = RESUME_OVERRIDES + (EVAL_OVERRIDES if evaluating else ())
    if set(overrides) - set(allowed):
        bad = sorted(set(overrides) - set(allowed))[0]
        when = "" if evaluating else f" ({', '.join(EVAL_OVERRIDES)} only when evaluating)"
        raise ConfigError(f"{bad} cannot be changed on resume: only {', '.join(allowed)} can{when}")
    if overrides.get("data"):
        overrides["data"] = absolute_path(overrides["data"])
        _check_same_data(run_dir, overrides["data"])
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not Path(values["data"]).is_dir():
        raise DataError(
            f"{run_dir}: its data folder {values['data']} does not exist here; give the folder that holds it (--data)"
        )
    return TrainConfig.from_dict(values)


@dataclass
class OpenRun:
    """A run folder opened for reading: its config, its trained method (eval mode, on
    ``device``), its data splits and the protocol card of its config.json."""

    run_dir: Path
    config: TrainConfig
    method: Method
    splits: DataSplits
    fmt: str
    device: torch.device
    precision: str
    epoch: int
    protocol: dict[str, Any] | None

    @property
    def test_volumes(self) -> list[Volume]:
        """The test volumes as the run scores them (:func:`scored_test_volumes`)."""
        return scored_test_volumes(self.splits, self.config.test_slices)

    def evaluate(
        self, progress: bool = False, patients: str = "test", perturbation: Perturbation | None = None
    ) -> dict[str, Any]:
        """The per-patient metrics of the run, in its precision (:func:`evaluate_volumes`), on
        its test patients (as it scores them, ``test_slices``) or on its validation patients
        (``patients="val"``, every slice: what a choice made before testing may read); with a
        :class:`Perturbation`, on volumes whose named modalities it shifted or dropped."""
        if patients not in ("test", "val"):
            raise ConfigError(f"patients {patients!r}: choose test or val")
        volumes = self.test_volumes if patients == "test" else self.splits.val
        if not volumes:
            raise ConfigError(f"{self.run_dir}: the run has no {patients} patients")
        if perturbation:  # apply checks the modality names
            volumes = [perturbation.apply(v, self.splits.modalities) for v in volumes]
        autocast = autocast_context(self.precision, self.device)
        return evaluate_volumes(
            self.method,
            volumes,
            self.device,
            boundary_width(self.fmt),
            self.config.eval_batch_size,
            autocast,
            progress=progress,
        )


def open_run(run_dir: str | Path, overrides: dict[str, Any] | None = None, progress: bool = False) -> OpenRun:
    """Open a run folder for evaluation, viewing or a notebook: no optimiser, no event log,
    nothing written. ``overrides`` as in :func:`checkpoint_config` (evaluating)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist")
    state = load_checkpoint(run_dir / RUN_MARKER)
    config = checkpoint_config(run_dir, state, overrides, evaluating=True)
    device = resolve_device(config.device)
    splits, fmt = load_splits(config, progress=progress)
    torch.manual_seed(config.seed)  # what the Trainer does before building the method
    method = get_method(config.method)(splits.modalities, config)
    method.load_state_dict(state["method"])
    method.to(device).eval()
    protocol = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        protocol = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["protocol"]
    if protocol is not None:
        protocol = {**protocol, "test_slices": config.test_slices}
    return OpenRun(
        run_dir,
        config,
        method,
        splits,
        fmt,
        device,
        resolve_precision(config.precision, device),
        int(state["epoch"]),
        protocol,
    )
