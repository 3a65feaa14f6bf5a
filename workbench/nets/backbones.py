"""The per-modality segmentation network a method builds: the U-Net or the 3D V-Net.

``TrainConfig.backbone`` picks it for the methods that declare both
(``Method.backbones_supported``: supervised, MT, UA-MT, CPS, cross-view): ``unet`` (the
workbench U-Net, 2D or 3D; the default) or ``vnet`` (:class:`~workbench.nets.vnet.VNet`, 3D
only, the backbone of the volumetric papers' LA / BraTS 2019 rows). Both take
``(B, C, *spatial)`` with sizes divisible by 16 and return the same
``forward_with_features`` features (``bottleneck``, ``decoder``).
"""

from __future__ import annotations

from torch import nn

from workbench.errors import ConfigError
from workbench.nets.unet import UNet
from workbench.nets.vnet import VNet

__all__ = ["BACKBONES", "NO_DROPOUT", "segmentation_net"]

#: the backbones a method may build
BACKBONES = ("unet", "vnet")
#: the U-Net's per-level dropout rates when a method asks for none
NO_DROPOUT = (0.0,) * 5


def segmentation_net(
    backbone: str,
    in_channels: int,
    out_channels: int,
    base_channels: int,
    spatial_dims: int = 2,
    dropout: bool = True,
) -> nn.Module:
    """A ``backbone`` network; ``dropout=False`` builds it without dropout."""
    if backbone == "unet":
        extra = {} if dropout else {"dropout": NO_DROPOUT}
        return UNet(in_channels, out_channels, base_channels, spatial_dims=spatial_dims, **extra)
    if backbone == "vnet":
        if spatial_dims != 3:
            raise ConfigError(f"backbone='vnet' is a 3D network: use spatial_dims=3, not {spatial_dims}")
        return VNet(in_channels, out_channels, base_channels, dropout=0.5 if dropout else 0.0)
    raise ConfigError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONES)}")
