"""Networks: the paper's U-Net (and, later, fusion / GAN networks)."""

from workbench.nets.unet import UNet

__all__ = ["UNet"]
