"""Mean teacher (Tarvainen & Valpola, NeurIPS 2017), a baseline of Semi-CML's Tables 1-2 (MT, MM-MT).

A student f(x; theta) learns from the labels and, on every slice, from a teacher
f(x; theta') whose weights are an exponential moving average of the student's:

    theta'_t = a theta'_{t-1} + (1 - a) theta_t                         (EMA, after each step)
    J(theta) = E_x || f(x + eta'; theta') - f(x + eta; theta) ||^2       (consistency cost)
    L        = L_sup(f(x_l), y) + w(t) J,   w(t) = w exp(-5 (1 - t/T)^2) for t < T, then w

with f the sigmoid foreground probability, L_sup eq. 3 of Semi-CML (10 BCE + 7 Dice, the
same supervised loss in every row of the tables) and eta, eta' noise. Hyper-parameters:
a = 0.99 (``ema_decay``; the paper's value during ramp-up), sigmoid ramp-up of w.

Options (``--set options.NAME=VALUE``):
    * ``input``: ``single`` (default; Table 1's MT) trains one independent student/teacher
      per modality, each on its own channel, and reports one row per modality; ``both``
      (Table 2's MM-MT) trains one :class:`~workbench.nets.DualEncoderUNet` on both
      modalities and reports ``fused`` and ``<m> only`` (the other inputs zeroed), like
      :mod:`workbench.methods.mm_supervised`; ``concat`` trains one :class:`~workbench.nets.UNet`
      on the modalities stacked as input channels (Meng et al.'s multi-modal input for the
      single-modal baselines of their Table 1), reported the same way.
    * ``consistency`` (w), ``rampup_epochs`` (T), ``ema_decay`` (a), ``ema_warmup``,
      ``noise_std``, ``student_noise_std``, ``consistency_on``, ``predict_with``.

Choices of this implementation, each with why (the mean-teacher paper, written for
classification, is not among the seed papers in ../shared/seeds):
    * The consistency term is the MSE of the foreground probabilities (for two-class
      softmax outputs this equals the paper's squared difference averaged over classes),
      averaged over every pixel of the labeled and unlabeled slices (the paper's
      expectation over all inputs); ``consistency_on=unlabeled`` uses unlabeled slices only.
    * w = 1.0: the medical MT/UA-MT settings use 0.1 against a supervised loss of about
      CE + Dice; ours puts weight 10 on BCE, so w is scaled by 10 too. T defaults to 40%
      of the epochs (as for Semi-CML's w1); t is in fractional epochs.
    * ``ema_warmup=true`` (default): the decay at optimiser step s (1-based) is
      min(1 - 1/(s + 1), a), as in the authors' released code, so that early on the
      teacher is the plain average of the students so far instead of mostly the random
      initialisation (which matters for runs of a few hundred steps); ``false``: a fixed
      a. The teacher starts as a copy of the student; BatchNorm running statistics are
      averaged with the same decay (:func:`workbench.teachers.ema_update`).
    * Noise: eta' is Gaussian input noise with std ``noise_std`` (0.1) times each image
      channel's own std, plus the teacher's dropout; the teacher's BatchNorm uses its
      running statistics (the convention of :func:`workbench.teachers.mc_dropout_pseudo_labels`),
      so its targets do not depend on which slices share its batch. eta is the student's
      dropout, plus input noise when ``student_noise_std`` > 0 (default 0).
    * Labeled and unlabeled slices go through the student in two forward passes
      (BatchNorm statistics per pass, see :mod:`workbench.methods.semi_cml`).
    * Prediction uses the student (``predict_with=teacher`` for the EMA model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.losses import mse_consistency
from workbench.methods.base import Batch, Method, fused_and_single_modality
from workbench.methods.options import BASELINE_INPUTS, INPUTS, check_choice
from workbench.methods.registry import register
from workbench.nets.backbones import BACKBONES
from workbench.schedules import sigmoid_rampup
from workbench.teachers import ema_update, frozen_copy, mc_dropout_pseudo_labels

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = [
    "INPUTS",
    "MeanTeacher",
    "MeanTeacherOptions",
    "Stream",
    "add_input_noise",
    "check_choice",
    "ema_decay_at",
    "teacher_probabilities",
]

#: values of the ``input`` option shared by the baselines (MT, UA-MT, CPS)


@dataclass
class MeanTeacherOptions:
    input: str = "single"  # single: a model per modality (MT) | both: dual encoder (MM-MT) | concat: stacked input
    consistency: float = 1.0  # w after the ramp-up
    rampup_epochs: float = -1.0  # T of the sigmoid ramp-up; < 0: 40% of the epochs
    ema_decay: float = 0.99  # a
    ema_warmup: bool = True  # decay min(1 - 1/(s + 1), a) at step s
    noise_std: float = 0.1  # teacher input noise, relative to each image channel's std
    student_noise_std: float = 0.0  # student input noise (0: dropout only)
    consistency_on: str = "all"  # all: labeled + unlabeled slices | unlabeled
    predict_with: str = "student"  # student | teacher


def add_input_noise(images: Tensor, noise_std: float) -> Tensor:
    """``images + N(0, (noise_std * s)^2)``, s the std of each image channel over its pixels.

    Args:
        images: ``(B, C, *spatial)``.
        noise_std: relative noise level; 0 returns ``images`` unchanged.
    """
    if noise_std == 0:
        return images
    scale = noise_std * images.flatten(2).std(dim=2)[(...,) + (None,) * (images.ndim - 2)]
    return images + scale * torch.randn_like(images)


class _NoisyInput(nn.Module):
    """``net(add_input_noise(x))``: per-channel input noise in front of a network."""

    def __init__(self, net: nn.Module, noise_std: float) -> None:
        super().__init__()
        self.net, self.noise_std = net, noise_std
        self.train(net.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(add_input_noise(x, self.noise_std))


@torch.no_grad()
def teacher_probabilities(teacher: nn.Module, images: Tensor, passes: int = 1, noise_std: float = 0.1) -> Tensor:
    """Mean sigmoid probability ``(B, 1, H, W)`` of ``passes`` stochastic teacher passes:
    dropout on, BatchNorm on running statistics, per-channel relative input noise
    (:func:`add_input_noise`). Built on :func:`workbench.teachers.mc_dropout_pseudo_labels`."""
    return mc_dropout_pseudo_labels(_NoisyInput(teacher, noise_std), images, passes, noise_std=0.0)


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """The EMA decay after optimiser step ``step`` (1-based): ``min(1 - 1/(step + 1), decay)``
    with warm-up, else ``decay``."""
    return min(1.0 - 1.0 / (step + 1), decay) if warmup else decay


class Stream(NamedTuple):
    """One independently trained model: loss-name suffix, networks, input channels."""

    suffix: str  # "_t1" for input=single, "" for input=both
    student: nn.Module
    teacher: nn.Module
    channels: slice


@register
class MeanTeacher(Method):
    """Mean teacher: student + EMA teacher, sup + w(t) MSE(student, teacher) (MT / MM-MT)."""

    name = "mean-teacher"
    uses_unlabeled = True
    spatial_dims_supported = (2, 3)
    backbones_supported = BACKBONES
    options_class = MeanTeacherOptions

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        o = self.opts
        check_choice("input", o.input, BASELINE_INPUTS)
        check_choice("consistency_on", o.consistency_on, ("all", "unlabeled"))
        check_choice("predict_with", o.predict_with, ("student", "teacher"))
        if not 0.0 <= o.ema_decay <= 1.0:
            raise ConfigError(f"option ema_decay={o.ema_decay}: must be in [0, 1]")
        if o.noise_std < 0 or o.student_noise_std < 0:
            raise ConfigError("options noise_std and student_noise_std must be >= 0")
        if o.input == "single":
            self.nets = nn.ModuleDict({m: self.make_net() for m in self.modalities})
            # teachers live in the module (checkpointed) but have requires_grad=False (never optimised)
            self.teachers = nn.ModuleDict({m: frozen_copy(self.nets[m]) for m in self.modalities})
        else:
            self.net = self.make_fused_net()
            self.teacher = frozen_copy(self.net)

    # ------------------------------------------------------------------ helpers
    def streams(self) -> list[Stream]:
        """The independent student/teacher pairs: one per modality, or the dual-encoder one."""
        if self.opts.input == "single":
            return [
                Stream(f"_{m}", self.nets[m], self.teachers[m], slice(i, i + 1)) for i, m in enumerate(self.modalities)
            ]
        return [Stream("", self.net, self.teacher, slice(None))]

    def consistency_weight(self, step: int) -> float:
        """w(t): the sigmoid ramp-up of the consistency weight, t in (fractional) epochs."""
        length = self.opts.rampup_epochs if self.opts.rampup_epochs >= 0 else 0.4 * self.config.epochs
        return self.opts.consistency * sigmoid_rampup(self.epoch_time(step), length)

    def consistency_loss(
        self, teacher: nn.Module, images: Tensor, student_probs: Tensor, step: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """J: MSE between the student's probabilities and one noisy teacher pass on ``images``.
        Returns the loss and extra values to log (none here)."""
        target = teacher_probabilities(teacher, images, 1, self.opts.noise_std)
        return mse_consistency(student_probs, target), {}

    # ------------------------------------------------------------------ the step
    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        assert batch.x_u is not None, f"{self.name} needs unlabeled slices"
        w = self.consistency_weight(step)
        noise = self.opts.student_noise_std
        losses: dict[str, Tensor] = {}
        total = torch.zeros((), device=batch.x_l.device)
        for s in self.streams():
            x_l, x_u = batch.x_l[:, s.channels], batch.x_u[:, s.channels]
            # two forward passes: BatchNorm batch statistics per pass
            logits_l = s.student(add_input_noise(x_l, noise))
            logits_u = s.student(add_input_noise(x_u, noise))
            sup = self.sup_loss(logits_l, batch.y_l)
            if self.opts.consistency_on == "all":
                images, logits = torch.cat([x_l, x_u]), torch.cat([logits_l, logits_u])
            else:
                images, logits = x_u, logits_u
            cons, extras = self.consistency_loss(s.teacher, images, torch.sigmoid(logits.float()), step)
            losses["sup" + s.suffix], losses["cons" + s.suffix] = sup, cons
            losses.update({k + s.suffix: v for k, v in extras.items()})
            total = total + sup + w * cons
        losses["w"] = torch.tensor(w, device=total.device)
        losses["loss"] = total
        return losses

    def after_optimizer_step(self, step: int) -> None:
        """theta' <- a theta' + (1 - a) theta for every teacher."""
        decay = ema_decay_at(step, self.opts.ema_decay, self.opts.ema_warmup)
        for s in self.streams():
            ema_update(s.teacher, s.student, decay)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        use_teacher = self.opts.predict_with == "teacher"
        if self.opts.input != "single":
            return fused_and_single_modality(self.teacher if use_teacher else self.net, images, self.modalities)
        return {
            m: torch.sigmoid((self.teachers[m] if use_teacher else self.nets[m])(images[:, i : i + 1]))
            for i, m in enumerate(self.modalities)
        }
