"""Networks: the paper's U-Net (and, later, fusion / GAN networks)."""

from workbench.nets.fusion import DualEncoderUNet
from workbench.nets.unet import UNet

__all__ = ["UNet", "DualEncoderUNet"]
