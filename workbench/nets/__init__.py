"""Networks: the paper's U-Net (and, later, fusion / GAN networks)."""

from workbench.nets.cross_view import CrossViewPair
from workbench.nets.fusion import DualEncoderUNet
from workbench.nets.meng import MengNet
from workbench.nets.unet import UNet

__all__ = ["UNet", "DualEncoderUNet", "MengNet", "CrossViewPair"]
