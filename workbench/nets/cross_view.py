"""The two-subnet network of cross-view mutual learning (Wu et al., MM '24, section 3.1, Fig. 3).

"We employ two subnets that share a similar architecture but have non-shared parameters
[...] each subnet is divided into an encoder E_i and a decoder D_i, where i in {0, 1}."
So the pair is two whole backbones, nothing shared: two encoders (the feature discrepancy
loss, eq. 1, compares their outputs) and two decoders, both used in training and at test
time. The paper uses the 2D U-Net of SS-Net for its 2D data set (ACDC) and the 3D V-Net for
LA and BraTS 2019 (section 4.2); here ``backbone="unet"`` is the workbench U-Net (2D or 3D,
the one every other method uses) and ``backbone="vnet"`` the V-Net
(:class:`~workbench.nets.vnet.VNet`, 3D).

The two subnets are built one after the other from the global RNG, so they start from
different random weights; what makes them see the input from different "views" is the
training (eq. 1 pushes their encoder features apart), not a different input.

Test-time output (section 3.3): ``P = (P_0 + P_1) / 2``, the mean of the two subnets'
probabilities; :meth:`CrossViewPair.forward_with_features` returns its logit so that the
pair can stand where a U-Net stands (``self.nets[m]``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from workbench.nets.backbones import segmentation_net

__all__ = ["CrossViewPair"]


class CrossViewPair(nn.Module):
    """Two U-Nets with the same architecture and separate parameters (subnets 0 and 1).

    Args:
        in_channels: image channels (1 for one modality, M for stacked modalities).
        out_channels: logit channels (1 for the binary task, sigmoid outside).
        base_channels: U-Net width of the first level.
        spatial_dims: 2 (slices) or 3 (patches and volumes).
        backbone: ``unet`` (the workbench U-Net) or ``vnet`` (3D only: the paper's V-Net,
            :class:`~workbench.nets.vnet.VNet`).

    Shapes:
        input ``(B, in_channels, *spatial)`` with every spatial size divisible by 16.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_channels: int = 32,
        spatial_dims: int = 2,
        backbone: str = "unet",
    ) -> None:
        super().__init__()
        self.subnets = nn.ModuleList(
            [segmentation_net(backbone, in_channels, out_channels, base_channels, spatial_dims) for _ in range(2)]
        )

    def forward_pair(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Per-subnet logits ``[D_0(E_0(x)), D_1(E_1(x))]`` and bottlenecks ``[f_0, f_1]``.

        ``f_i = E_i(x)`` is the encoder output ``(B, 16*base, H/16, W/16)``, the feature of eq. 1.
        """
        logits, feats = [], []
        for net in self.subnets:
            out, features = net.forward_with_features(x)
            logits.append(out)
            feats.append(features["bottleneck"])
        return logits, feats

    def probabilities(self, x: Tensor) -> Tensor:
        """Section 3.3: ``(P_0 + P_1) / 2`` with ``P_i = sigmoid(D_i(E_i(x)))``, shape ``(B, out, H, W)``."""
        logits, _ = self.forward_pair(x)
        return (torch.sigmoid(logits[0].float()) + torch.sigmoid(logits[1].float())) / 2

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The logit of the averaged probability, and both subnets' features.

        Returns:
            ``logit((P_0 + P_1) / 2)`` (clamped at 1e-6 from 0 and 1), and
            ``{"bottleneck": (B, 2*16*base, H/16, W/16), "decoder": (B, 2*base, H, W)}``:
            subnet 0's and subnet 1's maps concatenated along channels (the pair's
            representation is both views together).
        """
        outs = [net.forward_with_features(x) for net in self.subnets]
        probs = (torch.sigmoid(outs[0][0].float()) + torch.sigmoid(outs[1][0].float())) / 2
        features = {key: torch.cat([outs[0][1][key], outs[1][1][key]], dim=1) for key in ("bottleneck", "decoder")}
        return torch.logit(probs, eps=1e-6), features

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_features(x)[0]
