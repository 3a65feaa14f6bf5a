"""What defines a run, checked before anything is loaded, and where and how it runs.

:class:`TrainConfig` holds every setting of a run (its ``options`` are the method's own,
typed by the method's options dataclass, see :mod:`workbench.methods.options`);
:meth:`TrainConfig.validate` checks each field's type (:mod:`workbench.fields`, pydantic) and
range with one line naming the value. :func:`resolve_device` and :func:`resolve_precision`
(:mod:`workbench.device`, re-exported here) turn ``auto`` into what this machine has.

What may steer training (``selection``, see :mod:`workbench.train`): the validation patients
(default), the labeled training patients ("training accuracy") or, the Semi-CML paper's own
practice, the test patients, stamped "test feedback (paper protocol)".
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from workbench.augment import parse_augment
from workbench.data.benchmarks import BENCHMARKS
from workbench.data.slices import SPLITS, UNLABELED_SLICES, PreprocessConfig, check_split_fractions
from workbench.device import PRECISIONS, autocast_context, resolve_device, resolve_precision, set_tf32
from workbench.errors import ConfigError
from workbench.fields import config_from_dict, field_types, typed_value
from workbench.methods import get_method
from workbench.nets.backbones import BACKBONES

__all__ = [
    "TrainConfig",
    "SELECTIONS",
    "EARLIER_PROTOCOL",
    "PRECISIONS",
    "config_from_dict",
    "resolve_device",
    "resolve_precision",
    "autocast_context",
    "set_tf32",
]

#: the data formats a run reads (``auto``: detected from the folder)
FORMATS = ("auto", "brats", "hecktor", "generic", *BENCHMARKS)
#: the optimisers and learning-rate schedules of the loop (workbench.train.make_optimizer, lr_factor)
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("multistep", "poly")
#: how overlapping sliding windows are blended at 3D inference (MONAI's ``BlendMode``)
BLEND_MODES = ("gaussian", "constant")
#: what may steer training (module docstring)
SELECTIONS = ("val", "train", "test")
#: how runs made before the validation split were trained (80/20 train / test, the test patients
#: steering PReL, the paper's label-based unlabeled slices); a checkpoint without ``selection``
#: resumes (and is evaluated) this way, so its metrics carry the test-feedback stamp
EARLIER_PROTOCOL = {"selection": "test", "val_fraction": 0.0, "unlabeled_slices": "label"}


@dataclass
class TrainConfig:
    """Everything that defines a run. Defaults are the CPU-scale built-in settings;
    the paper's values are given in the comments."""

    method: str = "supervised"
    data: str = ""
    fmt: str = "auto"  # auto | brats | hecktor | generic | la | brats2019-h5 (the h5 benchmark layouts)
    modalities: list[str] | None = None  # None: DEFAULT_MODALITIES of the format
    labeled: float = 0.1  # fraction of training patients with labels (paper: 0.01/0.05/0.1)
    split_seed: int = 0
    # auto: a benchmark layout's published split (la, brats2019-h5), seeded otherwise | seeded | shipped
    split: str = "auto"
    test_fraction: float = 0.2  # paper: 80/20 by patient
    val_fraction: float = 0.1  # of all patients; the paper has no validation set (see selection)
    selection: str = "val"  # what steers training: val | train (training accuracy) | test (paper protocol)
    unlabeled_slices: str = "body"  # body (label-free) | all | label (the paper's filter, uses the labels)
    test_curve: bool = False  # also score the test patients after each epoch (plots only, never training)
    val_scores: str = "always"  # always: score the selection patients every epoch | if_used: only for methods
    #                             that read the scores (PReL); the others train bit for bit the same
    val_every: int = 1  # score the selection patients every this many epochs (and after the last)
    crop: int | None = None  # paper: 160 (BraTS), 144 (HECKTOR)
    size: int | None = 64
    seed: int = 0
    epochs: int = 30  # paper: t_max = 81 (5%, 10%), 121 (1%)
    steps_per_epoch: int = 20  # 0: one pass over the training slices, floor(N / batch_size) (the paper's epoch)
    batch_size: int = 8  # paper: 20 (BraTS), 30 (HECKTOR) labeled slices
    unlabeled_batch_size: int = 4  # paper: K = 4 (BraTS), 26 (HECKTOR)
    # gradient accumulation: each step's batches split into this many strided chunks (what as
    # many DDP processes compute; see workbench.distributed). Batch sizes stay per step.
    micro_batches: int = 1
    optimizer: str = "adam"  # adam (Semi-CML) | sgd (momentum 0.9: the volumetric papers, lr 0.01)
    lr: float = 2e-3  # paper: searched in [2e-4, 8e-3]
    weight_decay: float = 1e-4  # paper: searched in {1e-4, 1e-3, 1e-2, 1e-1}
    warmup_epochs: int = 2
    milestones: list[float] = field(default_factory=lambda: [0.6, 0.85])  # fractions of epochs
    lr_gamma: float = 0.1
    lr_schedule: str = "multistep"  # multistep (milestones, lr_gamma) | poly ((1 - t/T)^0.9, UA-MT / SSL4MIS)
    base_channels: int = 32  # paper: 32
    bce_weight: float = 10.0  # beta, eq. 3
    dice_weight: float = 7.0  # gamma, eq. 3
    device: str = "auto"  # auto (CUDA when there is one) | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | tf32 (CUDA) | bf16 (autocast)
    eval_batch_size: int = 64
    test_slices: str = "all"  # all: every slice of the test volumes | tumour: the paper's protocol
    # 2: slices (the default) | 3: volumes, trained on random patches and predicted by sliding
    # windows (the volumetric papers' setting; methods that allow it: `workbench methods`)
    spatial_dims: int = 2
    # the per-modality network: unet (2D or 3D) | vnet (3D; the volumetric papers' V-Net), for the
    # methods that declare it (`workbench methods`)
    backbone: str = "unet"
    patch: list[int] = field(default_factory=lambda: [32, 32, 32])  # 3D patch (x, y, z); paper: 96^3, LA 112x112x80
    patch_foreground: float = 0.0  # 3D: fraction of patches centred on the tumour (0: uniform crops, as UA-MT)
    sw_overlap: float = 0.5  # 3D: overlap of the sliding windows at inference
    sw_blend: str = "gaussian"  # 3D: how overlapping windows are blended: gaussian | constant
    # the training batches' augmentation (workbench.augment): method (the paper's, as the method
    # declares it) | none | a comma list of crop, flip, rotate
    augment: str = "method"
    options: dict[str, Any] = field(default_factory=dict)  # method-specific options
    init: str | None = None  # a `workbench pretrain` run folder the U-Nets start from (Multi-ConDoS)

    def __post_init__(self) -> None:
        for name in ("data", "init"):  # a Path is fine (kept as a string: the config is JSON)
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))

    def validate(self) -> None:
        """ConfigError (one line, naming the value) for a bad option."""
        hints = field_types(type(self))
        for f in dataclasses.fields(self):
            typed_value(f.name, getattr(self, f.name), hints[f.name])
        get_method(self.method)
        if not self.data:
            raise ConfigError("no data folder given (--data DIR)")
        if self.fmt not in FORMATS:
            raise ConfigError(f"unknown data format {self.fmt!r}; choose one of: {', '.join(FORMATS)}")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; choose one of: {', '.join(SPLITS)}")
        if self.test_slices not in ("all", "tumour"):
            raise ConfigError(f"unknown test_slices {self.test_slices!r}; choose one of: all, tumour")
        check_split_fractions(self.test_fraction, self.val_fraction)
        if self.selection not in SELECTIONS:
            raise ConfigError(f"unknown selection {self.selection!r}; choose one of: {', '.join(SELECTIONS)}")
        if self.selection == "val" and self.val_fraction <= 0:
            raise ConfigError(
                f"selection='val' needs validation patients but val_fraction={self.val_fraction}; "
                "set val_fraction > 0 or selection=train|test"
            )
        if self.val_scores not in ("always", "if_used"):
            raise ConfigError(f"unknown val_scores {self.val_scores!r}; choose one of: always, if_used")
        if self.unlabeled_slices not in UNLABELED_SLICES:
            raise ConfigError(
                f"unknown unlabeled_slices {self.unlabeled_slices!r}; choose one of: {', '.join(UNLABELED_SLICES)}"
            )
        resolve_precision(self.precision, resolve_device(self.device))
        if self.val_every < 1:
            raise ConfigError(f"val_every={self.val_every}: must be >= 1")
        if self.val_every > 1 and get_method(self.method).reads_validation:
            raise ConfigError(
                f"val_every={self.val_every}: method {self.method!r} reads the validation scores after every "
                "epoch (its teachers); use val_every=1"
            )
        if self.steps_per_epoch < 0:
            raise ConfigError(f"steps_per_epoch={self.steps_per_epoch}: must be >= 1, or 0 for one pass over the data")
        for name in (
            "epochs",
            "batch_size",
            "unlabeled_batch_size",
            "base_channels",
            "micro_batches",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be >= 1")
        if not 0.0 < self.labeled <= 1.0:
            raise ConfigError(f"labeled fraction {self.labeled}: must be in (0, 1], e.g. 0.1 for 10%")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of: {', '.join(LR_SCHEDULES)}")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr}: must be > 0")
        PreprocessConfig(self.crop, self.size)
        parse_augment(self.augment, get_method(self.method).augmentation)
        self._validate_3d()

    def _validate_3d(self) -> None:
        if self.spatial_dims not in (2, 3):
            raise ConfigError(f"spatial_dims={self.spatial_dims}: must be 2 (slices) or 3 (volumes)")
        method = get_method(self.method)
        if self.spatial_dims not in method.spatial_dims_supported:
            raise ConfigError(
                f"method {self.method!r} trains in {' or '.join(f'{d}D' for d in method.spatial_dims_supported)} "
                f"only, not with spatial_dims={self.spatial_dims}"
            )
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of: {', '.join(BACKBONES)}")
        if self.backbone not in method.backbones_supported:
            raise ConfigError(
                f"method {self.method!r} builds its own networks: backbone={self.backbone!r} is not one of them "
                f"(only {', '.join(method.backbones_supported)})"
            )
        if self.backbone == "vnet" and self.spatial_dims != 3:
            raise ConfigError(f"backbone='vnet' is a 3D network: use spatial_dims=3, not {self.spatial_dims}")
        if self.spatial_dims == 2:
            return
        if len(self.patch) != 3 or any(p < 16 or p % 16 for p in self.patch):
            raise ConfigError(f"patch={self.patch}: need three sizes (x, y, z), each a multiple of 16 (4 max-pools)")
        if not 0.0 <= self.patch_foreground <= 1.0:
            raise ConfigError(f"patch_foreground={self.patch_foreground}: must be in [0, 1]")
        if not 0.0 <= self.sw_overlap < 1.0:
            raise ConfigError(f"sw_overlap={self.sw_overlap}: must be in [0, 1)")
        if self.sw_blend not in BLEND_MODES:
            raise ConfigError(f"unknown sw_blend {self.sw_blend!r}; choose one of: {', '.join(BLEND_MODES)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        return config_from_dict(cls, values)
