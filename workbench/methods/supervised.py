"""Supervised baseline: one U-Net per modality trained on the labeled slices only.

The lower bound of every table in the seed papers (with 1/5/10% labels) and, with
``--labeled 1.0``, the fully supervised upper bound. Loss (Semi-CML eq. 3-4):

    L = sum over modalities m of  beta * BCE(F_m(x_m), y) + gamma * Dice(sigma(F_m(x_m)), y)

with beta = 10, gamma = 7 (``bce_weight``, ``dice_weight``). The networks share nothing:
summing the losses and using one Adam optimiser is the same as training them apart
(Adam's update is per parameter).

Option ``dropout`` (default true): the Semi-CML U-Net's dropout (0.05 ... 0.5 over the five
encoder levels, :class:`~workbench.nets.UNet`). ``false`` removes it: the Multi-ConDoS
fine-tuning (``--init``) starts from DSGAN weights that were pre-trained without dropout, and
its paper's U-Net has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from workbench.methods.base import Batch, Method
from workbench.methods.registry import register
from workbench.nets.backbones import BACKBONES

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = ["Supervised", "SupervisedOptions"]

#: the U-Net's dropout with ``dropout=false``


@dataclass
class SupervisedOptions:
    dropout: bool = True  # the Semi-CML U-Net's dropout; false: none (Multi-ConDoS fine-tuning)


@register
class Supervised(Method):
    name = "supervised"
    options_class = SupervisedOptions
    spatial_dims_supported = (2, 3)
    backbones_supported = BACKBONES

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        self.nets = nn.ModuleDict({m: self.make_net(dropout=self.opts.dropout) for m in self.modalities})

    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        for i, m in enumerate(self.modalities):
            logits = self.nets[m](batch.x_l[:, i : i + 1])
            losses[f"sup_{m}"] = self.sup_loss(logits, batch.y_l)
        losses["loss"] = torch.stack(list(losses.values())).sum()
        return losses

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        return {m: torch.sigmoid(self.nets[m](images[:, i : i + 1])) for i, m in enumerate(self.modalities)}
