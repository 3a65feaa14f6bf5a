"""The 3D V-Net of the semi-supervised volumetric line (UA-MT, MT, CPS, cross-view mutual learning).

Cross-view mutual learning (Wu et al., MM '24, section 4.2): "The 3D V-Net is chosen as the
backbone", following the works whose LA and BraTS 2019 rows it compares (UA-MT and its
successors); their V-Net rows (LA 5% 52.55, 10% 82.74, all 91.47 DSC) are that network's.
It is the V-Net of Milletari et al. (3DV 2016) as the UA-MT line builds it:

    * five encoder stages at widths ``16, 32, 64, 128, 256`` (``base_channels * 2**i``) with
      1, 2, 3, 3, 3 convolutions each (3x3x3, padding 1, BatchNorm, ReLU);
    * between stages a 2x2x2 convolution with stride 2 (+ BatchNorm, ReLU) halves the size;
    * four decoder stages: a 2x2x2 transposed convolution with stride 2 (+ BatchNorm, ReLU)
      to the next finer width, **added** to that level's encoder feature (not concatenated),
      then 3, 3, 2, 1 convolutions;
    * dropout (``nn.Dropout3d``, 0.5) on the bottleneck and on the last decoder feature, as
      the line's ``has_dropout`` student (UA-MT's MC-dropout teacher needs it);
    * a 1x1x1 convolution to the logits.
  With ``base_channels = 16`` it has 9.45 M parameters (one input channel, one output).

Where it differs from ``monai.networks.nets.VNet`` (why MONAI's is not used): MONAI builds
Milletari's original, 5x5x5 convolutions with a residual connection inside every stage, ELU /
PReLU and a fixed width of 16 (45.6 M parameters), while the papers' rows come from the 3x3x3,
non-residual network above. Inputs need every size divisible by 16 (4 downsamplings).
"""

from __future__ import annotations

from torch import Tensor, nn

from workbench.errors import ConfigError

__all__ = ["VNet"]

#: convolutions per encoder stage (finest first) and per decoder stage (coarsest first)
ENCODER_CONVS = (1, 2, 3, 3, 3)
DECODER_CONVS = (3, 3, 2, 1)


def _conv_stage(in_ch: int, out_ch: int, n_convs: int) -> nn.Sequential:
    """``n_convs`` x (conv 3x3x3 -> BN -> ReLU), the first from ``in_ch`` channels."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [nn.Conv3d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1), nn.BatchNorm3d(out_ch), nn.ReLU(True)]
    return nn.Sequential(*layers)


def _resample(in_ch: int, out_ch: int, up: bool) -> nn.Sequential:
    """A 2x2x2 stride-2 (transposed) convolution -> BN -> ReLU."""
    conv = nn.ConvTranspose3d if up else nn.Conv3d
    return nn.Sequential(conv(in_ch, out_ch, 2, stride=2), nn.BatchNorm3d(out_ch), nn.ReLU(True))


class VNet(nn.Module):
    """V-Net (3D): 5 encoder stages, additive skips, 4 decoder stages (module docstring).

    Args:
        in_channels: image channels (1 for one modality, M for stacked modalities).
        out_channels: logit channels (1 for the binary task, sigmoid outside).
        base_channels: width of the first stage (16 in the papers).
        dropout: the ``Dropout3d`` rate on the bottleneck and the last decoder feature (0: none).

    Shapes:
        input ``(B, in_channels, X, Y, Z)``, every size divisible by 16; logits
        ``(B, out_channels, X, Y, Z)``.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, base_channels: int = 16, dropout: float = 0.5):
        super().__init__()
        self.widths = [base_channels * 2**i for i in range(len(ENCODER_CONVS))]
        self.encoder = nn.ModuleList(
            _conv_stage(in_channels if i == 0 else w, w, n) for i, (w, n) in enumerate(zip(self.widths, ENCODER_CONVS))
        )
        self.down = nn.ModuleList(_resample(w, 2 * w, up=False) for w in self.widths[:-1])
        finer = list(reversed(self.widths[:-1]))  # 128, 64, 32, 16 at base 16
        self.up = nn.ModuleList(_resample(2 * w, w, up=True) for w in finer)
        self.decoder = nn.ModuleList(_conv_stage(w, w, n) for w, n in zip(finer, DECODER_CONVS))
        self.dropout = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv3d(self.widths[0], out_channels, 1)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits plus features: ``bottleneck`` ``(B, 16*base, X/16, Y/16, Z/16)`` (after dropout)
        and ``decoder`` ``(B, base, X, Y, Z)``, the last decoder feature before the head."""
        if x.ndim != 5:
            raise ConfigError(f"a V-Net needs (B, C, X, Y, Z), got {tuple(x.shape)}")
        if any(size % 16 for size in x.shape[2:]):
            sizes = "x".join(str(size) for size in x.shape[2:])
            raise ConfigError(f"V-Net input size {sizes} must be divisible by 16 (4 downsamplings)")
        skips = []
        for i, stage in enumerate(self.encoder):
            x = stage(x if i == 0 else self.down[i - 1](x))
            skips.append(x)
        bottleneck = self.dropout(skips.pop())
        x = bottleneck
        for up, stage, skip in zip(self.up, self.decoder, reversed(skips)):
            x = stage(up(x) + skip)
        last = self.dropout(x)
        return self.head(last), {"bottleneck": bottleneck, "decoder": last}

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        logits, features = self.forward_with_features(x)
        return (logits, features) if return_features else logits
