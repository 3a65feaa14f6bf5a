"""The conv / norm / pool / dropout classes of a network for 2D or 3D inputs.

One place where ``spatial_dims`` (MONAI's name) becomes layer classes, for every
dimension-agnostic network here (the U-Net, Meng's and CMC's nets).
"""

from __future__ import annotations

from types import SimpleNamespace

from torch import nn

from workbench.errors import ConfigError

__all__ = ["layers_for"]


def layers_for(spatial_dims: int) -> SimpleNamespace:
    """The conv / norm / pool / dropout classes for 2D or 3D inputs."""
    if spatial_dims == 2:
        return SimpleNamespace(
            conv=nn.Conv2d, norm=nn.BatchNorm2d, pool=nn.MaxPool2d, up=nn.ConvTranspose2d, dropout=nn.Dropout2d
        )
    if spatial_dims == 3:
        return SimpleNamespace(
            conv=nn.Conv3d, norm=nn.BatchNorm3d, pool=nn.MaxPool3d, up=nn.ConvTranspose3d, dropout=nn.Dropout3d
        )
    raise ConfigError(f"spatial_dims={spatial_dims}: must be 2 or 3")
