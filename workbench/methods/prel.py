"""Semi-CML with PReL: soft pseudo-label re-learning from a BMA teacher (Zhang et al. 2023).

Stage 1 (epochs t < L1) is Semi-CML (:mod:`workbench.methods.semi_cml`, eq. 11) while a
teacher T is built from the high-performance modality's model G (section 3.2.1,
Algorithm 1, eqs. 12-13; see :class:`workbench.teachers.BMAPool`). Stage 2 (t >= L1):

    (14) P_s = 1/D sum_{i=1..D} T(x'' + xi_i)            MC dropout, Gaussian input noise
    (15) L_ASC^ReL(y^, P_s) = 1/2K sum (l_asc(y^, P_s) + l_asc(P_s, y^))
    (16) L'_ReL(F)  = alpha1 L_ASC^ReL(F(x'), P_s) + (1 - alpha1) L'_sup(F(x'), P_s)
    (17) L''_ReL(G) = alpha2 L_ASC^ReL(G(x''), P_s) + (1 - alpha2) L''_sup(G(x''), P_s),
         only for t > L2 = (t_max - L1) r + L1

Hyper-parameters (section 4.2): m in {5, 10}; L1 in {51, 55, 61, 71} of t_max = 81; r in
{0.4, 0.6, 0.8}; p in {1, 2, 4, 6}; D in {4, 8}; alpha1, alpha2 in {0.05, 0.1, 0.5, 0.9}
(HECKTOR) / {0.1, 0.5, 0.9, 0.95, 0.99} (BraTS); alpha0 = 0.99.
Defaults here scale the epochs to short CPU runs: m = 40% of the epochs (at most L1 - p - 2,
so that the teacher is initialised before L1), p = 2, L1 = 70% of the epochs (paper ~61/81),
r = 0.6, D = 4, alpha1 = alpha2 = 0.5. Why m = 40% and not the paper's ~10% (m in {5, 10}
of 81): our epochs are ``steps_per_epoch`` steps, the paper's are full passes, and with
m = 10% the teacher is copied from a model only ~100 steps old and, alpha staying 0.9-0.99
afterwards, stays that early, under-confident model (docs/results.md, section E6, has the
measurements). For paper-scale runs set ``options.m`` explicitly.

Whose accuracy: eq. 12's Acc_t, the pool and the high-modality choice read the per-epoch
mean per-patient DSC of the patients ``TrainConfig.selection`` names, never the test
patients: the validation patients by default, or the labeled training patients' volumes
("training accuracy"). The paper, which has no validation set, reads its test set;
``selection="test"`` does the same and stamps every result "test feedback (paper protocol)".

Which modality is "high-performance": the paper names it from its stage-1 results (PET
over CT, T1CE over T2). Here ``high_modality="auto"`` decides it the same way, from the
data: a BMA pool and teacher (or EMA teacher) is kept for *every* modality during stage 1,
and at the end of epoch L1 - 1 the modality with the higher mean validation DSC over the
epochs m+1..L1-1 (the epochs the pool looks at) becomes "high" and its teacher is used
(event ``high_modality``; the other teachers stay in the checkpoint, unused). Or name it
explicitly (then only its teacher is built). Deciding at epoch m from the first epochs'
scores instead picks the wrong modality on data whose strong modality starts slowly
(docs/results.md, section E6).

Choices where the paper is vague:
    * Stage 2 follows Algorithm 1 literally: only the ReL losses train (no labeled
      supervised term) and G is not trained between L1 and L2. ``stage2_labeled=true``
      adds L_sup on the labeled batch for both networks.
    * P_s is computed on the unlabeled batch (Algorithm 1 calls its input "unlabeled
      examples"); the K maps of eq. 15 are that batch.
    * Teachers (``teacher`` option, Table 3 ablation): ``bma`` (the paper); ``ema``: a
      copy of G taken at the BMA initialisation epoch m+p+1, then EMA-updated after every
      optimiser step with ``ema_decay`` until L1; ``base``: a frozen copy of G at L1.
      Every teacher is frozen in stage 2. If the BMA teacher was never initialised before
      L1 (m+p+1 >= L1), G is copied at L1 and an event says so.
    * Stage 2 keeps the Semi-CML ASC matrix logging (``asc_rel_matrix``: F vs P_s).

Remaining deviations from the paper, each with why:
    * Acc_t of eq. 12 and the high-modality choice read the validation patients, not the test
      patients the paper read: the test patients only judge.
    * m, p, L1 default to fractions of the run's epochs (above) because a CPU epoch is 20 steps,
      not a pass; the paper-scale grids set m, p, L1, r from the paper's search sets.
    * Everything Semi-CML's docstring lists for stage 1 (:mod:`workbench.methods.semi_cml`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.losses import asc_loss
from workbench.methods.base import Batch
from workbench.methods.registry import register
from workbench.methods.semi_cml import SemiCML, SemiCMLOptions
from workbench.nets import UNet
from workbench.teachers import BMAPool, ema_update, frozen_copy, mc_dropout_pseudo_labels

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = ["SemiCMLPReL", "PReLOptions"]


@dataclass
class PReLOptions(SemiCMLOptions):
    teacher: str = "bma"  # bma | ema | base
    high_modality: str = "auto"  # auto | a modality name
    m: int = -1  # start epoch of the BMA update; < 0: 40% of the epochs (see the docstring)
    p: int = 2  # BMA pool capacity
    L1: int = -1  # first stage-2 epoch; < 0: 70% of the epochs
    r: float = 0.6  # L2 = (t_max - L1) r + L1
    mc_passes: int = 4  # D, eq. 14
    noise_std: float = 0.1  # xi of eq. 14, relative to each image's std
    alpha1: float = 0.5  # eq. 16
    alpha2: float = 0.5  # eq. 17
    alpha0: float = 0.99  # eq. 12
    ema_decay: float = 0.99
    stage2_labeled: bool = False


@register
class SemiCMLPReL(SemiCML):
    """Semi-CML + PReL: stage 1 Semi-CML building a BMA/EMA/Base teacher, stage 2 re-learning."""

    name = "semi-cml-prel"
    options_class = PReLOptions
    reads_validation = True

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        o = self.opts
        if o.teacher not in ("bma", "ema", "base"):
            raise ConfigError(f"unknown teacher {o.teacher!r}; choose one of: bma, ema, base")
        if o.high_modality != "auto" and o.high_modality not in self.modalities:
            raise ConfigError(f"high_modality {o.high_modality!r} is not one of {self.modalities} (or auto)")
        epochs = config.epochs
        self.L1 = o.L1 if o.L1 >= 0 else max(2, round(0.7 * epochs))
        # default m: 40% of the epochs, but early enough that the teacher exists before L1
        self.m = o.m if o.m >= 0 else max(1, min(round(0.4 * epochs), self.L1 - o.p - 2))
        self.L2 = int(round((epochs - self.L1) * o.r + self.L1))
        if not 2 <= self.L1 <= epochs:
            raise ConfigError(f"L1={self.L1}: stage 2 must start within epochs 2..{epochs}")
        self.high: str | None = None if o.high_modality == "auto" else o.high_modality
        #: modalities that may turn out "high": each gets a pool and a teacher until L1
        self.candidates = list(self.modalities) if self.high is None else [self.high]
        self.pools = {m: BMAPool(self.m, o.p, o.alpha0) for m in self.candidates}
        self.teachers = nn.ModuleDict({m: frozen_copy(UNet(1, 1, config.base_channels)) for m in self.candidates})
        self.ready = {m: False for m in self.candidates}  # teacher of m initialised
        self.val_history: list[dict[str, float]] = []
        self._stage_announced = 1

    # ------------------------------------------------------------------ state in checkpoints
    def get_extra_state(self) -> Any:
        return {
            "pools": {m: pool.state_dict() for m, pool in self.pools.items()},
            "high": self.high,
            "val_history": self.val_history,
            "ready": self.ready,
            "stage_announced": self._stage_announced,
        }

    def set_extra_state(self, state: Any) -> None:
        for m, pool_state in state["pools"].items():
            self.pools[m].load_state_dict(pool_state)
        self.high = state["high"]
        self.val_history = list(state["val_history"])
        self.ready = dict(state["ready"])
        self._stage_announced = int(state["stage_announced"])

    # ------------------------------------------------------------------ helpers
    @property
    def teacher(self) -> nn.Module:
        """The teacher T of the high-performance modality (known from L1 on, or if named)."""
        if self.high is None:
            raise RuntimeError("the high-performance modality is decided at the end of epoch L1 - 1")
        return self.teachers[self.high]

    @property
    def pool(self) -> BMAPool:
        """The BMA pool of the high-performance modality."""
        if self.high is None:
            raise RuntimeError("the high-performance modality is decided at the end of epoch L1 - 1")
        return self.pools[self.high]

    @property
    def teacher_ready(self) -> bool:
        return self.high is not None and self.ready[self.high]

    @property
    def low(self) -> str:
        assert self.high is not None
        return next(m for m in self.modalities if m != self.high)

    def stage(self, epoch: int) -> int:
        return 1 if epoch < self.L1 else 2

    def _teacher_setter(self, m: str):
        """``alpha -> theta_m <- alpha theta_m + (1 - alpha) theta''_m`` (alpha = 0: copy)."""
        return lambda alpha: ema_update(self.teachers[m], self.nets[m], alpha)

    def _decide_high(self, epoch: int) -> None:
        """End of stage 1: "high" = higher mean validation DSC over epochs m+1..L1-1."""
        if self.high is not None:
            return
        window = self.val_history[self.m :] or self.val_history  # val_history[i] is epoch i + 1
        means = {m: float(np.mean([h[m] for h in window])) for m in self.modalities}
        self.high = max(self.modalities, key=lambda m: means[m])
        first = self.m + 1 if len(self.val_history) > self.m else 1
        self.emit("high_modality", epoch=epoch, high=self.high, low=self.low, mean_val_dsc=means, window=[first, epoch])

    # ------------------------------------------------------------------ hooks
    def after_optimizer_step(self, step: int) -> None:
        if self.opts.teacher == "ema" and self.stage(self.epoch) == 1:
            for m in self.candidates:
                if self.ready[m]:
                    self._teacher_setter(m)(self.opts.ema_decay)

    def on_validation_end(self, epoch: int, scores: dict[str, float]) -> None:
        """Algorithm 1 lines 5-13 after each stage-1 epoch; the switch to stage 2 after L1 - 1."""
        self.val_history.append({m: float(scores[m]) for m in self.modalities})
        if self.stage(epoch) == 2:
            return
        for m in self.candidates:
            if self.opts.teacher == "bma":
                decision = self.pools[m].step(epoch, scores[m], self._teacher_setter(m))
                self.ready[m] = self.ready[m] or decision.teacher_updated
                self.emit("bma", modality=m, **decision.as_dict())
            elif self.opts.teacher == "ema" and epoch == self.m + self.opts.p + 1:
                self._teacher_setter(m)(0.0)
                self.ready[m] = True
                self.emit("teacher", kind="ema", action="init", epoch=epoch, modality=m)
        if epoch + 1 == self.L1:
            self._decide_high(epoch)
            self._start_stage2(epoch)

    def _start_stage2(self, epoch: int) -> None:
        """End of the last stage-1 epoch: freeze the teacher (Base: copy G now), announce stage 2."""
        assert self.high is not None
        if self.opts.teacher == "base" or not self.ready[self.high]:
            if self.opts.teacher != "base":
                self.emit(
                    "teacher",
                    kind=self.opts.teacher,
                    action="fallback_copy",
                    epoch=epoch,
                    reason=f"no {self.opts.teacher} teacher before L1={self.L1}: copied {self.high}",
                )
            self._teacher_setter(self.high)(0.0)
            self.ready[self.high] = True
        self.emit(
            "stage",
            epoch=epoch + 1,
            stage=2,
            L1=self.L1,
            L2=self.L2,
            teacher=self.opts.teacher,
            high=self.high,
            low=self.low,
            bma_updates=self.pool.n_updates,
            pool=self.pool.pool,
        )

    # ------------------------------------------------------------------ the step
    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        if self.stage(self.epoch) == 1:
            return self.cml_losses(batch, step)
        return self.rel_losses(batch)

    def _rel_term(
        self, m: str, x_u: Tensor, pseudo: Tensor, alpha: float, log_as: str | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """alpha * L_ASC^ReL + (1 - alpha) * L_sup(., P_s) for modality m (eqs. 15-17); with
        ``log_as``, the ASC matrix (and its predictions) are logged under that event name."""
        logits, _ = self.forward_modality(m, x_u)
        probs = torch.sigmoid(logits.float())
        asc, matrix = asc_loss(probs, pseudo, return_matrix=True)
        if log_as is not None:
            self._maybe_log_asc(matrix, log_as, maps=(probs, pseudo))
        sup = self.sup_loss(logits, pseudo)
        return alpha * asc + (1 - alpha) * sup, asc, matrix

    def rel_losses(self, batch: Batch) -> dict[str, Tensor]:
        assert batch.x_u is not None and self.high is not None
        high_index = self.modalities.index(self.high)
        pseudo = mc_dropout_pseudo_labels(
            self.teacher, batch.x_u[:, high_index : high_index + 1], self.opts.mc_passes, self.opts.noise_std
        )  # eq. 14
        losses: dict[str, Tensor] = {}
        rel_low, losses["asc_rel_" + self.low], _ = self._rel_term(
            self.low, batch.x_u, pseudo, self.opts.alpha1, log_as="asc_rel_matrix"
        )
        losses["rel_" + self.low] = rel_low
        total = rel_low  # eq. 16
        if self.epoch > self.L2:  # eq. 17, after the warm-up epoch L2
            if self._stage_announced < 3:
                self._stage_announced = 3
                self.emit("stage", stage="2b", note=f"{self.high} joins re-learning", L2=self.L2)
            rel_high, losses["asc_rel_" + self.high], _ = self._rel_term(self.high, batch.x_u, pseudo, self.opts.alpha2)
            losses["rel_" + self.high] = rel_high
            total = total + rel_high
        if self.opts.stage2_labeled:
            for m in self.modalities:
                logits, _ = self.forward_modality(m, batch.x_l)
                losses[f"sup_{m}"] = self.sup_loss(logits, batch.y_l)
                total = total + losses[f"sup_{m}"]
        losses["pseudo_mean"] = pseudo.mean()
        losses["loss"] = total
        return losses
