"""The 2D U-Net backbone of Semi-CML (Zhang et al., MedIA, section 4.2).

Paper: "The U-Net encoder includes four maximum poolings to reduce the original image
resolution by 16 times, and it includes five layers of double convolutional blocks. The
feature numbers of these blocks are 32, 64, 128, 256, and 512, respectively. For the
U-Net decoder, four transposed convolutions are performed to restore the original image
resolution." The paper also uses dropout (its MC-dropout teacher, eq. 14, needs it) but
does not say where or how much.

Choices (not in the paper):
    * Each conv is 3x3, padding 1, followed by BatchNorm and LeakyReLU(0.01).
    * Dropout (``nn.Dropout2d`` after the first conv of each encoder block) with rates
      increasing with depth, ``(0.05, 0.1, 0.2, 0.3, 0.5)`` by default; the decoder has none.
    * ``base_channels`` scales the widths (32 in the paper; 16 for quick CPU runs).
    * The input spatial size must be divisible by 16 (checked, with a clear error).
    * ``spatial_dims=3`` builds the same layout with 3D convolutions, BatchNorm, pools and
      transposed convolutions (the volumetric papers' setting); 2 is the default, and its
      modules and parameter names are the 2D U-Net's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.nets.layers import layers_for

__all__ = ["UNet", "UNetEncoder", "UNetDecoder", "DoubleConv"]


class DoubleConv(nn.Module):
    """(conv3 -> BN -> LeakyReLU) x 2, with optional dropout between the two convs."""

    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0, spatial_dims: int = 2) -> None:
        super().__init__()
        nd = layers_for(spatial_dims)
        self.block = nn.Sequential(
            nd.conv(in_ch, out_ch, 3, padding=1, bias=False),
            nd.norm(out_ch),
            nn.LeakyReLU(0.01, inplace=True),
            nd.dropout(dropout) if dropout > 0 else nn.Identity(),
            nd.conv(out_ch, out_ch, 3, padding=1, bias=False),
            nd.norm(out_ch),
            nn.LeakyReLU(0.01, inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class UNetEncoder(nn.Module):
    """The contracting path: 5 double-conv levels, a 2x2 max-pool between them.

    Returns the feature map of every level, finest first; the last is the bottleneck
    ``(B, 16 * base, H/16, W/16)``."""

    def __init__(self, in_channels: int, base_channels: int, dropout: tuple[float, ...], spatial_dims: int = 2) -> None:
        super().__init__()
        if len(dropout) != 5:
            raise ConfigError(f"UNet dropout needs 5 rates (one per level), got {len(dropout)}")
        self.spatial_dims = spatial_dims
        self.widths = [base_channels * 2**i for i in range(5)]
        self.levels = nn.ModuleList()
        prev = in_channels
        for width, p in zip(self.widths, dropout):
            self.levels.append(DoubleConv(prev, width, p, spatial_dims))
            prev = width
        self.pool = layers_for(spatial_dims).pool(2)

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.ndim != self.spatial_dims + 2:
            raise ConfigError(
                f"a {self.spatial_dims}D UNet needs (B, C, {self.spatial_dims} sizes), got {tuple(x.shape)}"
            )
        if any(size % 16 for size in x.shape[2:]):
            sizes = "x".join(str(size) for size in x.shape[2:])
            raise ConfigError(f"UNet input size {sizes} must be divisible by 16 (4 max-pools)")
        features = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else self.pool(x))
            features.append(x)
        return features


class UNetDecoder(nn.Module):
    """The expanding path: 4 transposed convs, each followed by a double conv on
    [upsampled, skip]. ``streams`` encoders feed it (1 for a U-Net; 2 for the MM- dual
    encoder), their features concatenated channel-wise at every level."""

    def __init__(self, widths: list[int], out_channels: int, streams: int = 1, spatial_dims: int = 2) -> None:
        super().__init__()
        nd = layers_for(spatial_dims)
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        prev = widths[-1] * streams
        for width in reversed(widths[:-1]):
            self.ups.append(nd.up(prev, width, kernel_size=2, stride=2))
            self.blocks.append(DoubleConv(width + width * streams, width, spatial_dims=spatial_dims))
            prev = width
        self.head = nd.conv(prev, out_channels, kernel_size=1)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Logits and the last decoder feature map, from per-level features (finest first)."""
        x = features[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(features[:-1])):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x), x


class UNet(nn.Module):
    """U-Net: 5 double-conv levels (32..512), 4 max-pools, 4 transposed convs; 2D or 3D.

    Args:
        in_channels: image channels (1 for one modality).
        out_channels: logit channels (1 for the binary whole-tumour task, sigmoid outside).
        base_channels: width of the first level; level i has ``base_channels * 2**i``.
        dropout: dropout rate per encoder level (5 values).
        spatial_dims: 2 (slices, default) or 3 (volumes / patches).

    Shapes:
        input ``(B, in_channels, *spatial)`` with every spatial size divisible by 16;
        output logits ``(B, out_channels, *spatial)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 32,
        dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5),
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.encoder = UNetEncoder(in_channels, base_channels, dropout, spatial_dims)
        self.widths = self.encoder.widths
        self.decoder = UNetDecoder(self.widths, out_channels, spatial_dims=spatial_dims)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits plus features: ``bottleneck`` (B, 16*base, H/16, W/16) and
        ``decoder`` (B, base, H, W), the last decoder block before the 1x1 head."""
        features = self.encoder(x)
        logits, last = self.decoder(features)
        return logits, {"bottleneck": features[-1], "decoder": last}

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        logits, features = self.forward_with_features(x)
        return (logits, features) if return_features else logits
