"""Meng et al.'s dual-branch network: multi-stage fusion and modality-aware enhancement.

Meng, Li, Wu, Wang, Yan, "Semi-Supervised Multi-Modal Medical Image Segmentation for
Complex Situations", MICCAI 2025, section 2.1 and Fig. 1. Two
branches, one per modality (f_phi for x^a, g_phi for x^b), each an encoder-decoder; the
encoders exchange information at every stage; each branch ends in its own prediction.

What the paper says (section 2.1) and the equations implemented here:
    * F^a = {f_s^a}_{s=1..4}, F^b = {f_s^b}_{s=1..4}: the encoder features of each modality
      at four stages. At each stage the two are fused into F^ab, which is "transmitted to
      the next stage of each encoder". The fusion layer is "a concatenation operation, two
      convolutional layers, and a non-linear activation function":
      (3)  f_s^fused = sigmoid(conv2(conv1(cat(f_s^a, f_s^b))))
    * Modality-aware enhancement (MAE) after the fusion, one per modality, "multiple
      convolutional layers with different receptive fields", GAP, FC, softmax:
      (2)  W^a = softmax(FC(GAP(psi_1(F^a) + psi_2(F^a))))
      and "we weigh the fused features" with W^a; "the same weight learning process is
      applied to the other modality". The emphasised F^a, F^b then "pass through the
      decoder path to generate the final output".
    * Section 3.1: dropout rate 0.5. The experiments are 3D (crops 96^3 BraTS, 112x112x96
      NPC); widths, kernel sizes, depth and normalisation are not given.

Choices (section 2.1 gives no widths, kernel sizes, depth or normalisation; Fig. 1 is not in our text copy):
    * Backbone: the workbench U-Net layout (unet.py) per branch, so the method compares with
      the other rows: 5 levels of (conv3 - BN - LeakyReLU(0.01)) x 2 with widths
      ``base * (1, 2, 4, 8, 16)``, 2x max-pools between them, decoder of 4 transposed
      convs (kernel 2, stride 2) each followed by a double conv on [upsampled, skip], and a
      1x1 head. The four fused stages s = 1..4 are levels 1-4; level 5 (the bottleneck)
      is the "next stage" of stage 4. The blocks are re-written here (not imported from
      unet.py, which is 2D only) so that ``spatial_dims=3`` gives the paper's 3D network.
    * Eq. 3: conv1 is 3x3 (2C -> C), conv2 is 3x3 (C -> C), both with bias, no
      normalisation and no activation between them (the equation has only the sigmoid).
      One fusion layer per stage, shared by the two branches (F^ab is one tensor).
    * "Transmitted to the next stage of each encoder": branch m continues with
      ``h_s^m = f_s^m + f_s^fused`` (a residual addition), which keeps a modality-specific
      path (Table 2 reports different scores for the two branches).
    * Eq. 2, read as a selective-kernel unit (the paper cites SE-Net [4]): psi_1, psi_2 are
      conv (3x3 and 5x5) - BN - LeakyReLU, C -> C; one FC (C -> 2C) gives two logits per
      channel; the softmax is over the two kernels, so for every channel the two weights
      sum to 1, ``W^a`` has shape ``(B, 2, C)``, and the enhanced feature is
      ``W^a_1 * psi_1(h) + W^a_2 * psi_2(h)`` (channel-wise). A softmax over the C channels
      instead would give every channel a weight near 1/C and enhance nothing.
    * ``mae_softmax="modalities"``, the other reading of "adjust the weights of various
      modalities" (:class:`CrossModalityEnhancement`): each modality m has its own psi_1,
      psi_2 and FC (C -> C); the softmax runs over the two modalities for every channel, so
      ``W^a + W^b = 1`` channel by channel, and branch m gets ``W^m * (psi_1 + psi_2)(h^m)``
      (equal weights give the mean of the two kernels, as the default reading does). The
      default stays ``kernels``: eq. 2 computes W^a from F^a alone, which a softmax across
      modalities could not do; this variant needs F^b's logits too.
    * MAE is applied, per branch and per stage s = 1..4 (F^a as the paper defines it), to
      the fused features h_s^m on their way to that branch's decoder (skip connections);
      the encoder itself continues with the un-enhanced h_s^m. The bottleneck goes to the
      decoder as it is.
    * Dropout (rate 0.5, channel-wise) on each branch's bottleneck before its decoder.

Inputs need both modalities: channel 0 feeds branch 0, channel 1 branch 1, and through the
fusion layers each branch's output depends on both.

Parameter count (2D, ``base_channels=32``, fusion and MAE on): 24,148,610 = two branches
of the workbench U-Net's size (2 x 7,762,465 = 15,524,930) + fusion layers 2,351,040 + MAE
modules 6,272,640. With ``base_channels=16``: 6,042,178.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench.errors import ConfigError
from workbench.nets.layers import layers_for

__all__ = [
    "MengNet",
    "StageFusion",
    "ModalityAwareEnhancement",
    "CrossModalityEnhancement",
    "MAE_SOFTMAX",
    "BranchDecoder",
    "ConvBlock",
    "layers_for",
]

#: what eq. 2's softmax normalises over (module docstring)
MAE_SOFTMAX = ("kernels", "modalities")

_N_LEVELS = 5  # 4 fused stages + the bottleneck


class ConvBlock(nn.Module):
    """(conv k - BN - LeakyReLU(0.01)) repeated ``repeats`` times (k odd, 'same' padding)."""

    def __init__(self, in_ch: int, out_ch: int, spatial_dims: int = 2, kernel_size: int = 3, repeats: int = 2) -> None:
        super().__init__()
        nd = layers_for(spatial_dims)
        layers: list[nn.Module] = []
        for i in range(repeats):
            layers += [
                nd.conv(in_ch if i == 0 else out_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False),
                nd.norm(out_ch),
                nn.LeakyReLU(0.01, inplace=True),
            ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class StageFusion(nn.Module):
    """Eq. 3: ``f_s^fused = sigmoid(conv2(conv1(cat(f_s^a, f_s^b))))``.

    Shapes: ``f_a``, ``f_b`` ``(B, C, *spatial)`` -> ``(B, C, *spatial)`` in (0, 1)."""

    def __init__(self, channels: int, spatial_dims: int = 2) -> None:
        super().__init__()
        nd = layers_for(spatial_dims)
        self.conv1 = nd.conv(2 * channels, channels, 3, padding=1)
        self.conv2 = nd.conv(channels, channels, 3, padding=1)

    def forward(self, f_a: Tensor, f_b: Tensor) -> Tensor:
        return torch.sigmoid(self.conv2(self.conv1(torch.cat([f_a, f_b], dim=1))))


class ModalityAwareEnhancement(nn.Module):
    """Eq. 2: ``W = softmax(FC(GAP(psi_1(F) + psi_2(F))))``, then ``sum_k W_k * psi_k(F)``.

    ``psi_k`` = conv (``kernel_sizes[k]``) - BN - LeakyReLU, C -> C. The softmax runs over
    the two kernels for every channel (see the module docstring).

    Shapes: ``(B, C, *spatial)`` -> ``(B, C, *spatial)``; weights ``(B, 2, C)``.
    """

    def __init__(self, channels: int, spatial_dims: int = 2, kernel_sizes: tuple[int, int] = (3, 5)) -> None:
        super().__init__()
        if len(kernel_sizes) != 2 or any(k % 2 == 0 for k in kernel_sizes):
            raise ConfigError(f"kernel_sizes={kernel_sizes}: need two odd kernel sizes")
        self.psi = nn.ModuleList(ConvBlock(channels, channels, spatial_dims, k, repeats=1) for k in kernel_sizes)
        self.fc = nn.Linear(channels, 2 * channels)

    def weights(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``W`` of eq. 2, ``(B, 2, C)`` summing to 1 over axis 1, and ``[psi_1(x), psi_2(x)]``."""
        branches = [psi(x) for psi in self.psi]
        pooled = (branches[0] + branches[1]).mean(dim=tuple(range(2, x.ndim)))  # F_gap: (B, C)
        logits = self.fc(pooled).view(x.shape[0], 2, -1)  # F_fc: (B, 2, C)
        return torch.softmax(logits, dim=1), branches

    def forward(self, x: Tensor) -> Tensor:
        w, branches = self.weights(x)
        expand = (...,) + (None,) * (x.ndim - 2)  # (B, C) -> (B, C, 1, ...)
        return w[:, 0][expand] * branches[0] + w[:, 1][expand] * branches[1]


