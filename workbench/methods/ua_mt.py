"""Uncertainty-aware mean teacher (Yu et al., MICCAI 2019), a baseline of Semi-CML's Tables 1-2 (UAMT, MM-UAMT).

The mean teacher of :mod:`workbench.methods.mean_teacher` whose consistency only counts
the voxels where the teacher is certain. The teacher makes T stochastic passes (dropout
and Gaussian input noise); with mu_v the mean foreground probability at voxel v:

    u_v = - mu_v ln mu_v - (1 - mu_v) ln(1 - mu_v)                     (predictive entropy)
    L_c = sum_v I(u_v < H) (f'_v - f_v)^2 / sum_v I(u_v < H)           (masked consistency)
    H(t) = (0.75 + 0.25 r(t)) ln 2,  r(t) = exp(-5 (1 - t/t_max)^2)      (threshold ramp)
    L   = L_sup + w(t) L_c

ln 2 is the largest entropy of a binary prediction, so H ramps from 0.75 u_max to u_max.
Hyper-parameters (paper): T = 8, EMA decay 0.99, w(t) a sigmoid ramp-up to 0.1 (here 1.0,
see the mean-teacher module: our supervised loss weights BCE by 10).

Options: everything of mean teacher (``input`` single | both | concat, ...), plus ``mc_passes``
(T), ``threshold_start`` (0.75) and ``threshold_rampup_epochs`` (length of r; < 0: all
epochs, as the authors' code ramps over the whole training).

Choices of this implementation, each with why (the UA-MT paper is not among the seed
papers in ../shared/seeds):
    * The target f' is the mean mu of the T teacher passes (the same passes the
      uncertainty comes from), not an extra single pass.
    * Entropy uses ln(max(p, 1e-6)) so that certain voxels (p = 0 or 1) have u = 0.
    * If no voxel is certain the consistency is 0 (the denominator is at least 1 voxel).
    * Like mean teacher: consistency on labeled and unlabeled slices (the paper's sum runs
      over both), teacher BatchNorm on running statistics, student on clean input.
    * Logged per model: ``certain`` (fraction of voxels under H) and ``threshold`` H(t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.methods.mean_teacher import MeanTeacher, MeanTeacherOptions, teacher_probabilities
from workbench.methods.registry import register
from workbench.schedules import sigmoid_rampup

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = ["UAMeanTeacher", "UAMTOptions", "binary_entropy", "masked_mse", "uncertainty_threshold"]

LN2 = math.log(2.0)


@dataclass
class UAMTOptions(MeanTeacherOptions):
    mc_passes: int = 8  # T
    threshold_start: float = 0.75  # H(0) = threshold_start * ln 2
    threshold_rampup_epochs: float = -1.0  # length of the threshold ramp; < 0: all epochs


def binary_entropy(probs: Tensor, eps: float = 1e-6) -> Tensor:
    """``-p ln p - (1 - p) ln(1 - p)`` per element (nats; at most ln 2, at p = 0.5)."""
    return -(probs * torch.log(probs.clamp_min(eps)) + (1 - probs) * torch.log((1 - probs).clamp_min(eps)))


def masked_mse(student: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``sum(mask (student - target)^2) / max(sum(mask), 1)``: the UA-MT consistency.

    Args:
        student: student probabilities, any shape (gradients flow here).
        target: teacher probabilities, same shape (treated as constants).
        mask: same shape, 1 where the teacher is certain, else 0.
    """
    mask = mask.float()
    return (mask * (student.float() - target.detach().float()) ** 2).sum() / mask.sum().clamp_min(1.0)


def uncertainty_threshold(t: float, length: float, start: float = 0.75) -> float:
    """H(t) = (start + (1 - start) exp(-5 (1 - t/length)^2)) ln 2, then ln 2 for t >= length."""
    return (start + (1.0 - start) * sigmoid_rampup(t, length)) * LN2


@register
class UAMeanTeacher(MeanTeacher):
    """Uncertainty-aware mean teacher: MT consistency masked to certain teacher voxels (UAMT / MM-UAMT)."""

    name = "ua-mt"
    options_class = UAMTOptions

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        if self.opts.mc_passes < 1:
            raise ConfigError(f"option mc_passes={self.opts.mc_passes}: must be >= 1")
        if not 0.0 <= self.opts.threshold_start <= 1.0:
            raise ConfigError(f"option threshold_start={self.opts.threshold_start}: must be in [0, 1]")

    def threshold(self, step: int) -> float:
        """H(t), t in (fractional) epochs."""
        o = self.opts
        length = o.threshold_rampup_epochs if o.threshold_rampup_epochs >= 0 else float(self.config.epochs)
        return uncertainty_threshold(self.epoch_time(step), length, o.threshold_start)

    def consistency_loss(
        self, teacher: nn.Module, images: Tensor, student_probs: Tensor, step: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """L_c: the MSE to the mean of T teacher passes, over voxels with entropy below H(t)."""
        mean = teacher_probabilities(teacher, images, self.opts.mc_passes, self.opts.noise_std)
        threshold = self.threshold(step)
        mask = binary_entropy(mean) < threshold
        return masked_mse(student_probs, mean, mask), {
            "certain": mask.float().mean(),
            "threshold": torch.tensor(threshold, device=mean.device),
        }
