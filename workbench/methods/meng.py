"""Meng et al.: multi-stage fusion + contrastive mutual learning (``meng-fusion``).

Meng, Li, Wu, Wang, Yan, "Semi-Supervised Multi-Modal Medical Image Segmentation for
Complex Situations", MICCAI 2025. One dual-branch network
(:class:`~workbench.nets.meng.MengNet`: multi-stage fusion, eq. 3, and modality-aware
enhancement, eq. 2) whose branch a gives f_phi(x^a) and branch b gives g_phi(x^b).

Equations (section 2):
    (1)  D_l = {(x_i^a, x_i^b, y_i)}_{i=1..M},  D_u = {(x_j^a, x_j^b)}_{j=1..N},  M << N
    (4)  L_sup   = E[ L_CE(f(x^a), y) + L_DICE(f(x^a), y) + L_CE(g(x^b), y) + L_DICE(g(x^b), y) ]
                   on labeled pairs
    (5)  pl^a = f(x^a),  pl^b = g(x^b)                   pseudo-labels, no gradient
    (6)  L_unsup = E[ ||f(x^a) - pl^b||^2 + ||g(x^b) - pl^a||^2 ]   on unlabeled pairs
         L_total = L_sup + alpha * L_unsup                (end of section 2.2)

Hyper-parameters (section 3.1): alpha = 1.0 (no ramp-up is mentioned); SGD, lr 1e-2, batch
size 4, 60k iterations, dropout 0.5, 3D crops 96^3 (BraTS, T1ce + T2, whole tumour) and
112x112x96 (NPC, CT + MR T2); 5% and 10% labels. Optimiser, learning rate, batch sizes and
iterations here are the training loop's (Adam, warm-up multi-step), as for every method.

Despite its name, "contrastive mutual learning" (eq. 6) has no negative pairs: it is a
symmetric MSE consistency in which each branch is pulled towards the other branch's
detached prediction. There is no other contrastive term in the paper.

Choices:
    * Binary task with sigmoid outputs: L_CE is binary cross-entropy on logits, L_DICE the
      soft Dice of the batch (``workbench.losses``), and eq. 6 compares probabilities. Both
      norms ||.||^2 are means over pixels and slices (a sum would scale alpha by H*W).
    * Supervised weights: the paper's 1:1 (``sup_weights="paper"``, default), not the run's
      Semi-CML eq. 3 weights (10 BCE + 7 Dice, ``sup_weights="run"`` uses
      :meth:`Method.sup_loss`). Eq. 4 is explicit, and alpha = 1 is calibrated against an
      L_sup of that scale: with 10/7 the consistency term would weigh ~17x less.
    * The stop-gradient (eq. 5) detaches only the target. Because the branches are fused,
      ``||f(x^a) - pl^b||^2`` still reaches branch b's encoder through the fusion layers;
      it never reaches branch b's decoder (tested).
    * Labeled and unlabeled slices go through the network in two separate forward passes
      (BatchNorm statistics per pass), as in Semi-CML (see ``semi_cml.py`` for the
      measurement behind this).
    * Options ``mmf``, ``mae``, ``mcml`` switch the three components of Table 2 (baseline =
      all off: two separate U-Net-like branches trained on L_sup). ``mae_softmax`` chooses
      the reading of eq. 2 (softmax over the two kernels, default, or over the two
      modalities; :mod:`workbench.nets.meng` argues the default). ``rampup_epochs`` > 0
      adds Semi-CML's sigmoid ramp-up to alpha (off by default: the paper has none).

Predictions are keyed by modality: branch i (fed channel i) -> ``modalities[i]``. Unlike
Semi-CML, inference needs both modalities: every branch's output depends on both inputs
through the fusion layers.

Remaining deviations from the paper, each with why:
    * By default 2D slices (the paper: 3D crops of 96^3 / 112x112x96); the net is
      dimension-agnostic, and ``spatial_dims=3`` with ``patch`` 96^3 is the paper's setting
      (grid ``meng-brats2019-gpu``). The 2D default keeps it comparable with the other rows.
    * By default Adam with the loop's schedule; the paper's SGD at lr 1e-2 for 60k iterations
      is ``optimizer="sgd"``, ``lr_schedule="poly"`` (the paper gives no decay: poly is the
      SSL4MIS code's) and 600 x 100 steps, as that grid sets; its batch of 4 is split there as
      2 labeled + 2 unlabeled patches (the paper does not say how).
    * In 2D, ``crop`` is a random shift of the whole slice (:mod:`workbench.augment`): the
      slices are already the network's input size; in 3D the random patch is the crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from workbench.errors import ConfigError
from workbench.methods.base import Batch, Method
from workbench.methods.options import check_choice
from workbench.methods.registry import register
from workbench.nets.meng import MAE_SOFTMAX, MengNet
from workbench.schedules import sigmoid_rampup

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = ["MengFusion", "MengOptions", "mutual_mse_terms"]


@dataclass
class MengOptions:
    alpha: float = 1.0  # weight of L_unsup (section 2.2; paper: 1.0)
    rampup_epochs: float = 0.0  # > 0: sigmoid ramp-up of alpha over this many epochs (not in the paper)
    sup_weights: str = "paper"  # paper: CE + Dice (eq. 4) | run: config bce_weight*BCE + dice_weight*Dice
    mmf: bool = True  # multi-stage multi-modal fusion (eq. 3; Table 2)
    mae: bool = True  # modality-aware enhancement (eq. 2; Table 2)
    mae_softmax: str = "kernels"  # eq. 2's softmax over the two kernels | over the two modalities (nets/meng.py)
    mcml: bool = True  # contrastive mutual learning (eq. 6; Table 2)
    dropout: float = 0.5  # on each branch's bottleneck (section 3.1: 0.5)


def mutual_mse_terms(probs_a: Tensor, probs_b: Tensor) -> tuple[Tensor, Tensor]:
    """The two terms of eq. 6 with the pseudo-labels of eq. 5 detached.

    Args:
        probs_a: ``f(x^a)``, probabilities of branch a, any shape.
        probs_b: ``g(x^b)``, same shape.

    Returns:
        ``mean((probs_a - sg(probs_b))^2)`` and ``mean((probs_b - sg(probs_a))^2)``; the
        first only moves branch a's prediction, the second only branch b's. Their values
        are equal; they differ in where their gradients go.
    """
    if probs_a.shape != probs_b.shape:
        raise ValueError(f"eq. 6 needs maps of one shape, got {tuple(probs_a.shape)} and {tuple(probs_b.shape)}")
    a, b = probs_a.float(), probs_b.float()
    pl_a, pl_b = a.detach(), b.detach()  # eq. 5
    return ((a - pl_b) ** 2).mean(), ((b - pl_a) ** 2).mean()


@register
class MengFusion(Method):
    """Dual-branch fusion network trained with L_sup + alpha * L_unsup (eqs. 4-6)."""

    name = "meng-fusion"
    uses_unlabeled = True
    spatial_dims_supported = (2, 3)
    augmentation = ("crop",)  # implementation details: "the input images were randomly cropped"
    options_class = MengOptions

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        if len(self.modalities) != 2:
            raise ConfigError(f"{self.name} needs exactly 2 modalities, got {self.modalities}")
        check_choice("sup_weights", self.opts.sup_weights, ("paper", "run"))
        if not 0.0 <= self.opts.dropout < 1.0:
            raise ConfigError(f"option dropout={self.opts.dropout}: must be in [0, 1)")
        check_choice("mae_softmax", self.opts.mae_softmax, MAE_SOFTMAX)
        self.net = MengNet(
            1,
            config.base_channels,
            dropout=self.opts.dropout,
            fusion=self.opts.mmf,
            enhancement=self.opts.mae,
            mae_softmax=self.opts.mae_softmax,
            spatial_dims=config.spatial_dims,
        )

    def alpha(self, step: int) -> float:
        """alpha of L_total, times the optional ramp-up (t in fractional epochs)."""
        return self.opts.alpha * sigmoid_rampup(self.epoch_time(step), self.opts.rampup_epochs)

    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        logits_l = self.net(batch.x_l)  # labeled pass
        for m, logits in zip(self.modalities, logits_l):
            losses[f"sup_{m}"] = self.sup_loss(logits, batch.y_l, self.opts.sup_weights)  # eq. 4
        total = losses[f"sup_{self.modalities[0]}"] + losses[f"sup_{self.modalities[1]}"]
        if self.opts.mcml and batch.x_u is not None:
            probs_a, probs_b = (torch.sigmoid(z.float()) for z in self.net(batch.x_u))  # unlabeled pass
            a, b = self.modalities
            losses[f"mse_{a}"], losses[f"mse_{b}"] = mutual_mse_terms(probs_a, probs_b)  # eqs. 5-6
            losses["unsup"] = losses[f"mse_{a}"] + losses[f"mse_{b}"]
            alpha = self.alpha(step)
            losses["alpha"] = torch.tensor(alpha, device=total.device)
            total = total + alpha * losses["unsup"]
        losses["loss"] = total
        return losses

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        """Per-modality probabilities; needs both modalities in ``images`` (B, 2, H, W)."""
        return {m: torch.sigmoid(z) for m, z in zip(self.modalities, self.net(images))}

    def features(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        """Branch features per modality: ``bottleneck`` (B, 16*base, H/16, W/16) and
        ``decoder`` (B, base, H, W). Call in eval mode under ``torch.no_grad()``."""
        return dict(zip(self.modalities, self.net.forward_with_features(images)[1]))