class CrossModalityEnhancement(nn.Module):
    """Eq. 2 with the softmax across the modalities: ``U^m = psi_1^m(F^m) + psi_2^m(F^m)``,
    ``[W^a, W^b] = softmax_m(FC^m(GAP(U^m)))`` per channel, output ``W^m * U^m`` per modality.

    Shapes: a list of M maps ``(B, C, *spatial)`` -> a list of M maps of the same shapes;
    weights ``(B, M, C)`` summing to 1 over axis 1."""

    def __init__(
        self, channels: int, spatial_dims: int = 2, kernel_sizes: tuple[int, int] = (3, 5), n_modalities: int = 2
    ) -> None:
        super().__init__()
        if len(kernel_sizes) != 2 or any(k % 2 == 0 for k in kernel_sizes):
            raise ConfigError(f"kernel_sizes={kernel_sizes}: need two odd kernel sizes")
        self.psi = nn.ModuleList(
            nn.ModuleList(ConvBlock(channels, channels, spatial_dims, k, repeats=1) for k in kernel_sizes)
            for _ in range(n_modalities)
        )
        self.fc = nn.ModuleList(nn.Linear(channels, channels) for _ in range(n_modalities))

    def weights(self, features: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``W`` ``(B, M, C)`` (softmax over the modalities) and each modality's ``U^m``."""
        summed = [psi[0](f) + psi[1](f) for psi, f in zip(self.psi, features)]
        logits = [fc(u.mean(dim=tuple(range(2, u.ndim)))) for fc, u in zip(self.fc, summed)]  # (B, C) each
        return torch.softmax(torch.stack(logits, dim=1), dim=1), summed

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        w, summed = self.weights(features)
        expand = (...,) + (None,) * (summed[0].ndim - 2)
        return [w[:, m][expand] * u for m, u in enumerate(summed)]


class BranchDecoder(nn.Module):
    """One branch's expanding path: 4 transposed convs, double convs on [up, skip], 1x1 head.

    Dimension-agnostic (``spatial_dims`` 2 or 3); shared by :mod:`workbench.nets.cmc` (D^m)."""

    def __init__(self, widths: list[int], out_channels: int, spatial_dims: int) -> None:
        super().__init__()
        nd = layers_for(spatial_dims)
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        prev = widths[-1]
        for width in reversed(widths[:-1]):
            self.ups.append(nd.up(prev, width, kernel_size=2, stride=2))
            self.blocks.append(ConvBlock(2 * width, width, spatial_dims))
            prev = width
        self.head = nd.conv(prev, out_channels, kernel_size=1)

    def forward(self, skips: list[Tensor], bottleneck: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and the last feature map before the head, from the 4 skips (finest first)."""
        x = bottleneck
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x), x


class MengNet(nn.Module):
    """Dual-branch segmentation network with multi-stage fusion (eq. 3) and MAE (eq. 2).

    Args:
        out_channels: logit channels per branch (1: binary task, sigmoid outside).
        base_channels: width of level 1; level l has ``base_channels * 2**(l-1)``.
        spatial_dims: 2 (slices, the workbench default) or 3 (the paper's volumes).
        dropout: channel dropout on each branch's bottleneck (paper: 0.5).
        fusion: multi-stage multi-modal fusion (MMF of Table 2); False: two separate encoders.
        enhancement: modality-aware enhancement (MAE of Table 2) on the skip features.
        kernel_sizes: the kernels of psi_1 and psi_2 in eq. 2.
        mae_softmax: eq. 2's softmax over the two ``kernels`` (default) or the two ``modalities``.

    Shapes:
        input ``(B, 2, *spatial)`` (channel i = modality of branch i), every spatial size
        divisible by 16; output two logit maps ``(B, out_channels, *spatial)``.
    """

    n_branches = 2

    def __init__(
        self,
        out_channels: int = 1,
        base_channels: int = 32,
        *,
        spatial_dims: int = 2,
        dropout: float = 0.5,
        fusion: bool = True,
        enhancement: bool = True,
        kernel_sizes: tuple[int, int] = (3, 5),
        mae_softmax: str = "kernels",
    ) -> None:
        super().__init__()
        if mae_softmax not in MAE_SOFTMAX:
            raise ConfigError(f"unknown mae_softmax {mae_softmax!r}; choose one of: {', '.join(MAE_SOFTMAX)}")
        nd = layers_for(spatial_dims)
        self.spatial_dims = spatial_dims
        self.mae_softmax = mae_softmax
        self.fusion = fusion
        self.enhancement = enhancement
        self.widths = [base_channels * 2**i for i in range(_N_LEVELS)]
        self.encoders = nn.ModuleList(
            nn.ModuleList(
                ConvBlock(1 if i == 0 else self.widths[i - 1], w, spatial_dims) for i, w in enumerate(self.widths)
            )
            for _ in range(self.n_branches)
        )
        self.pool = nd.pool(2)
        stages = self.widths[:-1]  # s = 1..4
        self.fusions = nn.ModuleList(StageFusion(w, spatial_dims) for w in stages) if fusion else None
        self.enhance = None  # per branch, per stage (softmax over kernels)
        self.enhance_across = None  # per stage, both branches (softmax over modalities)
        if enhancement and mae_softmax == "kernels":
            self.enhance = nn.ModuleList(
                nn.ModuleList(ModalityAwareEnhancement(w, spatial_dims, kernel_sizes) for w in stages)
                for _ in range(self.n_branches)
            )
        elif enhancement:
            self.enhance_across = nn.ModuleList(
                CrossModalityEnhancement(w, spatial_dims, kernel_sizes, self.n_branches) for w in stages
            )
        self.drop = nd.dropout(dropout) if dropout > 0 else nn.Identity()
        self.decoders = nn.ModuleList(
            BranchDecoder(self.widths, out_channels, spatial_dims) for _ in range(self.n_branches)
        )

    def encode(self, x: Tensor) -> dict[str, list]:
        """Both encoders with fusion at stages 1-4.

        Returns:
            ``stages``: per branch, ``[f_1..f_4]`` after fusion (``f_s + f_s^fused``);
            ``skips``: per branch, the features sent to its decoder (MAE applied);
            ``fused``: ``[f_1^fused..f_4^fused]`` (empty without fusion);
            ``bottleneck``: per branch, level 5 ``(B, 16*base, *spatial/16)``.
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.n_branches:
            raise ConfigError(
                f"MengNet expects (B, 2, {'H, W' if self.spatial_dims == 2 else 'D, H, W'}), got {tuple(x.shape)}"
            )
        if any(size % 16 for size in x.shape[2:]):
            raise ConfigError(
                f"MengNet input size {'x'.join(map(str, x.shape[2:]))} must be divisible by 16 (4 max-pools)"
            )
        h = [x[:, i : i + 1] for i in range(self.n_branches)]
        out: dict[str, list] = {"stages": [[], []], "skips": [[], []], "fused": [], "bottleneck": []}
        for level in range(_N_LEVELS):
            f = [self.encoders[i][level](h[i] if level == 0 else self.pool(h[i])) for i in range(self.n_branches)]
            if level == _N_LEVELS - 1:
                out["bottleneck"] = f
                break
            if self.fusions is not None:
                fused = self.fusions[level](f[0], f[1])  # eq. 3
                out["fused"].append(fused)
                f = [fi + fused for fi in f]  # transmitted to the next stage of each encoder
            h = f
            if self.enhance is not None:  # eq. 2
                skips = [self.enhance[i][level](f[i]) for i in range(self.n_branches)]
            elif self.enhance_across is not None:
                skips = self.enhance_across[level](f)
            else:
                skips = f
            for i in range(self.n_branches):
                out["stages"][i].append(f[i])
                out["skips"][i].append(skips[i])
        return out

    def forward_with_features(self, x: Tensor) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
        """Per-branch logits and features: ``bottleneck`` ``(B, 16*base, *spatial/16)`` and
        ``decoder`` ``(B, base, *spatial)`` (the last decoder block before the 1x1 head)."""
        enc = self.encode(x)
        logits, feats = [], []
        for i in range(self.n_branches):
            bottleneck = enc["bottleneck"][i]
            out, last = self.decoders[i](enc["skips"][i], self.drop(bottleneck))
            logits.append(out)
            feats.append({"bottleneck": bottleneck, "decoder": last})
        return logits, feats

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[logits of branch 0, logits of branch 1]``, each ``(B, out_channels, *spatial)``."""
        return self.forward_with_features(x)[0]
