"""MM- baseline: a dual-encoder, shared-decoder network trained on both modalities at once.

The multi-modal baselines of Semi-CML's Table 2 (MM-MT, MM-UAMT, ...) share this backbone
(section 4.4.3): one encoder per modality, features concatenated at every level, one decoder,
so inference needs both modalities. This module is its supervised version, trained with the
same L_sup (eq. 3, beta 10, gamma 7) on the labeled slices.

Evaluation reports three rows: ``fused`` (both modalities in), and ``<m> only`` for each
modality with the other input set to zero (the "single-modality inference" the paper
discusses: a coupled model degrades when a modality is missing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from workbench.methods.base import Batch, Method, fused_and_single_modality
from workbench.methods.registry import register
from workbench.nets import DualEncoderUNet

if TYPE_CHECKING:
    from workbench.config import TrainConfig

__all__ = ["MMSupervised"]


@register
class MMSupervised(Method):
    """MM- baseline: dual encoder, shared decoder, supervised on both modalities."""

    name = "mm-supervised"

    def __init__(self, modalities: list[str], config: TrainConfig) -> None:
        super().__init__(modalities, config)
        self.net = DualEncoderUNet(len(self.modalities), 1, config.base_channels)

    def training_step(self, batch: Batch, step: int) -> dict[str, Tensor]:
        loss = self.sup_loss(self.net(batch.x_l), batch.y_l)
        return {"sup": loss, "loss": loss}

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        return fused_and_single_modality(self.net, images, self.modalities)
