import pytest
import torch

from workbench.errors import ConfigError
from workbench.nets import UNet


def test_shapes_and_features():
    net = UNet(1, 1, base_channels=8).eval()
    x = torch.randn(2, 1, 32, 48)
    logits, feats = net(x, return_features=True)
    assert logits.shape == (2, 1, 32, 48)
    assert feats["bottleneck"].shape == (2, 128, 2, 3)  # 16 * base, H/16, W/16
    assert feats["decoder"].shape == (2, 8, 32, 48)
    assert torch.equal(net(x), logits)  # eval mode: deterministic, same as with features


def test_paper_widths_and_transposed_convs():
    net = UNet()
    assert net.widths == [32, 64, 128, 256, 512]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 1  # one pool module, used 4x
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules()) == 4


def test_dropout_active_in_train_mode_only():
    torch.manual_seed(0)
    net = UNet(1, 1, base_channels=4)
    x = torch.randn(2, 1, 32, 32)
    net.train()
    a, b = net(x), net(x)
    assert not torch.equal(a, b)  # MC dropout gives different samples
    net.eval()
    assert torch.equal(net(x), net(x))


def test_size_not_divisible_by_16_is_a_clear_error():
    with pytest.raises(ConfigError, match="divisible by 16"):
        UNet(1, 1, base_channels=4)(torch.randn(1, 1, 20, 32))


def test_dual_encoder_unet_fuses_every_level():
    from workbench.nets import DualEncoderUNet

    net = DualEncoderUNet(2, 1, base_channels=4).eval()
    x = torch.randn(2, 2, 32, 32)
    assert net(x).shape == (2, 1, 32, 32)
    assert len(net.encoders) == 2
    assert net.decoder.ups[0].in_channels == 2 * 64  # both bottlenecks concatenated
    y = x.clone()
    y[:, 1] = 0  # the output depends on the second modality
    assert not torch.allclose(net(x), net(y))


def test_3d_unet_has_the_same_layout_in_three_dimensions():
    torch.manual_seed(0)
    net = UNet(2, 1, base_channels=4, spatial_dims=3).eval()
    x = torch.randn(1, 2, 16, 32, 16)
    logits, features = net.forward_with_features(x)
    assert logits.shape == (1, 1, 16, 32, 16)
    assert features["bottleneck"].shape == (1, 64, 1, 2, 1) and features["decoder"].shape == (1, 4, 16, 32, 16)
    assert isinstance(net.encoder.levels[0].block[0], torch.nn.Conv3d)
    names_2d = [k for k in UNet(2, 1, base_channels=4).state_dict()]
    assert names_2d == list(net.state_dict())  # same parameter names: one layout, two dimensions
    with pytest.raises(ConfigError, match="a 3D UNet needs"):
        net(torch.randn(1, 2, 16, 16))
    with pytest.raises(ConfigError, match="spatial_dims=4"):
        UNet(spatial_dims=4)


def test_2d_unet_initialises_as_before_the_3d_option():
    """SHA-256 of a seeded 2D U-Net's state dict, as the 2D-only U-Net (commit 6ebf3e6) gave it."""
    import hashlib

    torch.manual_seed(0)
    digest = hashlib.sha256()
    for key, value in UNet(1, 1, base_channels=4).state_dict().items():
        digest.update(key.encode())
        digest.update(value.numpy().tobytes())
    assert digest.hexdigest() == "a21664910b9ac6457070f9f95ae5a29c236f381aff689b6c0e4e8c270551f51a"
