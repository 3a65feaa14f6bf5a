"""Multi-modal fusion networks.

:class:`DualEncoderUNet` is the "MM-" backbone the Semi-CML paper compares against
(section 4.4.3): one U-Net encoder per modality, their features concatenated at every
level, one shared decoder. It needs every modality at inference; the paper's point is
that such coupled models degrade when one modality is missing (here: zeroed).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench.nets.unet import UNetDecoder, UNetEncoder

__all__ = ["DualEncoderUNet"]


class DualEncoderUNet(nn.Module):
    """One encoder per input channel (modality), a shared decoder.

    Shapes: input ``(B, M, *spatial)`` (M modalities, 2 or 3 spatial sizes divisible by 16,
    ``spatial_dims``) -> logits ``(B, out_channels, *spatial)``."""

    def __init__(
        self,
        n_modalities: int = 2,
        out_channels: int = 1,
        base_channels: int = 32,
        dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5),
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(UNetEncoder(1, base_channels, dropout, spatial_dims) for _ in range(n_modalities))
        self.decoder = UNetDecoder(
            self.encoders[0].widths, out_channels, streams=n_modalities, spatial_dims=spatial_dims
        )

    def forward(self, x: Tensor) -> Tensor:
        per_modality = [enc(x[:, i : i + 1]) for i, enc in enumerate(self.encoders)]
        fused = [torch.cat(level, dim=1) for level in zip(*per_modality)]  # concatenate at every level
        return self.decoder(fused)[0]
