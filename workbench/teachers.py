"""Teacher models: EMA, the BMA pool of Semi-CML's PReL, and MC-dropout soft pseudo-labels.

* :func:`ema_update` — exponential moving average of weights (Tarvainen & Valpola 2017):
  ``theta_T <- decay * theta_T + (1 - decay) * theta_S``. BatchNorm buffers are copied
  with the same average (running mean / var) and the batch counter is copied.
* :class:`BMAPool` — the Best-Model Pool and Best-model Moving Average of Semi-CML
  (Zhang et al. 2023, section 3.2.1, Algorithm 1, eqs. 12-13). Per stage-1 epoch t with
  validation accuracy Acc_t of the high-performance model:

    - ``m < t <= m + p``: Acc_t fills the pool (capacity p);
    - ``t == m + p + 1``: the teacher is initialised from the high-performance model. The
      text says its weights "are directly used as the initial weights of the teacher";
      Algorithm 1 writes theta_t = 0.99 theta_{t-1} + 0.01 theta''_t with no earlier
      teacher. We copy the weights (what the text says; the two agree when theta_{t-1}
      is taken as theta''_t);
    - ``t > m + p + 1`` and ``Acc_t > min(pool)``: the minimum is replaced by Acc_t, and
      ``alpha = min(1 - (Acc_t - Acc_min) / Acc_t, alpha_0)`` (eq. 12, alpha_0 = 0.99,
      Acc_min taken before the replacement), ``theta = alpha theta + (1 - alpha) theta''``
      (eq. 13); otherwise nothing changes;
    - only before L1 (the caller stops calling it in stage 2).

  Every call returns a :class:`BMADecision` (pool before / after, alpha, which entry was
  replaced, whether the teacher moved) for the event log.
* :func:`mc_dropout_pseudo_labels` — eq. 14: ``P_s = 1/D sum_i T(x'' + xi_i)`` with
  Gaussian input noise xi_i and dropout active. Choices (not in the paper): BatchNorm
  layers stay in eval mode (running statistics) while dropout samples, so that the D
  passes differ only by dropout and noise; the noise std is ``noise_std`` (0.1) times each
  image's own standard deviation, so the perturbation is equally mild for z-scored MR
  (std ~1) and for min-max PET / windowed CT in [0, 1] (an absolute 0.1 swamps a PET
  slice whose body background sits near 0.1).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["ema_update", "frozen_copy", "copy_weights", "BMAPool", "BMADecision", "mc_dropout_pseudo_labels"]


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy with ``requires_grad=False`` everywhere (a teacher, never optimised)."""
    teacher = copy.deepcopy(model)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """``teacher <- decay * teacher + (1 - decay) * student`` for parameters and float
    buffers (BatchNorm running statistics); integer buffers are copied.

    ``decay = 0`` copies the student, ``decay = 1`` leaves the teacher unchanged."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay {decay} must be in [0, 1]")
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        if t.dtype.is_floating_point:
            t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
        else:
            t.copy_(s)


@torch.no_grad()
def copy_weights(teacher: nn.Module, student: nn.Module) -> None:
    """Copy every parameter and buffer of ``student`` into ``teacher``."""
    ema_update(teacher, student, 0.0)


@dataclass
class BMADecision:
    """What the BMA pool did at one epoch (one ``bma`` event in the log)."""

    epoch: int
    acc: float
    action: str  # wait | fill | init | update | skip
    pool_before: list[float] = field(default_factory=list)
    pool_after: list[float] = field(default_factory=list)
    acc_min: float | None = None
    alpha: float | None = None
    replaced_index: int | None = None
    teacher_updated: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


class BMAPool:
    """Best-Model Pool + Best-model Moving Average (module docstring, Algorithm 1).

    Args:
        m: start epoch of the BMA update (pool filled at epochs m+1..m+p).
        p: pool capacity.
        alpha0: upper bound of alpha (eq. 12), 0.99 in the paper.
    """

    def __init__(self, m: int, p: int, alpha0: float = 0.99) -> None:
        if m < 0 or p < 1:
            raise ValueError(f"BMA needs m >= 0 and p >= 1, got m={m}, p={p}")
        self.m, self.p, self.alpha0 = m, p, alpha0
        self.pool: list[float] = []
        self.teacher_ready = False
        self.n_updates = 0

    def step(self, epoch: int, acc: float, update_teacher: Callable[[float], None]) -> BMADecision:
        """Apply Algorithm 1 lines 6-13 at ``epoch`` with validation accuracy ``acc``.

        ``update_teacher(alpha)`` must set ``theta <- alpha theta + (1 - alpha) theta''``
        (alpha = 0 means copy theta'')."""
        before = list(self.pool)
        decision = BMADecision(epoch=epoch, acc=float(acc), action="wait", pool_before=before)
        if self.m < epoch <= self.m + self.p:
            self.pool.append(float(acc))
            decision.action = "fill"
        elif epoch == self.m + self.p + 1:
            update_teacher(0.0)
            self.teacher_ready = True
            self.n_updates += 1
            decision.action, decision.alpha, decision.teacher_updated = "init", 0.0, True
        elif epoch > self.m + self.p + 1 and self.pool:
            acc_min = min(self.pool)
            decision.acc_min = acc_min
            if acc > acc_min:
                index = self.pool.index(acc_min)
                self.pool[index] = float(acc)
                alpha = min(1.0 - (acc - acc_min) / acc, self.alpha0)  # eq. 12
                update_teacher(alpha)  # eq. 13
                self.n_updates += 1
                decision.action, decision.alpha = "update", alpha
                decision.replaced_index, decision.teacher_updated = index, True
            else:
                decision.action = "skip"
        decision.pool_after = list(self.pool)
        return decision

    def state_dict(self) -> dict:
        return {"pool": list(self.pool), "teacher_ready": self.teacher_ready, "n_updates": self.n_updates}

    def load_state_dict(self, state: dict) -> None:
        self.pool = list(state["pool"])
        self.teacher_ready = bool(state["teacher_ready"])
        self.n_updates = int(state["n_updates"])


def _dropout_train_mode(model: nn.Module) -> None:
    """Eval mode everywhere except dropout layers (MC dropout with frozen BatchNorm)."""
    model.eval()
    for module in model.modules():
        if isinstance(module, (nn.Dropout, nn.Dropout2d, nn.Dropout3d)):
            module.train()


@torch.no_grad()
def mc_dropout_pseudo_labels(teacher: nn.Module, images: Tensor, passes: int = 4, noise_std: float = 0.1) -> Tensor:
    """Eq. 14: mean sigmoid probability of ``passes`` stochastic forward passes of the
    teacher on ``images + N(0, (noise_std * std(image))^2)`` with dropout on (the std is
    per image, over its pixels). Returns ``(B, 1, H, W)``."""
    if passes < 1:
        raise ValueError(f"MC dropout needs passes >= 1, got {passes}")
    was_training = teacher.training
    _dropout_train_mode(teacher)
    try:
        total = torch.zeros((), device=images.device)
        scale = noise_std * images.flatten(1).std(dim=1).view(-1, *([1] * (images.dim() - 1)))
        for _ in range(passes):
            noisy = images + scale * torch.randn_like(images)
            total = total + torch.sigmoid(teacher(noisy).float())
    finally:
        teacher.train(was_training)
    return total / passes
