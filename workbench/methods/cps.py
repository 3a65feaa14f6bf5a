"""Cross pseudo supervision (Chen et al., CVPR 2021), the co-training baseline (CPS, MM-CPS).

Two networks of one architecture with different initialisations, f(theta_1) and
f(theta_2), each trained on the other's hard pseudo-labels:

    Y_1 = [sigma(f(x; theta_1)) > 0.5],  Y_2 = [sigma(f(x; theta_2)) > 0.5]    (no gradient)
    L_cps^u = 1/|D_u| sum_x 1/(H W) sum_i [ l_ce(p_1i, Y_2i) + l_ce(p_2i, Y_1i) ]
    L_cps^l = the same on the labeled slices
    L = L_sup(f_1) + L_sup(f_2) + lambda (L_cps^l + L_cps^u)

with l_ce the binary cross-entropy of the foreground probability (the paper's pixel-wise
cross-entropy for one foreground class) and L_sup eq. 3 of Semi-CML (10 BCE + 7 Dice) for
both networks, so all rows share one supervised loss. lambda = 1.0 by default (the paper
uses 1.5 on VOC, 6 on Cityscapes; ``cps_weight``), no ramp-up by default (as in the paper;
``rampup_epochs`` > 0 adds the sigmoid ramp-up of the mean-teacher module).

Options: ``input`` (``single``: one network pair per modality, each on its own channel,
one result row per modality; ``both``: a pair of dual-encoder networks, rows ``fused``
and ``<m> only``; ``concat``: a pair of U-Nets on the modalities stacked as input channels,
Meng et al.'s input for the single-modal baselines, the same rows), ``cps_weight``,
``rampup_epochs``, ``consistency_on`` (``all``: L_cps^l + L_cps^u | ``unlabeled``: L_cps^u only), ``predict_with``.

Choices of this implementation, each with why (the CPS paper, written for natural images,
is not among the seed papers in ../shared/seeds):
    * The two networks differ only by their random initialisation (the run's seed draws
      them one after the other); neither has a pretrained backbone here.
    * A pixel is foreground for the pseudo-label when its logit is > 0 (sigma > 0.5).
    * Labeled and unlabeled slices go through each network in two forward passes
      (BatchNorm statistics per pass), as in the other methods.
    * Prediction uses the first network (the paper evaluates one network);
      ``predict_with=mean`` averages the two probability maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from workbench.losses import bce_loss
from workbench.methods.base import Batch, Method, fused_and_single_modality
from workbench.methods.options import BASELINE_INPUTS, check_choice
from workbench.methods.registry import register
from workbench.nets.backbones import BACKBONES
from workbench.schedules import sigmoid_rampup

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = ["CPS", "CPSOptions", "cps_loss", "hard_pseudo_labels"]


@dataclass
class CPSOptions:
    input: str = "single"  # single: a pair per modality | both: dual-encoder pair (MM-) | concat: stacked input
    cps_weight: float = 1.0  # lambda
    rampup_epochs: float = 0.0  # sigmoid ramp-up of lambda over this many epochs; 0: none (paper)
    consistency_on: str = "all"  # all: labeled + unlabeled slices | unlabeled
    predict_with: str = "first"  # first | mean


def hard_pseudo_labels(logits: Tensor) -> Tensor:
    """``[sigma(logits) > 0.5]`` as a float tensor with no gradient."""
    return (logits.detach() > 0).float()


def cps_loss(logits_1: Tensor, logits_2: Tensor) -> Tensor:
    """``l_ce(p_1, Y_2) + l_ce(p_2, Y_1)``, each a pixel mean of binary cross-entropy.

    Args:
        logits_1, logits_2: the two networks' logits for the same slices, ``(B, 1, H, W)``.
    """
    return bce_loss(logits_1, hard_pseudo_labels(logits_2)) + bce_loss(logits_2, hard_pseudo_labels(logits_1))


class Pair(NamedTuple):
    """One co-trained pair: loss-name suffix, the two networks, input channels."""

    suffix: str
    net_1: nn.Module
    net_2: nn.Module
    channels: slice


@register
class CPS(Method):
    """Cross pseudo supervision: two networks, each fit to the other's hard pseudo-labels (CPS / MM-CPS)."""

    name = "cps"
    uses_unlabeled = True
    spatial_dims_supported = (2, 3)
    backbones_supported = BACKBONES
    options_class = CPSOptions

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        check_choice("input", self.opts.input, BASELINE_INPUTS)
        check_choice("consistency_on", self.opts.consistency_on, ("all", "unlabeled"))
        check_choice("predict_with", self.opts.predict_with, ("first", "mean"))
        if self.opts.input == "single":
            self.nets = nn.ModuleDict({m: self.make_net() for m in self.modalities})
            self.peers = nn.ModuleDict({m: self.make_net() for m in self.modalities})
        else:
            self.net = self.make_fused_net()
            self.peer = self.make_fused_net()

    def pairs(self) -> list[Pair]:
        """The co-trained network pairs: one per modality, or the dual-encoder pair."""
        if self.opts.input == "single":
            return [Pair(f"_{m}", self.nets[m], self.peers[m], slice(i, i + 1)) for i, m in enumerate(self.modalities)]
        return [Pair("", self.net, self.peer, slice(None))]

    def cps_weight(self, step: int) -> float:
        """lambda(t), t in (fractional) epochs."""
        return self.opts.cps_weight * sigmoid_rampup(self.epoch_time(step), self.opts.rampup_epochs)

    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        assert batch.x_u is not None, f"{self.name} needs unlabeled slices"
        lam = self.cps_weight(step)
        losses: dict[str, Tensor] = {}
        total = torch.zeros((), device=batch.x_l.device)
        for p in self.pairs():
            x_l, x_u = batch.x_l[:, p.channels], batch.x_u[:, p.channels]
            # two forward passes per network: BatchNorm batch statistics per pass
            l1_l, l1_u = p.net_1(x_l), p.net_1(x_u)
            l2_l, l2_u = p.net_2(x_l), p.net_2(x_u)
            sup_1, sup_2 = self.sup_loss(l1_l, batch.y_l), self.sup_loss(l2_l, batch.y_l)
            cps = cps_loss(l1_u, l2_u)  # L_cps^u
            if self.opts.consistency_on == "all":
                cps = cps + cps_loss(l1_l, l2_l)  # + L_cps^l
            losses["sup" + p.suffix], losses["sup_peer" + p.suffix], losses["cps" + p.suffix] = sup_1, sup_2, cps
            total = total + sup_1 + sup_2 + lam * cps
        losses["lambda"] = torch.tensor(lam, device=total.device)
        losses["loss"] = total
        return losses

    def _probs(self, pair: Pair, images: Tensor) -> Tensor:
        p = torch.sigmoid(pair.net_1(images))
        return p if self.opts.predict_with == "first" else (p + torch.sigmoid(pair.net_2(images))) / 2

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        if self.opts.input != "single":
            if self.opts.predict_with == "first":
                return fused_and_single_modality(self.net, images, self.modalities)
            a = fused_and_single_modality(self.net, images, self.modalities)
            b = fused_and_single_modality(self.peer, images, self.modalities)
            return {k: (a[k] + b[k]) / 2 for k in a}
        return {m: self._probs(p, images[:, p.channels]) for m, p in zip(self.modalities, self.pairs())}
