import pytest
import torch

from workbench.errors import ConfigError
from workbench.nets.backbones import segmentation_net
from workbench.nets.unet import UNet
from workbench.nets.vnet import VNet


def test_the_papers_vnet_has_its_size_and_shapes():
    net = VNet(1, 1, base_channels=16)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == 9.45  # the UA-MT line's 9.45 M
    assert [stage[0].kernel_size for stage in net.encoder] == [(3, 3, 3)] * 5
    assert [len(stage) // 3 for stage in net.encoder] == [1, 2, 3, 3, 3]
    assert [len(stage) // 3 for stage in net.decoder] == [3, 3, 2, 1]
    small = VNet(2, 1, base_channels=4).eval()
    logits, features = small(torch.randn(2, 2, 32, 16, 48), return_features=True)
    assert logits.shape == (2, 1, 32, 16, 48)
    assert features["bottleneck"].shape == (2, 64, 2, 1, 3) and features["decoder"].shape == (2, 4, 32, 16, 48)


def test_vnet_skips_are_added_and_dropout_is_optional():
    net = VNet(1, 1, base_channels=4, dropout=0.0).train()
    x = torch.randn(2, 1, 16, 16, 16)
    assert torch.equal(net(x), net(x))  # no dropout: train mode is deterministic
    assert net.up[0][0].out_channels == net.encoder[3][0].out_channels  # same width to add
    dropped = VNet(1, 1, base_channels=4).train()
    assert not torch.equal(dropped(x), dropped(x))  # Dropout3d 0.5: the MC-dropout teacher's noise


def test_vnet_errors_are_one_line():
    with pytest.raises(ConfigError, match=r"V-Net input size 16x24x16 must be divisible by 16"):
        VNet(1, 1, 4)(torch.randn(1, 1, 16, 24, 16))
    with pytest.raises(ConfigError, match=r"a V-Net needs \(B, C, X, Y, Z\)"):
        VNet(1, 1, 4)(torch.randn(1, 1, 16, 16))


def test_the_backbone_factory():
    assert isinstance(segmentation_net("unet", 1, 1, 4, 2), UNet)
    assert isinstance(segmentation_net("vnet", 1, 1, 4, 3), VNet)
    assert segmentation_net("vnet", 1, 1, 4, 3, dropout=False).dropout.__class__.__name__ == "Identity"
    unet = segmentation_net("unet", 1, 1, 4, 2, dropout=False)
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in unet.modules())
    with pytest.raises(ConfigError, match="backbone='vnet' is a 3D network"):
        segmentation_net("vnet", 1, 1, 4, 2)
    with pytest.raises(ConfigError, match="unknown backbone 'resnet'"):
        segmentation_net("resnet", 1, 1, 4, 2)
